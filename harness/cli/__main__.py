"""`python -m harness.cli`: what tests/conftest.py's harness_cli() runs in a subprocess."""

import sys

from harness.cli import main

sys.exit(main())
