"""End to end on the generator's tiny sample: the scripts and CLI as a user runs them."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT, fast_config
from sklearn.metrics import roc_auc_score

from fuxictr_mmctr.submit.submission import check_submission_zip

def run_script(script, *args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def validation_auc(log: Path) -> float:
    line = [ln for ln in log.read_text().splitlines() if "Validation:" in ln][-1]
    return float(line.split("AUC:")[1].split("-")[0])


def test_run_expid_then_prediction(tiny_sample, repo_config, tmp_path, monkeypatch):
    config_dir = fast_config(repo_config, tiny_sample)
    work = tmp_path / "work"
    work.mkdir()
    run_script("run_expid.py", "--config", config_dir, "--expid", "DIN_sample", "--gpu", -1,
               cwd=work)
    log = work / "checkpoints" / "MicroLens_sample" / "DIN_sample.log"
    assert validation_auc(log) > 0.6
    assert "DIN_sample" in (work / "mmctr_config.csv").read_text()  # FuxiCTR's results file

    run_script("prediction.py", "--config", config_dir, "--expid", "DIN_sample", "--gpu", -1,
               cwd=work)
    zip_path = work / "submission" / "DIN_sample.zip"
    test_file = tiny_sample / "MicroLens_1M_x1" / "test.parquet"
    report = check_submission_zip(zip_path, test_file)
    assert report.columns == ("ID", "Task2")
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.namelist() == ["prediction.csv"]
        predictions = pd.read_csv(zf.open("prediction.csv"))
    truth = pd.read_parquet(tiny_sample / "_truth" / "test_labels.parquet")["label"]
    assert roc_auc_score(truth, predictions["Task2"]) > 0.6  # the test split is scored too
    assert log.exists()  # prediction keeps the training log and writes its own
    assert (log.parent / "DIN_sample.predict.log").exists()

    # a prediction machine needs the test split and item_info only
    from fuxictr_mmctr.train.experiment import predict_split

    data = tiny_sample / "MicroLens_1M_x1"
    config = config_dir / "dataset_config.yaml"
    config.write_text(config.read_text().replace(str(data / "train.parquet"), "/nowhere.parquet"))
    monkeypatch.chdir(work)
    scores = predict_split(config_dir, "DIN_sample", "test")
    assert np.allclose(scores, predictions["Task2"], atol=1e-6)


def test_prediction_without_training_is_a_clear_error(tiny_sample, repo_config, tmp_path):
    config_dir = fast_config(repo_config, tiny_sample)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(ROOT / "prediction.py"), "--config",
                             str(config_dir), "--expid", "DIN_sample"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "run_expid.py" in result.stderr and "Traceback" not in result.stderr


def test_unknown_expid_and_missing_data_are_clear_errors(repo_config, tmp_path, monkeypatch):
    from fuxictr_mmctr.cli.experiment import train_main

    config_dir = repo_config / "mmctr_config"
    assert train_main(["--config", str(config_dir), "--expid", "NoSuchExp"]) == 2
    monkeypatch.chdir(tmp_path)  # ./data/sample/... does not exist here
    assert train_main(["--config", str(config_dir), "--expid", "DIN_sample"]) == 2


def test_param_tuner_sweeps_and_resumes(tiny_sample, repo_config, tmp_path):
    config_dir = fast_config(repo_config, tiny_sample, epochs=1)
    tuner = repo_config / "tuners" / "DIN_sample_tuner_config.yaml"
    spec = yaml.safe_load(tuner.read_text())
    spec["base_config"] = str(config_dir)
    spec["tuner_space"] = {"learning_rate": [1.0e-3, 2.0e-3]}
    tuner.write_text(yaml.safe_dump(spec))
    work = tmp_path / "work"
    work.mkdir()
    run_script("run_param_tuner.py", "--config", tuner, "--gpu", -1, cwd=work)
    results = (work / "DIN_sample_tuner_config.csv").read_text().splitlines()
    assert len(results) == 2 and all("AUC:" in line for line in results)
    second = run_script("run_param_tuner.py", "--config", tuner, "--gpu", -1, cwd=work)
    assert "2 already finished, 0 to run" in second.stderr
    assert len((work / "DIN_sample_tuner_config.csv").read_text().splitlines()) == 2


@pytest.mark.parametrize("expid", ["DIN_sample_pretrained"])
def test_pretrained_route_end_to_end(tiny_sample, repo_config, tmp_path, expid):
    # a misspelt key trains as if absent, and says so once in the log and on stderr
    config_dir = fast_config(repo_config, tiny_sample, expids=(expid,), max_lenn=8)
    work = tmp_path / "work"
    work.mkdir()
    result = run_script("run_expid.py", "--config", config_dir, "--expid", expid, cwd=work)
    log = work / "checkpoints" / "MicroLens_sample_pretrained" / f"{expid}.log"
    assert validation_auc(log) > 0.6
    warning = "'max_lenn' (did you mean 'max_len'?)"
    assert log.read_text().count(warning) == 1 and result.stderr.count(warning) == 1
    result = run_script("prediction.py", "--config", config_dir, "--expid", expid, cwd=work)
    assert result.stderr.count(warning) == 1
    assert warning in (log.parent / f"{expid}.predict.log").read_text()
    check_submission_zip(work / "submission" / f"{expid}.zip",
                         tiny_sample / "MicroLens_1M_x1" / "test.parquet")


def test_task1_embeddings_feed_din_through_run_expid(tiny_sample, repo_config, tmp_path):
    """mmctr build-embeddings on the tiny sample, then DIN trains on the new item_info."""
    from fuxictr_mmctr.cli import main

    out = tmp_path / "item_info_task1.parquet"
    assert main(["build-embeddings", "--data-dir", str(tiny_sample), "--tiny-clip",
                 "--fusion", "gate", "--out", str(out), "--work-dir", str(tmp_path / "cache"),
                 "--w2v-epochs", "1", "--projector-epochs", "2", "--num-workers", "0",
                 "--no-progress"]) == 0
    config_dir = fast_config(repo_config, tiny_sample)
    datasets = config_dir / "dataset_config.yaml"
    original = f"{tiny_sample}/MicroLens_1M_x1/item_info.parquet"
    datasets.write_text(datasets.read_text().replace(original, str(out)))
    work = tmp_path / "work"
    work.mkdir()
    run_script("run_expid.py", "--config", config_dir, "--expid", "DIN_sample", cwd=work)
    log = work / "checkpoints" / "MicroLens_sample" / "DIN_sample.log"
    assert str(out) in log.read_text()  # trained on the Task-1 item_info
    assert validation_auc(log) > 0.6


@pytest.mark.parametrize("module", ["fuxictr_mmctr.cli", "fuxictr_mmctr"])
def test_python_m_help_lists_every_command(module, tmp_path):
    from fuxictr_mmctr.cli import COMMANDS

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()
              if line.startswith("    ") and line.split()}
    assert set(COMMANDS) <= listed, set(COMMANDS) - listed
