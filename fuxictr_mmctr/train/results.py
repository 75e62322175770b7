"""FuxiCTR's results CSV, one owner: the row a finished experiment appends, its parsing, and
the metric line every log and row prints.

FuxiCTR's convention is one file per config folder, ``<config dir name>.csv`` in the working
directory, one line per run::

     20261207-101500,[command] python run_expid.py ...,[exp_id] DIN_sample,[dataset_id] MicroLens_sample,[train] N.A.,[val] AUC: 0.812345 - logloss: 0.456789,[versions] fuxictr_mmctr 0.1.0 ...

The sweeps resume from it (:func:`finished_expids`), the Ray driver and ``run_expid.py`` append
to it (:func:`append_result`) and the benchmarks read it back (:func:`read_results`). A file that
is not such a CSV (random bytes, another tool's header) is refused with its path and line, and
never appended to.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, Mapping, Optional

from .. import compat
from ..errors import ConfigError
from ..io import PathLike

_FIELDS = ("command", "exp_id", "dataset_id", "train", "val", "versions")


def metric_line(metrics: Mapping[str, float]) -> str:
    """``AUC: 0.812345 - logloss: 0.456789``: FuxiCTR's way of printing metrics."""
    return " - ".join(f"{k}: {float(v):.6f}" for k, v in metrics.items())


def parse_metric_line(text: str) -> Dict[str, float]:
    """The metrics of a :func:`metric_line` (``{}`` for FuxiCTR's ``N.A.``)."""
    metrics = {}
    for part in text.split(" - "):
        name, sep, value = part.partition(":")
        if sep:
            metrics[name.strip()] = float(value)
    return metrics


@dataclass
class ResultRow:
    """One line of the results CSV.

    Attributes:
        expid: the experiment id.
        dataset_id: its dataset.
        valid: the validation metrics of the best checkpoint.
        time: ``YYYYmmdd-HHMMSS`` when the line was written.
        command: the command line that produced it.
        versions: the versions line (:func:`fuxictr_mmctr.compat.versions_line`); empty in
            rows written before versions were recorded.
    """

    expid: str
    dataset_id: str
    valid: Dict[str, float] = field(default_factory=dict)
    time: str = ""
    command: str = ""
    versions: str = ""

    def line(self) -> str:
        return (f" {self.time},[command] python {self.command},[exp_id] {self.expid},"
                f"[dataset_id] {self.dataset_id},[train] N.A.,[val] {metric_line(self.valid)},"
                f"[versions] {self.versions}\n")


def results_file(config_dir: PathLike) -> Path:
    """FuxiCTR's convention: results append to ``<config name>.csv`` in the working dir."""
    return Path(Path(str(config_dir).rstrip("/")).name.replace(".yaml", "") + ".csv")


def parse_row(line: str) -> Optional[ResultRow]:
    """The row of one line, None for a line that is not one (FuxiCTR's own rows parse too)."""
    head, _, rest = line.partition(",[")
    if not rest:
        return None
    fields = {}
    for part in ("[" + rest).split(",["):
        name, sep, value = part.lstrip("[").partition("] ")
        if not sep:
            name, value = part.lstrip("[").rstrip("]"), ""
        fields[name] = value.strip()
    if "exp_id" not in fields:
        return None
    try:
        valid = parse_metric_line(fields.get("val", ""))
    except ValueError:
        return None
    command = fields.get("command", "")
    return ResultRow(expid=fields["exp_id"], dataset_id=fields.get("dataset_id", ""),
                     valid=valid, time=head.strip(),
                     command=command[len("python "):] if command.startswith("python ")
                     else command, versions=fields.get("versions", ""))


def read_results(path: PathLike) -> Dict[str, ResultRow]:
    """expid -> its last :class:`ResultRow` in the results CSV at ``path`` ({} if absent).

    Raises:
        ConfigError: the file is not a results CSV (unreadable, not text, or a line that is
            not a row), naming the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not a results CSV (not UTF-8 text); move it away or pass another "
                          "config name", path=path) from None
    except OSError as exc:
        raise ConfigError(f"unreadable results CSV ({exc.strerror or exc})", path=path) \
            from None
    rows: Dict[str, ResultRow] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = parse_row(line)
        if row is None:
            raise ConfigError(f"line {number} is not a FuxiCTR results row ({line[:60]!r}); "
                              "this file belongs to something else: move it away", path=path)
        rows[row.expid] = row
    return rows


def finished_expids(config_dir: PathLike) -> set:
    """Expids already recorded in the results file of ``config_dir`` (for resuming sweeps)."""
    return set(read_results(results_file(config_dir)))


def append_result(config_dir: PathLike, expid: str, dataset_id: str,
                  metrics: Mapping[str, float], command: Optional[str] = None) -> Path:
    """Append one row to the results CSV of ``config_dir`` (``command``: this process's command
    line), with the versions line so the figure can be reproduced. The file is read first:
    a file that is not a results CSV is refused, never appended to.

    Returns:
        the results file.
    """
    path = results_file(config_dir)
    read_results(path)
    row = ResultRow(expid=expid, dataset_id=dataset_id, valid=dict(metrics),
                    time=datetime.now().strftime("%Y%m%d-%H%M%S"),
                    command=command if command is not None else " ".join(sys.argv),
                    versions=compat.versions_line())
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(row.line())
    return path
