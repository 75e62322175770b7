"""Config values of the wrong type or out of range are refused before a run starts, naming the
expid and the key (issue 11)."""
from __future__ import annotations

import pytest
import yaml
from helpers import ROOT, tiny_model

from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.train.config_keys import check_params


def _with(config_dir, expid="DIN_sample", **values):
    """Add ``<expid>_bad`` = ``expid`` with ``values`` to a copied config; return its expid."""
    path = config_dir / "mmctr_config" / "model_config" / "zz_bad.yaml"
    base = yaml.safe_load((config_dir / "mmctr_config" / "model_config" / "DIN.yaml").read_text())
    path.write_text(yaml.safe_dump({f"{expid}_bad": dict(base[expid], **values)}))
    return f"{expid}_bad"


@pytest.mark.parametrize("key,value,message", [
    ("learning_rate", "1e-3", "is a string, not a number.*write 1.0e-3"),
    ("batch_size", "abc", "must be an integer"),
    ("batch_size", 256.5, "must be an integer"),
    ("epochs", -1, "must be >= 1"),
    ("embedding_dim", 0, "must be >= 1"),
    ("max_len", 0, "must be >= 1"),
    ("max_len", -5, "must be >= 1"),
    ("net_dropout", 1.0, "must be < 1"),
    ("learning_rate", 0, "must be > 0"),
    ("shuffle", "yes", "must be True or False"),
    ("dnn_hidden_units", [256, 0], "list of positive integers"),
    ("item_side", "both", "must be one of"),
    ("embedding_regularizer", -1, "must be >= 0"),
    # no declared rule: the type of the default in DIN's signature says it
    ("batch_norm", "yes", "must be True or False"),
    ("din_use_softmax", 1, "must be True or False"),
    ("attention_dropout", "0.1", "is a string, not a number"),
    ("position_encoding", "sinusoid", "must be one of"),
    ("num_threads", 0, "must be >= 1"),
    ("precision", "fp64", "must be one of"),
    ("precision", "bf 16", "must be one of"),
    ("compile", "yes", "must be True or False"),
    ("compile_mode", "fast", "must be one of"),
    ("compile_backend", 3, "must be a string"),
    ("tf32", 1, "must be True or False"),
    ("pin_memory", "auto", "must be True or False"),
])
def test_bad_values_are_refused_with_the_key(repo_config, key, value, message):
    expid = _with(repo_config, **{key: value})
    with pytest.raises(ConfigError, match=message) as info:
        experiment.load_params(repo_config / "mmctr_config", expid, needs=())
    assert info.value.option == key and expid in str(info.value)


def test_good_values_pass_including_fuxictr_regularizer_strings():
    check_params({"learning_rate": 1.0e-3, "batch_size": 8, "max_len": 100,
                  "embedding_regularizer": "l2(1.0e-5)", "net_regularizer": 0,
                  "dnn_hidden_units": [], "item_side": "ids", "shuffle": False})


@pytest.mark.parametrize("model_file", sorted(
    p.name for p in (ROOT / "config" / "mmctr_config" / "model_config").glob("*.yaml")))
def test_every_shipped_expid_passes(repo_config, model_file):
    """One case per model file, so the test workers share the expids."""
    config = repo_config / "mmctr_config"
    for expid in yaml.safe_load((config / "model_config" / model_file).read_text()):
        if expid != "Base":
            check_params(experiment.load_params(config, expid, needs=()))


def test_gpu_without_cuda_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available") as info:
        experiment.check_device(0)
    assert info.value.option == "--gpu"
    experiment.check_device(-1)


def test_missing_dataset_id_is_not_reported_as_a_missing_expid(repo_config):
    path = repo_config / "mmctr_config" / "model_config" / "zz_nodata.yaml"
    path.write_text(yaml.safe_dump({"DIN_nodata": {"model": "DIN"}}))
    with pytest.raises(ConfigError, match="'DIN_nodata' has no dataset_id"):
        experiment.load_params(repo_config / "mmctr_config", "DIN_nodata", needs=())
    with pytest.raises(ConfigError, match="not found; did you mean DIN_sample"):
        experiment.load_params(repo_config / "mmctr_config", "DIN_sampel", needs=())


def test_a_component_built_without_a_config_keeps_the_same_rule(tmp_path):
    """The constructors check their own arguments against the contract, naming the key."""
    with pytest.raises(ConfigError, match="must be one of") as info:
        tiny_model("DIN", tmp_path, item_side="both")
    assert info.value.option == "item_side"
    with pytest.raises(ConfigError, match="must be one of") as info:
        tiny_model("DCNv2", tmp_path, cross_type="diagonal")
    assert info.value.option == "cross_type"
    with pytest.raises(ConfigError, match="must be >= 1") as info:
        tiny_model("DIN", tmp_path, accumulation_steps=0)
    assert info.value.option == "accumulation_steps"
