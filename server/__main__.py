"""``python -m lossd.server [flags]`` is ``lossd serve [flags]``."""

import sys

from lossd.server.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
