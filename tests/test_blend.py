"""Blending trained experiments: the array functions, then two DINs trained on the tiny sample."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import yaml
from conftest import point_config_at

from fuxictr_mmctr import cli
from fuxictr_mmctr.submit import blend
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.submit.blend import (BlendError, blend_predictions, fit_blend_weights,
                                 normalised_rank, run_blend, simplex_grid)
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.submit.submission import check_submission_zip


# ------------------------------------------------------------------ arrays

def test_mean_blend_equal_and_given_weights():
    a, b = np.array([0.1, 0.5, 0.9]), np.array([0.3, 0.5, 0.7])
    np.testing.assert_allclose(blend_predictions([a, b]), [0.2, 0.5, 0.8])
    np.testing.assert_allclose(blend_predictions([a, b], weights=[3, 1]),
                               0.75 * a + 0.25 * b)
    np.testing.assert_allclose(blend_predictions([a, b], weights=[1, 0]), a)


def test_rank_blend_is_in_unit_interval_and_ignores_calibration():
    a = np.array([0.1, 0.4, 0.35, 0.8])
    b = np.array([10.0, 40.0, 35.0, 80.0])  # same order, another scale
    ranks = blend_predictions([a, b], method="rank")
    np.testing.assert_allclose(ranks, [0.0, 2 / 3, 1 / 3, 1.0])
    rng = np.random.default_rng(0)
    many = [rng.normal(size=50) for _ in range(3)]
    out = blend_predictions(many, method="rank", weights=[0.2, 0.3, 0.5])
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_normalised_rank_ties_and_single_row():
    np.testing.assert_allclose(normalised_rank(np.array([0.2, 0.2, 0.9])), [0.25, 0.25, 1.0])
    np.testing.assert_allclose(normalised_rank(np.array([0.3])), [0.5])


@pytest.mark.parametrize("preds,weights,match", [
    ([np.zeros(3), np.zeros(4)], None, "different row counts"),
    ([np.zeros(3), np.array([0.1, np.nan, 0.2])], None, "input 1: NaN or inf prediction at row 1"),
    ([np.zeros(3), np.zeros(3)], [1.0], "1 weight\\(s\\) for 2 input\\(s\\)"),
    ([np.zeros(3), np.zeros(3)], [1.0, -0.5], "non-negative"),
    ([np.zeros(3), np.zeros(3)], [0.0, 0.0], "at least one must be positive"),
    ([], None, "no predictions"),
])
def test_bad_inputs_are_refused(preds, weights, match):
    with pytest.raises(BlendError, match=match):
        blend_predictions(preds, weights=weights)


def test_simplex_grid():
    grid = simplex_grid(3, 4)
    assert grid.shape == (15, 3)  # C(6, 2)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all() and len({tuple(r) for r in grid}) == 15


def test_fitted_weights_find_the_informative_model():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=2000)
    good = y + rng.normal(scale=0.8, size=y.size)
    noise = rng.normal(size=y.size)
    for method in ("mean", "rank"):
        w = fit_blend_weights([noise, good], y, method=method)
        assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
        assert w[1] > 0.8
    # deterministic, and ties go to equal weights
    np.testing.assert_array_equal(fit_blend_weights([noise, good], y),
                                  fit_blend_weights([noise, good], y))
    np.testing.assert_allclose(fit_blend_weights([good, good], y), [0.5, 0.5])


def test_fitted_weights_with_many_inputs_stay_bounded():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=300)
    preds = [y + rng.normal(scale=s, size=y.size) for s in (1, 2, 3, 4, 5, 6, 7, 8)]
    w = fit_blend_weights(preds, y, max_points=500)
    assert w.shape == (8,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)


def test_logloss_objective_and_rank_do_not_mix():
    with pytest.raises(ValueError, match="not a probability"):
        fit_blend_weights([np.zeros(4), np.ones(4)], [0, 1, 0, 1], method="rank",
                          objective="logloss")


# ------------------------------------------------------------------ trained experiments

FAST = {"epochs": 1, "batch_size": 512, "verbose": 0, "max_len": 16}


@pytest.fixture(scope="module")
def trained(tiny_sample, tmp_path_factory):
    """DIN_sample and a variant (another seed and learning rate), one epoch each."""
    import shutil

    from conftest import ROOT

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
    params = experiment.load_params(config_dir, "DIN_sample")
    paths = blend.prediction_cache_paths(params)
    np.save(paths["valid"], np.zeros_like(first["valid"]))  # a stale cache...
    stale = blend.experiment_predictions(config_dir, "DIN_sample")
    np.testing.assert_array_equal(stale["valid"], 0)  # ...is trusted while the key matches
    ckpt = blend.checkpoint_path(params)
    ckpt.touch()  # a newer checkpoint (same bytes, new mtime)
    fresh = blend.experiment_predictions(config_dir, "DIN_sample")
    np.testing.assert_allclose(fresh["valid"], first["valid"])


def test_different_rows_are_refused(trained):
    config_dir, _ = trained
    with pytest.raises(BlendError, match="do not share the same valid rows: DIN_sample: 1000 "
                                         "rows .*, DIN_short: 100 rows"):
        run_blend(config_dir, ["DIN_sample", "DIN_short"], out=None)


def test_untrained_or_unknown_expid_is_named(trained):
    config_dir, _ = trained
    with pytest.raises(ConfigError, match="'DCNv2_sample': checkpoint .* not found"):
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
