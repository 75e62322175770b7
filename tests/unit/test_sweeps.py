"""Sweeps over several datasets: the tuner file per dataset and the summary over datasets
(bench/sweeps.py), and the bench table's aggregation (bench/models.py)."""
from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from helpers import ROOT

from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.train.sweep import tuner_files


def load_bench(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tuner(path, datasets):
    path.write_text(yaml.safe_dump({"base_config": "./config/mmctr_config/",
                                    "base_expid": "DIN_sample", "dataset_id": datasets,
                                    "tuner_space": {"epochs": 3, "recency_bias": [False, True]}}))
    return path


def test_tuner_files_one_per_dataset(tmp_path):
    single = write_tuner(tmp_path / "one_tuner_config.yaml", "MicroLens_sample")
    assert tuner_files(single) == [single]
    many = write_tuner(tmp_path / "many_tuner_config.yaml", ["A", "B"])
    files = tuner_files(many)
    assert [f.name for f in files] == ["many_tuner_config.A.yaml", "many_tuner_config.B.yaml"]
    assert all(f.parent == tmp_path / "many_tuner_config" for f in files)
    specs = [yaml.safe_load(f.read_text()) for f in files]
    assert [s["dataset_id"] for s in specs] == ["A", "B"]
    assert all(s["tuner_space"] == {"epochs": 3, "recency_bias": [False, True]} for s in specs)
    stamp = files[0].stat().st_mtime_ns
    assert tuner_files(many) == files and files[0].stat().st_mtime_ns == stamp  # not rewritten
    with pytest.raises(ConfigError, match="distinct"):
        tuner_files(write_tuner(tmp_path / "dup_tuner_config.yaml", ["A", "A"]))


def test_sweep_summary_ranks_settings_by_mean_auc_over_oracle(tmp_path, monkeypatch):
    sweeps = load_bench("sweeps")
    monkeypatch.chdir(tmp_path)
    tuner = write_tuner(tmp_path / "t_tuner_config.yaml", ["ds1", "ds2"])
    oracle = {"ds1": 0.9, "ds2": 0.8}
    auc = {("ds1", False): 0.81, ("ds1", True): 0.84, ("ds2", False): 0.76, ("ds2", True): 0.74}
    for path in tuner_files(tuner):
        ds = yaml.safe_load(path.read_text())["dataset_id"]
        config_dir = path.with_suffix("")
        config_dir.mkdir()
        root = tmp_path / f"data_{ds}"
        root.mkdir()
        (root / "_SUCCESS").write_text(json.dumps({"oracle": {"valid": {"AUC": oracle[ds]}}}))
        (config_dir / "dataset_config.yaml").write_text(yaml.safe_dump({ds: {"data_root": str(root)}}))
        params, lines = {}, []
        for i, flag in enumerate([False, True]):
            expid = f"DIN_sample_{i + 1:03d}_{ds}"
            params[expid] = {"dataset_id": ds, "epochs": 3, "recency_bias": flag}
            lines.append(f" 20260101-000000,[command] x,[exp_id] {expid},[dataset_id] {ds},"
                         f"[train] N.A.,[val] AUC: {auc[ds, flag]:.6f} - logloss: 0.400000")
        (config_dir / "model_config.yaml").write_text(yaml.safe_dump(params))
        (tmp_path / f"{config_dir.name}.csv").write_text("\n".join(lines) + "\n")
    summary = sweeps.summarise(tuner)
    assert summary["keys"] == ["recency_bias"] and summary["datasets"] == ["ds1", "ds2"]
    best, second = summary["rows"]
    # (0.84/0.9 + 0.74/0.8) / 2 = 0.9292 > (0.81/0.9 + 0.76/0.8) / 2 = 0.925
    assert best["setting"] == {"recency_bias": True}
    assert best["mean_ratio"] == pytest.approx((0.84 / 0.9 + 0.74 / 0.8) / 2)
    assert second["mean_auc"] == pytest.approx((0.81 + 0.76) / 2)
    table = sweeps.to_markdown(summary)
    assert "| 1 | true | 0.8400 | 0.7400 |" in table


def test_bench_table_mean_and_spread_over_seeds():
    models = load_bench("models")
    rows = [dict(budget="fixed", model=m, route="column", variant="dynamic", seed=s, auc=a,
                 oracle_auc=o, samples_per_s=100.0, parameters=10)
            for m, s, a, o in [("DIN", 1, 0.80, 0.90), ("DIN", 2, 0.84, 0.92),
                               ("DIN_official", 1, 0.70, 0.90)]]
    table = models.summarise(rows, ["fixed"], ["dynamic"])
    lines = table.splitlines()
    assert lines.index(next(l for l in lines if l.startswith("| DIN_official"))) < \
        lines.index(next(l for l in lines if l.startswith("| DIN |")))  # reference first
    din = next(l for l in lines if l.startswith("| DIN |"))
    ratio = (0.80 / 0.90 + 0.84 / 0.92) / 2
    spread = (0.84 / 0.92 - 0.80 / 0.90) / 2
    assert "0.8200 +- 0.0200" in din and f"{ratio:.3f} +- {spread:.3f}" in din


def test_epochs_run_reads_the_log_beside_the_checkpoint(tmp_path):
    models = load_bench("models")
    (tmp_path / "DIN_sample.log").write_text("Train loss: 0.41\n...\nTrain loss: 0.40\n")
    assert models.epochs_run(tmp_path / "DIN_sample.model") == 2
    assert models.epochs_run(tmp_path / "missing.model") == 1


def test_bench_checks_name_what_beats_the_reference_and_what_does_not():
    models = load_bench("models")

    def row(model, variant, seed, auc, route="column"):
        return dict(budget="fixed", model=model, route=route, variant=variant, seed=seed,
                    auc=auc, oracle_auc=0.90)

    rows = [row("DIN_official", "dynamic", 1, 0.80), row("DIN_official", "dynamic", 2, 0.82),
            row("DIN", "dynamic", 1, 0.85), row("DIN", "dynamic", 2, 0.86),
            row("DCNv2", "dynamic", 1, 0.81), row("DCNv2", "dynamic", 2, 0.81),
            row("DIN", "dynamic", 1, 0.84, "pretrained"), row("DIN", "dynamic", 2, 0.84,
                                                              "pretrained"),
            row("DIN", "static", 1, 0.80), row("DCNv2", "static", 1, 0.80),
            row("TransformerDCN_sample_published_mask_bug", "dynamic", 1, 0.70),
            row("TransformerDCN", "dynamic", 1, 0.83)]
    lines = models.checks(rows)
    text = "\n".join(lines)
    assert "dynamic: DIN beats DIN_official on seeds [1, 2] (AUC margin +0.0500, +0.0400)" in text
    assert "dynamic: DCNv2 does NOT beat DIN_official" in text
    best = next(l for l in lines if "best column model" in l)
    assert "DIN," in best and f"{0.855 / 0.90:.3f}" in best
    assert "DIN pretrained - column = -0.0150 AUC (NOT within 0.005)" in text
    # DCNv2 ties DIN on static and trails it by 0.045 on dynamic: flagged
    assert "ranking: DCNv2 gap to the best static 0.0000 -> dynamic 0.0450 (+0.0450)  <-" in text
    assert "TransformerDCN_sample_published_mask_bug 0.7000 vs TransformerDCN 0.8300" in text


def test_sweep_report_reprints_the_saved_summaries(tmp_path, capsys):
    sweeps = load_bench("sweeps")
    summary = dict(tuner="t.yaml", base_expid="DIN_sample", keys=["recency_bias"],
                   datasets=["MicroLens_bench_static_s1"],
                   rows=[dict(setting={"recency_bias": True},
                              auc={"MicroLens_bench_static_s1": 0.84}, mean_auc=0.84,
                              mean_ratio=0.98, complete=True)])
    saved = tmp_path / "sweeps.json"
    saved.write_text(json.dumps([summary]))
    assert sweeps.main(["--report", str(saved)]) == 0
    assert "| 1 | true | 0.8400 | 0.8400 | 0.9800 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sweeps.main([])


def test_a_device_named_twice_runs_two_trials_and_tracks_both(monkeypatch):
    """``--gpu -1 -1``: two CPU trials at once, each waited for (none orphaned, none run twice)."""
    from fuxictr_mmctr.train import sweep

    trials = [sweep.Trial("cfg", f"DIN_sample_{i:03d}") for i in range(5)]
    monkeypatch.setattr(sweep, "sweep_plan", lambda config, tag=None: sweep.SweepPlan(
        trials, list(trials)))
    alive, started, most = [], [], [0]

    class FakeTrial:
        def __init__(self, cmd):
            self.expid, self.gpu = cmd[cmd.index("--expid") + 1], cmd[cmd.index("--gpu") + 1]
            self.polls, self.returncode = 0, None
            alive.append(self)
            started.append((self.expid, self.gpu))
            most[0] = max(most[0], len(alive))

        def poll(self):
            self.polls += 1
            if self.polls >= 2 and self.returncode is None:  # ends on its second poll
                self.returncode = 1 if self.expid.endswith("3") else 0
                alive.remove(self)
            return self.returncode

    monkeypatch.setattr(sweep.subprocess, "Popen", FakeTrial)
    failed = sweep.tune("unused.yaml", ["-1", "-1"], poll_seconds=0)
    assert [e for e, _ in started] == [t.expid for t in trials]
    assert {g for _, g in started} == {"-1"} and most[0] == 2 and not alive
    assert failed == ["DIN_sample_003"]
