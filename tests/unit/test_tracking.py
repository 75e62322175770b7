"""The ``tracking`` key and the tracker's logic without training: the config contract, what an
evaluation turns into, missing libraries, a store that fails mid-run, the run's status.
(Runs read back with TensorBoard's and MLflow's own readers: tests/e2e/test_watching_runs.py.)"""
from __future__ import annotations

import logging
import sys

import pytest

from fuxictr_mmctr.errors import ConfigError, MissingDependencyError
from fuxictr_mmctr.models.observer import FitClock, batch_rows
from fuxictr_mmctr.train import tracking
from fuxictr_mmctr.train.artifacts import model_inputs
from fuxictr_mmctr.train.config_keys import check_params, unknown_keys


def test_tracking_is_a_known_runtime_key_with_three_choices(tmp_path):
    params = {"model": "DIN", "dataset_id": "ds", "tracking": "tensorboard"}
    assert "tracking" not in unknown_keys(params)
    check_params(params)
    assert tracking.tracking_kind({}) == "none"
    with pytest.raises(ConfigError, match=r"tracking.*'wandb' must be one of \['none', "
                                          r"'tensorboard', 'mlflow'\]"):
        check_params(dict(params, tracking="wandb"))
    item_info = tmp_path / "item_info.parquet"
    item_info.write_bytes(b"x")
    base = {"model": "DIN", "dataset_id": "ds", "item_info": str(item_info)}
    assert model_inputs(dict(base, tracking="mlflow")) == model_inputs(base)  # not an input


def test_an_evaluation_carries_the_log_loss_rows_and_seconds():
    clock = FitClock(since=100.0)
    clock.batch(0.9, 512, epoch_start=True)
    clock.batch(0.7, 488, epoch_start=False)
    record = clock.evaluation(epoch=1, batches=2, batches_per_epoch=2, eval_steps=2,
                              metrics={"AUC": 0.8, "logloss": 0.5}, learning_rate=1e-3,
                              started=102.0, improved=True, stopped=False)
    assert record.train_loss == pytest.approx(0.8)  # the sum over eval_steps, as FuxiCTR logs
    assert (record.samples, record.train_seconds, record.samples_per_s) == (1000, 2.0, 500.0)
    assert record.step == 1 and record.epochs_done == 1.0
    scalars = tracking.epoch_scalars(record)
    assert scalars == {"train/loss": pytest.approx(0.8), "train/learning_rate": 1e-3,
                       "train/seconds": 2.0, "valid/seconds": scalars["valid/seconds"],
                       "train/samples_per_s": 500.0, "train/epoch": 1.0, "valid/AUC": 0.8,
                       "valid/logloss": 0.5}
    clock.batch(0.4, 10, epoch_start=True)  # a new epoch: FuxiCTR starts its sum again
    assert clock.loss_sum == 0.4 and clock.samples == 10


def test_rows_of_a_batch_and_of_a_torchrun_share():
    import torch

    from fuxictr_mmctr.data.loader import Share

    batch = ({}, {}, torch.zeros(7, 3))
    assert batch_rows(batch) == 7
    assert batch_rows(Share(batch, rows=7, global_rows=16)) == 16


def test_a_missing_library_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'fuxictr_mmctr\[mlflow\]'"):
        with tracking.tracker_for({"model_id": "E", "tracking": "mlflow"}, "cfg"):
            pass
    # other ranks than 0 track nothing, whatever the key
    with tracking.tracker_for({"model_id": "E", "tracking": "mlflow"}, "cfg",
                              enabled=False) as tracker:
        assert tracker.kind == "none"


class Flaky(tracking.Tracker):
    """A tracker whose store fails once the run has started."""

    kind = "flaky"

    def __init__(self, params, config_dir):
        super().__init__(params, config_dir)
        self.calls, self.status = [], None

    def _start(self, checkpoint, log):
        self.calls.append("start")

    def _log_scalars(self, values, step):
        raise OSError(28, "No space left on device")

    def _close(self, status):
        self.status = status


class Model:
    checkpoint = "/ckpt/E.model"
    fit_observer = None


def test_a_failing_store_is_warned_about_once_and_training_goes_on(monkeypatch, caplog):
    monkeypatch.setitem(tracking.TRACKER_CLASSES, "flaky", Flaky)
    monkeypatch.setattr(tracking, "tracking_kind", lambda params: "flaky")
    clock = FitClock(since=0.0)
    clock.batch(0.5, 4, epoch_start=True)
    record = clock.evaluation(epoch=1, batches=1, batches_per_epoch=1, eval_steps=1,
                              metrics={"AUC": 0.7}, learning_rate=1e-3, started=1.0,
                              improved=True, stopped=False)
    model = Model()
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError, match="boom"):
        with tracking.tracker_for({"model_id": "E"}, "cfg") as tracker:
            tracker.attach(model, log="E.log")
            assert model.fit_observer is tracker and tracker.calls == ["start"]
            tracker.evaluated(record)
            tracker.evaluated(record)
            tracker.finish({"AUC": 0.7})
            raise RuntimeError("boom")
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not log the evaluation" in warnings[0]
    assert tracker.status == "FAILED"  # closed all the same, with the run's outcome


def test_trials_starting_together_share_one_mlflow_experiment(tmp_path, monkeypatch):
    """MLflow's file store checks the name, then writes the experiment: trials that start at
    once each made their own copy, and one trial's run was lost to the UI (seen in a Ray sweep).
    A pause between the two steps makes every thread pass the check without the store lock."""
    mlflow = pytest.importorskip("mlflow")
    import threading
    import time

    from mlflow.store.tracking.file_store import FileStore

    check = getattr(FileStore, "_validate_experiment_does_not_exist", None)
    if check is None:
        pytest.skip("this MLflow's file store has no separate name check to pause after")

    def slow_check(self, name):
        check(self, name)
        time.sleep(0.2)

    monkeypatch.setattr(FileStore, "_validate_experiment_does_not_exist", slow_check)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    start, ids, errors = threading.Barrier(4), [], []

    def trial(n):
        start.wait()
        try:
            ids.append(tracking.MLflowTracker({"model_id": f"E{n}"}, tmp_path / "sweep")
                       .experiment_id)
        except Exception as exc:  # noqa: BLE001  reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=trial, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(ids) == 4 and len(set(ids)) == 1
    names = [e.name for e in mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
             .search_experiments()]
    assert names.count("sweep") == 1
