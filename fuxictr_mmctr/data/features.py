"""FuxiCTR's feature processor, extended for the MicroLens files.

:class:`MMCTRFeatureProcessor` subclasses FuxiCTR's ``FeatureProcessor`` (the hook FuxiCTR
offers for preprocessing) and adds, before FuxiCTR's own ``fit``:

* vocabulary sizes read from the data when a config leaves them out (``vocab_size`` is
  required by FuxiCTR when ``rebuild_dataset: False``): item-side columns from ``item_info``,
  row columns (e.g. ``user_id`` as a categorical feature) from every split present, so a
  user first seen in valid or test still has a row. One config fits the sample at any size.
* the precomputed multimodal item embedding as a FuxiCTR pretrained embedding. A feature spec
  such as::

      {name: item_id, type: categorical, source: item, pretrained_emb: ./data/.../item_info.parquet,
       pretrained_emb_column: item_emb_d128, pretrain_dim: 128, freeze_emb: True,
       pretrain_usage: init}

  has the column read and checked (one row per item, fixed dimension, finite, padding row 0
  all zeros, every item present), written as FuxiCTR's h5 file (``key``/``value``) and handed
  to FuxiCTR, which registers it in the FeatureMap so its own ``PretrainedEmbedding`` serves it.
  A ``pretrained_emb`` that already is an ``.h5``/``.npz`` file is checked and used as is.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import compat  # noqa: F401
from ..errors import ConfigError, DataValidationError
from ..io import atomic_path

from fuxictr.preprocess import FeatureProcessor
from fuxictr.preprocess.tokenizer import load_pretrain_emb

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


def read_embedding_table(path, column: str, dim: Optional[int] = None,
                         n_items: Optional[int] = None, key_column: str = "item_id"):
    """Read and check one embedding column of an item table (item_info or item_emb).

    Args:
        path: parquet file with ``key_column`` and a list<float> ``column``.
        column: the embedding column, e.g. ``item_emb_d128`` or ``item_emb_d128_v3``.
        dim: expected dimension (the config's ``pretrain_dim``).
        n_items: when given, every item id 1..n_items must have a row.

    Returns:
        ``(keys, values)``: ``(n+1,)`` int64 ids 0..n and ``(n+1, dim)`` float32, row 0 the
        padding (zeros; added when the file has no row 0).

    Raises:
        DataValidationError: naming the file, column and row of the first problem.
    """
    from .schema import _list_values

    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise DataValidationError(path, "file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(path, f"not a readable parquet file ({exc})") from None
    names = pf.schema_arrow.names
    for name in (key_column, column):
        if name not in names:
            raise DataValidationError(path, f"missing column '{name}'; found {names}",
                                      column=name)
    value_type = pf.schema_arrow.field(column).type
    if not (pa.types.is_list(value_type) or pa.types.is_large_list(value_type)
            or pa.types.is_fixed_size_list(value_type)) or \
            not pa.types.is_floating(value_type.value_type):
        raise DataValidationError(path, f"expected list<float> embeddings, found {value_type}",
                                  column=column)
    table = pf.read(columns=[key_column, column])
    keys_array = table.column(key_column).combine_chunks()
    if keys_array.null_count or not pa.types.is_integer(keys_array.type):
        raise DataValidationError(path, f"item ids must be non-null integers ({keys_array.type})",
                                  column=key_column)
    keys = np.asarray(keys_array.to_numpy(zero_copy_only=False)).astype(np.int64)
    values = _list_values(path, column, table.column(column).combine_chunks(), 0, None)
    values = values.astype(np.float32, copy=False)
    if dim is not None and values.shape[1] != dim:
        raise DataValidationError(path, f"dimension {values.shape[1]}, config says "
                                        f"pretrain_dim={dim}", column=column, row=0)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise DataValidationError(path, "NaN or inf in an embedding", column=column,
                                  row=int(np.flatnonzero(~finite)[0]))
    if keys.size and keys.min() < 0:
        raise DataValidationError(path, "negative item id", column=key_column,
                                  row=int(np.flatnonzero(keys < 0)[0]))
    order = np.argsort(keys, kind="stable")
    dup = np.flatnonzero(np.diff(keys[order]) == 0)
    if dup.size:
        row = int(order[dup[0] + 1])
        raise DataValidationError(path, f"duplicate item id {keys[row]}", column=key_column,
                                  row=row)
    n = int(keys.max(initial=0)) if n_items is None else int(n_items)
    if keys.size and keys.max() > n:
        row = int(np.flatnonzero(keys > n)[0])
        raise DataValidationError(path, f"item id {keys[row]} beyond the {n} items of "
                                        "item_info", column=key_column, row=row)
    full = np.zeros((n + 1, values.shape[1]), dtype=np.float32)
    present = np.zeros(n + 1, dtype=bool)
    full[keys] = values
    present[keys] = True
    missing = np.flatnonzero(~present[1:])
    if missing.size:
        raise DataValidationError(path, f"{missing.size} item id(s) have no embedding, first "
                                        f"{missing[0] + 1}", column=key_column)
    if present[0] and np.any(full[0] != 0):
        raise DataValidationError(path, "padding row (item_id 0) must be all zeros",
                                  column=column, row=int(np.flatnonzero(keys == 0)[0]))
    return np.arange(n + 1, dtype=np.int64), full


def write_pretrained_h5(path, keys: np.ndarray, values: np.ndarray) -> Path:
    """FuxiCTR's pretrained-embedding file (datasets ``key`` and ``value``), written atomically."""
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("key", data=keys)
            hf.create_dataset("value", data=values)
    return Path(path)


def check_pretrained_h5(path, dim: Optional[int] = None) -> int:
    """Check an existing h5/npz pretrained file; return its dimension."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(path, "pretrained embedding file not found")
    try:
        keys, values = load_pretrain_emb(str(path), keys=["key", "value"])
    except (KeyError, OSError, ValueError) as exc:
        raise DataValidationError(path, f"not a pretrained-embedding file with datasets "
                                        f"'key' and 'value' ({exc})") from None
    if values.ndim != 2 or len(keys) != len(values):
        raise DataValidationError(path, f"'value' must be (len(key), dim), got {values.shape}",
                                  column="value")
    if dim is not None and values.shape[1] != dim:
        raise DataValidationError(path, f"dimension {values.shape[1]}, config says "
                                        f"pretrain_dim={dim}", column="value")
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise DataValidationError(path, "NaN or inf in an embedding", column="value",
                                  row=int(np.flatnonzero(~finite)[0]))
    return int(values.shape[1])


class MMCTRFeatureProcessor(FeatureProcessor):
    """``FeatureProcessor`` that knows where MicroLens keeps each column.

    Args:
        feature_cols, label_col, dataset_id, data_root: as FuxiCTR's ``FeatureProcessor``.
        item_info: path of ``item_info.parquet`` (item-side columns live there).
        train_data, valid_data, test_data: the splits (row columns live there).
        **kwargs: the rest of the experiment params.
    """

    def __init__(self, feature_cols=None, label_col=None, dataset_id=None, data_root="./data/",
                 item_info: Optional[str] = None, train_data: Optional[str] = None,
                 valid_data: Optional[str] = None, test_data: Optional[str] = None, **kwargs):
        super().__init__(feature_cols=list(feature_cols or []), label_col=label_col or [],
                         dataset_id=dataset_id, data_root=data_root, **kwargs)
        self.item_info = item_info
        self.splits = [p for p in (train_data, valid_data, test_data) if p]

    def set_output_dir(self, folder) -> None:
        """Write the feature map, vocabulary, pickle and pretrained h5 to ``folder`` instead of
        FuxiCTR's shared ``<data_root>/<dataset_id>/`` (training stages them privately)."""
        import os

        self.data_dir = str(folder)
        self.pickle_file = os.path.join(self.data_dir, "feature_processor.pkl")
        self.json_file = os.path.join(self.data_dir, "feature_map.json")
        self.vocab_file = os.path.join(self.data_dir, "feature_vocab.json")
        self.feature_map.data_dir = self.data_dir

    def fill_vocab_sizes(self) -> None:
        """Set ``vocab_size`` = max id + 1 on categorical/sequence columns that lack one."""
        for col in self.feature_cols:
            if col.get("type") not in ("categorical", "sequence") or "vocab_size" in col:
                continue
            files = [self.item_info] if col.get("source") == "item" else self.splits
            files = [f for f in files if f and Path(f).exists()]
            if not files:
                raise ConfigError(f"feature {col['name']}: no vocab_size and no file to read it "
                                  "from (set item_info / train_data)")
            col["vocab_size"] = max(_max_value(f, col["name"]) for f in files) + 1
            logger.info("vocab_size of %s read from %s: %d", col["name"], files,
                        col["vocab_size"])

    def prepare_pretrained(self) -> None:
        """Turn each ``pretrained_emb`` parquet column into FuxiCTR's h5 file, checked.

        Item ids are used raw (no remapping with ``rebuild_dataset: False``), so the vocabulary
        of the feature is widened to ``n_items + 2`` when needed: ids 0..n_items then map to
        themselves and FuxiCTR's OOV index sits past the last item.
        """
        for col in self.feature_cols:
            source = col.get("pretrained_emb")
            if not source or not col.get("active", True):
                continue
            if col.get("type") != "categorical":
                raise ConfigError(f"feature {col['name']}: pretrained_emb needs a categorical "
                                  f"feature, not {col.get('type')}")
            usage = col.setdefault("pretrain_usage", "init")
            if usage not in ("init", "sum", "concat"):
                raise ConfigError(f"feature {col['name']}: pretrain_usage={usage!r}, expected "
                                  "init, sum or concat")
            col.setdefault("freeze_emb", True)
            dim = col.get("pretrain_dim")
            if dim is not None and not isinstance(dim, int):
                raise ConfigError(f"feature {col['name']}: pretrain_dim must be an integer")
            if str(source).endswith(".parquet"):
                column = col.get("pretrained_emb_column", "item_emb_d128")
                n_items = (_max_value(self.item_info, "item_id")
                           if self.item_info and col.get("source") == "item" else None)
                keys, values = read_embedding_table(source, column, dim=dim, n_items=n_items)
                target = Path(self.data_dir) / f"pretrained_source_{col['name']}.h5"
                write_pretrained_h5(target, keys, values)
                logger.info("Pretrained %s: %s[%s] -> %s (%d x %d)", col["name"], source,
                            column, target, *values.shape)
                col["pretrained_emb"] = str(target)
                dim = values.shape[1]
            else:
                dim = check_pretrained_h5(source, dim)
            col["pretrain_dim"] = dim
            keys = load_pretrain_emb(str(col["pretrained_emb"]), keys=["key"])
            if not np.issubdtype(np.asarray(keys).dtype, np.integer):
                raise DataValidationError(col["pretrained_emb"], "keys must be integer item ids",
                                          column="key")
            col["vocab_size"] = max(int(col.get("vocab_size", 0)), int(np.max(keys)) + 2)

    def fit_embedding_col(self, col):
        """FuxiCTR's, keeping ``pretrain_dim``: a dense ``type: embedding`` column of width
        ``pretrain_dim`` is then projected to ``embedding_dim`` (FuxiCTR 2.3.7 drops the key,
        so its Linear would expect ``embedding_dim`` inputs)."""
        super().fit_embedding_col(col)
        if "pretrain_dim" in col:
            self.feature_map.features[col["name"]]["pretrain_dim"] = int(col["pretrain_dim"])

    def fit(self, train_ddf=None, rebuild_dataset=False, **kwargs):
        if not rebuild_dataset:
            self.prepare_pretrained()
            self.fill_vocab_sizes()
        return super().fit(train_ddf, rebuild_dataset=rebuild_dataset, **kwargs)

