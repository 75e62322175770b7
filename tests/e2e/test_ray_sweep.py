"""run_param_tuner.py --ray ADDRESS: FuxiCTR's sweep as Ray tasks on a local Ray cluster."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ROOT, point_config_at

from fuxictr_mmctr.train.results import finished_expids


def sweep_config(repo_config: Path, data_root: Path, tuner_space: dict, name: str) -> Path:
    """A tuner YAML over DIN_sample (one short epoch) on ``data_root``."""
    config_dir = point_config_at(repo_config, data_root)
    path = config_dir / "model_config" / "DIN.yaml"
    config = yaml.safe_load(path.read_text())
    config["DIN_sample"].update(epochs=1, batch_size=512, verbose=0)
    path.write_text(yaml.safe_dump(config))
    tuner = repo_config / "tuners" / f"{name}.yaml"
    tuner.write_text(yaml.safe_dump({"base_config": str(config_dir), "base_expid": "DIN_sample",
                                     "dataset_id": "MicroLens_sample",
                                     "tuner_space": tuner_space}))
    return tuner


def tuner(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "run_param_tuner.py"), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_sweep_on_ray_records_resumes_and_isolates_a_broken_trial(ray_cluster, tiny_sample,
                                                                   repo_config, tmp_path,
                                                                   monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    tracked = importlib.util.find_spec("mlflow") is not None  # each trial its own MLflow run
    good = sweep_config(repo_config, tiny_sample, {"learning_rate": [1.0e-3, 2.0e-3],
                                                   "tracking": "mlflow" if tracked else "none"},
                        "good")
    first = tuner("--config", good, "--ray", ray_cluster, "--gpu", -1, cwd=work)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    results = (work / "good.csv").read_text().splitlines()
    assert len(results) == 2 and all("AUC:" in line for line in results)
    assert all(f"--ray {ray_cluster}" in line and "(Ray trial DIN_sample_00" in line
               for line in results)                  # the driver wrote them, with its command
    expids = sorted(yaml.safe_load((good.with_suffix("") / "model_config.yaml").read_text()))
    monkeypatch.chdir(work)                          # the results CSV is read from the cwd
    assert finished_expids(good.with_suffix("")) == set(expids)
    for expid in expids:                             # each trial trained under the driver's cwd
        assert (work / "checkpoints" / "MicroLens_sample" / f"{expid}.model").exists()
    if tracked:
        from mlflow import MlflowClient

        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=(work / "mlruns").as_uri())
        runs = client.search_runs([client.get_experiment_by_name("good").experiment_id])
        assert sorted(r.info.run_name for r in runs) == expids
        assert all(r.info.status == "FINISHED" and "valid/AUC" in r.data.metrics for r in runs)
    # the driver's rows name the tuner file: the report finds the enumerated configs from it
    if importlib.util.find_spec("matplotlib") is not None:
        from fuxictr_mmctr.train.report import build_page

        [section] = build_page([work / "good.csv"]).sections
        assert [p.title for p in section.blocks if hasattr(p, "png")][1] == \
            "AUC, logloss, AUC / oracle against learning_rate"

    again = tuner("--config", good, "--ray", ray_cluster, "--gpu", -1, cwd=work)
    assert again.returncode == 0 and "2 already finished, 0 to run" in again.stderr
    assert len((work / "good.csv").read_text().splitlines()) == 2

    broken = sweep_config(repo_config, tiny_sample, {"net_dropout": [0, 1.5]}, "broken")
    result = tuner("--config", broken, "--ray", ray_cluster, "--gpu", -1, cwd=work)
    assert result.returncode == 1
    space = yaml.safe_load((broken.with_suffix("") / "model_config.yaml").read_text())
    bad = next(e for e, p in space.items() if p["net_dropout"] == 1.5)
    ok = next(e for e in space if e != bad)
    assert f"{bad} failed: " in result.stderr and "net_dropout" in result.stderr
    log = work / "checkpoints" / "MicroLens_sample" / f"{bad}.log"
    assert f"log {log}" in result.stderr and "net_dropout" in log.read_text()
    lines = (work / "broken.csv").read_text().splitlines()
    assert len(lines) == 1 and f"[exp_id] {ok}," in lines[0]   # the other trial went on

