"""FuxiCTR's parameter sweep on a Ray cluster: one Ray task per experiment, each in a fresh worker.

::

    ray start --head                                      # on the head node (and
    ray start --address HEAD:6379                         #  on every other node)
    python run_param_tuner.py --config config/tuners/DIN_microlens_tuner_config.yaml --ray HEAD:6379
    python run_param_tuner.py --config FILE --ray local --gpu -1   # a private local cluster

The tuner YAML and the expids are FuxiCTR's (``autotuner.enumerate_params``), so experiments
already in the results CSV are skipped and a sweep resumes. Each remaining expid becomes a Ray
task that asks for one GPU (``--gpu`` with device indexes; Ray picks the device) or
``--cpus-per-trial`` CPUs (``--gpu -1``) and runs in a worker process used for that task only
(``max_calls=1``: CUDA state and the FuxiCTR logger never leak from one trial into the next).
The task trains with :func:`fuxictr_mmctr.train.experiment.train` from the driver's working
directory (the paths in the config resolve against it, on every node) and returns the metrics;
the driver, not the workers, appends them to the results CSV. A trial that fails is reported
with its expid, the error and its log file, and the others go on.

Ray is an optional dependency (``pip install 'fuxictr_mmctr[ray]'``), imported only here.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import shutil
import socket
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fuxictr.utils import load_config

from ..errors import ConfigError, MMCTRError, require
from . import experiment
from .preflight import check_writable_file
from .results import append_result, metric_line, results_file
from .sweep import TERMINATE_GRACE_S, stop_on_signals, sweep_plan

logger = logging.getLogger(__name__)

LOCAL = "local"
AUTO = "auto"  # Ray's own: the cluster `ray start` left running on this machine


@dataclass
class TrialResult:
    """What one Ray task reports back to the driver.

    Attributes:
        expid: the experiment.
        ok: True when it trained and was evaluated.
        metrics: validation metrics of the best checkpoint (empty on failure).
        dataset_id: the experiment's dataset (for the results CSV).
        log: the experiment's log file on ``node`` (None when the config could not be read).
        node: host name of the node that ran it.
        error: one line saying what went wrong (empty on success).
        details: the traceback of an unexpected error (empty otherwise).
    """

    expid: str
    ok: bool
    metrics: Dict[str, float] = field(default_factory=dict)
    dataset_id: str = ""
    log: Optional[str] = None
    node: str = ""
    error: str = ""
    details: str = ""


def run_trial(config_files: Dict[str, str], config_name: str, expid: str, gpu: int,
              workdir: str) -> TrialResult:
    """Train one expid; runs inside a Ray worker (or anywhere, for a test).

    Args:
        config_files: the enumerated tuner config, file name -> YAML text (shipped with the
            task, so nodes need not share the driver's config folder).
        config_name: the config folder's name.
        expid: the experiment to train.
        gpu: 0 for the GPU Ray assigned to this task (it is the only one visible), -1 for CPU.
        workdir: the driver's working directory: config paths resolve against it, and
            checkpoints and logs land under it (on this node).
    """
    node = socket.gethostname()
    if not os.path.isdir(workdir):
        return TrialResult(expid, False, node=node, error=f"the driver's working directory "
                           f"{workdir} does not exist on node {node}")
    os.chdir(workdir)
    folder = Path(tempfile.mkdtemp(prefix="mmctr-trial-")) / config_name
    folder.mkdir()
    for name, text in config_files.items():
        (folder / name).write_text(text)
    result = TrialResult(expid, False, node=node)
    # Records until FuxiCTR opens the trial's log: written to it if the trial fails first (a
    # bad config value), so the log the driver names always says why.
    early = logging.handlers.BufferingHandler(capacity=100_000)
    logging.getLogger().addHandler(early)
    logging.getLogger().setLevel(logging.INFO)
    log = None
    try:
        raw = load_config(str(folder), expid)   # unchecked: enough to name the log file
        result.dataset_id = raw["dataset_id"]
        log = experiment.log_path(raw)
        result.log = str(log.resolve())
        trained = experiment.train(folder, expid, gpu, record=False)
        result.ok, result.metrics = True, dict(trained.valid_metrics)
    except MMCTRError as exc:
        result.error = str(exc)
        logging.error("%s", exc)
    except Exception as exc:  # noqa: BLE001  a bug in one trial must not sink the sweep
        result.error = f"{type(exc).__name__}: {exc}"
        result.details = traceback.format_exc()
        logging.error("%s", result.details)
    finally:
        logging.getLogger().removeHandler(early)
        if log is not None and not result.ok and not _logging_to(log):
            _write_early_log(log, early.buffer)
        early.close()
        shutil.rmtree(folder.parent, ignore_errors=True)
    return result


def _logging_to(log: Path) -> bool:
    """Whether FuxiCTR's logger (a file handler of the root logger) writes to ``log``."""
    target = os.path.abspath(log)
    return any(isinstance(h, logging.FileHandler) and h.baseFilename == target
               for h in logging.getLogger().handlers)


def _write_early_log(log: Path, records) -> None:
    """The log of a trial that failed before FuxiCTR opened one (the previous run's log is
    kept as ``<log>.1``)."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        experiment.keep_previous_log(log)
        formatter = logging.Formatter("%(asctime)s P%(process)d %(levelname)s %(message)s")
        log.write_text("".join(formatter.format(r) + "\n" for r in records))
    except OSError as exc:  # the trial's result still carries the error
        logger.warning("could not write %s: %s", log, exc)


DEFAULT_CONNECT_TIMEOUT_S = 60.0


def parse_address(address: str) -> Tuple[str, int]:
    """``(host, port)`` of a ``host:port`` (or ``ray://host:port``) cluster address.

    Raises:
        ConfigError: not of that form, or a port outside 1..65535 (naming ``--ray``).
    """
    text = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{address!r}: expected HOST:PORT of a Ray cluster (e.g. "
                          "127.0.0.1:6379, from `ray start --head`) or `local`", option="--ray")
    return host, int(port)


def probe(address: str, timeout: float) -> None:
    """Refuse at once an address where nothing listens (no name, refused, unreachable):
    ``ray.init`` would retry such an address for ever."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 10.0)):
            pass
    except socket.gaierror as exc:
        raise ConfigError(f"{address}: unknown host {host!r} ({exc.strerror or exc})",
                          option="--ray") from None
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise ConfigError(f"{address}: no Ray cluster reachable there ({why}); start one with "
                          "`ray start --head` or pass `--ray local`", option="--ray") from None


def connect(address: str, num_cpus: Optional[int] = None,
            timeout: float = DEFAULT_CONNECT_TIMEOUT_S):
    """``ray.init`` for ``address`` (``host:port`` of a running cluster, or ``local`` for a
    private cluster of this machine that ends with the sweep), within ``timeout`` seconds.

    ``ray.init`` retries an unreachable cluster for ever; here the address is first probed
    (nothing listening, an unknown host: refused at once), then ``ray.init`` runs in a
    background thread that is given ``timeout`` seconds (a peer that accepts the connection
    but never answers as a Ray cluster).

    Raises:
        ConfigError: a malformed address, nothing reachable there, or no answer in time.
    """
    ray = require("ray", "ray", "run_param_tuner.py --ray")
    options = {"include_dashboard": False, "configure_logging": False}
    if address == LOCAL:
        ray.init(num_cpus=num_cpus, **options)
        return ray
    if not timeout > 0:
        raise ConfigError(f"--ray-timeout {timeout}: expected seconds > 0")
    if address != AUTO:  # Ray finds a cluster of this machine itself: no address to probe
        probe(address, timeout)
    outcome: Dict[str, BaseException] = {}

    def init():
        try:
            ray.init(address=address, **options)
        except BaseException as exc:  # noqa: BLE001  handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=init, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ConfigError(f"{address}: no answer from a Ray cluster within {timeout:g} s (is it a "
                          "Ray head's GCS port?); raise --ray-timeout for a slow network",
                          option="--ray")
    error = outcome.get("error")
    if isinstance(error, (ConnectionError, ValueError, RuntimeError)):
        raise ConfigError(f"{address}: no Ray cluster reachable there ({error}); start one "
                          "with `ray start --head` or pass `--ray local`",
                          option="--ray") from None
    if error is not None:
        raise error
    return ray


def tune_on_ray(config_file, address: str, gpus: Sequence[str] = ("-1",),
                tag: Optional[str] = None, cpus_per_trial: float = 1,
                connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> List[str]:
    """Run FuxiCTR's sweep of ``config_file`` as Ray tasks on the cluster at ``address``.

    On SIGTERM, SIGINT or SIGHUP the driver cancels the pending and running trials (their
    worker processes are killed), shuts a ``local`` cluster down and raises
    :class:`~fuxictr_mmctr.train.sweep.Stopped`: no trial goes on using the cluster.

    Args:
        config_file: the tuner YAML (FuxiCTR's format).
        address: ``host:port`` of a Ray cluster, or ``local``.
        gpus: the ``--gpu`` values: ``-1`` runs trials on CPUs, device indexes on one GPU each
            (which GPU is Ray's choice).
        tag: run only expids containing it.
        cpus_per_trial: CPUs Ray reserves for each trial. Default: 1.
        connect_timeout: seconds to reach the cluster (:func:`connect`). Default: 60.

    Returns:
        the expids that failed.

    Raises:
        ConfigError: a bad tuner config or address, or no cluster reachable in time.
        Stopped: a signal stopped the sweep (rerun it to resume).
    """
    require("ray", "ray", "run_param_tuner.py --ray")   # before any work: say what is missing
    if address not in (LOCAL, AUTO):
        parse_address(address)                          # a malformed address: before any work
    use_gpu = any(int(g) >= 0 for g in gpus)
    plan = sweep_plan(config_file, tag)
    logger.info("%d experiments, %d already finished, %d to run on Ray (%s), %s per trial",
                len(plan.trials), len(plan.trials) - len(plan.todo), len(plan.todo), address,
                "1 GPU" if use_gpu else f"{cpus_per_trial:g} CPU(s)")
    if not plan.todo:
        return []
    for config_dir in plan.config_dirs:  # the driver appends the rows: writable, before any trial
        check_writable_file(results_file(config_dir), "results CSV")
    ray = connect(address, timeout=connect_timeout)
    failed: List[str] = []
    pending: Dict = {}
    try:
        with stop_on_signals() as stop:
            try:
                _run_trials(ray, plan, pending, failed, stop, use_gpu, cpus_per_trial)
            finally:  # a signal, or any error of the driver: no trial outlives it
                _cancel(ray, pending)
    finally:
        if address == LOCAL:
            ray.shutdown()
    return failed


def _cancel(ray, pending: Dict) -> None:
    """Cancel every trial still pending or running (its worker process is killed) and wait
    briefly for the cancellations to land."""
    if not pending:
        return
    for ref, trial in pending.items():
        logger.warning("cancelling trial %s", trial.expid)
        try:
            ray.cancel(ref, force=True)
        except Exception as exc:  # noqa: BLE001  already finished, or the cluster is gone
            logger.debug("cancel %s: %s", trial.expid, exc)
    ray.wait(list(pending), num_returns=len(pending), timeout=TERMINATE_GRACE_S)
    pending.clear()


def _run_trials(ray, plan, pending: Dict, failed: List[str], stop, use_gpu: bool,
                cpus_per_trial: float) -> None:
    """Submit every trial of ``plan`` and record each as it finishes (``pending`` holds the
    refs not collected yet, for the caller to cancel)."""
    # Each enumerated config folder travels with its trials (nodes need not share it).
    config_files = {d: {p.name: p.read_text() for p in sorted(Path(d).glob("*.yaml"))}
                    for d in {t.config_dir for t in plan.todo}}
    task = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=cpus_per_trial, max_calls=1,
                      max_retries=0)(run_trial)
    for trial in plan.todo:
        stop.check()
        pending[task.options(name=f"trial {trial.expid}").remote(
            config_files[trial.config_dir], Path(trial.config_dir).name, trial.expid,
            0 if use_gpu else -1, os.getcwd())] = trial
    while pending:
        stop.check()
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        if not ready:
            continue
        ref = ready[0]
        trial = pending.pop(ref)
        expid = trial.expid
        try:
            result = ray.get(ref)
        except Exception as exc:  # noqa: BLE001  the worker died (OOM kill, segfault, ...)
            result = TrialResult(expid, False, error=f"{type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}")
        if result.ok:
            append_result(trial.config_dir, expid, result.dataset_id, result.metrics,
                          command=_trial_command(expid, result))
            logger.info("%s done on %s: %s", expid, result.node,
                        metric_line(result.metrics))
        else:
            failed.append(expid)
            where = f"log {result.log} on node {result.node}" if result.log else \
                f"no log (the config could not be read) on node {result.node or '?'}"
            logger.error("%s failed: %s; %s", expid, result.error, where)


def _trial_command(expid: str, result: TrialResult) -> str:
    """The results CSV's command: the driver's command line and where the trial ran."""
    return f"{' '.join(sys.argv)} (Ray trial {expid} on {result.node})"
