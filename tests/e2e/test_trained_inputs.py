"""What is predicted is what was trained (issue 19, class 1): a checkpoint records the settings
and item files its outputs depend on; prediction (the CLI, the Python API, the blend) refuses,
naming the key or file, when the config or the files differ, and predicts as before when only
runtime or training-only settings changed. One DIN trained once on the tiny sample (1 epoch,
history 8, no position table: the issue's example, where a longer history changes predictions
silently instead of failing to load)."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import ROOT, point_config_at

from fuxictr_mmctr import cli
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.train import blend, experiment


@pytest.fixture(scope="module")
def trained(tiny_sample, tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("inputs")
    data = root / "data"
    shutil.copytree(tiny_sample / "MicroLens_1M_x1", data / "MicroLens_1M_x1")
    shutil.copytree(ROOT / "config", root / "config")
    config_dir = point_config_at(root / "config", data)
    path = config_dir / "model_config" / "DIN.yaml"
    config = yaml.safe_load(path.read_text())
    config["DIN_sample"].update(epochs=1, batch_size=512, verbose=0, max_len=8,
                                position_encoding="none")
    path.write_text(yaml.safe_dump(config))
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    experiment.train(config_dir, "DIN_sample")
    before = experiment.predict_split(config_dir, "DIN_sample", "valid")
    yield config_dir, data / "MicroLens_1M_x1", before
    mp.undo()


def _edit(config_dir, **changes):
    """Set keys of DIN_sample; returns a function that puts the file back."""
    path = config_dir / "model_config" / "DIN.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    config["DIN_sample"].update(changes)
    path.write_text(yaml.safe_dump(config))
    return lambda: path.write_text(original)


def _predict_cli(config_dir, tmp_path, capfd):
    """``mmctr predict``: its exit code and its one error line (FuxiCTR's logger, which the
    command sets up, writes to stderr)."""
    capfd.readouterr()
    code = cli.main(["predict", "--config", str(config_dir), "--expid", "DIN_sample",
                     "--out", str(tmp_path / "sub.zip")])
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    return code, (errors[-1] if errors else "")


@pytest.mark.parametrize("changes, named", [
    ({"max_len": 32}, "max_len: 8 at training, now 32"),           # the example
    ({"dnn_activations": "Sigmoid"}, 'dnn_activations: "ReLU" at training, now "Sigmoid"'),
    ({"din_use_softmax": True}, "din_use_softmax: false at training, now true"),
    ({"embedding_dim": 16}, "embedding_dim: 32 at training, now 16"),  # was a torch message
    ({"item_side": "ids"}, 'item_side: "features" at training, now "ids"'),
    ({"net_dropout": 0.2}, "net_dropout: 0 at training, now 0.2"),  # a layer more
])
def test_changed_settings_are_refused_with_the_key_named(trained, tmp_path, capfd, changes,
                                                         named):
    config_dir, _, _ = trained
    restore = _edit(config_dir, **changes)
    try:
        code, error = _predict_cli(config_dir, tmp_path, capfd)
        assert code == 2 and named in error and "DIN_sample.model" in error
        assert not (tmp_path / "sub.zip").exists()
        with pytest.raises(ConfigError, match="trained on other inputs"):
            experiment.load_trained_model(config_dir, "DIN_sample")
        with pytest.raises(ConfigError, match="trained on other inputs"):  # the blend too
            blend.experiment_predictions(config_dir, "DIN_sample")
    finally:
        restore()


def test_runtime_and_training_only_settings_predict_as_trained(trained):
    """Batch size, learning rate, epochs, a dropout rate (not whether there is dropout), the
    verbosity do not change a trained model's outputs: no refusal, the same predictions."""
    config_dir, _, before = trained
    restore = _edit(config_dir, batch_size=64, learning_rate=0.5, epochs=9,
                    attention_dropout=0.5, verbose=1, seed=3, early_stop_patience=7)
    try:
        after = experiment.predict_split(config_dir, "DIN_sample", "valid")
    finally:
        restore()
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)


