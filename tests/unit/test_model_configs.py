"""Each model's shipped variant expids build and score a batch of the tiny sample: the pretrained
route (``<Model>_sample_pretrained``, ids-only loader) and ``user_id`` as a learned categorical
feature (``<Model>_sample_userid``). No training: that is tests/e2e/test_model_training.py."""
from __future__ import annotations


import pytest
import torch

from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.models import MODELS

# The last 8 history items keep the forward pass fast; everything else comes from the expid.
OVERRIDES = dict(verbose=0, epochs=1, batch_size=256, max_len=8)


VARIANTS = [(name, suffix) for name in sorted(MODELS) if name != "DIN"
            for suffix in ("_sample_pretrained", "_sample_userid")]


@pytest.mark.parametrize("name,suffix", VARIANTS, ids=lambda v: v)
def test_variant_configs_build_and_forward(name, suffix, smoke_config, tmp_path, monkeypatch):
    """The pretrained route (ids-only loader) and user_id as a learned categorical feature."""
    monkeypatch.chdir(tmp_path)
    from fuxictr_mmctr.data.loader import MMCTRDataLoader

    params = experiment.load_params(smoke_config, name + suffix)
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
