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
import os
import shutil
import socket
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fuxictr.utils import load_config

from ..errors import ConfigError, MMCTRError, require
from . import artifacts, experiment
from .results import append_result, metric_line
from .sweep import sweep_plan

logger = logging.getLogger(__name__)

LOCAL = "local"


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
    handler = None
    try:
        raw = load_config(str(folder), expid)   # unchecked: enough to name the log file
        result.dataset_id = raw["dataset_id"]
        log = artifacts.model_dir(raw) / f"{expid}.log"
        result.log = str(log.resolve())
        # Errors before FuxiCTR opens this log (a bad config value) still land in it.
        log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log, mode="w")
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
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
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
        shutil.rmtree(folder.parent, ignore_errors=True)
    return result


def connect(address: str, num_cpus: Optional[int] = None):
    """``ray.init`` for ``address`` (``host:port`` of a running cluster, or ``local`` for a
    private cluster of this machine that ends with the sweep)."""
    ray = require("ray", "ray", "run_param_tuner.py --ray")
    options = {"include_dashboard": False, "configure_logging": False}
    if address == LOCAL:
        ray.init(num_cpus=num_cpus, **options)
    else:
        try:
            ray.init(address=address, **options)
        except ConnectionError as exc:
            raise ConfigError(f"{address}: no Ray cluster reachable there ({exc}); start one "
                              "with `ray start --head` or pass `--ray local`",
                              option="--ray") from None
    return ray


def tune_on_ray(config_file, address: str, gpus: Sequence[str] = ("-1",),
                tag: Optional[str] = None, cpus_per_trial: float = 1) -> List[str]:
    """Run FuxiCTR's sweep of ``config_file`` as Ray tasks on the cluster at ``address``.

    Args:
        config_file: the tuner YAML (FuxiCTR's format).
        address: ``host:port`` of a Ray cluster, or ``local``.
        gpus: the ``--gpu`` values: ``-1`` runs trials on CPUs, device indexes on one GPU each
            (which GPU is Ray's choice).
        tag: run only expids containing it.
        cpus_per_trial: CPUs Ray reserves for each trial. Default: 1.

    Returns:
        the expids that failed.
    """
    require("ray", "ray", "run_param_tuner.py --ray")   # before any work: say what is missing
    use_gpu = any(int(g) >= 0 for g in gpus)
    plan = sweep_plan(config_file, tag)
    logger.info("%d experiments, %d already finished, %d to run on Ray (%s), %s per trial",
                len(plan.trials), len(plan.trials) - len(plan.todo), len(plan.todo), address,
                "1 GPU" if use_gpu else f"{cpus_per_trial:g} CPU(s)")
    if not plan.todo:
        return []
    ray = connect(address)
    # Each enumerated config folder travels with its trials (nodes need not share it).
    config_files = {d: {p.name: p.read_text() for p in sorted(Path(d).glob("*.yaml"))}
                    for d in {t.config_dir for t in plan.todo}}
    task = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=cpus_per_trial, max_calls=1,
                      max_retries=0)(run_trial)
    pending = {task.options(name=f"trial {trial.expid}").remote(
        config_files[trial.config_dir], Path(trial.config_dir).name, trial.expid,
        0 if use_gpu else -1, os.getcwd()): trial for trial in plan.todo}
    failed: List[str] = []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
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
    finally:
        if address == LOCAL:
            ray.shutdown()
    return failed


def _trial_command(expid: str, result: TrialResult) -> str:
    """The results CSV's command: the driver's command line and where the trial ran."""
    return f"{' '.join(sys.argv)} (Ray trial {expid} on {result.node})"
