"""``python -m fuxictr_mmctr.cli`` is ``mmctr`` (torchrun starts it this way)."""
import sys

from . import main

sys.exit(main())
