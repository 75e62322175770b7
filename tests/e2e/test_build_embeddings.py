"""Tests of fuxictr_mmctr.embeddings: each component on tiny arrays, the CLIP extractor with a
tiny CLIP saved to disk and loaded through ``from_pretrained``, and ``mmctr build-embeddings``
end to end on the tiny sample."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from helpers import build_embeddings_cli, item_texts, linear_views, write_images

from fuxictr_mmctr.cli.embeddings import BUILD_EMBEDDINGS as emb_cli
from fuxictr_mmctr.embeddings.export import check_vectors, report_path_for
from fuxictr_mmctr.embeddings.projector import ProjectorConfig, train_projector
from fuxictr_mmctr.embeddings.cache import FeatureCache, cache_fingerprint
from fuxictr_mmctr.embeddings.encoders.clip import ClipEncoder, load_clip
from fuxictr_mmctr.embeddings.extract import extract_features
from fuxictr_mmctr.embeddings.student import StudentConfig
from fuxictr_mmctr.embeddings.teacher import (IMPUTED, NONE, SEQUENCE, TeacherConfig,
                                              train_teacher)

# ============================================================================ fixtures


def _counting(model):
    calls = {"text": 0, "image": 0}
    text_fn, image_fn = model.get_text_features, model.get_image_features

    def text(*a, **k):
        calls["text"] += 1
        return text_fn(*a, **k)

    def image(*a, **k):
        calls["image"] += 1
        return image_fn(*a, **k)

    model.get_text_features, model.get_image_features = text, image
    return calls


def _args(*argv):
    parser = argparse.ArgumentParser()
    emb_cli.add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def _read_vectors(path):
    table = pq.read_table(path)
    return table, np.array(table.column("item_emb_d128").to_pylist(), np.float32)


def test_teacher_learns_imputes_and_flags():
    rng = np.random.default_rng(0)
    n = 30
    tags = np.zeros((n + 1, 3), np.int64)
    tags[1:, -1] = 1 + (np.arange(n) % 4)   # 4 tags over all items
    tags[29, -1] = 7                        # item 29: a tag no known item has
    seqs = [[str(x) for x in rng.integers(1, 26, 8)] for _ in range(200)]   # items 1..25 only
    res = train_teacher(seqs, tags, TeacherConfig(dim=16, vector_size=16, epochs=2, workers=1))
    assert res.vectors.shape == (n + 1, 16) and res.vectors.dtype == np.float32
    assert (res.source[1:26] == SEQUENCE).all()
    assert (res.source[26:29] == IMPUTED).all()
    assert res.source[29] == NONE and res.source[30] == IMPUTED and res.source[0] == NONE
    norms = np.linalg.norm(res.vectors, axis=1)
    np.testing.assert_allclose(norms[res.mask], 1.0, atol=1e-5)
    assert not res.vectors[0].any() and not res.vectors[29].any()
    assert res.counts() == {"sequence": 25, "imputed": 4, "none": 1}


def test_projector_loss_decreases_and_generalises():
    s, t, mask = linear_views()
    t_mask = mask.copy()
    t_mask[250:] = False                                       # cold items: no teacher
    cfg = ProjectorConfig(hidden_units=(32,), out_dim=8, epochs=25, patience=25, batch_size=64,
                          learning_rate=3e-3, dropout=0.0, seed=1, progress=False)
    res = train_projector(s, mask, t, t_mask, cfg)
    assert res.train_losses[-1] < 0.5 * res.train_losses[0]
    assert res.val_cosine > 0.8
    assert res.n_val == 25 and res.n_train == 224
    cold_cos = (res.vectors[250:] * t[250:]).sum(1).mean()     # never trained on
    assert cold_cos > 0.7
    np.testing.assert_allclose(np.linalg.norm(res.vectors[1:], axis=1), 1.0, atol=1e-5)
    assert not res.vectors[0].any()
    again = train_projector(s, mask, t, t_mask, cfg)           # seeded
    np.testing.assert_allclose(again.vectors, res.vectors, atol=1e-6)


def test_killed_run_resumes_without_re_encoding(tiny_clip, tmp_path):
    n = 22
    img = tmp_path / "item_images"
    write_images(img, n)
    texts = item_texts(n)
    model, processor = load_clip(str(tiny_clip))
    encoder = ClipEncoder(model, processor)
    fp = cache_fingerprint(str(tiny_clip), texts, img)
    cfg = StudentConfig(batch_size=4, num_workers=2, progress=False)

    calls = _counting(model)
    first = extract_features(encoder, texts, img,
                             FeatureCache(tmp_path / "cache", n + 1, 512, fp),
                             StudentConfig(**{**cfg.__dict__, "max_batches": 3}))
    assert not first.complete and first.batches == 3 and calls == {"text": 3, "image": 3}
    assert first.done[1:].sum() == 12

    calls = _counting(model)                            # "rerun": a fresh cache object
    second = extract_features(encoder, texts, img,
                              FeatureCache(tmp_path / "cache", n + 1, 512, fp), cfg)
    assert second.complete and second.batches == 3 and calls == {"text": 3, "image": 3}
    both = np.concatenate([first.encoded_items, second.encoded_items])
    assert sorted(both) == list(range(1, n + 1))        # every item exactly once

    full = extract_features(encoder, texts, img,
                            FeatureCache(tmp_path / "fresh", n + 1, 512, fp), cfg)
    np.testing.assert_allclose(second.text, full.text, atol=1e-3)
    np.testing.assert_allclose(second.image, full.image, atol=1e-3)

    calls = _counting(model)                            # nothing left to do
    third = extract_features(encoder, texts, img,
                             FeatureCache(tmp_path / "cache", n + 1, 512, fp), cfg)
    assert third.batches == 0 and calls == {"text": 0, "image": 0} and third.complete

    other = FeatureCache(tmp_path / "cache", n + 1, 512, dict(fp, texts_sha1="changed"))
    assert not other.done.any()                         # other inputs: start afresh


def test_build_embeddings_end_to_end(sample_copy):
    data = sample_copy
    info = data / "MicroLens_1M_x1" / "item_info.parquet"
    # bad input on top of the sample: ids unknown to item_info in item_seq, null/empty titles,
    # missing and unreadable images
    seq = pq.read_table(data / "item_seq.parquet")
    rows = seq.column("item_seq").to_pylist()
    rows[0][-1] = 10_000
    seq = seq.set_column(seq.column_names.index("item_seq"), "item_seq",
                         pa.array(rows, seq.schema.field("item_seq").type))
    pq.write_table(seq, data / "item_seq.parquet")
    feat = pq.read_table(data / "item_feature.parquet")
    titles = feat.column("item_title").to_pylist()
    titles[0], titles[1] = None, "  "
    feat = feat.set_column(feat.column_names.index("item_title"), "item_title",
                           pa.array(titles, pa.string()))
    pq.write_table(feat, data / "item_feature.parquet")
    (data / "item_images" / "7.jpg").unlink()
    (data / "item_images" / "8.jpg").write_bytes(b"\xff\xd8garbage")
    before = pq.read_table(info)

    common = ["--data-dir", data, "--tiny-clip", "--w2v-epochs", 2, "--projector-epochs", 5,
              "--batch-size", 128, "--num-workers", 0, "--no-progress"]
    # killed during CLIP extraction: nothing written, rerun resumes
    assert emb_cli.run(_args(*common, "--max-batches", 1)) == 3
    out = info.with_name("item_info_task1.parquet")
    assert not out.exists()
    assert emb_cli.run(_args(*common)) == 0

    table, vec = _read_vectors(out)
    assert table.num_rows == before.num_rows
    for name in before.column_names:
        if name != "item_emb_d128":
            assert table.column(name).equals(before.column(name)), name
    assert pq.read_table(info).equals(before)                  # input untouched
    assert not vec[0].any() and np.isfinite(vec).all()
    np.testing.assert_allclose(np.linalg.norm(vec[1:], axis=1), 1.0, atol=1e-3)
    rep = json.loads(report_path_for(out).read_text())
    src = rep["sources"]
    assert src["items"] == 400 and src["image_missing"] == 1 and src["image_corrupt"] == 1
    assert src["image_fallback"] == 2
    assert src["teacher"] + src["imputed"] + src["no_teacher"] == 400
    assert rep["item_seq"]["unknown_item_tokens"] == 1
    assert rep["text"]["empty_titles"] >= 2
    assert -1 <= rep["projector"]["val_cosine"] <= 1
    assert 0 <= rep["gate"]["min"] <= rep["gate"]["mean"] <= rep["gate"]["max"] <= 1
    assert rep["tiny_clip"] is True

    # another fusion reuses the CLIP cache; refuses to overwrite the input without the flag
    alt = data / "alt.parquet"
    assert emb_cli.run(_args(*common, "--fusion", "pca", "--out", alt,
                             "--work-dir", out.with_name("item_info_task1_work"))) == 0
    _, pca_vec = _read_vectors(alt)
    assert not np.allclose(pca_vec, vec)
    assert build_embeddings_cli(*common, "--out", info) == 2
    assert pq.read_table(info).equals(before)
    # ... and does, once asked, keeping every other column
    assert emb_cli.run(_args(*common, "--fusion", "teacher", "--out", info, "--overwrite-input",
                             "--work-dir", out.with_name("item_info_task1_work"))) == 0
    table, vec = _read_vectors(info)
    assert table.column("item_tags").equals(before.column("item_tags"))
    check_vectors(vec, info)


def test_runs_as_mmctr_build_embeddings(sample_copy, tmp_path):
    from fuxictr_mmctr import cli

    assert cli.COMMANDS["build-embeddings"][0] == "embeddings:BUILD_EMBEDDINGS"
    out = tmp_path / "emb.parquet"
    rc = cli.main(["build-embeddings", "--data-dir", str(sample_copy), "--tiny-clip",
                   "--fusion", "student", "--out", str(out), "--w2v-epochs", "1",
                   "--projector-epochs", "2", "--num-workers", "0", "--no-progress"])
    assert rc == 0
    _, vec = _read_vectors(out)
    check_vectors(vec, out)


def test_every_source_family_through_the_command_line(tiny_sample, tiny_models, tmp_path):
    """Columns, BERT, a sentence-transformers folder (reduced to 16 by PCA), a ViT, SigLIP's
    image tower, a LLaVA-style VLM and the tiny CLIP in one item_info, gated with the teacher;
    the rerun encodes nothing and writes the same bytes."""
    import hashlib

    m = {k: str(v) for k, v in tiny_models.items()}
    sources = ["columns", f"text:{m['bert']}", f"text:{m['st']}:dim=16",
               f"image:{m['vit']}:pooling=mean", f"image:{m['siglip']}",
               f"vlm:{m['vlm']}:layer=-2,max_side=64,batch_size=32", "clip"]
    out, work = tmp_path / "item_info.parquet", tmp_path / "work"
    argv = ["--data-dir", tiny_sample, "--tiny-clip", "--w2v-epochs", 1, "--projector-epochs",
            2, "--num-workers", 0, "--no-progress", "--out", out, "--work-dir", work]
    for spec in sources:
        argv += ["--source", spec]
    assert emb_cli.run(_args(*argv)) == 0
    rep = json.loads(report_path_for(out).read_text())
    kinds = [(e["kind"], e["dim"]) for e in rep["encoders"]]
    assert kinds == [("columns", 768), ("columns", 1024), ("text", 32), ("text", 32),
                     ("image", 32), ("image", 32), ("vlm", 32), ("clip", 512)]
    assert rep["content_dim"] == 768 + 1024 + 32 + 16 + 32 + 32 + 32 + 512
    models = [e for e in rep["encoders"] if e["kind"] != "columns"]
    assert all(e["encoded_this_run"] == 400 and e["items_per_second"] > 0 for e in models)
    assert all(e["items_with_feature"] == 400 for e in rep["encoders"])
    assert len(list((work / "features").iterdir())) == 6          # one cache per model source
    _, vec = _read_vectors(out)
    check_vectors(vec, out)
    first = hashlib.sha256(out.read_bytes()).hexdigest()

    assert emb_cli.run(_args(*argv)) == 0                          # resumed: nothing to encode
    rep = json.loads(report_path_for(out).read_text())
    assert all(e["encoded_this_run"] == 0 for e in rep["encoders"] if e["kind"] != "columns")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == first


def test_an_item_no_source_covers_is_named(sample_copy, tiny_models, tmp_path, caplog):
    """An image-only model gives no feature where the image is missing; with PCA nothing else
    covers the item: exit 2 naming it, nothing written."""
    (sample_copy / "item_images" / "7.jpg").unlink()
    out = tmp_path / "out.parquet"
    assert build_embeddings_cli("--data-dir", sample_copy, "--source",
                                f"image:{tiny_models['vit']}", "--fusion", "pca",
                                "--num-workers", 0, "--no-progress", "--out", out) == 2
    assert "1 item(s) (e.g. [7]) have no vector" in caplog.text
    assert "fusion 'pca' does not use the teacher" in caplog.text
    assert not out.exists()
