"""``python -m lossd.bench`` is ``lossd bench``."""

import sys

from lossd.bench.cli import main

sys.exit(main())
