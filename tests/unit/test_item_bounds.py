"""item_info must fit what the dataset config declares: the embedding width on the column route,
finite and bounded values, ids inside a declared vocabulary; an inferred vocabulary that a stray
id blew up is reported (issue 11)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import ITEM_TYPES, make_item_info_columns, set_sample_feature, write_table

from fuxictr_mmctr.data import loader
from fuxictr_mmctr.errors import DataValidationError
from fuxictr_mmctr.train import experiment


@pytest.fixture(autouse=True)
def _fresh_item_cache():
    loader._ITEM_CACHE.clear()
    yield
    loader._ITEM_CACHE.clear()


def _item_info(handmade, **change):
    columns = make_item_info_columns(12, **{k: v for k, v in change.items() if k == "emb_dim"})
    if "emb_value" in change:
        emb = np.asarray(columns["item_emb_d128"], np.float32)
        emb[3, 5] = change["emb_value"]
        columns["item_emb_d128"] = [list(e) for e in emb]
    if "tag" in change:
        tags = np.asarray(columns["item_tags"])
        tags[4, -1] = change["tag"]
        columns["item_tags"] = [list(t) for t in tags]
    write_table(handmade / "item_info.parquet", columns, ITEM_TYPES)


def _features(handmade_config, expid="DIN_sample", tags_vocab=None):
    if tags_vocab is not None:
        set_sample_feature(handmade_config, "item_tags", vocab_size=tags_vocab)
    params = experiment.load_params(handmade_config, expid)
    feature_map = experiment.build_feature_map(params)
    return loader.item_table(params["item_info"], feature_map)


def test_a_64_d_embedding_on_the_column_route_is_refused(handmade_config, handmade):
    _item_info(handmade, emb_dim=64)
    with pytest.raises(DataValidationError, match="item_emb_d128") as info:
        _features(handmade_config)
    assert "item_info.parquet" in str(info.value) and "128" in str(info.value)


@pytest.mark.parametrize("value", [1e30, -3e7])
def test_huge_embedding_values_are_refused(handmade_config, handmade, value):
    _item_info(handmade, emb_value=value)
    with pytest.raises(DataValidationError, match="row 3.*beyond"):
        _features(handmade_config)


def test_a_tag_past_the_declared_vocabulary_is_refused(handmade_config, handmade):
    _item_info(handmade, tag=20)
    with pytest.raises(DataValidationError, match="item_tags.*row 4.*vocabulary of size 15"):
        _features(handmade_config, tags_vocab=15)


def test_a_stray_huge_id_in_an_inferred_vocabulary_is_reported(handmade_config, handmade,
                                                               caplog):
    _item_info(handmade, tag=1_000_000)
    with caplog.at_level(logging.WARNING):
        table = _features(handmade_config)
    assert table.columns["item_tags"].max() == 1_000_000
    assert "vocab_size of item_tags inferred as 1000001" in caplog.text
    assert "Declare vocab_size" in caplog.text
