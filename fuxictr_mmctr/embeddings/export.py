"""Export: write the fused vectors into a copy of item_info.parquet, atomically and checked."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..data.schema import check_finite_rows, list_column, open_parquet
from ..errors import ConfigError, DataValidationError
from ..io import atomic_path
from ..io import report_path_for, write_json as write_report  # noqa: F401  (moved to io)

logger = logging.getLogger(__name__)

EMB_COLUMN = "item_emb_d128"
ALIAS_COLUMN = "item_emb"


def check_vectors(vectors: np.ndarray, where, column: str = EMB_COLUMN, tol: float = 1e-3) -> None:
    """Row 0 all zeros; every other row finite and unit-norm. Raises DataValidationError."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise DataValidationError(where, f"expected (n_items + 1, dim) vectors, got "
                                         f"{vectors.shape}", column=column)
    if np.any(vectors[0] != 0):
        raise DataValidationError(where, "padding row 0 must be all zeros", column=column, row=0)
    check_finite_rows(where, column, vectors)
    norm = np.linalg.norm(vectors[1:].astype(np.float64), axis=1)
    bad = np.abs(norm - 1.0) > tol
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataValidationError(where, f"norm {norm[row - 1]:.4f}, expected 1 (unit norm)",
                                  column=column, row=row)


def write_item_info(input_path, out_path, vectors: np.ndarray, overwrite_input: bool = False,
                    alias: bool = True) -> Path:
    """Write ``input_path`` with ``item_emb_d128`` (and ``item_emb``) replaced by ``vectors``.

    Every other column and every row stays as it was. The file is written to a temporary
    name beside ``out_path``, read back and validated, then renamed into place, so a reader
    never sees a partial file and a failed run leaves the old one untouched.

    Args:
        input_path: the original item_info.parquet.
        out_path: where to write; equal to ``input_path`` only with ``overwrite_input``.
        vectors: ``(n_rows, dim)`` with ``n_rows`` the rows of the input.
        overwrite_input: allow ``out_path == input_path``. Default: False.
        alias: also write the ``item_emb`` column. Default: True.
    """
    input_path, out_path = Path(input_path), Path(out_path)
    if out_path.resolve() == input_path.resolve() and not overwrite_input:
        raise ConfigError(f"--out {out_path} is the input item_info; pass --overwrite-input to "
                         "replace it (it is replaced only after the new file is validated)")
    table = open_parquet(input_path).read()
    if table.num_rows != len(vectors):
        raise DataValidationError(input_path, f"{table.num_rows} rows but {len(vectors)} "
                                              "vectors", column="item_id")
    check_vectors(vectors, out_path)
    column = list_column(np.asarray(vectors, dtype=np.float32))
    for name in (EMB_COLUMN,) + ((ALIAS_COLUMN,) if alias else ()):
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    with atomic_path(out_path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
        _validate_written(tmp, input_path, vectors, out_path)
    logger.info("Wrote %s: %d rows, %s (%d-d, unit norm)", out_path, table.num_rows,
                EMB_COLUMN + (f" + {ALIAS_COLUMN}" if alias else ""), vectors.shape[1])
    return out_path


def _validate_written(tmp: Path, input_path: Path, vectors: np.ndarray, out_path: Path) -> None:
    """Read the new file back: same other columns and rows, the vectors as given."""
    new = pq.read_table(tmp)
    old = pq.read_table(input_path)
    for name in old.column_names:
        if name in (EMB_COLUMN, ALIAS_COLUMN):
            continue
        if name not in new.column_names or not new.column(name).equals(old.column(name)):
            raise DataValidationError(out_path, "column changed while writing", column=name)
    got = np.asarray(new.column(EMB_COLUMN).combine_chunks().flatten().to_numpy(),
                     dtype=np.float32).reshape(new.num_rows, -1)
    check_vectors(got, out_path)
    if not np.array_equal(got, vectors.astype(np.float32)):
        raise DataValidationError(out_path, "vectors read back differ", column=EMB_COLUMN)
