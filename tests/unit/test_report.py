"""``mmctr report`` on hand-made inputs (no training): a sweep's results CSV with its enumerated
configs, logs and sample manifest; a pipeline work dir's report.json; bad paths."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from fuxictr_mmctr import cli
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.train import report
from fuxictr_mmctr.train.results import ResultRow

pytest.importorskip("matplotlib", reason="pip install 'fuxictr_mmctr[report]'")

LOG = """\
2026-12-07 06:36:55,687 P1 INFO Start training: 12 batches/epoch
2026-12-07 06:36:58,564 P1 INFO Train loss: 0.611388
2026-12-07 06:36:58,567 P1 INFO Evaluation @epoch 1 - batch 12: 
2026-12-07 06:36:58,685 P1 INFO [Metrics] AUC: {a1} - logloss: 0.808209
2026-12-07 06:36:58,685 P1 INFO Save best model: monitor(max)={a1}
2026-12-07 06:37:01,198 P1 INFO Train loss: 0.474231
2026-12-07 06:37:01,203 P1 INFO Evaluation @epoch 2 - batch 12: 
2026-12-07 06:37:01,350 P1 INFO [Metrics] AUC: {a2} - logloss: 0.464249 (1000 rows from 2 ranks)
2026-12-07 06:37:01,399 P1 INFO ****** Validation evaluation ******
2026-12-07 06:37:01,600 P1 INFO [Metrics] AUC: {a2} - logloss: 0.464249
"""


def images(page_html: str):
    """``(alt, PNG bytes)`` of every inlined image of a page."""
    found = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)">', page_html)
    return [(alt, base64.b64decode(data)) for alt, data in found]


@pytest.fixture
def sweep(tmp_path):
    """A two-expid sweep laid out as run_param_tuner.py leaves it, in ``tmp_path/run``: the
    results CSV, the enumerated tuner folder, a log per expid and the sample's manifest."""
    run = tmp_path / "run"
    config = run / "config" / "tuners" / "t_tuner_config"
    config.mkdir(parents=True)
    data = run / "data"
    data.mkdir()
    (data / "_SUCCESS").write_text(json.dumps({"oracle": {"valid": {"AUC": 0.9}}}))
    base = {"model": "DIN", "dataset_id": "ds", "model_root": "./checkpoints/", "epochs": 2,
            "batch_size": 512}
    expids = {"E_001": {"learning_rate": 1.0e-3}, "E_002": {"learning_rate": 3.0e-3}}
    (config / "model_config.yaml").write_text(yaml.safe_dump(
        {e: dict(base, **p) for e, p in expids.items()}))
    (config / "dataset_config.yaml").write_text(yaml.safe_dump(
        {"ds": {"data_root": "./data/", "train_data": "./data/train.parquet"}}))
    logs = run / "checkpoints" / "ds"
    logs.mkdir(parents=True)
    aucs = {"E_001": (0.70, 0.81), "E_002": (0.72, 0.78)}
    lines = []
    for expid, (a1, a2) in aucs.items():
        (logs / f"{expid}.log").write_text(LOG.format(a1=a1, a2=a2))
        lines.append(ResultRow(expid, "ds", {"AUC": a2, "logloss": 0.46}, time="20261207-0637",
                               command="-m fuxictr_mmctr train --config "
                                       f"config/tuners/t_tuner_config --expid {expid}").line())
    csv = run / "t_tuner_config.csv"
    csv.write_text("".join(lines))
    return csv


def test_the_log_curve_is_each_evaluation_of_fit(sweep):
    curve = report.read_log_curve(sweep.parent / "checkpoints" / "ds" / "E_001.log")
    assert [(p.epoch, p.metrics, p.train_loss) for p in curve] == [
        (1, {"AUC": 0.70, "logloss": 0.808209}, 0.611388),
        (2, {"AUC": 0.81, "logloss": 0.464249}, 0.474231)]  # the final evaluation is not one
    assert report.read_log_curve(sweep.parent / "absent.log") == []


def test_runs_of_a_results_csv_find_their_configs_logs_and_oracle(sweep, monkeypatch):
    monkeypatch.chdir(sweep.parent.parent)  # paths are read from the CSV's folder, not here
    runs = report.runs_from_results(sweep)
    assert [r.expid for r in runs] == ["E_001", "E_002"]
    assert runs[0].params["learning_rate"] == 1.0e-3 and runs[0].oracle == 0.9
    assert runs[0].ratio == pytest.approx(0.81 / 0.9)
    assert [p.epoch for p in runs[1].curve] == [1, 2] and runs[0].best_epoch == 2
    assert report.swept_keys(runs) == ["learning_rate"]


