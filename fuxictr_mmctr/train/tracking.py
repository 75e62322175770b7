"""A run's curves streamed to TensorBoard or MLflow: the ``tracking`` config key.

::

    DIN_sample_tracked:
        <<: *DIN_sample
        tracking: tensorboard    # none (default) | tensorboard | mlflow

* ``tensorboard``: event files written by ``torch.utils.tensorboard.SummaryWriter`` in
  ``<model_root>/<dataset_id>/tensorboard/<expid>/<YYYYmmdd-HHMMSS>/``, beside the run's log
  (one folder per run, so a rerun is a new run and not a zigzag on the old curve):
  ``tensorboard --logdir checkpoints/MicroLens_sample/tensorboard``.
* ``mlflow``: one MLflow run per training run, named by its expid, in the experiment named by
  the config folder (a sweep's runs side by side), through ``mlflow.MlflowClient``: into the
  tracking URI ``MLFLOW_TRACKING_URI`` names, else a local file store ``mlruns/`` beside the
  results CSV (the working directory): ``mlflow ui --backend-store-uri ./mlruns``. MLflow 3
  keeps its file store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE=true``, which is
  set for the process when this default store is used (a database store needs SQLAlchemy and a
  10 s schema migration per new store; the file store needs nothing and takes parallel
  trials, a lock file in it making the experiment's creation one step: :func:`file_store_lock`).

What is tracked (the same names in both): after each evaluation of ``fit`` (once per epoch by
default; the step is the evaluation's number, so the epoch) ``train/loss`` (the log's ``Train
loss``), ``valid/<metric>`` for every metric of the evaluation, ``train/learning_rate``,
``train/seconds``, ``valid/seconds``, ``train/samples_per_s`` and ``train/epoch`` (epochs done,
fractional with ``eval_steps``); once, the resolved params (MLflow params and ``params.json``;
TensorBoard text and its HParams tab), the versions line, the checkpoint and log paths; at the
end ``best/<metric>``, the final evaluation of the best checkpoint.

Under torchrun only rank 0 tracks; each trial of a sweep (subprocess or Ray task) is a run of
its own. The libraries are optional extras (``pip install 'fuxictr_mmctr[tensorboard]'`` or
``[mlflow]``), imported only by a run that asks for them; a missing one stops the run before it
reads any data, naming the install command. Tracking observes: once a run has started, a
tracking store that fails (a full disk, a server gone) is warned about once and training goes on
(the log has every figure too).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional
from urllib.parse import urlparse
from urllib.request import url2pathname

from .. import compat
from ..config_contract import check_value
from ..errors import ConfigError, require
from ..io import PathLike
from ..models.observer import Evaluation
from .artifacts import model_dir
from .results import results_file

logger = logging.getLogger(__name__)

# MLflow refuses longer param values (500 characters before MLflow 2.9, 6000 since); the whole
# params go to the run's params.json artifact as well.
_PARAM_CHARS = 500
# Params that are not settings (long, or said elsewhere): left out of the MLflow params and the
# HParams tab (FuxiCTR's own log line leaves out feature_cols too).
_NOT_PARAMS = frozenset({"feature_cols", "feature_specs", "data_loader"})


def tracking_kind(params: Mapping) -> str:
    """The ``tracking`` of ``params`` (``none`` when unset), checked against its choices."""
    kind = params.get("tracking")
    kind = "none" if kind is None else check_value("tracking", kind)
    return kind


def epoch_scalars(evaluation: Evaluation) -> Dict[str, float]:
    """The scalars of one evaluation, by their tracked names (finite values only)."""
    values = {"train/loss": evaluation.train_loss,
              "train/learning_rate": evaluation.learning_rate,
              "train/seconds": evaluation.train_seconds,
              "valid/seconds": evaluation.eval_seconds,
              "train/samples_per_s": evaluation.samples_per_s,
              "train/epoch": evaluation.epochs_done}
    values.update({f"valid/{name}": value for name, value in evaluation.metrics.items()})
    return {k: float(v) for k, v in values.items() if v == v and abs(float(v)) != float("inf")}


def setting_values(params: Mapping) -> Dict[str, object]:
    """The params as scalar settings (bool, int, float, str; anything else as JSON text)."""
    settings = {}
    for key in sorted(params):
        if key in _NOT_PARAMS:
            continue
        value = params[key]
        if not isinstance(value, (bool, int, float, str)):
            value = json.dumps(value, default=str)
        settings[key] = value
    return settings


class Tracker:
    """What training tells a tracker; this base class tracks nothing (``tracking: none``).

    :meth:`attach` starts the run once the model exists (the model then reports every
    evaluation of ``fit`` to :meth:`evaluated`), :meth:`finish` records the best checkpoint's
    metrics, :meth:`close` ends the run. Failures after the start are warned about once and
    tracking stops; training goes on.
    """

    kind = "none"

    def __init__(self, params: Mapping, config_dir: PathLike):
        self.params = dict(params)
        self.config_dir = Path(str(config_dir))
        self.expid = str(params.get("model_id"))
        self.step = 0
        self._broken = False

    # ------------------------------------------------------------------ what training calls
    def attach(self, model, log: Optional[PathLike] = None) -> None:
        """Start the run of ``model`` (its checkpoint path, ``log`` the log file) and have
        ``fit`` report its evaluations here."""
        if self.kind == "none":
            return
        model.fit_observer = self
        self._guard("start", self._start, str(model.checkpoint), None if log is None else str(log))

    def evaluated(self, evaluation: Evaluation) -> None:
        """One evaluation of ``fit`` (:class:`~fuxictr_mmctr.models.observer.FitObserver`)."""
        self.step = evaluation.step
        self._guard("log the evaluation", self._log_scalars, epoch_scalars(evaluation),
                    evaluation.step)

    def finish(self, valid_metrics: Mapping[str, float]) -> None:
        """The final evaluation of the best checkpoint: ``best/<metric>``."""
        if self.kind == "none":
            return
        self._guard("log the best metrics", self._finish,
                    {f"best/{k}": float(v) for k, v in valid_metrics.items()})

    def close(self, status: str = "FINISHED") -> None:
        """End the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if self.kind != "none":
            self._guard("close the run", self._close, status, force=True)

    # ------------------------------------------------------------------ for the libraries
    def _start(self, checkpoint: str, log: Optional[str]) -> None:
        raise NotImplementedError

    def _log_scalars(self, values: Dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _finish(self, metrics: Dict[str, float]) -> None:
        self._log_scalars(metrics, self.step)

    def _close(self, status: str) -> None:
        raise NotImplementedError

    def _guard(self, what: str, call, *args, force: bool = False) -> None:
        if self._broken and not force:
            return
        try:
            call(*args)
        except Exception as exc:  # noqa: BLE001  tracking must not end a training run
            if not self._broken:
                logger.warning("%s tracking of %s stopped: could not %s (%s: %s); the log has "
                               "every figure", self.kind, self.expid, what, type(exc).__name__,
                               exc)
            self._broken = True


class TensorBoardTracker(Tracker):
    """Event files of ``torch.utils.tensorboard.SummaryWriter`` beside the run's log."""

    kind = "tensorboard"

    def __init__(self, params: Mapping, config_dir: PathLike):
        super().__init__(params, config_dir)
        # lazy: the optional extra, imported only by a run that asks for TensorBoard
        require("tensorboard", "tensorboard", "tracking: tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class = SummaryWriter
        self.root = model_dir(self.params) / "tensorboard"
        self.logdir = self._new_logdir(self.root / self.expid)
        self.writer = None

    @staticmethod
    def _new_logdir(folder: Path) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path, n = folder / stamp, 1
        while path.exists():
            n += 1
            path = folder / f"{stamp}-{n}"
        return path

    def _start(self, checkpoint: str, log: Optional[str]) -> None:
        self.writer = self._writer_class(log_dir=str(self.logdir))
        settings = setting_values(self.params)
        table = "| param | value |\n| --- | --- |\n" + "\n".join(
            f"| {k} | {v} |" for k, v in settings.items())
        self.writer.add_text("params", table, 0)
        self.writer.add_text("versions", compat.versions_line(), 0)
        self.writer.add_text("checkpoint", checkpoint, 0)
        if log:
            self.writer.add_text("log", log, 0)
        self.writer.flush()
        logger.info("Tracking: TensorBoard event files in %s (tensorboard --logdir %s)",
                    self.logdir, self.root)

    def _log_scalars(self, values: Dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def _finish(self, metrics: Dict[str, float]) -> None:
        # the HParams tab: this run's settings against its best metrics
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(setting_values(self.params), metrics):
            self.writer.file_writer.add_summary(summary)
        self._log_scalars(metrics, self.step)

    def _close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()


class MLflowTracker(Tracker):
    """One MLflow run through ``mlflow.MlflowClient`` (no global state: a process may train
    several experiments in turn)."""

    kind = "mlflow"

    def __init__(self, params: Mapping, config_dir: PathLike):
        super().__init__(params, config_dir)
        # lazy: the optional extra, imported only by a run that asks for MLflow
        mlflow = require("mlflow", "mlflow", "tracking: mlflow")
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or default_mlflow_uri(config_dir)
        if self.uri.startswith("file:"):
            # MLflow 3 refuses its file store unless asked for it (see the module docstring)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.experiment = self.config_dir.name
        try:
            self.client = mlflow.MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._experiment_id(mlflow)
        except mlflow.exceptions.MlflowException as exc:
            raise ConfigError(f"MLflow tracking URI {self.uri}: {exc.message}",
                              option="tracking") from None
        self.run_id: Optional[str] = None

    def _experiment_id(self, mlflow) -> str:
        with file_store_lock(self.uri):
            return self._get_or_create_experiment(mlflow)

    def _get_or_create_experiment(self, mlflow) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            # MLflow 3's UI opens an experiment of this kind on its runs table, not on traces
            return self.client.create_experiment(
                self.experiment, tags={"mlflow.experimentKind": "custom_model_development"})
        except mlflow.exceptions.MlflowException:
            found = self.client.get_experiment_by_name(self.experiment)  # a parallel trial won
            if found is None:
                raise
            return found.experiment_id

    def _start(self, checkpoint: str, log: Optional[str]) -> None:
        from mlflow.entities import Param

        tags = {"dataset_id": str(self.params.get("dataset_id")),
                "model": str(self.params.get("model")), "versions": compat.versions_line(),
                "checkpoint": checkpoint, "config_dir": str(self.config_dir.resolve())}
        if log:
            tags["log"] = log
        run = self.client.create_run(self.experiment_id, run_name=self.expid, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:_PARAM_CHARS]) for k, v in setting_values(self.params).items()]
        self.client.log_batch(self.run_id, params=params)
        self.client.log_dict(self.run_id, json.loads(json.dumps(self.params, default=str)),
                             "params.json")
        logger.info("Tracking: MLflow run %s (%s) in experiment %r at %s (mlflow ui "
                    "--backend-store-uri %s)", self.run_id, self.expid, self.experiment,
                    self.uri, self.uri)

    def _log_scalars(self, values: Dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in values.items()])

    def _close(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def file_store_lock(uri: str) -> Iterator[None]:
    """Hold ``<store>/.experiments.lock`` for a ``file:`` tracking URI (else nothing).

    MLflow's file store checks that a new experiment's name is free and then writes it, two
    steps with nothing between them: the trials of a sweep starting together each created the
    experiment, and each logged into its own copy, only one of which the UI and
    ``get_experiment_by_name`` show (one run of two was lost). A tracking server or a database
    store keeps names unique itself. The lock file sits in the store's root, which MLflow
    reads for folders only.
    """
    if not uri.startswith("file:"):
        yield
        return
    import fcntl  # POSIX only: imported where the lock is taken, so the module loads anywhere

    root = Path(url2pathname(urlparse(uri).path))
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".experiments.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


TRACKER_CLASSES = {"none": Tracker, "tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}


def default_mlflow_uri(config_dir: PathLike) -> str:
    """``file:`` URI of ``mlruns/`` beside the results CSV of ``config_dir``."""
    return (results_file(config_dir).resolve().parent / "mlruns").as_uri()


@contextlib.contextmanager
def tracker_for(params: Mapping, config_dir: PathLike, enabled: bool = True) -> Iterator[Tracker]:
    """The tracker the ``tracking`` key of ``params`` asks for (a no-op :class:`Tracker` for
    ``none`` and where ``enabled`` is False: ranks other than 0), closed on exit: ``FINISHED``,
    ``FAILED`` on an error, ``KILLED`` on Ctrl-C.

    Raises:
        MissingDependencyError: the library of the tracker is not installed.
        ConfigError: a bad ``tracking`` value, or an MLflow tracking URI MLflow refuses.
    """
    kind = tracking_kind(params) if enabled else "none"
    tracker = TRACKER_CLASSES[kind](params, config_dir)
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.close("KILLED")
        raise
    except BaseException:
        tracker.close("FAILED")
        raise
    tracker.close("FINISHED")
