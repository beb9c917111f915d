"""``python -m clustercam`` → :func:`clustercam.cli.main`."""

import sys

from .cli import main

sys.exit(main())
