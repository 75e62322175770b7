"""A run fails before training, not after it (issue 19, class 3): what a run needs at its end
(metrics FuxiCTR can compute, a valid split on which they are defined, a group column the
loader ships, folders and a results CSV it can write) is refused at its start, with one line
and exit 2, before a checkpoint, a log or a results row is written. No training happens."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fuxictr_mmctr import cli
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.train import preflight

EXPID = "DIN_sample"


def _set(config_dir, **changes):
    path = config_dir / "model_config" / "DIN.yaml"
    config = yaml.safe_load(path.read_text())
    config[EXPID].update(changes)
    path.write_text(yaml.safe_dump(config))


def _train(config_dir, capfd):
    capfd.readouterr()
    code = cli.main(["train", "--config", str(config_dir), "--expid", EXPID])
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    return code, err


def _nothing_written(handmade):
    folder = handmade.parent / "checkpoints" / "MicroLens_sample"
    assert not list(folder.glob(f"{EXPID}*")) if folder.exists() else True
    assert not (handmade.parent / "mmctr_config.csv").exists()


@pytest.mark.parametrize("changes, message", [
    ({"metrics": ["AUC", "accuracy"]}, "metrics names 'accuracy', which FuxiCTR cannot compute"),
    ({"monitor": "accuracy"}, "monitor names 'accuracy'"),
    ({"monitor": {"AUC": 1, "recall": -1}}, "monitor names 'recall'"),
    ({"monitor": {"AUC": "high"}}, "monitor weights must be numbers"),
    ({"metrics": ["AUC", "NDCG"]}, "metrics names 'NDCG'"),  # NDCG needs its cut-off
    ({"metrics": "AUC, logloss"}, "'AUC, logloss'"),  # the config contract: not a list
    ({"metrics": []}, "metrics=[]"),
    ({"metrics": ["AUC", "gAUC"], "group_id": None}, "gAUC average over groups, but group_id"),
    ({"group_id": "nope"}, "group_id='nope' is not a column the loader ships"),
    ({"group_id": "item_id"}, "group_id='item_id' is not a column the loader ships"),
])
def test_what_the_final_evaluation_cannot_compute_is_refused_first(handmade_config, handmade,
                                                                  capfd, changes, message):
    _set(handmade_config, **changes)
    code, err = _train(handmade_config, capfd)
    assert code == 2 and message in err and EXPID in err
    _nothing_written(handmade)


@pytest.mark.parametrize("metrics", [["AUC", "logloss", "gAUC", "NDCG(k=5)", "MRR"],
                                     ["binary_crossentropy"], "AUC"])
def test_what_fuxictr_computes_is_accepted(handmade_config, metrics):
    from fuxictr_mmctr.train import experiment

    params = experiment.load_params(handmade_config, EXPID, check_keys=False)
    params.update(metrics=metrics, monitor={"AUC": 1, "logloss": -1})
    preflight.check_metrics(params, "here")


@pytest.mark.parametrize("label", [0, 1])
def test_a_valid_split_with_one_class_is_refused(handmade_config, handmade, capfd, label):
    """The example: AUC is undefined; it used to fail in scikit-learn after an epoch."""
    valid = handmade / "valid.parquet"
    table = pq.read_table(valid)
    column = table.schema.get_field_index("label")
    pq.write_table(table.set_column(column, "label", pa.array(
        np.full(table.num_rows, label), table.schema.field(column).type)), valid)
    code, err = _train(handmade_config, capfd)
    assert code == 2
    assert f"valid_data {valid} holds only label {label} in 20 rows, so AUC, logloss" in err
    _nothing_written(handmade)
    _set(handmade_config, metrics=["MRR"], monitor="MRR")  # defined on one class: no refusal
    from fuxictr_mmctr.train import experiment

    preflight.check_valid_labels(experiment.load_params(handmade_config, EXPID), "here")


def test_a_foreign_results_csv_is_refused_before_training(handmade_config, handmade, capfd):
    """It used to be found only when the row was appended, after training."""
    results = handmade.parent / "mmctr_config.csv"
    results.write_text("user,score\nalice,3\n")
    code, err = _train(handmade_config, capfd)
    assert code == 2 and "mmctr_config.csv" in err and "not a FuxiCTR results row" in err
    assert results.read_text() == "user,score\nalice,3\n"
    results.write_bytes(bytes(range(256)))  # random bytes
    code, err = _train(handmade_config, capfd)
    assert code == 2 and "not a results CSV (not UTF-8 text)" in err


def test_outputs_that_cannot_be_written_are_refused_first(handmade_config, handmade, capfd):
    results = handmade.parent / "mmctr_config.csv"
    results.mkdir()
    code, err = _train(handmade_config, capfd)
    assert code == 2 and f"{results}: the results CSV is a directory" in err
    results.rmdir()
    (handmade.parent / "blocked").write_text("a file, not a folder")
    _set(handmade_config, model_root=str(handmade.parent / "blocked"))
    code, err = _train(handmade_config, capfd)
    assert code == 2 and "cannot write the checkpoints and log there" in err
    assert not results.exists()


def test_prediction_refuses_an_unwritable_submission_before_scoring(handmade_config, handmade,
                                                                    capfd):
    (handmade.parent / "blocked").write_text("a file, not a folder")
    for out, message in ((handmade.parent / "blocked" / "a.zip", "cannot write the submission"),
                         (handmade.parent / "a.csv", "must end in .zip")):
        capfd.readouterr()
        code = cli.main(["predict", "--config", str(handmade_config), "--expid", EXPID,
                         "--out", str(out)])
        err = capfd.readouterr().err
        assert code == 2 and message in err and "has no trained model" not in err


def test_writable_checks_change_nothing(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("x\n")
    before = path.stat().st_mtime_ns
    preflight.check_writable_file(path, "results CSV")
    assert path.read_text() == "x\n" and path.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    with pytest.raises(ConfigError, match="is a directory"):
        preflight.check_writable_file(tmp_path, "results CSV")
