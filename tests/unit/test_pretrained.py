"""The frozen multimodal item embedding as a FuxiCTR pretrained embedding (pretrained route)."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import ITEM_TYPES, build_model, make_item_info_columns, pretrained_layer, write_table

from fuxictr.pytorch.layers import PretrainedEmbedding

from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.data.loader import MMCTRDataLoader
from fuxictr_mmctr.errors import ConfigError, DataValidationError
from fuxictr_mmctr.data.features import read_embedding_table


# ------------------------------------------------------------------ registration

def test_feature_map_registers_the_pretrained_embedding(handmade_config, handmade):
    params, feature_map, model = build_model(handmade_config, "DIN_sample_pretrained")
    spec = feature_map.features["item_id"]
    assert spec["pretrained_emb"] == "pretrained_item_id.h5"
    assert spec["pretrain_dim"] == 128 and spec["freeze_emb"] is True
    assert spec["pretrain_usage"] == "concat"
    assert spec["vocab_size"] == 14  # ids 0..12 map to themselves, OOV past the last item
    assert "item_emb_d128" not in feature_map.features
    with h5py.File(os.path.join(feature_map.data_dir, spec["pretrained_emb"])) as hf:
        keys, values = hf["key"][:], hf["value"][:]
    expected = np.array(pd.read_parquet(handmade / "item_info.parquet")["item_emb_d128"].to_list())
    np.testing.assert_array_equal(keys, np.arange(13))
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    layer = pretrained_layer(model)
    assert isinstance(layer, PretrainedEmbedding)
    # FuxiCTR's table row k holds item k: every item, the last one included
    np.testing.assert_allclose(layer.pretrain_embedding.weight[:13].detach().numpy(), expected,
                               rtol=1e-6)


def test_another_column_of_another_file(handmade_config, handmade, tmp_path):
    cols = make_item_info_columns(12, emb_dim=128, seed=9)
    write_table(tmp_path / "item_emb.parquet",
                {"item_id": cols["item_id"][1:], "item_emb_d128_v3": cols["item_emb_d128"][1:]},
                {"item_emb_d128_v3": ITEM_TYPES["item_emb_d128"]})
    spec = {"name": "item_id", "pretrained_emb": str(tmp_path / "item_emb.parquet"),
            "pretrained_emb_column": "item_emb_d128_v3"}
    params = experiment.load_params(handmade_config, "DIN_sample_pretrained")
    for col in params["feature_cols"]:
        if col["name"] == "item_id":
            col.update(spec)
    feature_map = experiment.build_feature_map(params)
    model = experiment.build_model(feature_map, dict(params, verbose=0))
    weight = pretrained_layer(model).pretrain_embedding.weight.detach().numpy()
    np.testing.assert_allclose(weight[1:13], np.array(cols["item_emb_d128"][1:]), rtol=1e-6)
    np.testing.assert_array_equal(weight[0], 0)  # padding row added


def test_normalize_vectors_rescales_the_pretrained_table(handmade_config, handmade):
    """``normalize_vectors: mean_norm`` on the pretrained ``item_id`` rescales the table as
    it is written (the items' mean L2 norm becomes 1); an h5 source is refused by name."""
    params = experiment.load_params(handmade_config, "DIN_sample_pretrained")
    spec = next(col for col in params["feature_cols"] if col["name"] == "item_id")
    spec["normalize_vectors"] = "mean_norm"
    feature_map = experiment.build_feature_map(params)
    with h5py.File(os.path.join(feature_map.data_dir,
                                feature_map.features["item_id"]["pretrained_emb"])) as hf:
        values = hf["value"][:]
    raw = np.array(pd.read_parquet(handmade / "item_info.parquet")["item_emb_d128"].to_list())
    factor = np.linalg.norm(raw[1:], axis=1).mean()
    np.testing.assert_allclose(values, raw / factor, rtol=1e-5, atol=1e-7)
    h5 = feature_map.data_dir + "/" + feature_map.features["item_id"]["pretrained_emb"]
    params = experiment.load_params(handmade_config, "DIN_sample_pretrained")
    spec = next(col for col in params["feature_cols"] if col["name"] == "item_id")
    spec.update(pretrained_emb=h5, normalize_vectors="l2")
    with pytest.raises(ConfigError, match="item_id: normalize_vectors='l2'.*h5 file"):
        experiment.build_feature_map(params)


# ------------------------------------------------------------------ frozen means frozen


def test_regulariser_skips_the_frozen_table(handmade_config):
    params, feature_map, model = build_model(handmade_config, "DIN_sample_pretrained",
                                       embedding_regularizer=1.0, net_regularizer=0)
    reg = model.regularization_loss()
    with torch.no_grad():
        pretrained_layer(model).pretrain_embedding.weight.mul_(100.0)
    assert torch.isclose(model.regularization_loss(), reg)


@pytest.mark.parametrize("expid,usage", [("DIN_sample_pretrained_sum", "sum"),
                                         ("DIN_sample_pretrained_init", "init")])
def test_usage_options_build_and_run(handmade_config, expid, usage):
    params, feature_map, model = build_model(handmade_config, expid)
    assert pretrained_layer(model).pretrain_usage == usage
    loader = MMCTRDataLoader(feature_map, params["train_data"], item_info=params["item_info"],
                             batch_size=8, item_side="ids")
    assert model(next(iter(loader)))["y_pred"].shape == (8, 1)


# ------------------------------------------------------------------ the two item-side modes

@pytest.mark.parametrize("expid", ["DIN_sample", "DIN_sample_pretrained"])
def test_ids_and_features_delivery_give_the_same_output(handmade_config, expid):
    """Device-side gathering (ids) equals loader-side gathering for the same weights."""
    params, feature_map, ids_model = build_model(handmade_config, expid, item_side="ids")
    _, _, features_model = build_model(handmade_config, expid, item_side="features")
    features_model.load_state_dict(ids_model.state_dict())
    ids_model.eval(), features_model.eval()
    kwargs = dict(item_info=params["item_info"], batch_size=40, max_len=params["max_len"])
    by_ids = next(iter(MMCTRDataLoader(feature_map, params["train_data"], item_side="ids",
                                       **kwargs)))
    by_features = next(iter(MMCTRDataLoader(feature_map, params["train_data"], **kwargs)))
    assert len(by_ids[1]) == 1 and len(by_features[1]) == len(ids_model.item_features)
    with torch.no_grad():
        torch.testing.assert_close(ids_model(by_ids)["y_pred"],
                                   features_model(by_features)["y_pred"])


def test_checkpoint_excludes_device_tables(handmade_config):
    _, _, model = build_model(handmade_config, "DIN_sample", item_side="ids")
    assert model.item_tables == ["item_tags", "item_emb_d128"]
    assert not any(k.startswith("item_table_") for k in model.state_dict())


def test_model_and_loaders_share_one_read_of_item_info(handmade_config, monkeypatch):
    from fuxictr_mmctr.data import loader as loader_module

    reads = []
    real = loader_module.read_item_info
    monkeypatch.setattr(loader_module, "read_item_info",
                        lambda path, **kw: reads.append(kw["columns"]) or real(path, **kw))
    monkeypatch.setattr(loader_module, "_ITEM_CACHE", {})
    params, feature_map, model = build_model(handmade_config, "DIN_sample", item_side="ids")
    for item_side in ("ids", "features"):
        train_gen, valid_gen = experiment.make_loaders(dict(params, item_side=item_side),
                                                       feature_map, "train")
        assert train_gen.items is valid_gen.items
    assert reads == [["item_tags", "item_emb_d128"]]  # the model's read serves every loader
    assert torch.equal(model.item_table_item_tags,
                       torch.from_numpy(train_gen.items.columns["item_tags"]))


# ------------------------------------------------------------------ bad input

def _bad_item_emb(tmp_path, **columns):
    cols = make_item_info_columns(12, emb_dim=128)
    cols.update(columns)
    return write_table(tmp_path / "emb.parquet", cols, ITEM_TYPES)


def test_dimension_mismatch(tmp_path):
    path = _bad_item_emb(tmp_path)
    with pytest.raises(DataValidationError, match="dimension 128, config says pretrain_dim=64"):
        read_embedding_table(path, "item_emb_d128", dim=64)


def test_missing_column(tmp_path):
    path = _bad_item_emb(tmp_path)
    with pytest.raises(DataValidationError, match="missing column 'item_emb_d128_v2'"):
        read_embedding_table(path, "item_emb_d128_v2")


def test_duplicate_item_ids(tmp_path):
    ids = np.arange(13)
    ids[7] = 6
    path = _bad_item_emb(tmp_path, item_id=ids)
    with pytest.raises(DataValidationError, match="duplicate item id 6") as info:
        read_embedding_table(path, "item_emb_d128")
    assert info.value.row == 7 and info.value.column == "item_id"


def test_items_absent_from_the_table(tmp_path):
    cols = make_item_info_columns(12, emb_dim=128)
    path = write_table(tmp_path / "emb.parquet",
                       {k: v[:10] for k, v in cols.items()}, ITEM_TYPES)
    with pytest.raises(DataValidationError, match="3 item id\\(s\\) have no embedding, first 10"):
        read_embedding_table(path, "item_emb_d128", n_items=12)


def test_nan_row(tmp_path):
    emb = make_item_info_columns(12, emb_dim=128)["item_emb_d128"]
    emb[4] = [np.nan] * 128
    with pytest.raises(DataValidationError, match="NaN or inf") as info:
        read_embedding_table(_bad_item_emb(tmp_path, item_emb_d128=emb), "item_emb_d128")
    assert info.value.row == 4


def test_nonzero_padding_row(tmp_path):
    emb = make_item_info_columns(12, emb_dim=128)["item_emb_d128"]
    emb[0] = [1.0] * 128
    with pytest.raises(DataValidationError, match="padding row"):
        read_embedding_table(_bad_item_emb(tmp_path, item_emb_d128=emb), "item_emb_d128")


def test_bad_table_fails_before_training_and_leaves_no_partial_file(handmade_config, handmade):
    emb = make_item_info_columns(12, emb_dim=128)["item_emb_d128"]
    emb[5] = [np.inf] * 128
    write_table(handmade / "item_info.parquet",
                dict(make_item_info_columns(12, emb_dim=128), item_emb_d128=emb), ITEM_TYPES)
    params = experiment.load_params(handmade_config, "DIN_sample_pretrained")
    with pytest.raises(DataValidationError, match="item_info.parquet, column 'item_emb_d128', "
                                                  "row 5: NaN or inf"):
        experiment.build_feature_map(params)
    data_dir = handmade.parent / "MicroLens_sample_pretrained"
    leftovers = [p.name for p in data_dir.iterdir()] if data_dir.exists() else []
    assert not [n for n in leftovers if n.endswith(".h5") or n.startswith(".")]


def test_vocab_of_a_categorical_user_id_covers_every_split(handmade_config, handmade):
    from conftest import make_split_columns

    cols = make_split_columns(20, 12, 6, seed=4, label=False)
    cols["user_id"][7] = 95  # a user first seen in test
    write_table(handmade / "test.parquet", cols)
    params = experiment.load_params(handmade_config, "DIN_sample")
    for col in params["feature_cols"]:
        if col["name"] == "user_id":
            col["type"] = "categorical"
    feature_map = experiment.build_feature_map(params)
    assert feature_map.features["user_id"]["vocab_size"] == 96
