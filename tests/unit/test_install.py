"""What a plain `pip install` relies on: the library bridges of compat.py (FuxiCTR 2.3.7 and
2.3.10, scikit-learn 1.5+), the configs shipped as package data, `mmctr init-config`, and the
versions recorded with every result. The wheel itself is built and run in e2e/test_wheel.py."""
from __future__ import annotations

import configparser
import fnmatch
import shutil

import numpy as np
import pytest
import yaml
from helpers import ROOT

from fuxictr_mmctr import cli, compat, resources
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.train import experiment, results

PACKAGE_CONFIGS = ROOT / "fuxictr_mmctr" / "configs"


# ---------------------------------------------------------------- FuxiCTR 2.3.10: pretrain_dim

def official_config(repo_config, data_dir):
    """The shipped config, its real-data paths pointed at ``data_dir`` (the specs unchanged)."""
    path = repo_config / "mmctr_config" / "dataset_config.yaml"
    path.write_text(path.read_text().replace("./data/MicroLens_1M_x1/", f"{data_dir}/"))
    return repo_config / "mmctr_config"


def test_official_embedding_column_gets_its_pretrain_dim(repo_config, handmade, monkeypatch):
    """`item_emb_d128: {type: embedding, embedding_dim: 128}` (the official dataset config):
    FuxiCTR 2.3.10's FeatureMap.set_column_index reads `pretrain_dim` of every embedding
    feature and raised KeyError('pretrain_dim'); the processor now fills it from embedding_dim."""
    config_dir = official_config(repo_config, handmade)
    spec = yaml.safe_load((config_dir / "dataset_config.yaml").read_text())["MicroLens_1M_x1"]
    column = {c["name"]: c for c in spec["feature_cols"]}["item_emb_d128"]
    assert column["type"] == "embedding" and "pretrain_dim" not in column  # as published
    monkeypatch.chdir(handmade.parent)
    params = experiment.load_params(config_dir, "DIN_default")
    params["data_root"] = str(handmade.parent)
    feature_map = experiment.build_feature_map(params)
    emb = feature_map.features["item_emb_d128"]
    assert emb["pretrain_dim"] == 128 and emb["embedding_dim"] == 128
    # the map FuxiCTR 2.3.10 reloads has it too (prediction reads the saved feature_map.json)
    assert experiment.load_feature_map(params).features["item_emb_d128"]["pretrain_dim"] == 128
    for name, feature in feature_map.features.items():  # what 2.3.10's set_column_index reads
        if feature["type"] == "embedding":
            assert isinstance(feature["pretrain_dim"], int), name


def test_embedding_width_is_read_from_item_info_when_the_config_states_none(
        repo_config, handmade, monkeypatch):
    config_dir = official_config(repo_config, handmade)
    path = config_dir / "dataset_config.yaml"
    path.write_text(path.read_text().replace(", embedding_dim: 128}", "}"))
    monkeypatch.chdir(handmade.parent)
    params = experiment.load_params(config_dir, "DIN_default")
    params["data_root"] = str(handmade.parent)
    spec = {c["name"]: c for c in params["feature_cols"]}["item_emb_d128"]
    assert "embedding_dim" not in spec and "pretrain_dim" not in spec
    features = experiment.build_feature_map(params).features
    assert features["item_emb_d128"]["pretrain_dim"] == 128


def test_fill_pretrain_dim():
    assert compat.fill_pretrain_dim({"type": "embedding", "embedding_dim": 128}) == \
        {"type": "embedding", "embedding_dim": 128, "pretrain_dim": 128}
    assert compat.fill_pretrain_dim({"type": "embedding"}, width=64)["pretrain_dim"] == 64
    kept = {"type": "embedding", "pretrain_dim": 128, "embedding_dim": 32}
    assert compat.fill_pretrain_dim(dict(kept), width=128) == kept  # a projection: left alone
    assert "pretrain_dim" not in compat.fill_pretrain_dim({"type": "categorical"}, width=8)


