"""``mmctr pipeline``'s configs: every registered model is a choice of ``--models`` and gets one
expid per item side from its shipped ``<Model>_sample`` / ``<Model>_default``, which loads with
known keys only."""
from __future__ import annotations

import argparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fuxictr_mmctr.cli import load_command
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.models import MODELS
from fuxictr_mmctr.pipeline.configs import (VECTOR_NORM, expid_for, item_feature_cols,
                                            write_pipeline_config)
from fuxictr_mmctr.pipeline.run import DEFAULT_SIDES, SIDES_WITHOUT_VECTORS, PipelineConfig
from fuxictr_mmctr.resources import packaged_config_dir
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.train.config_keys import unknown_keys


def test_every_model_is_a_choice_of_models():
    parser = argparse.ArgumentParser()
    load_command("pipeline").add_arguments(parser)
    args = parser.parse_args(["--data-dir", "d", "--work-dir", "w", "--models", *sorted(MODELS)])
    assert args.models == sorted(MODELS)


@pytest.mark.parametrize("settings", ["sample", "default"])
def test_every_model_gets_an_expid_per_side_from_its_shipped_settings(handmade, tmp_path,
                                                                      settings):
    out = tmp_path / "pipeline_config"
    sides = {"given": handmade / "item_info.parquet"}
    digests = write_pipeline_config(out, handmade.parent, sides, sorted(MODELS), settings,
                                    {"epochs": 1}, tmp_path / "checkpoints")
    assert set(digests) == {expid_for(model, "given") for model in MODELS}
    shipped = experiment.load_params(packaged_config_dir(), f"QIN_{settings}", needs=(),
                                     check_keys=False)
    for model in MODELS:
        params = experiment.load_params(out, expid_for(model, "given"), check_keys=False)
        assert params["model"] == model and params["epochs"] == 1
        assert unknown_keys(params) == {}, model
        if model == "QIN":  # its own keys survive the copy
            for key in ("num_layers", "num_row", "lr_decay_factor", "batch_norm"):
                assert params[key] == shipped[key], key


def test_item_features_follow_the_table_without_the_task1_alias(tmp_path):
    """A second vector and codes become item features (their width and kind read from the
    table); Task 1's ``item_emb`` (the same vector as ``item_emb_d128``) does not."""
    vec = pa.array([[0.0] * 4, [0.6, 0.8, 0.0, 0.0]], type=pa.list_(pa.float32()))
    table = tmp_path / "item_info_x.parquet"
    pq.write_table(pa.table({"item_id": [0, 1], "item_emb_d128": vec, "item_emb": vec,
                             "item_emb_task1": pa.array([[0.0] * 3, [1.0, 0, 0]],
                                                        type=pa.list_(pa.float32())),
                             "sid_1": pa.array([0, 3], type=pa.int32())}), table)
    template = [{"name": "item_emb_d128", "type": "embedding", "source": "item",
                 "pretrain_dim": 4}]
    cols = {c["name"]: c for c in item_feature_cols(table, template)}
    assert set(cols) == {"item_emb_d128", "item_emb_task1", "sid_1"}
    assert cols["item_emb_task1"]["pretrain_dim"] == 3
    assert cols["sid_1"]["type"] == "categorical" and cols["sid_1"]["source"] == "item"
    # every dense vector is read with the pipeline's normalize_vectors unless the template says
    assert cols["item_emb_d128"]["normalize_vectors"] == VECTOR_NORM
    assert cols["item_emb_task1"]["normalize_vectors"] == VECTOR_NORM
    assert "normalize_vectors" not in cols["sid_1"]
    kept = item_feature_cols(table, [dict(template[0], normalize_vectors="none")])
    assert kept[0]["normalize_vectors"] == "none"
    pq.write_table(pa.table({"item_id": [0, 1], "title": ["", "a"]}), table)
    with pytest.raises(ConfigError, match="title"):
        item_feature_cols(table, template)


def test_default_item_sides_follow_item_feature_vectors(tmp_path, caplog):
    """The content side where item_feature holds the precomputed vectors; otherwise the given
    embedding's codes in its place, said in the log; sides named by the user are kept."""
    (tmp_path / "MicroLens_1M_x1").mkdir()
    vec = pa.list_(pa.float32())
    pq.write_table(pa.table({"item_id": pa.array([1], pa.int64()),
                             "txt_emb_BERT": pa.array([[0.0]], vec),
                             "img_emb_CLIPRN50": pa.array([[0.0]], vec)}),
                   tmp_path / "item_feature.parquet")
    config = PipelineConfig(data_dir=tmp_path, work_dir=tmp_path / "w")
    assert config.resolved().item_sides == DEFAULT_SIDES == ("content_codes", "task1_codes",
                                                             "both_codes")
    pq.write_table(pa.table({"item_id": pa.array([1], pa.int64())}),
                   tmp_path / "item_feature.parquet")
    assert config.resolved().item_sides == SIDES_WITHOUT_VECTORS
    assert "no txt_emb_BERT and img_emb_CLIPRN50" in caplog.text
    named = PipelineConfig(data_dir=tmp_path, work_dir=tmp_path / "w", item_sides=("content",))
    assert named.resolved().item_sides == ("content",)


def test_the_configs_key_follows_the_shipped_settings_of_the_chosen_models(tmp_path,
                                                                          monkeypatch):
    """A package whose shipped ``DIN_sample`` changed (a new sweep's default) changes the
    pipeline's configs-stage key for a work dir that trains DIN, and for no other; before,
    an existing work dir kept the old configs and trainings."""
    import shutil

    from fuxictr_mmctr.pipeline import configs

    shipped = tmp_path / "mmctr_config"
    shutil.copytree(packaged_config_dir(), shipped)
    monkeypatch.setattr(configs, "packaged_config_dir", lambda: shipped)
    before = {m: configs.shipped_settings_digest([m], "sample") for m in ("DIN", "DCNv2")}
    assert before["DIN"] != before["DCNv2"]
    din = shipped / "model_config" / "DIN.yaml"
    din.write_text(din.read_text().replace("attention_heads: 4", "attention_heads: 2", 1))
    assert configs.shipped_settings_digest(["DIN"], "sample") != before["DIN"]
    assert configs.shipped_settings_digest(["DCNv2"], "sample") == before["DCNv2"]
    with pytest.raises(ConfigError, match="unknown model"):
        configs.shipped_settings_digest(["DIM"], "sample")
