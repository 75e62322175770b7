"""Item sides: item_info tables assembled from parts, with semantic-ID codes.

A model sees items through the ``source: item`` columns of one ``item_info`` table (row index
== ``item_id``, row 0 the padding item). Which vectors and codes that table holds is the
*item side*; no single one wins everywhere (README "Item sides and semantic IDs"), so the
package builds several, to train on each (each file beside ``item_info.parquet``):

* ``given``: ``item_info.parquet``, the distributed ``item_emb_d128`` (an input);
* ``given_codes``: ``item_info_codes.parquet``, + ``sid_1..sid_L``, codes of ``item_emb_d128``;
* ``task1``: ``item_info_task1.parquet``, Task 1's vector as ``item_emb_d128`` (an input,
  written by ``mmctr build-embeddings``);
* ``task1_codes``: ``item_info_task1_codes.parquet``, + the codes of Task 1's vector;
* ``both``: ``item_info_both.parquet``, the given vector + Task 1's as ``item_emb_task1``;
* ``both_codes``: ``item_info_both_codes.parquet``, + the codes of ``item_emb_task1``;
* ``content``: ``item_info_content.parquet``, a content-only vector as ``item_emb_d128``: the
  precomputed text and image vectors of ``item_feature.parquet`` (``txt_emb_BERT``,
  ``img_emb_CLIPRN50``), each L2-normalised, PCA to 128 (the Task-2 winner's recipe; an input,
  written by ``mmctr build-embeddings --source columns --fusion pca``);
* ``content_codes``: ``item_info_content_codes.parquet``, + the codes of that vector;
* ``content_task1``: ``item_info_content_task1.parquet``, the content vector + Task 1's as
  ``item_emb_task1`` (``both`` with the content vector in the given one's place);
* ``content_task1_codes``: ``item_info_content_task1_codes.parquet``, + the codes of
  ``item_emb_task1``.

:func:`build_item_side` writes one table from parts: a base ``item_info`` (its rows and columns
kept), vector columns joined from other item tables (keyed by ``item_id``, any row order, under
a new name), the residual k-means codes of one vector column
(:mod:`fuxictr_mmctr.data.semantic_ids`, written ``code + 1`` so that 0 stays the padding
item's code). :func:`build_candidates` writes
the candidates above. ``mmctr semantic-ids`` and ``mmctr item-side`` are their
command lines.

Every table is validated on the way in (columns present, list columns of one width, finite
floats, ``item_id`` == row index) and on the way out (read back before the rename), written
atomically, with a JSON report beside it (``<stem>.report.json``: per-level code usage and
reconstruction error, collisions, the inputs' digests). The same inputs and settings give the
same bytes, and a table whose report matches its inputs and settings is not written again.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import compat
from ..errors import ConfigError, DataFileNotFound, DataValidationError
from ..io import PathLike, atomic_path, file_digest, report_path_for, write_json
from .features import read_embedding_table
from .schema import list_column, open_parquet, read_item_info
from .semantic_ids import METHOD_VERSION, QuantizerConfig, residual_quantize

logger = logging.getLogger(__name__)

GIVEN_COLUMN = "item_emb_d128"      # the distributed vector (and Task 1's, in its own table)
TASK1_COLUMN = "item_emb_task1"     # Task 1's vector beside the given one
CODE_PREFIX = "sid"                 # codes are sid_1 .. sid_L


def code_columns(levels: int, prefix: str = CODE_PREFIX) -> List[str]:
    """``["sid_1", ..., "sid_L"]``: the names of the code columns."""
    return [f"{prefix}_{level}" for level in range(1, int(levels) + 1)]


@dataclass(frozen=True)
class VectorSource:
    """One vector column joined into an item table.

    Args:
        path: an item table keyed by ``item_id`` (item_info, a Task-1 item_info,
            ``item_emb.parquet``); every item of the base must have a row.
        column: its list<float> column. Default: ``item_emb_d128``.
        name: the column's name in the output. Default: ``column``.
    """

    path: Path
    column: str = GIVEN_COLUMN
    name: Optional[str] = None

    @property
    def out_name(self) -> str:
        return self.name or self.column

    @classmethod
    def parse(cls, text: str) -> "VectorSource":
        """``PATH[:COLUMN[:NAME]]`` (the command line's ``--add``)."""
        path, _, rest = str(text).partition(":")
        column, _, name = rest.partition(":")
        if not path:
            raise ConfigError(f"{text!r}: expected PATH[:COLUMN[:NAME]]", option="--add")
        return cls(Path(path), column or GIVEN_COLUMN, name or None)


@dataclass(frozen=True)
class ItemSideSpec:
    """What :func:`build_item_side` writes.

    Args:
        base: the item_info whose rows and columns the output keeps.
        out: the output parquet.
        add: vector columns joined from other tables. Default: none.
        codes_of: the list<float> column (of the base or an added one) to quantise into
            ``<prefix>_1..<prefix>_L``; None writes no codes. Default: None.
        quantizer: levels, codebook size, seed. Default: 3 levels of 64.
        prefix: the code columns' prefix. Default: ``sid``.
        overwrite_input: allow ``out`` to be ``base`` (replaced once the new file is
            validated). Default: False.
    """

    base: Path
    out: Path
    add: Tuple[VectorSource, ...] = ()
    codes_of: Optional[str] = None
    quantizer: QuantizerConfig = QuantizerConfig()
    prefix: str = CODE_PREFIX
    overwrite_input: bool = False

    def settings(self) -> dict:
        """Everything but paths that decides the output's bytes (with the inputs' digests)."""
        return dict(add=[dict(column=s.column, name=s.out_name) for s in self.add],
                    codes_of=self.codes_of,
                    quantizer=asdict(self.quantizer) if self.codes_of else None,
                    prefix=self.prefix if self.codes_of else None)


@dataclass
class ItemSideResult:
    """What :func:`build_item_side` did.

    Attributes:
        out: the table.
        report_path: its JSON report.
        report: the report's content.
        written: False when the table was up to date and left as it was.
    """

    out: Path
    report_path: Path
    report: dict
    written: bool = True


def _versions() -> dict:
    import sklearn  # the k-means's version decides the codes

    return dict(compat.versions(), sklearn=sklearn.__version__, pyarrow=pa.__version__)


def _fingerprint(spec: ItemSideSpec, inputs: List[dict]) -> str:
    blob = json.dumps(dict(settings=spec.settings(), inputs=[i["sha256"] for i in inputs],
                           versions=_versions(), method=METHOD_VERSION), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _up_to_date(out: Path, report_path: Path, fingerprint: str) -> Optional[dict]:
    """The report of ``out`` when it was written from the same inputs and settings and the
    file is still what was written; else None."""
    if not (out.is_file() and report_path.is_file()):
        return None
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return None
    if report.get("fingerprint") != fingerprint or \
            report.get("output_sha256") != file_digest(out):
        return None
    return report


def build_item_side(spec: ItemSideSpec, force: bool = False) -> ItemSideResult:
    """Write the item table ``spec`` describes (see the module docstring).

    Args:
        spec: base table, joined vectors, codes, output.
        force: write even when ``spec.out`` is up to date. Default: False.

    Returns:
        An :class:`ItemSideResult`.

    Raises:
        DataFileNotFound, DataValidationError: an input is missing or malformed (naming the
            file, column and row), or the column to quantise is not a vector column.
        ConfigError: ``out`` is the base without ``overwrite_input``, a joined column's name
            or a code column is already in the table, a codebook larger than the items, ...
    """
    base, out = Path(spec.base), Path(spec.out)
    report_path = report_path_for(out)
    if out.resolve() == base.resolve() and not spec.overwrite_input:
        raise ConfigError(f"--out {out} is the input item table; pass --overwrite-input to "
                          "replace it (it is replaced only after the new file is validated)",
                          option="--out")
    for source in spec.add:
        if not Path(source.path).exists():
            raise DataFileNotFound(source.path)
    if not base.exists():
        raise DataFileNotFound(base)
    inputs = [dict(role="base", path=str(base), sha256=file_digest(base))] + \
        [dict(role="add", path=str(s.path), column=s.column, name=s.out_name,
              sha256=file_digest(s.path)) for s in spec.add]
    fingerprint = _fingerprint(spec, inputs)
    if not force:
        report = _up_to_date(out, report_path, fingerprint)
        if report is not None:
            logger.info("%s is up to date (same inputs and settings): left as it is", out)
            return ItemSideResult(out, report_path, report, written=False)

    items = read_item_info(base)  # every column checked: ids, tags, vectors
    n_items = items.num_items
    table = open_parquet(base).read()
    vectors: Dict[str, np.ndarray] = {name: values for name, values in items.columns.items()
                                      if values.ndim == 2 and values.dtype == np.float32}
    added: Dict[str, pa.Array] = {}
    expected: Dict[str, np.ndarray] = {}

    def claim(name: str, option: str) -> None:
        if name in table.column_names or name in added:
            raise ConfigError(f"column {name!r} is already in {base}" +
                              (" (or added twice)" if name in added else "") +
                              ": choose another name", option=option)

    for source in spec.add:
        claim(source.out_name, "--add")
        _, values = read_embedding_table(source.path, source.column, n_items=n_items)
        vectors[source.out_name] = values
        added[source.out_name] = list_column(values, pa.float32())
        expected[source.out_name] = values
        logger.info("Joined %s[%s] as %s (%d x %d)", source.path, source.column,
                    source.out_name, *values.shape)

    quantized = None
    if spec.codes_of:
        source = _vectors_of(vectors, spec.codes_of, base, "--codes-of")
        quantized = residual_quantize(source[1:], spec.quantizer)
        codes = np.zeros((n_items + 1, spec.quantizer.levels), dtype=np.int32)
        codes[1:] = quantized.codes + 1                  # 0 stays the padding item's code
        for level, name in enumerate(code_columns(spec.quantizer.levels, spec.prefix)):
            claim(name, "--prefix")
            added[name] = pa.array(codes[:, level], type=pa.int32())
            expected[name] = codes[:, level]

    for name, column in added.items():
        table = table.append_column(name, column)
    with atomic_path(out, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
        _check_written(tmp, out, expected, table.column_names)
    report = dict(output=str(out), output_sha256=file_digest(out), fingerprint=fingerprint,
                  items=n_items, inputs=inputs, columns=table.column_names,
                  added=list(added), settings=spec.settings(), method=METHOD_VERSION,
                  versions=_versions())
    if quantized is not None:
        report["semantic_ids"] = dict(column=spec.codes_of,
                                      columns=code_columns(spec.quantizer.levels, spec.prefix),
                                      **quantized.report())
    write_json(report_path, report)
    logger.info("Wrote %s: %d items, added %s; report %s", out, n_items, list(added),
                report_path)
    return ItemSideResult(out, report_path, report)


def _vectors_of(vectors: Dict[str, np.ndarray], name: str, base: Path, option: str):
    """The ``(n+1, D)`` vectors of column ``name`` (``option`` named it)."""
    if name not in vectors:
        raise DataValidationError(base, f"no list<float> vector column {name!r} here or in the "
                                        f"added tables ({option}; vector columns: "
                                        f"{sorted(vectors)})", column=name)
    return vectors[name]


def _check_written(tmp: Path, out: Path, expected: Dict[str, np.ndarray],
                   columns: Sequence[str]) -> None:
    """Read the new file back through the package's gate: the added columns as computed."""
    back = read_item_info(tmp, columns=list(expected))
    got_names = open_parquet(tmp).schema_arrow.names
    if list(got_names) != list(columns):
        raise DataValidationError(out, f"columns read back {got_names}, written {columns}")
    for name, values in expected.items():
        if not np.array_equal(back.columns[name], values):
            raise DataValidationError(out, "values read back differ", column=name)


# --------------------------------------------------------------------------------------------
# The candidate item sides of a dataset folder
# --------------------------------------------------------------------------------------------
TASK1_FILE = "item_info_task1.parquet"
CONTENT_FILE = "item_info_content.parquet"


@dataclass(frozen=True)
class Candidate:
    """One candidate item side of a ``MicroLens_1M_x1`` folder.

    Attributes:
        name: ``given``, ``given_codes``, ``task1``, ``task1_codes``, ``both``, ``both_codes``,
            ``content``, ``content_codes``, ``content_task1``, ``content_task1_codes``.
        file: its table's file name in the folder.
        base: ``given`` (``item_info.parquet``), ``task1`` (Task 1's item_info) or
            ``content`` (the content-only table of ``build-embeddings --source columns
            --fusion pca``).
        add_task1: Task 1's vector joined as ``item_emb_task1``.
        codes_of: the column quantised into ``sid_1..sid_L``, or None.
    """

    name: str
    file: str
    base: str
    add_task1: bool = False
    codes_of: Optional[str] = None

    @property
    def is_input(self) -> bool:
        """An input table (written by make-sample or build-embeddings), not by this module."""
        return not (self.add_task1 or self.codes_of)

    @property
    def needs_task1(self) -> bool:
        return self.base == "task1" or self.add_task1

    @property
    def needs_content(self) -> bool:
        return self.base == "content"


CANDIDATES: Dict[str, Candidate] = {c.name: c for c in (
    Candidate("given", "item_info.parquet", "given"),
    Candidate("given_codes", "item_info_codes.parquet", "given", codes_of=GIVEN_COLUMN),
    Candidate("task1", TASK1_FILE, "task1"),
    Candidate("task1_codes", "item_info_task1_codes.parquet", "task1", codes_of=GIVEN_COLUMN),
    Candidate("both", "item_info_both.parquet", "given", add_task1=True),
    Candidate("both_codes", "item_info_both_codes.parquet", "given", add_task1=True,
              codes_of=TASK1_COLUMN),
    Candidate("content", CONTENT_FILE, "content"),
    Candidate("content_codes", "item_info_content_codes.parquet", "content",
              codes_of=GIVEN_COLUMN),
    Candidate("content_task1", "item_info_content_task1.parquet", "content", add_task1=True),
    Candidate("content_task1_codes", "item_info_content_task1_codes.parquet", "content",
              add_task1=True, codes_of=TASK1_COLUMN),
)}


def build_candidates(dataset_dir: PathLike, names: Optional[Sequence[str]] = None,
                     task1: Optional[PathLike] = None,
                     quantizer: QuantizerConfig = QuantizerConfig(),
                     force: bool = False, out_dir: Optional[PathLike] = None,
                     content: Optional[PathLike] = None) -> Dict[str, Path]:
    """Write the candidate item sides of a ``MicroLens_1M_x1`` folder (see the module table).

    Args:
        dataset_dir: the folder of ``item_info.parquet``.
        names: candidates to make. Default: every one whose inputs exist (those of Task 1
            and of the content table only when their tables are there).
        task1: Task 1's item_info. Default: ``<dataset_dir>/item_info_task1.parquet``.
        content: the content-only item_info. Default:
            ``<dataset_dir>/item_info_content.parquet``.
        quantizer: the codes' settings. Default: 3 levels of 64.
        force: rewrite tables that are up to date. Default: False.
        out_dir: where the tables are written (``mmctr pipeline`` keeps them in its work dir
            and leaves the data folder as it was). Default: ``dataset_dir``.

    Returns:
        ``{candidate: path}`` of every candidate made or found, the inputs included.

    Raises:
        ConfigError: an unknown candidate name.
        DataFileNotFound: a candidate asked for by name whose input is missing.
    """
    folder = Path(dataset_dir)
    given = folder / CANDIDATES["given"].file
    task1 = Path(task1) if task1 is not None else folder / TASK1_FILE
    content = Path(content) if content is not None else folder / CONTENT_FILE
    inputs = {"given": given, "task1": task1, "content": content}
    unknown = sorted(set(names or ()) - set(CANDIDATES))
    if unknown:
        raise ConfigError(f"unknown candidate(s) {unknown}; available: {list(CANDIDATES)}",
                          option="--candidates")
    if not given.exists():
        raise DataFileNotFound(given)
    wanted = list(names) if names else [c for c in CANDIDATES if not _missing(CANDIDATES[c],
                                                                              inputs)]
    made: Dict[str, Path] = {}
    for name in wanted:
        cand = CANDIDATES[name]
        missing = _missing(cand, inputs)
        if missing:
            raise DataValidationError(inputs[missing], f"file not found: candidate {name!r} "
                                      f"needs {_MAKES[missing]}")
        base = inputs[cand.base]
        if cand.is_input:
            made[name] = base
            continue
        spec = ItemSideSpec(
            base=base, out=Path(out_dir or folder) / cand.file,
            add=(VectorSource(task1, GIVEN_COLUMN, TASK1_COLUMN),) if cand.add_task1 else (),
            codes_of=cand.codes_of, quantizer=quantizer)
        made[name] = build_item_side(spec, force=force).out
    return made


_MAKES = {"task1": "Task 1's item_info (mmctr build-embeddings)",
          "content": "the content-only item_info (mmctr build-embeddings --source columns "
                     "--fusion pca)"}


def _missing(cand: Candidate, inputs: Dict[str, Path]) -> Optional[str]:
    """``task1`` or ``content`` when the candidate needs that table and it is absent."""
    needs = {"task1": cand.needs_task1, "content": cand.needs_content}
    return next((table for table, need in needs.items()
                 if need and not inputs[table].exists()), None)
