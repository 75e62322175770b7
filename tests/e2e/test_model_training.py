"""One smoke test per registered model: build from its sample config, train one epoch on the
tiny sample, predict the test split, and beat chance on its hidden labels."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.models import MODELS

# Smaller batches than the sample configs (1024): the tiny train split is 6,000 rows, and one
# epoch of 6 steps is too few to leave chance; the last 8 history items keep it fast. Everything
# else (architecture, learning rate, seed) comes from <Model>_sample.
OVERRIDES = dict(verbose=0, epochs=1, batch_size=256, max_len=8)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_and_predicts_above_chance(name, smoke_config, tiny_sample, tmp_path,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints land in tmp
    from fuxictr.pytorch.torch_utils import seed_everything

    params = experiment.load_params(smoke_config, f"{name}_sample")
    params.update(OVERRIDES, model_root=str(tmp_path / "checkpoints"))
    seed_everything(seed=params["seed"])
    feature_map = experiment.build_feature_map(params)
    model = experiment.build_model(feature_map, params)
    train_gen, valid_gen = experiment.make_loaders(params, feature_map, "train")
    model.fit(train_gen, validation_data=valid_gen, **params)
    test_gen = experiment.make_loaders(params, feature_map, "test")
    y_pred = np.asarray(model.predict(test_gen)).ravel()
    y_true = pd.read_parquet(tiny_sample / "_truth" / "test_labels.parquet")["label"].to_numpy()
    assert y_pred.shape == y_true.shape and np.isfinite(y_pred).all()
    auc = roc_auc_score(y_true, y_pred)
    assert auc > 0.55, f"{name}: test AUC {auc:.3f} after one epoch"
