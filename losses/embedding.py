"""(being written) Losses of the embedding family."""

SPECS = ()
