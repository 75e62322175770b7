"""What a user can do wrong, or what can go wrong around a run, must not damage a trained model
or silently give a different result (issue 11): reproducibility, stale caches, failed runs."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

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
    from fuxictr_mmctr.cli.experiment import train_main

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


# ------------------------------------------------------------------ full and read-only disks
def _mount_tmpfs(folder, options):
    import subprocess

    import pytest

    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")
    return folder


@pytest.fixture
def full_disk(tmp_path):
    """An 8 KiB file system: writes past that fail with ENOSPC."""
    import subprocess

    folder = _mount_tmpfs(tmp_path / "full", "size=8k")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    import subprocess

    folder = _mount_tmpfs(tmp_path / "ro", "ro,size=64k")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def _one_clean_line(capfd):
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert lines and "Traceback" not in out + err, out + err
    return lines[-1]


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tiny_sample, full_disk, tmp_path,
                                                          capfd):
    from fuxictr_mmctr import cli

    data = tiny_sample / "MicroLens_1M_x1"
    preds = tmp_path / "preds.npy"
    np.save(preds, np.random.default_rng(0).random(1000))
    code = cli.main(["submit", "--pred", str(preds), "--test", str(data / "test.parquet"),
                     "--out", str(full_disk / "big.zip")])
    assert code == 2 and "No space left on device" in _one_clean_line(capfd)
    assert cli.main(["make-sample", "--out", str(full_disk / "sample"), "--preset",
                     "tiny"]) == 2
    assert "No space left on device" in _one_clean_line(capfd)
    assert list(full_disk.iterdir()) in ([], [full_disk / "sample"])  # no temp file left
    leftovers = [p for p in full_disk.rglob("*") if p.is_file()]
    assert leftovers == []


def test_a_read_only_output_folder_is_one_line(tiny_sample, read_only_disk, capfd):
    from fuxictr_mmctr import cli

    code = cli.main(["popularity", "--data-dir", str(tiny_sample / "MicroLens_1M_x1"),
                     "--out", str(read_only_disk / "pop.zip")])
    assert code == 2 and "Read-only file system" in _one_clean_line(capfd)


# ------------------------------------------------------------------ signals during training
@pytest.mark.parametrize("signum", ["SIGINT", "SIGKILL"])
def test_a_signal_during_training_keeps_a_usable_checkpoint(tiny_sample, repo_config, tmp_path,
                                                           signum):
    """Kill run_expid.py after its first checkpoint: the checkpoint on disk is complete, finds
    its feature map and predicts; the lock dies with the process, so the expid can run again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import ROOT, fast_config

    from fuxictr_mmctr.train import artifacts, experiment

    config_dir = fast_config(repo_config, tiny_sample, epochs=50, batch_size=256, max_len=8,
                             early_stop_patience=50)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # SIGINT as a terminal delivers it: a suite run as a background job (`make test &`,
    # nohup) passes SIGINT ignored to its children, and Python then installs no handler
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_expid.py"), "--config",
                             str(config_dir), "--expid", "DIN_sample", "--gpu", "-1"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint = tmp_path / "checkpoints" / "MicroLens_sample" / "DIN_sample.model"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint was written"
    time.sleep(1.0)  # well into the next epoch
    proc.send_signal(getattr(signal, signum))
    assert proc.wait(timeout=120) != 0

    os.chdir(tmp_path)
    try:
        scores = experiment.predict_split(config_dir, "DIN_sample", "valid")
        assert np.isfinite(scores).all() and len(scores) > 0
        params = experiment.load_params(config_dir, "DIN_sample")
        with artifacts.expid_lock(params):
            pass  # not held by the dead process
    finally:
        os.chdir(ROOT)


# ------------------------------------------------------------------ a file past the size limit
def _limited(args, cwd, limit_bytes):
    """Run the package's CLI in a process whose files may not grow past ``limit_bytes``
    (``ulimit -f``: a write past it fails with EFBIG; Python ignores SIGXFSZ)."""
    import os
    import resource
    import subprocess
    import sys

    from helpers import ROOT

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "fuxictr_mmctr", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)


def test_efbig_writing_a_zip_is_one_line(tiny_sample, tmp_path):
    data = tiny_sample / "MicroLens_1M_x1"
    preds = tmp_path / "preds.npy"
    np.save(preds, np.random.default_rng(0).random(1000))
    out = tmp_path / "sub.zip"
    result = _limited(["submit", "--pred", preds, "--test", data / "test.parquet", "--out", out],
                      tmp_path, 4096)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{out}: File too large" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["preds.npy"]  # no temp file left


def test_efbig_writing_a_checkpoint_keeps_the_model_and_the_log(tiny_sample, repo_config,
                                                                tmp_path, monkeypatch):
    """The checkpoint write failed with torch's RuntimeError traceback, and FuxiCTR's log
    (opened with mode 'w') had already replaced the previous run's."""
    from helpers import fast_config

    from fuxictr_mmctr.train.experiment import predict_split

    monkeypatch.chdir(tmp_path)
    config_dir = fast_config(repo_config, tiny_sample, epochs=1, max_len=8)
    assert _train(config_dir) == 0
    folder = tmp_path / "checkpoints" / "MicroLens_sample"
    log, checkpoint = folder / "DIN_sample.log", folder / "DIN_sample.model"
    before = predict_split(config_dir, "DIN_sample", "valid")
    first_log, weights = log.read_text(), checkpoint.read_bytes()

    result = _limited(["train", "--config", config_dir, "--expid", "DIN_sample"], tmp_path,
                      len(weights) // 2)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{checkpoint}: File too large" in result.stderr
    assert "Traceback" not in result.stderr
    assert checkpoint.read_bytes() == weights  # the good model, untouched
    assert (folder / "DIN_sample.log.1").read_text() == first_log  # the previous run's log
    assert "File too large" in log.read_text()  # this run's, with its error
    np.testing.assert_array_equal(predict_split(config_dir, "DIN_sample", "valid"), before)
    assert not [p for p in folder.iterdir() if p.name.startswith(".DIN_sample.model")]
