"""``python -m mammocad.cli``: the ``mammocad`` command."""

import sys

from mammocad.cli import main

sys.exit(main())
