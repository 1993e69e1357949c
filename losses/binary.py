"""(being written) Losses of the binary family."""

SPECS = ()
