"""(being written) Losses of the composite family."""

SPECS = ()
