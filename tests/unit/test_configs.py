"""Configs are data: every YAML under config/ loads, with the types the code expects."""
from __future__ import annotations

import logging

import pytest
import yaml
from helpers import ROOT

from fuxictr_mmctr.models import MODELS

CONFIG = ROOT / "config"
YAMLS = sorted(p for p in CONFIG.rglob("*.yaml"))
MODEL_CONFIGS = [p for p in YAMLS if p.name == "model_config.yaml" or p.parent.name == "model_config"]
DATASET_CONFIGS = [p for p in YAMLS if p.name == "dataset_config.yaml"]
TUNER_CONFIGS = [p for p in YAMLS if "tuner_config" in p.name]

FLOAT_KEYS = {"learning_rate", "net_dropout", "attention_dropout", "label_smoothing",
              "weight_decay", "embedding_dropout", "transformer_dropout", "max_gradient_norm"}
INT_KEYS = {"batch_size", "embedding_dim", "epochs", "max_len", "seed",
            "early_stop_patience", "accumulation_steps", "num_workers"}
INT_LIST_KEYS = {"dnn_hidden_units", "attention_hidden_units", "mlp_hidden_units"}
REGULARIZER_KEYS = {"embedding_regularizer", "net_regularizer"}


def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


SHIPPED = CONFIG / "mmctr_config"


def _shipped_expids():
    from fuxictr.autotuner import load_experiment_ids

    return [e for e in load_experiment_ids(str(SHIPPED)) if e != "Base"]


def test_there_are_configs():
    assert MODEL_CONFIGS and DATASET_CONFIGS and TUNER_CONFIGS
    expids = _shipped_expids()
    for name in MODELS:  # the official-size config and its sample-sized twin
        assert {f"{name}_default", f"{name}_sample"} <= set(expids), name


@pytest.mark.parametrize("expid", _shipped_expids())
def test_shipped_expid_loads_with_known_keys_only(expid, caplog, capsys, monkeypatch):
    """Every expid loads as the scripts load it, names a registered model, and has no key
    that no component reads (so the derivation of the known keys is complete)."""
    from fuxictr_mmctr.train import config_keys, experiment

    monkeypatch.setattr(config_keys, "_warned", set())
    with caplog.at_level(logging.WARNING):
        params = experiment.load_params(SHIPPED, expid, needs=())  # data files not needed
    assert params["model"] in MODELS and params["model_id"] == expid
    assert config_keys.unknown_keys(params) == {}
    assert "no component reads" not in caplog.text + capsys.readouterr().err


def _check_types(where, params):
    for key, value in params.items():
        if key in FLOAT_KEYS:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), \
                f"{where}: {key}={value!r} is not a number (write 1.0e-3, not 1e-3)"
        if key in INT_KEYS:
            assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {key}"
        if key in INT_LIST_KEYS:
            assert isinstance(value, list) and all(isinstance(v, int) for v in value), \
                f"{where}: {key}={value!r}"
        if key in REGULARIZER_KEYS:
            assert isinstance(value, (int, float)) or (
                isinstance(value, str) and value[:3] in ("l1(", "l2(", "l1_")), \
                f"{where}: {key}={value!r} is neither a number nor l1(..)/l2(..)"


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIG)))
def test_model_config(path):
    config = load(path)
    config_dir = path.parent.parent if path.parent.name == "model_config" else path.parent
    datasets = {}
    for ds_path in config_dir.glob("dataset_config.yaml"):
        datasets.update(load(ds_path))
    for expid, params in config.items():
        _check_types(f"{path.name}:{expid}", params)
        if expid == "Base":
            continue
        assert params["model"] in MODELS, f"{expid}: unknown model {params['model']}"
        assert params["dataset_id"] in datasets, f"{expid}: dataset {params['dataset_id']}"
        assert isinstance(params["metrics"], list)


def test_every_config_dir_has_one_base():
    for config_dir in {p.parent.parent if p.parent.name == "model_config" else p.parent
                       for p in MODEL_CONFIGS}:
        files = list(config_dir.glob("model_config.yaml")) + \
            list(config_dir.glob("model_config/*.yaml"))
        assert sum("Base" in load(f) for f in files) == 1, config_dir


@pytest.mark.parametrize("path", DATASET_CONFIGS, ids=lambda p: str(p.relative_to(CONFIG)))
def test_dataset_config(path):
    for dataset_id, params in load(path).items():
        assert params["rebuild_dataset"] is False, dataset_id
        assert params["data_format"] == "parquet"
        for key in ("train_data", "valid_data", "test_data", "item_info"):
            assert isinstance(params[key], str) and params[key].endswith(".parquet")
        names = [c["name"] for c in params["feature_cols"]]
        assert {"user_id", "item_seq", "item_id"} <= set(names), dataset_id
        for col in params["feature_cols"]:
            assert col["type"] in ("meta", "categorical", "sequence", "embedding", "numeric")
            if "vocab_size" in col:
                assert isinstance(col["vocab_size"], int)
            if "pretrain_dim" in col:
                assert isinstance(col["pretrain_dim"], int)
        assert params["label_col"]["name"] == "label"


@pytest.mark.parametrize("path", TUNER_CONFIGS, ids=lambda p: p.name)
def test_tuner_config(path):
    config = load(path)
    base_dir = CONFIG.parent / config["base_config"]
    from fuxictr.utils import load_model_config

    from fuxictr_mmctr.train.config_keys import known_keys

    model = load_model_config(str(base_dir), config["base_expid"])["model"]
    assert model in MODELS
    assert config["dataset_id"] in load(base_dir / "dataset_config.yaml")
    space = config["tuner_space"]
    assert set(space) <= known_keys(model), set(space) - known_keys(model)
    for key, values in space.items():
        for value in values if isinstance(values, list) else [values]:
            _check_types(f"{path.name}:{key}", {key: value})
