"""Entry point: `python -m bench [--tiny] [--no-write] [--profile] [--only 1,3]`."""

import sys

from bench.run import main

sys.exit(main())
