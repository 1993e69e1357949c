"""(being written) Losses of the sequence family."""

SPECS = ()
