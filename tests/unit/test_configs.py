"""Configs are data: every YAML under config/ loads, with the types the code expects."""
from __future__ import annotations


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


def test_there_are_configs():
    assert MODEL_CONFIGS and DATASET_CONFIGS and TUNER_CONFIGS


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

    assert load_model_config(str(base_dir), config["base_expid"])["model"] in MODELS
    assert config["dataset_id"] in load(base_dir / "dataset_config.yaml")
    space = config["tuner_space"]
    for key, values in space.items():
        for value in values if isinstance(values, list) else [values]:
            _check_types(f"{path.name}:{key}", {key: value})
