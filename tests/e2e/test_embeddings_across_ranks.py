"""torchrun -m fuxictr_mmctr.cli build-embeddings: each model source's pass shared by 2 ranks
(CPU, a tiny CLIP and a tiny BERT) gives the features and the item_info one process gives, and
resumes after a stop."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from helpers import build_embeddings_cli, torchrun

ARGS = ("--tiny-clip", "--w2v-epochs", "1", "--projector-epochs", "2", "--num-workers", "0",
        "--no-progress", "--batch-size", "16")
ROWS = 401                                              # 400 items + padding row


def _cache(work, kind):
    (folder,) = (work / "features").glob(f"{kind}-*")
    return folder


def _features(work, kind, part):
    return np.fromfile(_cache(work, kind) / f"{part}.f16", dtype=np.float16).reshape(ROWS, -1)


def test_two_ranks_give_the_features_and_item_info_of_one_process(tiny_sample, tiny_models,
                                                                   tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    sources = ("--source", "clip", "--source", f"text:{tiny_models['bert']}")
    assert build_embeddings_cli("--data-dir", tiny_sample, *ARGS, *sources, "--out",
                                one / "item_info.parquet", "--work-dir", one / "work") == 0

    def launch(*extra):
        return torchrun("-m", "fuxictr_mmctr.cli", "build-embeddings", "--data-dir", tiny_sample,
                        *ARGS, *sources, "--out", two / "item_info.parquet", "--work-dir",
                        two / "work", *extra, cwd=tmp_path, timeout=600)

    stopped = launch("--max-batches", "2")          # as if killed after 2 batches per rank
    assert stopped.returncode != 0 and "exitcode  : 3" in stopped.stderr, stopped.stderr[-3000:]
    cache = _cache(two / "work", "clip")
    assert np.load(cache / "done.npy").sum() == 2 * 2 * 16   # both ranks' shards were merged
    assert not (cache / "shards").exists()
    assert not list((two / "work" / "features").glob("text-*"))   # stopped before it
    assert not (two / "item_info.parquet").exists()

    resumed = launch()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    for kind, part in (("clip", "image"), ("clip", "text"), ("text", "text")):
        assert np.load(_cache(two / "work", kind) / "done.npy")[1:].all()
        a, b = _features(one / "work", kind, part), _features(two / "work", kind, part)
        if (kind, part) == ("clip", "image"):
            assert np.array_equal(a.view(np.uint16), b.view(np.uint16))  # bit for bit
        else:                                          # within fp16 rounding
            np.testing.assert_allclose(b.astype(np.float32), a.astype(np.float32), rtol=1e-3,
                                       atol=1e-3)
    np.testing.assert_array_equal(np.load(cache / "image_status.npy"),
                                  np.load(_cache(one / "work", "clip") / "image_status.npy"))
    a, b = pq.read_table(one / "item_info.parquet"), pq.read_table(two / "item_info.parquet")
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    np.testing.assert_allclose(np.array(b.column("item_emb_d128").to_pylist()),
                               np.array(a.column("item_emb_d128").to_pylist()), atol=1e-5)
