"""What a user can do wrong, or what can go wrong around a run, must not damage a trained model
or silently give a different result (issue 11): reproducibility, stale caches, failed runs."""
from __future__ import annotations

import hashlib

import numpy as np

from helpers import build_embeddings_cli


def _vectors(path):
    import pyarrow.parquet as pq

    return np.array(pq.read_table(path).column("item_emb_d128").to_pylist(), np.float32)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_embeddings_twice_gives_the_same_file(sample_copy, tmp_path):
    """Task 1 is judged on item_info: the same command and seed must give the same bytes."""
    outs = []
    for run in range(2):
        out = tmp_path / f"item_info_{run}.parquet"
        assert build_embeddings_cli("--data-dir", sample_copy, "--tiny-clip", "--no-progress",
                                    "--out", out, "--work-dir", tmp_path / f"work_{run}",
                                    "--seed", 11) == 0
        outs.append(_sha(out))
    assert outs[0] == outs[1]


def test_word2vec_teacher_is_reproducible_with_one_worker():
    """One gensim worker (the default) gives bit-identical vectors. (Two workers race: on this
    corpus their runs differ, mean cosine ~0.5, but not always, so that is not asserted.)"""
    import numpy as np

    from fuxictr_mmctr.embeddings.teacher import TeacherConfig, train_teacher

    rng = np.random.default_rng(0)
    corpus = [[str(x) for x in rng.integers(1, 300, size=rng.integers(3, 30))]
              for _ in range(4000)]
    tags = rng.integers(0, 20, size=(300, 5))

    def vectors(workers):
        cfg = TeacherConfig(workers=workers, epochs=2, dim=16, vector_size=16)
        return train_teacher(corpus, tags, cfg).vectors

    assert TeacherConfig().workers == 1
    np.testing.assert_array_equal(vectors(1), vectors(1))


def test_build_embeddings_checks_inputs_before_the_clip_pass(sample_copy, tmp_path, caplog):
    """A missing item_seq.parquet used to surface only after every image was encoded."""
    (sample_copy / "item_seq.parquet").unlink()
    work = tmp_path / "work"
    assert build_embeddings_cli("--data-dir", sample_copy, "--tiny-clip", "--no-progress",
                                "--work-dir", work, "--out", tmp_path / "out.parquet") == 2
    assert "item_seq.parquet: file not found" in caplog.text
    assert not work.exists()  # nothing was encoded


def test_build_embeddings_names_the_missing_extra(sample_copy, tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "gensim", None)  # import gensim -> ImportError
    assert build_embeddings_cli("--data-dir", sample_copy, "--tiny-clip", "--no-progress",
                                "--out", tmp_path / "out.parquet") == 2
    assert "pip install 'fuxictr_mmctr[task1]'" in caplog.text


def test_build_embeddings_refuses_a_read_only_output_folder(sample_copy, tmp_path, caplog):
    import os

    if os.geteuid() == 0:  # root writes anywhere: simulate with a folder that is a file
        blocked = tmp_path / "blocked"
        blocked.write_text("not a folder")
        out = blocked / "out.parquet"
    else:
        blocked = tmp_path / "ro"
        blocked.mkdir(mode=0o555)
        out = blocked / "out.parquet"
    assert build_embeddings_cli("--data-dir", sample_copy, "--tiny-clip", "--no-progress",
                                "--out", out, "--work-dir", tmp_path / "work") == 2
    assert not (tmp_path / "work").exists()


def _train(config_dir, expid="DIN_sample"):
    from fuxictr_mmctr.train.experiment import train_main

    return train_main(["--config", str(config_dir), "--expid", expid, "--gpu", "-1"])


def test_a_failed_run_leaves_the_trained_model_usable(tiny_sample, repo_config, tmp_path,
                                                      monkeypatch, capfd):
    """Train; point the config at a broken item_info (fewer items) and fail; restore: the good
    checkpoint still predicts exactly as before (its feature map was not rewritten)."""
    import numpy as np
    import pyarrow.parquet as pq
    from helpers import fast_config

    from fuxictr_mmctr.train.experiment import predict_split

    monkeypatch.chdir(tmp_path)
    config_dir = fast_config(repo_config, tiny_sample, epochs=1)
    assert _train(config_dir) == 0
    before = predict_split(config_dir, "DIN_sample", "valid")

    data = tiny_sample / "MicroLens_1M_x1"
    broken = tmp_path / "item_info_short.parquet"
    table = pq.read_table(data / "item_info.parquet")
    pq.write_table(table.slice(0, table.num_rows // 2), broken)
    dataset = config_dir / "dataset_config.yaml"
    good = dataset.read_text()
    dataset.write_text(good.replace(str(data / "item_info.parquet"), str(broken)))
    capfd.readouterr()
    assert _train(config_dir) == 2
    out, err = capfd.readouterr()
    assert "item_info_short.parquet" in out + err and "Traceback" not in out + err
    dataset.write_text(good)

    np.testing.assert_array_equal(predict_split(config_dir, "DIN_sample", "valid"), before)
    staging = list((tmp_path / "checkpoints" / "MicroLens_sample" / "feature_maps").glob(".*"))
    assert staging == []  # the failed run's private folder is gone


def test_the_same_expid_cannot_train_twice_at_once(tiny_sample, repo_config, tmp_path,
                                                    monkeypatch, capfd):
    from helpers import fast_config

    from fuxictr_mmctr.train import artifacts, experiment

    monkeypatch.chdir(tmp_path)
    config_dir = fast_config(repo_config, tiny_sample, epochs=1)
    params = experiment.load_params(config_dir, "DIN_sample")
    with artifacts.expid_lock(params):  # stands for a run in another process
        assert _train(config_dir) == 2
    assert "is already training (pid" in "".join(capfd.readouterr())
    assert not (tmp_path / "checkpoints" / "MicroLens_sample" / "DIN_sample.log").exists()


def test_fixed_images_are_encoded_again_not_served_from_the_cache(sample_copy, tmp_path):
    """The CLIP cache was keyed on the folder path: fixing a corrupt image and rerunning kept
    the text fallback. Now a changed file is re-encoded and the result equals a fresh run."""
    import json

    images = sample_copy / "item_images"
    good = (images / "2.jpg").read_bytes()
    (images / "3.jpg").write_bytes(b"not a jpeg")
    common = ("--data-dir", sample_copy, "--tiny-clip", "--no-progress", "--seed", 5)
    work, out = tmp_path / "work", tmp_path / "a.parquet"
    assert build_embeddings_cli(*common, "--out", out, "--work-dir", work) == 0
    first = json.loads(out.with_suffix(".report.json").read_text())["sources"]

    (images / "3.jpg").write_bytes(good)  # the user fixes the image
    assert build_embeddings_cli(*common, "--out", out, "--work-dir", work) == 0
    second = json.loads(out.with_suffix(".report.json").read_text())["sources"]
    assert second["image_corrupt"] == first["image_corrupt"] - 1

    fresh = tmp_path / "fresh.parquet"
    assert build_embeddings_cli(*common, "--out", fresh, "--work-dir", tmp_path / "w2") == 0
    # Not bit-identical: the re-encoded item's title was tokenised in a batch of one, padded
    # shorter than in the fresh run's batch, which moves its fp16 text feature by ~1e-4 and the
    # fused vectors by < 1e-6. Everything else is identical.
    np.testing.assert_allclose(_vectors(out), _vectors(fresh), rtol=0, atol=1e-5)
