"""``python -m fuxictr_mmctr COMMAND ...``: the ``mmctr`` command line."""
import sys

from .cli import main

sys.exit(main())
