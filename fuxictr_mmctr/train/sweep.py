"""FuxiCTR's grid search, one plan for every way of running it.

:func:`sweep_plan` expands a tuner config once (a list of ``dataset_id`` becomes one tuner
file per dataset, :func:`tuner_files`), enumerates each with FuxiCTR's autotuner and leaves
out the expids already in the results CSV, so an interrupted sweep resumes. :func:`tune` runs
the plan as subprocesses on local devices; :func:`fuxictr_mmctr.train.ray_sweep.tune_on_ray`
runs the same plan as Ray tasks.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from fuxictr import autotuner

from ..errors import ConfigError
from .results import finished_expids

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    """One experiment of a sweep: its enumerated config folder and its expid."""

    config_dir: str
    expid: str


@dataclass
class SweepPlan:
    """What a tuner config asks for.

    Attributes:
        trials: every enumerated experiment, in FuxiCTR's order (datasets in the order listed).
        todo: the trials not yet recorded in their results CSV.
    """

    trials: List[Trial]
    todo: List[Trial]

    @property
    def config_dirs(self) -> List[str]:
        return list(dict.fromkeys(t.config_dir for t in self.trials))


def tuner_files(config_file) -> List[Path]:
    """The tuner file(s) FuxiCTR's autotuner runs for ``config_file``.

    FuxiCTR's tuner config names one ``dataset_id``. Here it may name a list (the same grid
    over several datasets, e.g. variants and seeds of the sample): one copy per dataset is
    written into the tuner's folder (``<tuner>/<tuner>.<dataset_id>.yaml``, where FuxiCTR
    also writes the enumerated configs), each with one ``dataset_id``.
    """
    config_file = Path(config_file)
    try:
        spec = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config {config_file}: {exc}") from None
    datasets = spec.get("dataset_id") if isinstance(spec, dict) else None
    if not isinstance(datasets, list):
        return [config_file]
    if not datasets or len(set(datasets)) != len(datasets):
        raise ConfigError(f"{config_file}: dataset_id must be one id or a list of distinct ids")
    folder = config_file.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for dataset_id in datasets:
        path = folder / f"{config_file.stem}.{dataset_id}.yaml"
        text = yaml.safe_dump(dict(spec, dataset_id=dataset_id), sort_keys=False)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        files.append(path)
    return files


def sweep_plan(config_file, tag: Optional[str] = None) -> SweepPlan:
    """FuxiCTR's enumeration of a tuner config (every dataset of a list), less finished runs.

    Raises:
        ConfigError: the tuner file is unreadable, or ``tag`` matches no expid.
    """
    trials: List[Trial] = []
    todo: List[Trial] = []
    for path in tuner_files(config_file):
        config_dir = autotuner.enumerate_params(str(path))
        expids = autotuner.load_experiment_ids(config_dir)
        if tag is not None:
            expids = [e for e in expids if str(tag) in e]
        done = finished_expids(config_dir)
        trials += [Trial(config_dir, e) for e in expids]
        todo += [Trial(config_dir, e) for e in expids if e not in done]
    if tag is not None and not trials:
        raise ConfigError(f"--tag {tag} matches no expid of {config_file}")
    return SweepPlan(trials, todo)


def tune(config_file, gpus: Sequence[str], tag: Optional[str] = None,
         poll_seconds: float = 1.0) -> List[str]:
    """FuxiCTR's grid search: run each trial of :func:`sweep_plan` on a free device.

    Each run is a fresh ``python -m fuxictr_mmctr train`` process with this interpreter, which
    appends its row to the results CSV.

    Returns:
        the expids that failed (non-zero exit).
    """
    plan = sweep_plan(config_file, tag)
    todo = list(plan.todo)
    logger.info("%d experiments, %d already finished, %d to run on devices %s",
                len(plan.trials), len(plan.trials) - len(todo), len(todo), list(gpus))
    running: Dict[str, tuple] = {}  # gpu -> (expid, process)
    failed: List[str] = []
    free = list(gpus)
    while todo or running:
        while todo and free:
            gpu = free.pop(0)
            trial = todo.pop(0)
            cmd = [sys.executable, "-u", "-m", "fuxictr_mmctr", "train", "--config",
                   trial.config_dir, "--expid", trial.expid, "--gpu", str(gpu)]
            logger.info("Run %s on gpu %s", trial.expid, gpu)
            running[gpu] = (trial.expid, subprocess.Popen(cmd))
        time.sleep(poll_seconds if running else 0)
        for gpu, (expid, proc) in list(running.items()):
            if proc.poll() is not None:
                if proc.returncode != 0:
                    logger.error("%s failed with exit code %d", expid, proc.returncode)
                    failed.append(expid)
                del running[gpu]
                free.append(gpu)
    return failed
