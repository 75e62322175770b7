"""``normalize_vectors`` on a dense item vector (the given ``item_emb_d128`` is not normalised):
``mean_norm`` rescales the column by one factor, ``l2`` each vector, ``standard`` each
dimension; the loaders read it from the feature map, the raw table stays shared, and a bad
value names the feature."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import ITEM_TYPES, make_item_info_columns, set_sample_feature, write_table

from fuxictr_mmctr.data import loader
from fuxictr_mmctr.data.schema import normalise_vectors
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.train import experiment


@pytest.fixture(autouse=True)
def _fresh_item_cache():
    loader._ITEM_CACHE.clear()
    loader._SCALED_CACHE.clear()
    yield
    loader._ITEM_CACHE.clear()
    loader._SCALED_CACHE.clear()


def _vectors():
    rng = np.random.default_rng(0)
    values = (rng.normal(size=(6, 4)) * 30).astype(np.float32)
    values[0] = 0                                    # the padding row
    values[3] = 0                                    # an item without a vector
    return values


def test_mean_norm_is_one_factor_and_l2_one_length():
    values = _vectors()
    norms = np.linalg.norm(values, axis=1)
    scaled = normalise_vectors(values, "mean_norm")
    factor = norms[norms > 0].mean()                 # the zero rows do not count
    np.testing.assert_allclose(scaled, values / factor, rtol=1e-6)
    assert np.linalg.norm(scaled, axis=1)[norms > 0].mean() == pytest.approx(1, rel=1e-6)
    unit = normalise_vectors(values, "l2")
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), (norms > 0).astype(float),
                               rtol=1e-6)
    np.testing.assert_allclose(unit[1] * norms[1], values[1], rtol=1e-5)   # same direction
    standard = normalise_vectors(values, "standard")
    real = norms > 0
    np.testing.assert_allclose(standard[real].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(standard[real].std(axis=0), 1, rtol=1e-4)
    np.testing.assert_array_equal(standard[~real], 0)                 # padding stays 0
    assert scaled.dtype == unit.dtype == standard.dtype == np.float32
    assert normalise_vectors(values, "none") is values
    with pytest.raises(ValueError, match="normalize_vectors"):
        normalise_vectors(values, "max")


def _config(handmade_config, handmade, mode):
    write_table(handmade / "item_info.parquet", make_item_info_columns(12), ITEM_TYPES)
    set_sample_feature(handmade_config, "item_emb_d128", normalize_vectors=mode)
    params = experiment.load_params(handmade_config, "DIN_sample")
    return params, experiment.build_feature_map(params)


def test_the_loaders_read_the_mode_from_the_feature_map(handmade_config, handmade):
    params, feature_map = _config(handmade_config, handmade, "mean_norm")
    assert feature_map.features["item_emb_d128"]["normalize_vectors"] == "mean_norm"
    table = loader.item_table(params["item_info"], feature_map)
    raw = loader.item_table(params["item_info"])            # item_id only: the raw cache
    emb = table.columns["item_emb_d128"]
    assert np.linalg.norm(emb[1:], axis=1).mean() == pytest.approx(1, rel=1e-5)
    assert raw is not table and "item_emb_d128" in loader._ITEM_CACHE[
        next(iter(loader._ITEM_CACHE))].columns
    np.testing.assert_array_equal(table.columns["item_tags"], raw.columns["item_tags"])
    assert loader.item_table(params["item_info"], feature_map) is table     # made once


def test_a_bad_mode_names_the_feature(handmade_config, handmade):
    params, feature_map = _config(handmade_config, handmade, "max")
    with pytest.raises(ConfigError, match="item_emb_d128.*normalize_vectors='max'"):
        loader.item_table(params["item_info"], feature_map)
