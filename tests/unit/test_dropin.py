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


# ------------------------------------------------------------------ undo keeps what you wrote
def _official_config(repo):
    """A config/mmctr_config of the user's own, as the issue's example had."""
    mine = repo / "config" / "mmctr_config"
    (mine / "model_config").mkdir(parents=True)
    (mine / "dataset_config.yaml").write_text("official_dataset: {}\n")
    (mine / "model_config" / "Base.yaml").write_text("Base: {official: true}\n")
    (mine / "model_config" / "Official.yaml").write_text("Official_expid: {model: DIN}\n")
    return mine


def test_undo_keeps_an_edit_and_puts_every_official_file_back(tmp_path, capsys):
    """The example: an edited generated DIN.yaml was deleted, and a file of the user's left in
    the folder made undo restore the official files under `mmctr_config.before-drop-in/`."""
    repo = make_official_repo(tmp_path)
    config = _official_config(repo)
    official = tree(config)
    dropin.drop_in(repo)
    din = config / "model_config" / "DIN.yaml"
    din.write_text(din.read_text() + "\nDIN_mine: {model: DIN}\n")
    edited = din.read_text()
    (config / "model_config" / "zz_mine.yaml").write_text("zz: {}\n")

    assert cli.main(["drop-in", str(repo), "--undo"]) == 0
    out = capsys.readouterr().out
    assert not (repo / "config" / "mmctr_config.before-drop-in").exists()
    assert {k: v for k, v in tree(config).items() if k in official} == official
    assert set(tree(config)) == set(official) | {"model_config/zz_mine.yaml"}  # yours stays
    kept = repo / dropin.EDITS_DIR / "config" / "mmctr_config" / "model_config" / "DIN.yaml"
    assert kept.read_text() == edited
    assert f"moved config/mmctr_config/model_config/DIN.yaml to {dropin.EDITS_DIR}/config/" \
           "mmctr_config/model_config/DIN.yaml" in out
    assert tree(repo / "src") == {k: v.encode() for k, v in OFFICIAL_SRC.items()}
    assert not (repo / dropin.BACKUP_DIR).exists()


def test_undo_keeps_an_edited_src_file_aside(tmp_path):
    repo = make_official_repo(tmp_path)
    dropin.drop_in(repo)
    init = repo / "src" / "__init__.py"
    init.write_text(init.read_text() + "from .my_model import MyModel\n")
    mine = init.read_text()
    done = dropin.undo(repo)
    assert tree(repo / "src") == {k: v.encode() for k, v in OFFICIAL_SRC.items()}
    assert (repo / dropin.EDITS_DIR / "src" / "__init__.py").read_text() == mine
    assert any("moved src/__init__.py" in line for line in done)


def test_undo_removes_only_unedited_generated_files(tmp_path):
    """No official config folder: drop-in's unchanged files go, an edited dataset config
    (marker line removed) and the user's own files stay."""
    repo = make_official_repo(tmp_path)
    dropin.drop_in(repo)
    config = repo / "config" / "mmctr_config"
    dataset = config / "dataset_config.yaml"
    dataset.write_text("\n".join(dataset.read_text().splitlines()[1:]))
    (config / "model_config" / "DCNv2.yaml").unlink()  # deleted by the user: nothing to do
    (config / "notes.txt").write_text("mine")
    dropin.undo(repo)
    assert tree(config) == {"notes.txt": b"mine"}
    assert (repo / dropin.EDITS_DIR / "config" / "mmctr_config" / "dataset_config.yaml").exists()


def test_a_file_of_yours_where_an_official_file_goes_back_is_moved_aside(tmp_path):
    repo = make_official_repo(tmp_path)
    config = _official_config(repo)
    official = tree(config)
    dropin.drop_in(repo)
    (config / "model_config" / "Official.yaml").write_text("mine: {}\n")  # the path is free now
    done = dropin.undo(repo)
    assert tree(config) == official
    assert (repo / dropin.EDITS_DIR / "config" / "mmctr_config" / "model_config" /
            "Official.yaml").read_text() == "mine: {}\n"
    assert any("an official file goes back" in line for line in done)


def test_rerunning_drop_in_keeps_an_edit_and_undo_still_sees_it(tmp_path):
    repo = make_official_repo(tmp_path)
    dropin.drop_in(repo)
    din = repo / "config" / "mmctr_config" / "model_config" / "DIN.yaml"
    din.write_text(din.read_text() + "\nDIN_mine: {model: DIN}\n")
    edited = din.read_text()
    dropin.drop_in(repo)  # regenerates the rest, keeps the edit
    assert din.read_text() == edited
    dropin.undo(repo)
    assert not din.exists()
    assert (repo / dropin.EDITS_DIR / "config" / "mmctr_config" / "model_config" /
            "DIN.yaml").read_text() == edited


def test_undo_twice_moves_aside_without_overwriting(tmp_path):
    """A second drop-in and undo with another edit: the first kept copy is not overwritten."""
    repo = make_official_repo(tmp_path)
    for text in ("# first\n", "# second\n"):
        dropin.drop_in(repo)
        init = repo / "src" / "__init__.py"
        init.write_text(init.read_text() + text)
        dropin.undo(repo)
    kept = repo / dropin.EDITS_DIR / "src"
    assert kept.joinpath("__init__.py").read_text().endswith("# first\n")
    assert kept.joinpath("__init__.py.1").read_text().endswith("# second\n")
