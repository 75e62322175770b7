"""Readers of the raw item side: the pipeline's input half of the file I/O.

Everything here reads; nothing writes. Each reader validates what it reads and raises
:class:`~fuxictr_mmctr.errors.DataValidationError` naming the file and column at fault.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from ..data.schema import check_columns, is_list_type, open_parquet, read_item_info
from ..errors import DataValidationError

logger = logging.getLogger(__name__)

# the precomputed vectors of the real item_feature.parquet (the sample writes them too)
DEFAULT_VECTOR_COLUMNS = ("txt_emb_BERT", "img_emb_CLIPRN50")


@dataclass
class ItemSide:
    """The item-side inputs indexed by ``item_id`` (row 0 = padding).

    Attributes:
        num_items: number of real items (``item_id`` 1..num_items).
        tags: ``(num_items + 1, K)`` int tag ids from item_info, 0 = padding.
        texts: ``num_items + 1`` strings fed to the CLIP text tower (title, then tags).
        empty_titles: items whose title is null or blank.
        missing_in_feature: items of item_info absent from item_feature.
    """

    num_items: int
    tags: np.ndarray
    texts: List[str]
    empty_titles: int = 0
    missing_in_feature: int = 0


def _clean_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(str(v) for v in value if v is not None and str(v) not in ("", "0"))
    return " ".join(str(value).split())


def item_text(title: str, tags: str) -> str:
    """The text the CLIP text tower sees for one item: ``"<title>. tags: <tags>"``."""
    parts = [p for p in (title, f"tags: {tags}" if tags else "") if p]
    return ". ".join(parts)


def read_item_side(item_info_path, item_feature_path: Optional[Path]) -> ItemSide:
    """Read item_info (ids and tags) and the titles/tags of item_feature.

    Args:
        item_info_path: ``MicroLens_1M_x1/item_info.parquet`` (row index == item_id).
        item_feature_path: ``item_feature.parquet`` with ``item_id``, ``item_title`` and
            optionally ``item_tags``; ``None`` or a missing file leaves every text empty.
    """
    table = read_item_info(item_info_path, columns=["item_tags"])
    tags = np.asarray(table.columns["item_tags"], dtype=np.int64)
    num_items = table.num_items
    titles = [""] * (num_items + 1)
    tag_texts = [""] * (num_items + 1)
    missing = num_items
    if item_feature_path is not None and Path(item_feature_path).exists():
        pf = open_parquet(item_feature_path)
        names = pf.schema_arrow.names
        check_columns(item_feature_path, pf.schema_arrow, ("item_id", "item_title"))
        cols = ["item_id", "item_title"] + (["item_tags"] if "item_tags" in names else [])
        feat = pf.read(columns=cols)
        ids = feat.column("item_id").to_numpy(zero_copy_only=False)
        if feat.column("item_id").null_count:
            raise DataValidationError(item_feature_path, "null item_id", column="item_id")
        ids = np.asarray(ids, dtype=np.int64)
        title_col = feat.column("item_title").to_pylist()
        tag_col = feat.column("item_tags").to_pylist() if "item_tags" in cols else [None] * len(ids)
        outside = (ids < 1) | (ids > num_items)
        if outside.any():
            logger.warning("%s: %d rows with item_id outside 1..%d of %s are ignored",
                           item_feature_path, int(outside.sum()), num_items, item_info_path)
        seen = np.zeros(num_items + 1, dtype=bool)
        for i, item in enumerate(ids):
            if outside[i]:
                continue
            titles[item] = _clean_text(title_col[i])
            tag_texts[item] = _clean_text(tag_col[i])
            seen[item] = True
        missing = int((~seen[1:]).sum())
        if missing:
            logger.warning("%s: %d of %d items of %s have no row; their text is empty",
                           item_feature_path, missing, num_items, item_info_path)
    else:
        logger.warning("item_feature %s not found: CLIP text features use empty texts",
                       item_feature_path)
    empty = sum(1 for t in titles[1:] if not t)
    if empty:
        logger.warning("%d items have a null or empty item_title; their text is the tags only",
                       empty)
    texts = [""] + [item_text(titles[i], tag_texts[i]) for i in range(1, num_items + 1)]
    return ItemSide(num_items=num_items, tags=tags, texts=texts, empty_titles=empty,
                    missing_in_feature=missing)


def check_vector_column(path, column: str) -> None:
    """Raise :class:`DataValidationError` unless ``column`` of ``path`` is a list of floats
    (read from the footer only), naming the vector columns the file has."""
    schema = open_parquet(path).schema_arrow
    vector_columns = [f.name for f in schema if is_list_type(f.type)
                      and pa.types.is_floating(f.type.value_type)]
    if column not in schema.names:
        raise DataValidationError(path, f"no column {column!r}; its vector columns: "
                                        f"{vector_columns or 'none'}", column=column)
    if column not in vector_columns:
        raise DataValidationError(path, f"expected list<float> vectors, found "
                                        f"{schema.field(column).type}", column=column)


def read_vector_column(path, column: str, num_items: int, batch_rows: int = 8192
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """A precomputed vector column of ``item_feature.parquet`` indexed by item id.

    Args:
        path: ``item_feature.parquet`` (``item_id`` and ``column``, list<float> of one length).
        column: e.g. ``txt_emb_BERT`` (768-d) or ``img_emb_CLIPRN50`` (1024-d).
        num_items: largest item id (item_info's); rows outside ``1..num_items`` are ignored.
        batch_rows: rows read at a time.

    Returns:
        ``(num_items + 1, D)`` float32 vectors (zeros where absent) and the ``(num_items + 1,)``
        mask of the items whose row holds a vector (a null vector: no vector).

    Raises:
        DataValidationError: naming the file, the column and the first bad row: not a float
            list column, lists of different lengths, NaN or inf.
    """
    check_vector_column(path, column)
    pf = open_parquet(path)
    check_columns(path, pf.schema_arrow, ("item_id",))
    vectors: Optional[np.ndarray] = None
    mask = np.zeros(num_items + 1, dtype=bool)
    width, offset, outside = None, 0, 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["item_id", column]):
        ids = np.asarray(batch.column(0).to_numpy(zero_copy_only=False))
        array = batch.column(1)
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False))
        if pa.types.is_fixed_size_list(array.type):
            lengths = np.full(len(array), array.type.list_size)
        else:
            lengths = np.diff(np.asarray(array.offsets.to_numpy(zero_copy_only=False)))
        if width is None and valid.any():
            width = int(lengths[valid][0])
            vectors = np.zeros((num_items + 1, width), dtype=np.float32)
        bad = valid & (lengths != width)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataValidationError(path, f"vector of length {int(lengths[row])}, expected "
                                            f"{width}", column=column, row=offset + row)
        values = np.asarray(array.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        rows = np.zeros((len(array), width or 0), dtype=np.float32)
        rows[valid] = values.reshape(int(valid.sum()), width or 0)
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            raise DataValidationError(path, "NaN or inf in a vector", column=column,
                                      row=offset + int(np.flatnonzero(~finite)[0]))
        inside = valid & (ids >= 1) & (ids <= num_items)
        outside += int((valid & ~inside).sum())
        if width is not None:
            vectors[ids[inside]] = rows[inside]
            mask[ids[inside]] = True
        offset += len(array)
    if outside:
        logger.warning("%s, column %r: %d rows with item_id outside 1..%d are ignored", path,
                       column, outside, num_items)
    if vectors is None:
        raise DataValidationError(path, "no vector in the column", column=column)
    missing = int((~mask[1:]).sum())
    if missing:
        logger.warning("%s, column %r: %d of %d items have no vector", path, column, missing,
                       num_items)
    return vectors, mask


@dataclass
class CorpusStats:
    """What one full pass over ``item_seq.parquet`` saw."""

    users: int = 0
    tokens: int = 0
    unknown_tokens: int = 0
    unknown_examples: List[int] = field(default_factory=list)


class SequenceCorpus:
    """Restartable iterable of item sequences as token lists, streamed from item_seq.parquet.

    Reads ``batch_rows`` rows at a time (pyarrow batches turned into polars frames), strips
    the 0 padding, drops ids outside ``1..num_items`` (counted in :attr:`stats`: items of
    item_seq absent from item_info) and optionally keeps only users with
    ``user_id % keep_mod == 0``. Only one slice is ever held as Python lists.

    Args:
        path: ``item_seq.parquet`` with ``user_id`` and ``item_seq`` (list<int>).
        num_items: largest valid item id (from item_info).
        keep_mod: keep users with ``user_id % keep_mod == 0``; 1 keeps everyone. Default: 1.
        batch_rows: rows per slice. Default: 65536.
    """

    def __init__(self, path, num_items: int, keep_mod: int = 1, batch_rows: int = 65536):
        self.path = Path(path)
        self.num_items = int(num_items)
        self.keep_mod = max(1, int(keep_mod))
        self.batch_rows = int(batch_rows)
        self.stats: Optional[CorpusStats] = None
        pf = open_parquet(self.path)
        need = ["item_seq"] + (["user_id"] if self.keep_mod > 1 else [])
        check_columns(self.path, pf.schema_arrow, need)
        typ = pf.schema_arrow.field("item_seq").type
        if not is_list_type(typ) or not pa.types.is_integer(typ.value_type):
            raise DataValidationError(self.path, f"expected list<int>, found {typ}",
                                      column="item_seq")
        self._columns = need

    def __iter__(self) -> Iterator[List[str]]:
        import polars as pl

        stats = CorpusStats()
        pf = open_parquet(self.path)
        n = self.num_items
        for batch in pf.iter_batches(batch_size=self.batch_rows, columns=self._columns):
            df = pl.from_arrow(pa.Table.from_batches([batch]))
            df = df.filter(pl.col("item_seq").is_not_null())
            if self.keep_mod > 1:
                df = df.filter((pl.col("user_id") % self.keep_mod) == 0)
            if df.height == 0:
                continue
            seq = pl.col("item_seq")
            frame = df.select(
                seq.list.eval(pl.element().filter((pl.element() > 0) & (pl.element() <= n))
                              .cast(pl.Utf8)).alias("tokens"),
                seq.list.eval(pl.element().filter((pl.element() < 0) | (pl.element() > n)))
                .alias("unknown"))
            unknown = frame["unknown"].explode().drop_nulls()
            stats.users += df.height
            stats.unknown_tokens += len(unknown)
            if len(unknown) and len(stats.unknown_examples) < 5:
                stats.unknown_examples.extend(unknown.unique().head(5).to_list())
            for tokens in frame["tokens"].to_list():
                stats.tokens += len(tokens)
                yield tokens
        if self.stats is None:
            if stats.unknown_tokens:
                logger.warning("%s, column 'item_seq': %d occurrences of item ids absent from "
                               "item_info (1..%d), e.g. %s; they are skipped", self.path,
                               stats.unknown_tokens, n, stats.unknown_examples[:5])
            logger.info("%s: %d users, %d item occurrences (keep_mod=%d)", self.path,
                        stats.users, stats.tokens, self.keep_mod)
        self.stats = stats
