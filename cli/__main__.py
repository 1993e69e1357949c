"""``python -m lossd.cli`` is ``lossd``."""

import sys

from lossd.cli.main import main

sys.exit(main())