def test_a_ray_drivers_tuner_file_stands_for_its_enumerated_folder(sweep):
    run = sweep.parent
    tuner = run / "config" / "tuners" / "t_tuner_config.yaml"
    tuner.write_text("base_expid: E\n")
    command = "run_param_tuner.py --config config/tuners/t_tuner_config.yaml --ray local " \
              "(Ray trial E_001 on host)"
    assert report._config_of(command, run, "t_tuner_config") == tuner.with_suffix("")
    per_dataset = tuner.with_suffix("") / "t_tuner_config.ds"
    per_dataset.mkdir()
    assert report._config_of(command, run, "t_tuner_config.ds") == per_dataset
    assert report._config_of("run_expid.py --config=cfg --expid E", run) == run / "cfg"


def test_the_sweep_page_holds_every_run_and_one_image_per_plot(sweep, tmp_path, capsys):
    out = tmp_path / "out" / "sweep.html"
    assert cli.main(["report", str(sweep), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    rows = re.findall(r"<tr[^>]*><td><span>(\d+)</span></td><td><span>([^<]+)</span>", page)
    assert rows == [("1", "E_001"), ("2", "E_002")]  # best AUC first
    assert "<th>oracle AUC</th><th>AUC / oracle</th>" in page and "0.8667" in page  # 0.78/0.9
    alts = [alt for alt, _ in images(page)]
    assert alts == ["valid AUC of every run", "AUC, logloss, AUC / oracle against learning_rate",
                    "valid AUC and train loss per epoch"]
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for _, png in images(page))
    assert "<script" not in page and not re.search(r'(src|href)="(?!data:)', page)  # offline
    assert [p.name for p in out.parent.iterdir()] == ["sweep.html"]  # atomic: no temp left


PIPELINE = {
    "data_dir": "data", "work_dir": "work", "settings": {"epochs": 1, "models": ["DIN", "DCNv2"]},
    "seconds": 4321.5,
    "stages": [{"name": "sample", "seconds": 12.0, "skipped": True, "outputs": ["data"]},
               {"name": "train", "seconds": 3000.0, "skipped": False,
                "outputs": {"DIN_a": "checkpoints/DIN_a.model"}},
               {"name": "blend", "seconds": 20.5, "skipped": False, "outputs": []}],
    "models": {"DIN_a": {"model": "DIN", "item_side": "features",
                         "valid": {"AUC": 0.81, "logloss": 0.45}},
               "DCNv2_a": {"model": "DCNv2", "item_side": "ids",
                           "valid": {"AUC": 0.79, "logloss": 0.47}, "new_key": 1}},
    "blend": {"method": "rank", "members": {"DIN_a": 0.6, "DCNv2_a": 0.4},
              "valid": {"AUC": 0.815, "logloss": 0.44}, "note": "weights fit on valid"},
    "best": {"name": "blend", "valid_AUC": 0.815},
    "submission": "work/submission.zip",
    "hidden_test": {"AUC": 0.80, "oracle_AUC": 0.85, "AUC_over_oracle": 0.9412},
    "something_new": {"a": 1},
}


def test_the_pipeline_page_shows_stages_models_and_the_blend(tmp_path):
    work = tmp_path / "work"
    (work / "checkpoints").mkdir(parents=True)
    (work / "report.json").write_text(json.dumps(PIPELINE))
    (work / "checkpoints" / "DIN_a.log").write_text(LOG.format(a1=0.7, a2=0.81))
    page = report.write_report([work], tmp_path / "p.html")
    assert [s.title for s in page.sections] == ["Summary", "Stages", "Models", "Blend",
                                                "Training curves"]
    html = (tmp_path / "p.html").read_text()
    for figure in ("0.8150", "0.9412", "1h 12m", "skipped", "weights fit on valid",
                   "item side", "DCNv2_a"):
        assert figure in html
    assert [alt for alt, _ in images(html)] == [
        "seconds per stage", "valid AUC of each model, by item side",
        "the blend against its members", "valid AUC and train loss per epoch"]


def test_paths_that_are_none_of_the_three_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no such file"):
        report.classify(tmp_path / "absent.csv")
    with pytest.raises(ConfigError, match="not a results CSV, a config folder"):
        report.classify(tmp_path)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert cli.main(["report", str(tmp_path / "other.csv"), "--out",
                     str(tmp_path / "r.html")]) == 2
    assert "not a FuxiCTR results row" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "report.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        report.write_report([tmp_path / "work"], tmp_path / "r.html")
