"""The one definition of what a trained model's outputs depend on (train/artifacts.py
``model_inputs``), checked at prediction and keying the blend's cache (issue 19, class 1).
No training: params of the shipped configs pointed at the tiny sample."""
from __future__ import annotations

import shutil
import time

import pytest

from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.io import file_digest
from fuxictr_mmctr.train import artifacts, experiment


@pytest.fixture
def params(smoke_config):
    return experiment.load_params(smoke_config, "DIN_sample", check_keys=False)


@pytest.fixture
def pretrained(smoke_config, tiny_sample, tmp_path):
    """DIN_sample_pretrained with its pretrained table in a private file."""
    p = experiment.load_params(smoke_config, "DIN_sample_pretrained", check_keys=False)
    table = tmp_path / "emb.parquet"
    shutil.copy2(tiny_sample / "MicroLens_1M_x1" / "item_info.parquet", table)
    for col in p["feature_cols"]:
        if col.get("pretrained_emb"):
            col["pretrained_emb"] = str(table)
    return p, table


def test_runtime_and_training_only_keys_are_not_inputs(params):
    inputs = artifacts.model_inputs(params)
    for key in ("gpu", "verbose", "num_workers", "learning_rate", "batch_size", "epochs", "seed",
                "train_data", "valid_data", "test_data", "item_info", "model_root", "metrics"):
        assert key not in inputs["settings"], key
    for key in ("model", "max_len", "embedding_dim", "dnn_hidden_units", "feature_cols",
                "position_encoding", "item_side", "task"):
        assert key in inputs["settings"], key
    assert inputs["files"]["item_info"]["sha256"] == file_digest(params["item_info"])
    same = dict(params, gpu=3, verbose=0, learning_rate=9.0, batch_size=7, epochs=1, seed=1)
    assert artifacts.input_differences(inputs, artifacts.model_inputs(same)) == []
    # how fast a model trained, and in which precision, is not what it computes
    fast = dict(params, precision="bf16", compile=True, compile_mode="max-autotune",
                compile_backend="aot_eager", tf32=True, pin_memory=True)
    assert artifacts.input_differences(inputs, artifacts.model_inputs(fast)) == []


def test_a_default_left_out_reads_as_the_default(params):
    """A config that leaves `max_len` out trained with the loader's 100; writing `max_len:
    100` later is the same model, and `max_len: 32` is not."""
    unset = {k: v for k, v in params.items() if k != "max_len"}
    trained = artifacts.model_inputs(unset)
    assert trained["settings"]["max_len"] == 100
    assert artifacts.input_differences(trained, artifacts.model_inputs(
        dict(params, max_len=100))) == []
    assert artifacts.input_differences(trained, artifacts.model_inputs(params)) == \
        ["max_len: 100 at training, now 32"]


def test_a_setting_the_record_predates(params):
    """A newer package's setting at its default (or unset) does not refuse an older
    checkpoint; the same key at another value does; an unknown key removed does."""
    trained = artifacts.model_inputs(params)
    del trained["settings"]["recency_bias"]  # as if recorded before the key existed
    assert artifacts.input_differences(trained, artifacts.model_inputs(params)) == []
    assert artifacts.input_differences(trained, artifacts.model_inputs(
        dict(params, recency_bias=True))) == ["recency_bias: not set at training, now true"]
    extra = artifacts.model_inputs(dict(params, my_flag=1))
    assert artifacts.input_differences(extra, artifacts.model_inputs(params)) == \
        ["my_flag: 1 at training, now not set"]


def test_dropout_rates_matter_only_through_zero(params):
    trained = artifacts.model_inputs(dict(params, net_dropout=0.1, attention_dropout=0))
    assert artifacts.input_differences(trained, artifacts.model_inputs(
        dict(params, net_dropout=0.4, attention_dropout=0.0))) == []
    assert artifacts.input_differences(trained, artifacts.model_inputs(
        dict(params, net_dropout=0, attention_dropout=0))) == \
        ["net_dropout: 0.1 at training, now 0"]


def test_feature_specs_and_columns_are_inputs(pretrained):
    params, _ = pretrained
    trained = artifacts.model_inputs(params)
    usage = dict(params, feature_specs=[{"name": "item_id", "pretrain_usage": "sum"}])
    assert [d.split(":")[0] for d in artifacts.input_differences(
        trained, artifacts.model_inputs(usage))] == ["feature_specs"]


def test_a_pretrained_table_is_recorded_by_content(pretrained, tmp_path, caplog):
    params, table = pretrained
    trained = artifacts.model_inputs(params)
    assert trained["files"]["pretrained_emb of item_id"]["sha256"] == file_digest(table)
    assert all("pretrained_emb" not in col for col in trained["settings"]["feature_cols"])
    moved = tmp_path / "moved.parquet"  # the same table elsewhere: the same model
    shutil.copy2(table, moved)
    for col in params["feature_cols"]:
        if col.get("pretrained_emb"):
            col["pretrained_emb"] = str(moved)
    assert artifacts.input_differences(trained, artifacts.model_inputs(params)) == []
    moved.write_bytes(moved.read_bytes()[:-1] + b"\0")  # other bytes at the same path
    diffs = artifacts.input_differences(trained, artifacts.model_inputs(params))
    assert len(diffs) == 1 and diffs[0].startswith(
        f"pretrained_emb of item_id {moved} is not the file the model was trained on ({table})")
    moved.unlink()  # deleted after training: the weights hold the table; warned, not refused
    assert artifacts.input_differences(trained, artifacts.model_inputs(params)) == []
    assert "is gone; the trained weights hold what was read from it" in caplog.text


def test_check_inputs_names_the_checkpoint_and_every_difference(params, tmp_path):
    record = artifacts.CheckpointRecord(tmp_path / "DIN_sample.model", "0" * 64, tmp_path,
                                        artifacts.model_inputs(params))
    artifacts.check_inputs(record, params)
    with pytest.raises(ConfigError, match=r"DIN_sample.model: expid 'DIN_sample' was trained on "
                                          r"other inputs .*embedding_dim: 32 at training, now "
                                          r"8; max_len: 32 at training, now 64\. Restore"):
        artifacts.check_inputs(record, dict(params, max_len=64, embedding_dim=8))


def test_file_digests_are_cached_per_version(tmp_path):
    """Hashing item_info at every prediction must stay cheap: once per process and version;
    a file rewritten in place is hashed again."""
    path = tmp_path / "table.bin"
    path.write_bytes(b"\1" * (8 << 20))
    first = file_digest(path)
    start = time.perf_counter()
    assert file_digest(path) == first
    assert time.perf_counter() - start < 0.01
    path.write_bytes(b"\2" * (8 << 20))
    assert file_digest(path) != first
