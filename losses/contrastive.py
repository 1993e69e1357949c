"""(being written) Losses of the contrastive family."""

SPECS = ()
