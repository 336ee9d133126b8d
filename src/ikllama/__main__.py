"""``python -m ikllama``: see :mod:`ikllama.cli`."""

import sys

from .cli import main

sys.exit(main())
