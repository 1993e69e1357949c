"""(being written) Losses of the segmentation family."""

SPECS = ()
