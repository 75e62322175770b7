"""FuxiCTR's feature processor, extended for the MicroLens files.

:class:`MMCTRFeatureProcessor` subclasses FuxiCTR's ``FeatureProcessor`` (the hook FuxiCTR
offers for preprocessing) and adds, before FuxiCTR's own ``fit``:

* vocabulary sizes read from the data when a config leaves them out (``vocab_size`` is
  required by FuxiCTR when ``rebuild_dataset: False``): item-side columns from ``item_info``,
  row columns from the train split. One config then fits the sample at any preset size.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import compat  # noqa: F401
from .errors import ConfigError, DataValidationError

from fuxictr.preprocess import FeatureProcessor

logger = logging.getLogger(__name__)


def _max_value(path, column: str) -> int:
    """Largest integer in ``column`` of a parquet file (lists flattened), streamed."""
    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, Exception) as exc:  # pyarrow raises several types for bad files
        raise DataValidationError(path, f"not a readable parquet file ({exc})") from None
    if column not in pf.schema_arrow.names:
        raise DataValidationError(path, f"missing column '{column}'", column=column)
    best = 0
    for batch in pf.iter_batches(columns=[column], batch_size=262_144):
        array = batch.column(0)
        if hasattr(array, "flatten") and array.type.num_fields == 1:  # list column
            array = array.flatten()
        value = pc.max(array).as_py()
        if value is not None:
            best = max(best, int(value))
    return best


class MMCTRFeatureProcessor(FeatureProcessor):
    """``FeatureProcessor`` that knows where MicroLens keeps each column.

    Args:
        feature_cols, label_col, dataset_id, data_root: as FuxiCTR's ``FeatureProcessor``.
        item_info: path of ``item_info.parquet`` (item-side columns live there).
        train_data: path of the train split (row columns live there).
        **kwargs: the rest of the experiment params.
    """

    def __init__(self, feature_cols=None, label_col=None, dataset_id=None, data_root="./data/",
                 item_info: Optional[str] = None, train_data: Optional[str] = None, **kwargs):
        super().__init__(feature_cols=list(feature_cols or []), label_col=label_col or [],
                         dataset_id=dataset_id, data_root=data_root, **kwargs)
        self.item_info = item_info
        self.train_data = train_data

    def fill_vocab_sizes(self) -> None:
        """Set ``vocab_size`` = max id + 1 on categorical/sequence columns that lack one."""
        for col in self.feature_cols:
            if col.get("type") not in ("categorical", "sequence") or "vocab_size" in col:
                continue
            source_file = self.item_info if col.get("source") == "item" else self.train_data
            if not source_file:
                raise ConfigError(f"feature {col['name']}: no vocab_size and no file to read it "
                                  "from (set item_info / train_data)")
            col["vocab_size"] = _max_value(source_file, col["name"]) + 1
            logger.info("vocab_size of %s read from %s: %d", col["name"], source_file,
                        col["vocab_size"])

    def fit(self, train_ddf=None, rebuild_dataset=False, **kwargs):
        if not rebuild_dataset:
            self.fill_vocab_sizes()
        return super().fit(train_ddf, rebuild_dataset=rebuild_dataset, **kwargs)
