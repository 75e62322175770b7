"""FuxiCTR's grid search, one plan for every way of running it.

:func:`sweep_plan` expands a tuner config once (a list of ``dataset_id`` becomes one tuner
file per dataset, :func:`tuner_files`), enumerates each with FuxiCTR's autotuner and leaves
out the expids already in the results CSV, so an interrupted sweep resumes. :func:`tune` runs
the plan as subprocesses on local devices; :func:`fuxictr_mmctr.train.ray_sweep.tune_on_ray`
runs the same plan as Ray tasks.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import yaml
from fuxictr import autotuner

from fuxictr.utils import load_model_config

from ..errors import ConfigError
from .experiment import expid_error
from .results import finished_expids

logger = logging.getLogger(__name__)

# Signals that stop a sweep: its driver ends the trials it started before it exits.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# How long a trial may take to end after SIGTERM before it is killed.
TERMINATE_GRACE_S = 10.0


class Stopped(Exception):
    """A signal stopped the sweep; its running trials were ended (none records a row).

    Attributes:
        signum: the signal.
        exit_code: the conventional exit code, ``128 + signum``.
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")


class StopRequest:
    """Set by a signal handler (see :func:`stop_on_signals`); the sweep loop looks at it."""

    signum: Optional[int] = None

    def check(self) -> None:
        """Raise :class:`Stopped` once a signal has arrived."""
        if self.signum is not None:
            raise Stopped(self.signum)


@contextlib.contextmanager
def stop_on_signals(signals=STOP_SIGNALS) -> Iterator[StopRequest]:
    """Record SIGTERM, SIGINT and SIGHUP in a :class:`StopRequest` instead of dying at once, so
    the sweep's loop can end its children first; the previous handlers come back on exit.

    The handler only sets a flag (raising inside it could leave a just-started child
    unrecorded); the loops poll the flag at least every second. A second signal while the
    children are ended is recorded too, and changes nothing. A signal the process ignores
    (``nohup``) stays ignored. Outside the main thread (where Python cannot set handlers)
    nothing is installed.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.signum is None:
            logger.warning("%s received: ending the running trials, then stopping",
                           signal.Signals(signum).name)
        request.signum = signum

    # A signal the process was started ignoring stays ignored (`nohup` ignores SIGHUP, a
    # background job of a shell SIGINT): the user asked for the sweep to outlive it.
    previous = {sig: signal.signal(sig, handler) for sig in signals
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def end_processes(procs: Dict[str, subprocess.Popen], grace: float = TERMINATE_GRACE_S) -> None:
    """SIGTERM each running process (name -> process), wait up to ``grace`` seconds for them
    all, then SIGKILL what is left; each one is reaped."""
    running = {name: proc for name, proc in procs.items() if proc.poll() is None}
    for name, proc in running.items():
        logger.warning("ending trial %s (pid %d)", name, proc.pid)
        proc.terminate()
    deadline = time.monotonic() + grace
    for name, proc in running.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("trial %s (pid %d) did not end within %g s: killed", name, proc.pid,
                           grace)
            proc.kill()
            proc.wait()


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


def check_tuner_spec(config_file: Path, spec) -> None:
    """Refuse a tuner config FuxiCTR's autotuner would fail on with an assertion or a KeyError:
    not a mapping, no ``tuner_space`` mapping, no ``base_expid``, a ``base_config`` folder that
    does not exist or lacks the base expid (naming the closest expids).

    Raises:
        ConfigError: naming the tuner file and the key.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"not a tuner config (a mapping with base_config, base_expid and "
                          f"tuner_space), got {type(spec).__name__}", path=config_file)
    if not isinstance(spec.get("tuner_space"), dict) or not spec["tuner_space"]:
        raise ConfigError("tuner_space must map config keys to lists of values",
                          path=config_file, option="tuner_space")
    expid = spec.get("base_expid")
    if not isinstance(expid, str) or not expid:
        raise ConfigError("base_expid must name the expid the grid starts from",
                          path=config_file, option="base_expid")
    if "model_config" in spec:
        if not isinstance(spec["model_config"], dict) or expid not in spec["model_config"]:
            raise ConfigError(f"base_expid {expid!r} is not in its model_config",
                              path=config_file, option="base_expid")
        return
    base = spec.get("base_config", str(config_file.parent))
    if not isinstance(base, str) or not Path(base).is_dir():
        raise ConfigError(f"base_config {base!r} is not a directory (paths resolve against "
                          f"{Path.cwd()})", path=config_file, option="base_config")
    try:
        load_model_config(base, expid)
    except AssertionError:  # FuxiCTR: no such expid, or no dataset_id for it
        why = expid_error(base, expid).problem
        raise ConfigError(f"{why} (in base_config {base})", path=config_file,
                          option="base_expid") from None
    except (RuntimeError, yaml.YAMLError) as exc:
        raise ConfigError(f"base_config {base}: {exc}", path=config_file) from None


def sweep_plan(config_file, tag: Optional[str] = None) -> SweepPlan:
    """FuxiCTR's enumeration of a tuner config (every dataset of a list), less finished runs.

    Raises:
        ConfigError: the tuner file is unreadable, or ``tag`` matches no expid.
    """
    trials: List[Trial] = []
    todo: List[Trial] = []
    for path in tuner_files(config_file):
        check_tuner_spec(Path(config_file), yaml.safe_load(path.read_text()))
        try:
            config_dir = autotuner.enumerate_params(str(path))
        except (AssertionError, KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise ConfigError(f"FuxiCTR's autotuner cannot enumerate it ({type(exc).__name__}: "
                              f"{exc})", path=path) from None
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
    appends its row to the results CSV. On SIGTERM, SIGINT or SIGHUP the driver ends the
    running trials (SIGTERM, then SIGKILL after :data:`TERMINATE_GRACE_S`), so none goes on
    training or appends a row after the driver is gone, and raises :class:`Stopped`.

    Returns:
        the expids that failed (non-zero exit).

    Raises:
        Stopped: a signal stopped the sweep (rerun it to resume).
    """
    plan = sweep_plan(config_file, tag)
    todo = list(plan.todo)
    logger.info("%d experiments, %d already finished, %d to run on devices %s",
                len(plan.trials), len(plan.trials) - len(todo), len(todo), list(gpus))
    # One slot per entry of ``gpus``: a device named twice (``--gpu -1 -1``: two CPU trials at
    # once, or two trials sharing a large GPU) runs two trials, each tracked on its own.
    running: Dict[int, tuple] = {}  # slot -> (expid, process)
    failed: List[str] = []
    free = list(range(len(gpus)))
    with stop_on_signals() as stop:
        try:
            while todo or running:
                stop.check()
                while todo and free:
                    slot = free.pop(0)
                    trial = todo.pop(0)
                    cmd = [sys.executable, "-u", "-m", "fuxictr_mmctr", "train", "--config",
                           trial.config_dir, "--expid", trial.expid, "--gpu", str(gpus[slot])]
                    logger.info("Run %s on gpu %s", trial.expid, gpus[slot])
                    running[slot] = (trial.expid, subprocess.Popen(cmd))
                time.sleep(min(poll_seconds, 1.0) if running else 0)
                for slot, (expid, proc) in list(running.items()):
                    if proc.poll() is not None:
                        if proc.returncode != 0:
                            logger.error("%s failed with exit code %d", expid, proc.returncode)
                            failed.append(expid)
                        del running[slot]
                        free.append(slot)
        finally:  # a signal, or any error of the driver: no trial outlives it
            end_processes({expid: proc for expid, proc in running.values()})
    return failed
