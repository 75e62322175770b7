"""Watching runs on the tiny sample: the curves a run streams to TensorBoard and MLflow, read back
with the libraries' own readers (TensorBoard's EventAccumulator, the MLflow client), match its
log; ``mmctr report`` of a two-expid sweep holds its rows and one image per plot, and renders in
a headless browser where one is installed."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import fast_config

from fuxictr_mmctr import cli, compat
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.train.sweep import sweep_plan

RATES = (1.0e-3, 3.0e-3)


def log_figures(log: Path):
    """``(train losses, valid AUCs, valid loglosses)`` of each evaluation of fit, as logged."""
    text = log.read_text()
    losses = [float(x) for x in re.findall(r"Train loss: ([0-9.]+)", text)]
    evaluations = re.findall(r"Evaluation @epoch \d+ - batch \d+: *\n.*\[Metrics\] AUC: ([0-9.]+)"
                             r" - logloss: ([0-9.]+)", text)
    return losses, [float(a) for a, _ in evaluations], [float(b) for _, b in evaluations]


@pytest.fixture(scope="module")
def tracked_sweep(tiny_sample, tmp_path_factory, one_torch_thread):
    """A two-expid sweep (learning rate) with ``tracking: tensorboard``, trained in process:
    ``(work dir, enumerated config dir, {expid: TrainResult})``."""
    pytest.importorskip("tensorboard", reason="pip install 'fuxictr_mmctr[tensorboard]'")
    work = tmp_path_factory.mktemp("sweep")
    shutil.copytree(Path(__file__).resolve().parents[2] / "config", work / "config")
    config_dir = fast_config(work / "config", tiny_sample)
    tuner = work / "config" / "tuners" / "lr_tuner_config.yaml"
    # the tuner turns tracking on for its trials (Base declares the key, as FuxiCTR's tuner needs)
    tuner.write_text(yaml.safe_dump({"base_config": str(config_dir), "base_expid": "DIN_sample",
                                     "dataset_id": "MicroLens_sample",
                                     "tuner_space": {"learning_rate": list(RATES),
                                                     "tracking": "tensorboard"}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        plan = sweep_plan(tuner)
        trained = {t.expid: experiment.train(t.config_dir, t.expid) for t in plan.trials}
    return work, Path(plan.trials[0].config_dir), trained


def test_tensorboard_holds_the_logged_curves(tracked_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work, config_dir, trained = tracked_sweep
    configs = yaml.safe_load((config_dir / "model_config.yaml").read_text())
    rates = {expid: configs[expid]["learning_rate"] for expid in trained}
    assert sorted(rates.values()) == sorted(RATES)
    for expid, result in trained.items():
        runs = list((work / "checkpoints" / "MicroLens_sample" / "tensorboard" / expid).iterdir())
        assert len(runs) == 1  # beside the log, one folder per run
        events = EventAccumulator(str(runs[0]))
        events.Reload()
        scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)]
                   for tag in events.Tags()["scalars"]}
        losses, aucs, loglosses = log_figures(result.checkpoint.with_suffix(".log"))
        assert len(aucs) == 2  # 2 epochs, each evaluation with every metric
        for tag, logged in (("train/loss", losses), ("valid/AUC", aucs),
                            ("valid/logloss", loglosses)):
            assert [s for s, _ in scalars[tag]] == [1, 2]
            assert [v for _, v in scalars[tag]] == pytest.approx(logged, abs=2e-6)  # float32
        assert scalars["train/learning_rate"][0][1] == pytest.approx(rates[expid])
        assert all(v > 0 for _, v in scalars["train/samples_per_s"])
        assert scalars["best/AUC"][-1][1] == pytest.approx(result.valid_metrics["AUC"], abs=1e-6)
        texts = events.Tensors("versions/text_summary")[0].tensor_proto.string_val[0].decode()
        assert texts == compat.versions_line()


def test_mlflow_run_holds_the_logged_curves(tiny_sample, repo_config, tmp_path, monkeypatch,
                                            one_torch_thread):
    pytest.importorskip("mlflow", reason="pip install 'fuxictr_mmctr[mlflow]'")
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # restored after the test
    monkeypatch.chdir(tmp_path)
    config_dir = fast_config(repo_config, tiny_sample, tracking="mlflow")
    result = experiment.train(config_dir, "DIN_sample")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())  # beside the results CSV
    assert (tmp_path / "mmctr_config.csv").exists()
    [run] = client.search_runs([client.get_experiment_by_name("mmctr_config").experiment_id])
    assert run.info.run_name == "DIN_sample" and run.info.status == "FINISHED"
    assert run.data.params["learning_rate"] == "0.001" and run.data.params["model"] == "DIN"
    assert run.data.tags["versions"] == compat.versions_line()
    assert run.data.tags["checkpoint"] == str(result.checkpoint)
    losses, aucs, loglosses = log_figures(result.checkpoint.with_suffix(".log"))
    for key, logged in (("train/loss", losses), ("valid/AUC", aucs),
                        ("valid/logloss", loglosses)):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert [s for s, _ in history] == [1, 2]
        assert [v for _, v in history] == pytest.approx(logged, abs=1e-6)
    assert run.data.metrics["best/AUC"] == pytest.approx(result.valid_metrics["AUC"])
    assert "params.json" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_the_report_of_the_sweep(tracked_sweep, tmp_path, capsys):
    work, config_dir, trained = tracked_sweep
    out = tmp_path / "sweep.html"
    assert cli.main(["report", str(work / "lr_tuner_config.csv"), "--config", str(config_dir),
                     "--out", str(out)]) == 0
    page = out.read_text()
    rows = re.findall(r"<tr[^>]*><td><span>\d+</span></td><td><span>([^<]+)</span>", page)
    assert sorted(rows) == sorted(trained)
    best = max(trained, key=lambda e: trained[e].valid_metrics["AUC"])
    assert rows[0] == best and '<tr class="best"><td><span>1</span></td><td><span>' + best in page
    alts = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,', page)
    assert alts == ["valid AUC of every run", "AUC, logloss, AUC / oracle against learning_rate",
                    "valid AUC and train loss per epoch"]
    shot = screenshot(out, tmp_path / "sweep.png")
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    plot_blue = (np.abs(pixels - [31, 119, 180]).max(axis=-1) < 12).sum()  # matplotlib's C0
    assert plot_blue > 2000  # the inlined plots were drawn by the browser


def screenshot(page: Path, png: Path) -> Path:
    """A headless browser's screenshot of ``page``; skips where none is installed."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome",
                                              "google-chrome-stable") if shutil.which(n)), None)
    if browser is None:
        pytest.skip("no headless browser installed (apt-get install chromium)")
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                             "--hide-scrollbars", "--window-size=1280,2000",
                             f"--screenshot={png}", page.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and png.exists(), result.stderr[-2000:]
    return png
