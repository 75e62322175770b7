"""Run by test_distributed.py under torchrun: ``run_expid.py``'s main, except that rank 1 dies
(``os._exit(7)``, as a crashed or killed process would) at the second step of epoch 2."""
from __future__ import annotations

import os
import sys

from fuxictr_mmctr.models.base import MMCTRModel
from fuxictr_mmctr.cli.experiment import train_main

_train_step = MMCTRModel.train_step


def _dying_train_step(self, batch_data):
    if int(os.environ["RANK"]) == 1 and self._epoch_index == 1 and self._batch_index == 1:
        os._exit(7)
    return _train_step(self, batch_data)


if __name__ == "__main__":
    MMCTRModel.train_step = _dying_train_step
    sys.exit(train_main())
