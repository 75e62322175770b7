"""What a user can do wrong, or what can go wrong around a run, must not damage a trained model
or silently give a different result (issue 11): reproducibility, stale caches, failed runs."""
from __future__ import annotations

import hashlib

from helpers import build_embeddings_cli


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
