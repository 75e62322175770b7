"""`mmctr drop-in` against a folder laid out like the official challenge repository
(`official_repo.py`); the run of the official scripts on it is in e2e/."""
from __future__ import annotations

import pytest
from official_repo import OFFICIAL_SRC, make_official_repo, tree

from fuxictr_mmctr import cli
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.integrations import dropin

def test_refuses_what_is_not_the_official_repo(tmp_path, caplog):
    with pytest.raises(ConfigError, match="does not look like the official challenge "
                                          "repository .*no run_expid.py and no src/"):
        dropin.drop_in(tmp_path)
    assert cli.main(["drop-in", str(tmp_path)]) == 2
    assert "does not look like" in caplog.text


def test_undo_without_drop_in_is_refused(tmp_path):
    repo = make_official_repo(tmp_path)
    with pytest.raises(ConfigError, match="nothing to undo"):
        dropin.undo(repo)


def test_missing_data_leaves_datasets_out_and_keeps_explicit_ones(tmp_path):
    repo = make_official_repo(tmp_path)  # no data/ at all
    result = dropin.drop_in(repo)
    assert "MicroLens_1M_x1" in result.datasets  # the real-data config is explicit already
    assert "MicroLens_sample" in result.skipped
    assert "not found under" in result.skipped["MicroLens_sample"]
    assert "MicroLens_1M_x1_pretrained" in result.skipped  # needs item_info to convert
    text = (repo / "config" / "mmctr_config" / "dataset_config.yaml").read_text()
    assert "# Left out: MicroLens_sample" in text
    dropin.undo(repo)
    assert tree(repo / "src") == {k: v.encode() for k, v in OFFICIAL_SRC.items()}


def test_changed_src_after_drop_in_is_not_backed_up_over_the_original(tmp_path):
    repo = make_official_repo(tmp_path)
    dropin.drop_in(repo)
    (repo / "src" / "__init__.py").write_text("# the user's own\n")
    with pytest.raises(ConfigError, match="--undo"):
        dropin.drop_in(repo)
    assert (repo / dropin.BACKUP_DIR / "src" / "__init__.py").read_text() == \
        OFFICIAL_SRC["__init__.py"]


def test_existing_user_config_is_backed_up_and_restored(tmp_path):
    repo = make_official_repo(tmp_path)
    mine = repo / "config" / "mmctr_config"
    mine.mkdir()
    (mine / "dataset_config.yaml").write_text("mine: {}\n")
    dropin.drop_in(repo)
    assert (repo / dropin.BACKUP_DIR / "config" / "mmctr_config" / "dataset_config.yaml").exists()
    dropin.undo(repo)
    assert (mine / "dataset_config.yaml").read_text() == "mine: {}\n"


def test_drop_in_and_the_processor_read_the_same_vocabularies(tmp_path, monkeypatch):
    """user_id as a categorical feature: a user first seen in test has a row in both the
    drop-in config (FuxiCTR's own processor) and this package's processor."""
    import yaml
    from helpers import (ITEM_TYPES, ROOT, make_item_info_columns, make_split_columns,
                         write_table)

    from fuxictr_mmctr.train import experiment

    repo = make_official_repo(tmp_path)
    data = repo / "data" / "sample" / "MicroLens_1M_x1"
    data.mkdir(parents=True)
    write_table(data / "item_info.parquet", make_item_info_columns(12), ITEM_TYPES)
    write_table(data / "train.parquet", make_split_columns(40, 12, 6, seed=1))
    write_table(data / "valid.parquet", make_split_columns(20, 12, 6, seed=2))
    test = make_split_columns(20, 12, 6, seed=3, label=False)
    test["user_id"][7] = 95  # train and valid users are below 30
    write_table(data / "test.parquet", test)

    dropin.drop_in(repo)
    generated = yaml.safe_load((repo / "config" / "mmctr_config" / "dataset_config.yaml")
                               .read_text())["MicroLens_sample_userid"]
    from_drop_in = {c["name"]: c["vocab_size"] for c in generated["feature_cols"]
                    if "vocab_size" in c}

    monkeypatch.chdir(repo)
    params = experiment.load_params(ROOT / "config" / "mmctr_config", "DCNv2_sample_userid")
    feature_map = experiment.build_feature_map(params)
    from_processor = {name: spec["vocab_size"] for name, spec in feature_map.features.items()
                      if "vocab_size" in spec}

    assert from_drop_in == from_processor
    assert from_drop_in["user_id"] == 96
    assert from_drop_in["item_id"] == 13 and from_drop_in["item_tags"] == 15
