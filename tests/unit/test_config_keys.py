"""Config keys that no component reads are named, with the closest known key."""
from __future__ import annotations

import logging
import sys

import pytest
import yaml

from fuxictr_mmctr.train import config_keys, experiment


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(config_keys, "_warned", set())


def _add_keys(config_dir, expid="DIN_sample", **keys):
    path = config_dir / "model_config" / "DIN.yaml"
    config = yaml.safe_load(path.read_text())
    config[expid].update(keys)
    path.write_text(yaml.safe_dump(config))


def test_misspelt_key_is_named_with_the_closest_known_key(handmade_config, caplog, capsys):
    _add_keys(handmade_config, max_lenn=16, zzz_unrelated=1)
    with caplog.at_level(logging.WARNING):
        params = experiment.load_params(handmade_config, "DIN_sample")
    expected = "'max_lenn' (did you mean 'max_len'?), 'zzz_unrelated'"
    assert caplog.text.count(expected) == 1 and "'DIN_sample'" in caplog.text
    assert capsys.readouterr().err.count(expected) == 1  # on stderr too
    assert config_keys.unknown_keys(params) == {"max_lenn": "max_len", "zzz_unrelated": None}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        experiment.load_params(handmade_config, "DIN_sample")  # once per process
    assert "max_lenn" not in caplog.text and "max_lenn" not in capsys.readouterr().err


def test_warning_is_not_doubled_when_the_log_writes_to_stderr(handmade_config, capsys):
    _add_keys(handmade_config, learnig_rate=1.0e-3)
    handler = logging.StreamHandler(sys.stderr)  # pytest's captured stderr
    logging.getLogger().addHandler(handler)
    try:
        experiment.load_params(handmade_config, "DIN_sample")
    finally:
        logging.getLogger().removeHandler(handler)
    assert capsys.readouterr().err.count("'learnig_rate' (did you mean 'learning_rate'?)") == 1


def test_keys_follow_the_components():
    din, dcn = config_keys.known_keys("DIN"), config_keys.known_keys("DCNv2")
    assert {"attention_hidden_units", "din_use_softmax"} <= din - dcn  # DIN's signature
    assert {"num_cross_layers", "cross_type"} <= dcn - din              # DCNv2's
    shared = {"max_len", "item_side", "num_workers",          # MMCTRDataLoader
              "batch_size", "shuffle", "data_format",         # RankDataLoader
              "verbose", "model_root", "metrics",             # BaseModel's kwargs[...]
              "early_stop_patience", "monitor",               # BaseModel's signature
              "accumulation_steps", "weight_decay",           # MMCTRModel
              "precision", "compile", "compile_mode", "compile_backend", "tf32",
              "pin_memory",                                   # the loader
              "feature_cols", "label_col", "item_info",       # the feature processors
              "feature_specs", "use_features",                # FeatureMap.load
              "seed", "model", "gpu"}                         # experiment.py
    assert shared <= din & dcn
    # arguments the callers pass themselves are not config keys
    assert not {"stage", "split", "validation_data", "train_ddf", "self"} & din
    # an unknown model name: the keys of every model (the registry refuses the name later)
    assert din | dcn <= config_keys.known_keys("NoSuchModel")


def test_a_key_of_another_model_is_unknown():
    params = {"model": "DIN", "model_id": "x", "num_cross_layers": 3, "max_len": 8}
    assert config_keys.unknown_keys(params) == {"num_cross_layers": None}