def test_drop_in_gives_the_official_embedding_column_its_pretrain_dim(tmp_path):
    from official_repo import make_official_repo

    from fuxictr_mmctr.integrations import dropin

    repo = make_official_repo(tmp_path)
    dropin.drop_in(repo)  # the official scripts use FuxiCTR's own processor: it must be there
    datasets = yaml.safe_load((repo / "config" / "mmctr_config" / "dataset_config.yaml")
                              .read_text())
    column = {c["name"]: c for c in datasets["MicroLens_1M_x1"]["feature_cols"]}["item_emb_d128"]
    assert column["pretrain_dim"] == 128 and column["embedding_dim"] == 128


# ---------------------------------------------------------------- scikit-learn 1.5+: logloss eps

def test_fuxictr_logloss_works_with_a_scikit_learn_without_eps(monkeypatch):
    """FuxiCTR 2.3.7 calls log_loss(..., eps=1e-7); scikit-learn 1.5 removed `eps`."""
    import fuxictr.metrics
    from sklearn.metrics import log_loss

    import fuxictr_mmctr.models  # noqa: F401  (applies the bridge, as training does)

    assert getattr(fuxictr.metrics.log_loss, "_mmctr_bridge", False)
    seen = []

    def sklearn_15(y_true, y_pred, **kwargs):  # the signature of scikit-learn >= 1.5
        if "eps" in kwargs:
            raise TypeError("log_loss() got an unexpected keyword argument 'eps'")
        seen.append(np.asarray(y_pred))
        return log_loss(y_true, y_pred, **kwargs)

    monkeypatch.setattr(fuxictr.metrics, "log_loss", sklearn_15)
    compat.patch_fuxictr_metrics()
    y_true = np.array([0, 1, 1, 0, 1], dtype=float)
    y_pred = np.array([0.1, 0.8, 0.6, 0.3, 0.9])
    result = fuxictr.metrics.evaluate_metrics(y_true, y_pred, ["logloss", "AUC"])
    assert result["logloss"] == pytest.approx(log_loss(y_true, y_pred), rel=1e-9)
    assert seen  # scikit-learn's function did the work
    # with eps (FuxiCTR 2.3.7) the predictions are clipped to [eps, 1 - eps] first
    wrapped = fuxictr.metrics.log_loss
    assert wrapped(y_true, np.array([0, 1, 1, 0, 1.0]), eps=1e-7) == \
        pytest.approx(-np.log(1 - 1e-7), rel=1e-6)


# ---------------------------------------------------------------- versions in logs and results

def test_versions_name_the_libraries_a_result_depends_on():
    import fuxictr
    import numpy
    import pandas
    import torch

    import fuxictr_mmctr

    found = compat.versions()
    assert found == {"fuxictr_mmctr": fuxictr_mmctr.__version__,
                     "fuxictr": fuxictr.__version__, "torch": torch.__version__,
                     "numpy": numpy.__version__, "pandas": pandas.__version__}
    assert "," not in compat.versions_line()  # one field of FuxiCTR's comma-separated file


def test_results_row_records_the_versions_and_still_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results.append_result("cfg/mmctr_config", "DIN_x", "MicroLens_sample",
                          {"AUC": 0.81, "logloss": 0.44})
    row = (tmp_path / "mmctr_config.csv").read_text()
    assert "[exp_id] DIN_x," in row and "[val] AUC: 0.810000 - logloss: 0.440000," in row
    assert f"[versions] {compat.versions_line()}" in row
    assert results.finished_expids("cfg/mmctr_config") == {"DIN_x"}


# ---------------------------------------------------------------- configs as package data

def _package_data_patterns():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    value = parser["options.package_data"]["fuxictr_mmctr"]
    return [p.strip() for p in value.replace("\n", ",").split(",") if p.strip()]


