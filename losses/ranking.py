"""(being written) Losses of the ranking family."""

SPECS = ()
