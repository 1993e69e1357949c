"""(being written) Losses of the multiclass family."""

SPECS = ()