def _negated_embeddings(src, dst):
    table = pq.read_table(src)
    column = table.schema.get_field_index("item_emb_d128")
    vectors = np.array(table.column(column).to_pylist(), np.float32) * -1
    pq.write_table(table.set_column(column, "item_emb_d128",
                                    pa.array(list(vectors), table.schema.field(column).type)), dst)


def test_item_info_replaced_in_place_is_refused(trained, tmp_path, capfd):
    """What `build-embeddings --overwrite-input` does: same path, other contents."""
    config_dir, data, before = trained
    item_info = data / "item_info.parquet"
    saved = tmp_path / "saved.parquet"
    shutil.copy2(item_info, saved)
    _negated_embeddings(saved, item_info)
    try:
        code, error = _predict_cli(config_dir, tmp_path, capfd)
        assert code == 2
        assert f"item_info {item_info.resolve()} changed since training (sha256" in error
    finally:
        shutil.copyfile(saved, item_info)  # same bytes, new mtime: accepted again
    np.testing.assert_array_equal(experiment.predict_split(config_dir, "DIN_sample", "valid"),
                                  before)


def test_item_info_re_pointed_is_checked_by_content(trained, tmp_path, capfd):
    config_dir, data, before = trained
    dataset = config_dir / "dataset_config.yaml"
    original = dataset.read_text()
    item_info = str(data / "item_info.parquet")
    try:
        copy = tmp_path / "copy.parquet"
        shutil.copy2(item_info, copy)  # the same table elsewhere: fine
        dataset.write_text(original.replace(item_info, str(copy)))
        np.testing.assert_array_equal(
            experiment.predict_split(config_dir, "DIN_sample", "valid"), before)
        other = tmp_path / "other.parquet"
        _negated_embeddings(item_info, other)
        dataset.write_text(original.replace(item_info, str(other)))
        code, error = _predict_cli(config_dir, tmp_path, capfd)
        assert code == 2
        assert f"item_info {other} is not the file the model was trained on ({item_info})" \
            in error
    finally:
        dataset.write_text(original)


def test_blend_cache_recomputes_an_unreadable_entry(trained, caplog):
    """A truncated cached .npy (a killed write by another tool, a full disk) used to raise
    ValueError until --refresh; it is recomputed by itself, and a damaged record too."""
    config_dir, _, before = trained
    first = blend.experiment_predictions(config_dir, "DIN_sample")
    np.testing.assert_allclose(first["valid"], before, rtol=0, atol=1e-6)
    _, _, model = experiment.load_trained_model(config_dir, "DIN_sample")
    paths = blend.prediction_cache_paths(model.checkpoint)
    paths["valid"].write_bytes(paths["valid"].read_bytes()[:100])
    again = blend.experiment_predictions(config_dir, "DIN_sample")
    np.testing.assert_array_equal(again["valid"], first["valid"])
    assert "unreadable cached predictions" in caplog.text
    paths["json"].write_text("{not json")
    third = blend.experiment_predictions(config_dir, "DIN_sample")
    np.testing.assert_array_equal(third["test"], first["test"])
    assert "unreadable prediction cache record" in caplog.text


def test_a_hand_broken_feature_map_is_one_line(trained, tmp_path, capfd):
    """It was a JSONDecodeError traceback at prediction; a valid edit (another vocabulary) was
    used silently. The folder is named by the digest of its files: any edit is seen."""
    from fuxictr_mmctr.train import artifacts

    config_dir, _, before = trained
    params = experiment.load_params(config_dir, "DIN_sample")
    record = artifacts.checkpoint_record(artifacts.checkpoint_path(params))
    feature_map = record.feature_dir / artifacts.FEATURE_MAP_JSON
    good = feature_map.read_text()
    try:
        edited = good.replace('"vocab_size": 11', '"vocab_size": 12', 1)
        assert edited != good
        for broken in (good[: len(good) // 2], '{"dataset_id": "MicroLens_sample"}', "[]",
                       edited):
            feature_map.write_text(broken)
            code, error = _predict_cli(config_dir, tmp_path, capfd)
            assert code == 2 and f"{record.feature_dir}: its files were changed after " \
                "training" in error
    finally:
        feature_map.write_text(good)
    np.testing.assert_array_equal(experiment.predict_split(config_dir, "DIN_sample", "valid"),
                                  before)
