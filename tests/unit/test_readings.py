"""Say a word where a user would want one (issue 19, class 7): a constant item embedding
column, and which reading of an ambiguous config was taken (a key set twice, a dataset
overriding its expid, an expid defined in two files, feature_specs over a dataset feature,
item_side: ids with item columns); a results CSV that is not one is never appended to."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import ITEM_TYPES, make_item_info_columns, write_table

from fuxictr_mmctr import cli
from fuxictr_mmctr.data.features import read_embedding_table
from fuxictr_mmctr.data.schema import read_item_info
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.train import experiment, readings, results

EXPID = "DIN_sample"


# ------------------------------------------------------------------ constant item embeddings
@pytest.mark.parametrize("fill, what", [(0.0, "all zeros"), (0.25, "the same vector")])
def test_a_constant_embedding_column_is_named(tmp_path, caplog, fill, what):
    columns = make_item_info_columns(12)
    emb = np.full((13, 128), fill, np.float32)
    emb[0] = 0
    columns["item_emb_d128"] = [list(e) for e in emb]
    path = write_table(tmp_path / "item_info.parquet", columns, ITEM_TYPES)
    with caplog.at_level(logging.WARNING):
        read_item_info(path)
        read_embedding_table(path, "item_emb_d128", dim=128)
    warnings = [r.getMessage() for r in caplog.records if "item_emb_d128" in r.getMessage()]
    assert len(warnings) == 2 and all(what in w and "12 items x 128" in w for w in warnings)
    assert all(str(path) in w for w in warnings)


def test_a_tag_column_without_tags_is_named(tmp_path, caplog):
    columns = make_item_info_columns(12)
    columns["item_tags"] = [[0] * 5 for _ in range(13)]  # every item: padding only
    path = write_table(tmp_path / "item_info.parquet", columns, ITEM_TYPES)
    with caplog.at_level(logging.WARNING):
        read_item_info(path, columns=["item_tags"])
    assert "column 'item_tags': all zeros (12 items x 5)" in caplog.text


def test_a_varying_embedding_column_is_not_named(handmade, caplog):
    with caplog.at_level(logging.WARNING):
        read_item_info(handmade / "item_info.parquet")
    assert "carries no information" not in caplog.text


def test_training_on_a_constant_column_says_so(handmade_config, handmade, caplog):
    """Where a run reads it (the loader's item table), before any epoch."""
    path = handmade / "item_info.parquet"
    table = pq.read_table(path)
    column = table.schema.get_field_index("item_emb_d128")
    zeros = pa.array([[0.0] * 128] * table.num_rows, table.schema.field(column).type)
    pq.write_table(table.set_column(column, "item_emb_d128", zeros), path)
    params = experiment.load_params(handmade_config, EXPID)
    feature_map = experiment.build_feature_map(params)
    experiment.make_loaders(params, feature_map, "train")
    assert "column 'item_emb_d128': all zeros (12 items x 128)" in caplog.text


# ------------------------------------------------------------------ ambiguous configs
def _edit(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def _readings(config_dir):
    params = experiment.load_params(config_dir, EXPID, check_keys=False)
    return readings.config_readings(config_dir, EXPID, params)


def test_a_key_of_the_expid_overridden_by_its_dataset(handmade_config, capfd):
    """FuxiCTR's load_config takes the dataset's value: the expid's max_len 32 was lost."""
    _edit(handmade_config / "dataset_config.yaml",
          lambda d: d["MicroLens_sample"].update(max_len=100))
    conflicts, _ = _readings(handmade_config)
    assert conflicts == ["max_len is set by the expid (32) and by dataset 'MicroLens_sample' "
                         "(100); FuxiCTR's load_config takes the dataset's: 100"]
    capfd.readouterr()
    experiment.load_params(handmade_config, EXPID)  # said once, on stderr too
    experiment.load_params(handmade_config, EXPID)
    err = capfd.readouterr().err
    assert err.count("FuxiCTR's load_config takes the dataset's: 100") == 1


def test_a_key_given_twice_in_one_mapping(handmade_config):
    path = handmade_config / "model_config" / "DIN.yaml"
    text = path.read_text().replace("DIN_sample: &DIN_sample\n",
                                    "DIN_sample: &DIN_sample\n    max_len: 8\n", 1)
    path.write_text(text)
    conflicts, _ = _readings(handmade_config)
    assert len(conflicts) == 1
    assert conflicts[0].startswith(f"{path}: in 'DIN_sample', key 'max_len' is given twice")
    assert conflicts[0].endswith("YAML keeps the last one, 32")


def test_an_expid_defined_in_two_files(handmade_config):
    folder = handmade_config / "model_config"
    din = yaml.safe_load((folder / "DIN.yaml").read_text())
    (folder / "zz_mine.yaml").write_text(yaml.safe_dump(
        {EXPID: dict(din[EXPID], learning_rate=0.5)}))
    conflicts, _ = _readings(handmade_config)
    assert len(conflicts) == 1
    assert "'DIN_sample' is defined in several model config files" in conflicts[0]
    assert "DIN.yaml" in conflicts[0] and "zz_mine.yaml" in conflicts[0]


def test_feature_specs_overriding_a_dataset_feature_are_said(handmade_config):
    _edit(handmade_config / "model_config" / "DIN.yaml",
          lambda d: d[EXPID].update(feature_specs=[{"name": "item_emb_d128",
                                                    "pretrain_dim": 128, "embedding_dim": 16}]))
    _, said = _readings(handmade_config)
    assert said == ["feature_specs override the dataset's features: item_emb_d128.embedding_dim "
                    "= 16 (unset in the dataset)"]


@pytest.mark.parametrize("specs, message", [
    ([{"name": "item_emb", "pretrain_dim": 64}], "feature_specs names 'item_emb', not an active"),
    ({"name": "item_id"}, "must be a list"),  # the config contract says it first
])
def test_feature_specs_naming_no_feature_are_refused(handmade_config, capfd, specs, message):
    """FuxiCTR's FeatureMap.load failed with KeyError: 'item_emb'."""
    _edit(handmade_config / "model_config" / "DIN.yaml",
          lambda d: d[EXPID].update(feature_specs=specs))
    code = cli.main(["train", "--config", str(handmade_config), "--expid", EXPID])
    out, err = capfd.readouterr()
    assert code == 2 and message in err and "Traceback" not in out + err
    with pytest.raises(ConfigError, match="option feature_specs"):
        experiment.load_params(handmade_config, EXPID)


def test_item_side_ids_with_item_columns_is_said(handmade_config):
    _edit(handmade_config / "model_config" / "DIN.yaml",
          lambda d: d[EXPID].update(item_side="ids"))
    _, said = _readings(handmade_config)
    assert said == ["item_side: ids: the loader ships item ids only, and the model gathers "
                    "item_tags, item_emb_d128 from item_info on its device (the same values as "
                    "item_side: features)"]


def test_the_shipped_configs_read_as_written(smoke_config):
    """No false alarm on the configs that ship: no conflict in any expid."""
    for expid in ("DIN_sample", "DIN_sample_pretrained_sum", "DCNv2_sample", "DIN_demo"):
        params = experiment.load_params(smoke_config, expid, check_keys=False)
        assert readings.config_readings(smoke_config, expid, params)[0] == []


def test_a_results_csv_with_a_foreign_header_is_never_appended_to(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    foreign = "epoch,auc\n1,0.8\n"
    (tmp_path / "mmctr_config.csv").write_text(foreign)
    with pytest.raises(ConfigError, match="line 1 is not a FuxiCTR results row"):
        results.append_result("cfg/mmctr_config", "DIN_x", "MicroLens_sample", {"AUC": 0.8})
    assert (tmp_path / "mmctr_config.csv").read_text() == foreign
