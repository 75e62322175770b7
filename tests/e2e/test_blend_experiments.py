"""Blending trained experiments: the array functions, then two DINs trained on the tiny sample."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import point_config_at

from fuxictr_mmctr import cli
from fuxictr_mmctr.train import blend
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.submit.blend import BlendError
from fuxictr_mmctr.train.blend import run_blend
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.submit.submission import check_submission_zip


FAST = {"epochs": 1, "batch_size": 512, "verbose": 0, "max_len": 16}


@pytest.fixture(scope="module")
def trained(tiny_sample, tmp_path_factory):
    """DIN_sample and a variant (another seed and learning rate), one epoch each."""
    import shutil

    from helpers import ROOT

    root = tmp_path_factory.mktemp("blend")
    shutil.copytree(ROOT / "config", root / "config")
    config_dir = point_config_at(root / "config", tiny_sample)
    path = config_dir / "model_config" / "DIN.yaml"
    config = yaml.safe_load(path.read_text())
    config["DIN_sample"].update(FAST)
    config["DIN_blend_b"] = dict(config["DIN_sample"], seed=7, learning_rate=3.0e-3,
                                 embedding_dim=16)
    # Same rows read from another file: another dataset id over a copy of the splits.
    data = yaml.safe_load((config_dir / "dataset_config.yaml").read_text())
    short = tmp_path_factory.mktemp("short")
    import pyarrow.parquet as pq
    for split in ("valid", "test"):
        table = pq.read_table(tiny_sample / "MicroLens_1M_x1" / f"{split}.parquet")
        pq.write_table(table.slice(0, 100), short / f"{split}.parquet")
    data["MicroLens_short"] = dict(data["MicroLens_sample"],
                                   valid_data=str(short / "valid.parquet"),
                                   test_data=str(short / "test.parquet"))
    (config_dir / "dataset_config.yaml").write_text(yaml.safe_dump(data))
    config["DIN_short"] = dict(config["DIN_sample"], dataset_id="MicroLens_short")
    # The same number of rows in another order: the submission ID is the row order.
    shuffled = tmp_path_factory.mktemp("shuffled")
    order = np.random.default_rng(0).permutation(1000)
    for split in ("valid", "test"):
        table = pq.read_table(tiny_sample / "MicroLens_1M_x1" / f"{split}.parquet")
        pq.write_table(table.take(order), shuffled / f"{split}.parquet")
    data["MicroLens_shuffled"] = dict(data["MicroLens_sample"],
                                      valid_data=str(shuffled / "valid.parquet"),
                                      test_data=str(shuffled / "test.parquet"))
    (config_dir / "dataset_config.yaml").write_text(yaml.safe_dump(data))
    config["DIN_shuffled"] = dict(config["DIN_sample"], dataset_id="MicroLens_shuffled")
    path.write_text(yaml.safe_dump(config))
    work = root / "work"
    work.mkdir()
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    for expid in ("DIN_sample", "DIN_blend_b"):
        experiment.train(config_dir, expid)
    root_logger = logging.getLogger()
    for handler in list(root_logger.handlers):  # FuxiCTR's set_logger leaves its handlers
        if isinstance(handler, logging.FileHandler):
            root_logger.removeHandler(handler)
            handler.close()
    yield config_dir, work
    mp.undo()


def test_blend_of_two_experiments(trained, tiny_sample, caplog):
    config_dir, work = trained
    test_file = tiny_sample / "MicroLens_1M_x1" / "test.parquet"
    result = run_blend(config_dir, ["DIN_sample", "DIN_blend_b"], out=work / "blend.zip")
    assert result.blend_auc >= min(result.valid_auc.values()) - 1e-9
    assert min(result.valid_auc.values()) > 0.55
    np.testing.assert_allclose(result.weights, [0.5, 0.5])
    report = check_submission_zip(result.zip_path, test_file)
    assert report.n_rows == result.n_test == 1000 and report.columns == ("ID", "Task2")

    # the per-split predictions are cached beside the checkpoint, keyed by the checkpoint
    folder = work / "checkpoints" / "MicroLens_sample"
    record = json.loads((folder / "DIN_sample.predictions.json").read_text())
    assert set(record["splits"]) == {"valid", "test"}
    assert (folder / "DIN_sample.valid.npy").exists()

    rank = run_blend(config_dir, ["DIN_sample", "DIN_blend_b"], method="rank", out=None)
    assert rank.test_pred.min() >= 0.0 and rank.test_pred.max() <= 1.0
    assert np.isnan(rank.blend_logloss)
    assert rank.valid_auc == result.valid_auc  # read back from the cache

    with caplog.at_level(logging.WARNING):
        fitted = run_blend(config_dir, ["DIN_sample", "DIN_blend_b"], fit_weights=True,
                           out=work / "fitted.zip")
    assert (fitted.weights >= 0).all() and fitted.weights.sum() == pytest.approx(1.0)
    assert fitted.blend_auc >= max(fitted.valid_auc.values()) - 1e-9  # a corner is on the grid
    assert "optimistic" in caplog.text
    check_submission_zip(work / "fitted.zip", test_file)


def test_newer_checkpoint_invalidates_the_cache(trained):
    config_dir, work = trained
    first = blend.experiment_predictions(config_dir, "DIN_sample")
    _, _, model = experiment.load_trained_model(config_dir, "DIN_sample")
    ckpt = Path(model.checkpoint)
    assert ckpt == work / "checkpoints" / "MicroLens_sample" / "DIN_sample.model"
    paths = blend.prediction_cache_paths(ckpt)
    np.save(paths["valid"], np.zeros_like(first["valid"]))  # a stale cache...
    stale = blend.experiment_predictions(config_dir, "DIN_sample")
    np.testing.assert_array_equal(stale["valid"], 0)  # ...is trusted while the key matches
    ckpt.touch()  # the same weights (same bytes, new mtime): the cache still holds
    np.testing.assert_array_equal(blend.experiment_predictions(config_dir, "DIN_sample")["valid"],
                                  0)
    # A retrained checkpoint (other weights, recorded as training records them)
    import torch

    from fuxictr_mmctr.train import artifacts

    saved = ckpt.read_bytes()
    record = artifacts.checkpoint_record(ckpt)
    state = torch.load(ckpt)
    state = {k: v * 0.5 if v.is_floating_point() else v for k, v in state.items()}
    try:
        tmp = ckpt.with_name("retrained.tmp")
        torch.save(state, tmp)
        artifacts.record_checkpoint(ckpt, tmp, record.feature_dir, {"inputs": record.inputs})
        tmp.replace(ckpt)
        fresh = blend.experiment_predictions(config_dir, "DIN_sample")
        assert not np.array_equal(fresh["valid"], 0)
        assert not np.allclose(fresh["valid"], first["valid"])
    finally:
        ckpt.write_bytes(saved)
    np.testing.assert_allclose(blend.experiment_predictions(config_dir, "DIN_sample")["valid"],
                               first["valid"])


def test_the_cache_is_keyed_on_what_the_checkpoint_records(trained):
    """One definition of "the same model" for prediction and the cache: the key holds the
    checkpoint's recorded inputs. A training-only setting (the batch size) changes neither the
    predictions nor the key; a setting that changes the model is refused before the cache is
    read (tests/e2e/test_trained_inputs.py)."""
    from fuxictr_mmctr.train import artifacts

    config_dir, work = trained
    first = blend.experiment_predictions(config_dir, "DIN_sample")
    _, _, model = experiment.load_trained_model(config_dir, "DIN_sample")
    paths = blend.prediction_cache_paths(model.checkpoint)
    record = json.loads(paths["json"].read_text())
    assert record["key"]["inputs"] == artifacts.checkpoint_record(model.checkpoint).inputs
    path = config_dir / "model_config" / "DIN.yaml"
    original = path.read_text()
    try:
        config = yaml.safe_load(original)
        config["DIN_sample"]["batch_size"] = 128
        path.write_text(yaml.safe_dump(config))
        changed = blend.experiment_predictions(config_dir, "DIN_sample")
        assert json.loads(paths["json"].read_text()) == record  # served from the cache
        config["DIN_sample"]["max_len"] = 3
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError, match="max_len: 16 at training, now 3"):
            blend.experiment_predictions(config_dir, "DIN_sample")
    finally:
        path.write_text(original)
    np.testing.assert_array_equal(changed["valid"], first["valid"])


def test_different_rows_are_refused(trained):
    config_dir, _ = trained
    with pytest.raises(BlendError, match="do not share the same valid rows: DIN_sample: 1000 "
                                         "rows .*, DIN_short: 100 rows"):
        run_blend(config_dir, ["DIN_sample", "DIN_short"], out=None)


def test_rows_in_another_order_are_refused(trained):
    """Same row counts, other order: averaging would mix rows (every ID misaligned)."""
    config_dir, _ = trained
    with pytest.raises(BlendError, match="the valid rows of 'DIN_shuffled' .* are not those of "
                                         "'DIN_sample' .* in the same order: column 'item_id' "
                                         "differs first at row 0"):
        run_blend(config_dir, ["DIN_sample", "DIN_shuffled"], out=None)


def test_untrained_or_unknown_expid_is_named(trained):
    config_dir, _ = trained
    with pytest.raises(ConfigError, match="'DCNv2_sample' has no trained model"):
        run_blend(config_dir, ["DIN_sample", "DCNv2_sample"], out=None)
    with pytest.raises(ConfigError, match="'nope' not found"):
        run_blend(config_dir, ["DIN_sample", "nope"], out=None)
    with pytest.raises(BlendError, match="at least two"):
        run_blend(config_dir, ["DIN_sample"], out=None)


def test_cli(trained, tiny_sample, capsys):
    config_dir, work = trained
    code = cli.main(["blend", "--config", str(config_dir), "--expids", "DIN_sample",
                     "DIN_blend_b", "--method", "rank", "--weights", "2", "1",
                     "--out", str(work / "cli.zip")])
    out = capsys.readouterr().out
    assert code == 0 and "blend" in out and "0.667" in out
    check_submission_zip(work / "cli.zip", tiny_sample / "MicroLens_1M_x1" / "test.parquet")
    code = cli.main(["blend", "--config", str(config_dir), "--expids", "DIN_sample",
                     "DIN_short", "--out", str(work / "bad.zip")])
    assert code == 2 and not (work / "bad.zip").exists()
