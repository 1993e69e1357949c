"""(being written) Losses of the distribution family."""

SPECS = ()
