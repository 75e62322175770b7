"""Stages that run once per set of inputs: what makes ``mmctr pipeline`` resumable.

A stage is a named step with a *key*: the settings it runs with and the digests of the files it
reads. :meth:`Stages.run` runs the step unless ``<work-dir>/stages/<name>.json`` records a
finished run with the same key whose outputs are all still there; then it returns that record
and the step is skipped. A killed pipeline rerun with the same command starts at the first
stage that had not finished; a changed setting or input file reruns the stages that depend on
it (their keys change) and nothing else.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from ..errors import ConfigError
from ..io import PathLike, file_digest, write_json

logger = logging.getLogger(__name__)


def content_digest(path: PathLike) -> str:
    """sha256 of a file's bytes (:func:`fuxictr_mmctr.io.file_digest`), or of every file under
    a folder with its relative path."""
    path = Path(path)
    if not path.is_dir():
        return file_digest(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{child.relative_to(path)}\0{file_digest(child)}\n".encode())
    return digest.hexdigest()


@dataclass
class StageRecord:
    """What one finished stage did.

    Attributes:
        name: the stage.
        key: sha256 of its settings and input digests.
        seconds: wall time of the run that produced it.
        outputs: name -> path of each file or folder it wrote.
        result: its figures (JSON-able).
        finished: UTC time it finished.
        skipped: True when this call found it up to date and did not run it.
    """

    name: str
    key: str
    seconds: float
    outputs: Dict[str, str] = field(default_factory=dict)
    result: Dict[str, Any] = field(default_factory=dict)
    finished: str = ""
    skipped: bool = False


class Stages:
    """The stage records of one work dir (``<work_dir>/stages/<name>.json``).

    Args:
        work_dir: the pipeline's work dir.
        rerun: stage names (or prefixes ending in ``:``) to run even when up to date.
    """

    def __init__(self, work_dir: PathLike, rerun=()):
        self.folder = Path(work_dir) / "stages"
        self.rerun = tuple(rerun)
        self.records: Dict[str, StageRecord] = {}

    def _path(self, name: str) -> Path:
        return self.folder / f"{name.replace(':', '__').replace('/', '_')}.json"

    def load(self, name: str) -> Optional[StageRecord]:
        path = self._path(name)
        if not path.exists():
            return None
        try:
            return StageRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):  # unreadable: the stage runs again
            logger.warning("stage %s: unreadable record %s, running it again", name, path)
            return None

    def _forced(self, name: str) -> bool:
        return any(name == r or (r.endswith(":") and name.startswith(r)) for r in self.rerun)

    def run(self, name: str, key: Mapping[str, Any],
            step: Callable[[], Tuple[Mapping[str, PathLike], Mapping[str, Any]]]) -> StageRecord:
        """Run ``step`` unless a record of ``name`` with this ``key`` and its outputs exist.

        Args:
            name: the stage (``task1``, ``train:DIN__given``...).
            key: the settings and input digests the step depends on (JSON-able).
            step: returns ``(outputs, result)``: name -> path of what it wrote, its figures.

        Returns:
            the stage's :class:`StageRecord` (``skipped`` when it was up to date).
        """
        done = self.current(name, key)
        if done is not None:
            return done
        logger.info("stage %s: running", name)
        start = time.perf_counter()
        outputs, result = step()
        return self.save(name, key, outputs, result, time.perf_counter() - start)

    def current(self, name: str, key: Mapping[str, Any]) -> Optional[StageRecord]:
        """The record of ``name`` when it is up to date (same ``key``, outputs all there, not
        forced by ``rerun``), marked ``skipped``; else None: the stage must run."""
        done = self.load(name)
        if done is None or done.key != _key_digest(key) or self._forced(name) or \
                not all(Path(p).exists() for p in done.outputs.values()):
            return None
        logger.info("stage %s: up to date, skipped (%.1f s when it ran)", name, done.seconds)
        done.skipped = True
        self.records[name] = done
        return done

    def save(self, name: str, key: Mapping[str, Any], outputs: Mapping[str, PathLike],
             result: Mapping[str, Any], seconds: float) -> StageRecord:
        """Record a finished run of ``name`` (for a step that ran elsewhere, e.g. in a worker
        process): written atomically, so a killed pipeline keeps every finished stage."""
        record = StageRecord(name=name, key=_key_digest(key), seconds=round(seconds, 3),
                             outputs={k: str(v) for k, v in outputs.items()},
                             result=dict(result),
                             finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_json(self._path(name), asdict(record))
        self.records[name] = record
        logger.info("stage %s: done in %.1f s", name, record.seconds)
        return record

    def move_to_end(self, names: Iterable[str]) -> None:
        """Put the records of ``names`` last, in that order (the report lists ``records`` in
        order: stages that ran in worker processes are recorded as they finish)."""
        for name in names:
            if name in self.records:
                self.records[name] = self.records.pop(name)


def _key_digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def require_outputs(record: StageRecord, *names: str) -> Tuple[Path, ...]:
    """The paths of a stage's named outputs (a stage that wrote no such output is a bug)."""
    missing = [n for n in names if n not in record.outputs]
    if missing:
        raise ConfigError(f"stage {record.name} has no output(s) {missing}")
    return tuple(Path(record.outputs[n]) for n in names)


__all__ = ["Stages", "StageRecord", "content_digest", "require_outputs"]