def test_every_config_file_is_package_data():
    patterns = _package_data_patterns()
    shipped = {p.relative_to(ROOT / "fuxictr_mmctr").as_posix()
               for p in PACKAGE_CONFIGS.rglob("*.yaml")
               if not (p.parent.parent.name == "tuners")}  # a sweep's enumerated folders
    assert shipped, "no configs found"
    missing = [f for f in shipped if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not missing, f"not in [options.package_data] of setup.cfg: {missing}"
    assert (ROOT / "config").resolve() == PACKAGE_CONFIGS.resolve()  # one folder, two names


def test_init_config_writes_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = resources.write_config("config")
    assert {f.relative_to("config").as_posix() for f in files} == \
        {p.as_posix() for p in resources._shipped_files()}
    assert "mmctr_config/model_config/DIN.yaml" in {f.relative_to("config").as_posix()
                                                    for f in files}
    for f in files:
        rel = f.relative_to("config")
        original = (PACKAGE_CONFIGS / rel).read_text()
        if rel.parts[0] == "tuners":
            assert yaml.safe_load(f.read_text())["base_config"] == "./config/mmctr_config/"
        else:
            assert f.read_text() == original
    # the written folder is a working FuxiCTR config directory, found by the demo
    params = experiment.load_params("config/mmctr_config", "DIN_sample", needs=())
    assert params["dataset_id"] == "MicroLens_sample"
    assert resources.default_config_dir().as_posix() == "config/mmctr_config"
    assert not list(tmp_path.glob(".config*"))  # no staging folder left behind


def test_init_config_refuses_to_overwrite_without_force(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init-config", "mine"]) == 0
    dataset = tmp_path / "mine" / "mmctr_config" / "dataset_config.yaml"
    dataset.write_text("edited: {}\n")
    (tmp_path / "mine" / "mmctr_config" / "model_config" / "MyModel.yaml").write_text("x: {}\n")
    assert cli.main(["init-config", "mine"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert dataset.read_text() == "edited: {}\n"  # untouched
    tuner = yaml.safe_load((tmp_path / "mine" / "tuners" / "DIN_sample_tuner_config.yaml")
                           .read_text())
    assert tuner["base_config"] == "./mine/mmctr_config/"
    assert cli.main(["init-config", "mine", "--force"]) == 0
    assert dataset.read_text() == (PACKAGE_CONFIGS / "mmctr_config" / "dataset_config.yaml") \
        .read_text()
    assert (tmp_path / "mine" / "mmctr_config" / "model_config" / "MyModel.yaml").exists()
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        resources.write_config(tmp_path / "afile", force=True)


def test_demo_uses_the_package_config_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resources.default_config_dir() == PACKAGE_CONFIGS / "mmctr_config"
    shutil.copytree(PACKAGE_CONFIGS, tmp_path / "config")
    assert resources.default_config_dir().as_posix() == "config/mmctr_config"


# ---------------------------------------------------------------- the real vocabulary sizes

def test_vocab_preset_has_the_real_vocabulary_sizes():
    """The e2e run of the real-data configs uses the `vocab` preset: same sizes as the config."""
    from fuxictr_mmctr.data.sample import PRESETS

    specs = yaml.safe_load((PACKAGE_CONFIGS / "mmctr_config" / "dataset_config.yaml")
                           .read_text())
    for dataset_id in ("MicroLens_1M_x1", "MicroLens_1M_x1_pretrained"):
        cols = {c["name"]: c for c in specs[dataset_id]["feature_cols"]}
        assert cols["item_id"]["vocab_size"] == PRESETS["vocab"].n_items + 1 == 91_718
        assert cols["item_tags"]["vocab_size"] == PRESETS["vocab"].n_tags == 11_740
    assert PRESETS["vocab"].n_items == PRESETS["full"].n_items
    assert PRESETS["vocab"].n_tags == PRESETS["full"].n_tags
