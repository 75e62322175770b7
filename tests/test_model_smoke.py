"""One smoke test per registered model: build from its sample config, train one epoch on the
tiny sample, predict the test split, and beat chance on its hidden labels."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, point_config_at
from sklearn.metrics import roc_auc_score

from fuxictr_mmctr import compat
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.models import MODELS

# Smaller batches than the sample configs (1024): the tiny train split is 6,000 rows, and one
# epoch of 6 steps is too few to leave chance; the last 8 history items keep it fast. Everything
# else (architecture, learning rate, seed) comes from <Model>_sample.
OVERRIDES = dict(verbose=0, epochs=1, batch_size=256, max_len=8)


@pytest.fixture(scope="module")
def config_dir(tiny_sample, tmp_path_factory):
    """config/ copied once for the module, its sample datasets pointed at the tiny sample."""
    dst = tmp_path_factory.mktemp("smoke") / "config"
    shutil.copytree(ROOT / "config", dst)
    return point_config_at(dst, tiny_sample)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_and_predicts_above_chance(name, config_dir, tiny_sample, tmp_path,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints land in tmp
    from fuxictr.pytorch.torch_utils import seed_everything

    params = experiment.load_params(config_dir, f"{name}_sample")
    params.update(OVERRIDES, model_root=str(tmp_path / "checkpoints"))
    seed_everything(seed=params["seed"])
    feature_map = experiment.build_feature_map(params)
    model = experiment.build_model(feature_map, params)
    loaders = experiment._loader_params(params)
    train_gen, valid_gen = compat.rank_data_loaders(feature_map, "train", **loaders)
    model.fit(train_gen, validation_data=valid_gen, **params)
    test_gen = compat.rank_data_loaders(feature_map, "test", **loaders)
    y_pred = np.asarray(model.predict(test_gen)).ravel()
    y_true = pd.read_parquet(tiny_sample / "_truth" / "test_labels.parquet")["label"].to_numpy()
    assert y_pred.shape == y_true.shape and np.isfinite(y_pred).all()
    auc = roc_auc_score(y_true, y_pred)
    assert auc > 0.55, f"{name}: test AUC {auc:.3f} after one epoch"


VARIANTS = [(name, suffix) for name in sorted(MODELS) if name != "DIN"
            for suffix in ("_sample_pretrained", "_sample_userid")]


@pytest.mark.parametrize("name,suffix", VARIANTS, ids=lambda v: v)
def test_variant_configs_build_and_forward(name, suffix, config_dir, tmp_path, monkeypatch):
    """The pretrained route (ids-only loader) and user_id as a learned categorical feature."""
    monkeypatch.chdir(tmp_path)
    from fuxictr_mmctr.data.loader import MMCTRDataLoader

    params = experiment.load_params(config_dir, name + suffix)
    params.update(OVERRIDES, model_root=str(tmp_path / "checkpoints"))
    feature_map = experiment.build_feature_map(params)
    model = experiment.build_model(feature_map, params).eval()
    loader = MMCTRDataLoader(feature_map, params["valid_data"], item_info=params["item_info"],
                             batch_size=32, max_len=params["max_len"],
                             item_side=params.get("item_side", "features"))
    if suffix == "_sample_userid":
        assert feature_map.features["user_id"]["type"] == "categorical"
        assert model.row_feature_dim == 3 * params["embedding_dim"]
    y_pred = model(next(iter(loader)))["y_pred"]
    assert y_pred.shape == (32, 1) and torch.isfinite(y_pred).all()
