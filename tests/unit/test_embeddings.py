"""Tests of fuxictr_mmctr.embeddings: each component on tiny arrays, the CLIP extractor with a
tiny CLIP saved to disk and loaded through ``from_pretrained``, and ``mmctr build-embeddings``
end to end on the tiny sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import build_embeddings_cli, item_texts, linear_views, write_images

from fuxictr_mmctr.errors import ConfigError, DataValidationError
from fuxictr_mmctr.embeddings.data import SequenceCorpus, read_item_side, read_vector_column
from fuxictr_mmctr.embeddings.export import check_vectors, report_path_for, write_item_info
from fuxictr_mmctr.embeddings.fusion import (SRC_FUSED, SRC_STUDENT, SRC_TEACHER, FusionConfig,
                                             cosine_gate, fuse)
from fuxictr_mmctr.embeddings.projector import ProjectorConfig, distill_loss, train_projector
from fuxictr_mmctr.embeddings.cache import FeatureCache, cache_fingerprint
from fuxictr_mmctr.embeddings.encoders.clip import (ClipEncoder, ClipUnavailableError, clip_dim,
                                                    load_clip)
from fuxictr_mmctr.embeddings.extract import extract_features
from fuxictr_mmctr.embeddings.encoders import load_encoder
from fuxictr_mmctr.embeddings.images import (IMAGE_CORRUPT, IMAGE_MISSING, IMAGE_OK,
                                             IMAGE_REJECTED, FastImageTransform, ItemImages)
from fuxictr_mmctr.embeddings.sources import (SourceResult, SourceSpec, combine_sources,
                                              parse_sources)
from fuxictr_mmctr.embeddings.student import StudentConfig
from fuxictr_mmctr.embeddings.teacher import TeacherConfig, impute_from_tags, train_teacher
from fuxictr_mmctr.embeddings.vectors import l2_normalize

# ============================================================================ fixtures


def _write_item_info(path: Path, tags: np.ndarray, dim: int = 128, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = len(tags)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    emb[0] = 0
    table = pa.table({"item_id": pa.array(np.arange(n), pa.int64()),
                      "item_tags": pa.array([list(t) for t in tags], pa.list_(pa.int64())),
                      "item_emb_d128": pa.array([list(e) for e in emb], pa.list_(pa.float32()))})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _write_seq(path: Path, seqs, width: int = 10) -> Path:
    rows = []
    for s in seqs:
        s = list(s)[-width:]
        rows.append([0] * (width - len(s)) + s)
    pq.write_table(pa.table({"user_id": pa.array(np.arange(len(rows)), pa.int64()),
                             "item_seq": pa.array(rows, pa.list_(pa.int64()))}), path)
    return path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ============================================================================ teacher


def test_impute_from_tags_is_the_mean_of_tag_means():
    v = l2_normalize(np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0], [0, 0]], np.float32))
    known = np.array([False, True, True, True, False, False])
    tags = np.array([[0, 0], [0, 1], [0, 2], [1, 2], [2, 1], [0, 9]])
    out = impute_from_tags(v, known, tags)
    tag1 = (v[1] + v[3]) / 2
    tag2 = (v[2] + v[3]) / 2
    want = (tag1 + tag2) / np.linalg.norm(tag1 + tag2)
    np.testing.assert_allclose(out[4], want, atol=1e-6)
    assert not out[5].any()            # tag 9 is carried by no known item: no vector
    assert not out[1:4].any()          # known rows are left to the caller


def test_teacher_needs_sequences():
    with pytest.raises(ValueError, match="at least 2"):
        train_teacher([["1"]], np.zeros((3, 2), np.int64), TeacherConfig(epochs=1, workers=1))


def test_sequence_corpus_strips_padding_skips_unknown_and_subsamples(tmp_path):
    path = _write_seq(tmp_path / "item_seq.parquet",
                      [[1, 2, 3], [4, 99, 5], [2], [0, 3, -1]], width=5)
    corpus = SequenceCorpus(path, num_items=5, batch_rows=2)
    assert list(corpus) == [["1", "2", "3"], ["4", "5"], ["2"], ["3"]]
    assert corpus.stats.unknown_tokens == 2 and corpus.stats.users == 4
    assert list(corpus) == list(corpus)                         # restartable
    assert list(SequenceCorpus(path, num_items=5, keep_mod=2)) == [["1", "2", "3"], ["2"]]


def test_sequence_corpus_names_file_and_column(tmp_path):
    path = tmp_path / "item_seq.parquet"
    pq.write_table(pa.table({"user_id": [1], "seq": [[1, 2]]}), path)
    with pytest.raises(DataValidationError, match="item_seq.parquet, column 'item_seq'"):
        SequenceCorpus(path, num_items=5)
    with pytest.raises(DataValidationError, match="file not found"):
        SequenceCorpus(tmp_path / "nope.parquet", num_items=5)


# ============================================================================ projector


def test_distill_loss_values():
    import torch

    t = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    assert float(distill_loss(t, t, 0.1, 0.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(-t, t, 0.1, 0.0)) == pytest.approx(2.0, abs=1e-6)
    # InfoNCE part: aligned pairs score lower than shuffled ones
    assert float(distill_loss(t, t, 0.1, 1.0)) < float(distill_loss(t.roll(1, 0), t, 0.1, 1.0))


def test_projector_needs_pairs():
    s, t, mask = linear_views(n=5, d=128)
    none = np.zeros_like(mask)
    with pytest.raises(ValueError, match="at least 2"):
        train_projector(s, mask, t, none, ProjectorConfig(progress=False))


# ============================================================================ fusion


def test_gate_formula_values():
    t = np.array([[1, 0], [1, 0], [1, 0], [1, 0]], np.float32)
    s = np.array([[1, 0], [0, 1], [-1, 0], [np.sqrt(0.5), np.sqrt(0.5)]], np.float32)
    np.testing.assert_allclose(cosine_gate(t, s),
                               [1.0, 0.5, 0.0, (np.sqrt(0.5) + 1) / 2], atol=1e-6)


def test_fuse_gate_mean_teacher_student():
    t = np.array([[0, 0], [1, 0], [1, 0], [1, 0], [0, 0]], np.float32)
    s = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, 1]], np.float32)
    has = np.array([False, True, True, True, False])
    g = fuse(FusionConfig("gate"), teacher=t, teacher_mask=has, student=s)
    np.testing.assert_allclose(g.vectors[1], [1, 0], atol=1e-6)                 # g = 1
    np.testing.assert_allclose(g.vectors[2], [np.sqrt(.5), np.sqrt(.5)], atol=1e-6)  # g = .5
    np.testing.assert_allclose(g.vectors[3], [-1, 0], atol=1e-6)                # g = 0 -> s
    np.testing.assert_allclose(g.vectors[4], [0, 1], atol=1e-6)                 # no teacher
    assert not g.vectors[0].any()
    assert list(g.source) == [0, SRC_FUSED, SRC_FUSED, SRC_FUSED, SRC_STUDENT]
    np.testing.assert_allclose(g.gate[1:4], [1.0, 0.5, 0.0])
    assert np.isnan(g.gate[4]) and g.gate_stats()["count"] == 3

    m = fuse(FusionConfig("mean"), teacher=t, teacher_mask=has, student=s)
    np.testing.assert_allclose(m.vectors[2], [np.sqrt(.5), np.sqrt(.5)], atol=1e-6)
    np.testing.assert_allclose(m.vectors[3], [-1, 0], atol=1e-6)    # t = -s: keep student
    te = fuse(FusionConfig("teacher"), teacher=t, teacher_mask=has, student=s)
    np.testing.assert_allclose(te.vectors[1:4], t[1:4])
    np.testing.assert_allclose(te.vectors[4], s[4])
    assert te.source[1] == SRC_TEACHER and te.source[4] == SRC_STUDENT
    st = fuse(FusionConfig("student"), student=s)
    np.testing.assert_allclose(st.vectors, s)
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(FusionConfig("max"), student=s)
    with pytest.raises(ValueError, match="teacher"):
        fuse(FusionConfig("gate"), student=s)


def test_fuse_pca():
    rng = np.random.default_rng(0)
    content = rng.normal(size=(50, 20)).astype(np.float32)
    res = fuse(FusionConfig("pca", dim=8), content=content)
    assert res.vectors.shape == (50, 8) and not res.vectors[0].any()
    check_vectors(res.vectors, "x")


# ============================================================================ export


def test_export_keeps_other_columns_and_checks_vectors(tmp_path):
    tags = np.array([[0, 0], [0, 3], [2, 4]])
    src = _write_item_info(tmp_path / "item_info.parquet", tags, dim=4)
    vec = l2_normalize(np.array([[0, 0, 0, 0], [1, 2, 3, 4], [4, 3, 2, 1]], np.float32))
    out = write_item_info(src, tmp_path / "out.parquet", vec)
    old, new = pq.read_table(src), pq.read_table(out)
    assert new.column("item_id").equals(old.column("item_id"))
    assert new.column("item_tags").equals(old.column("item_tags"))
    got = np.array(new.column("item_emb_d128").to_pylist(), np.float32)
    np.testing.assert_array_equal(got, vec)
    assert new.column("item_emb").equals(new.column("item_emb_d128"))
    assert report_path_for(out).name == "out.report.json"

    bad = vec.copy()
    bad[2] = np.nan
    with pytest.raises(DataValidationError, match="column 'item_emb_d128', row 2: NaN"):
        write_item_info(src, tmp_path / "bad.parquet", bad)
    bad = vec.copy()
    bad[1] *= 2
    with pytest.raises(DataValidationError, match="row 1: norm"):
        write_item_info(src, tmp_path / "bad.parquet", bad)
    bad = vec.copy()
    bad[0, 0] = 1
    with pytest.raises(DataValidationError, match="row 0"):
        write_item_info(src, tmp_path / "bad.parquet", bad)
    assert not (tmp_path / "bad.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item_info.parquet", "out.parquet"]

    with pytest.raises(ValueError, match="--overwrite-input"):
        write_item_info(src, src, vec)
    before = pq.read_table(src)
    write_item_info(src, src, vec, overwrite_input=True)
    assert pq.read_table(src).column("item_tags").equals(before.column("item_tags"))
    np.testing.assert_array_equal(
        np.array(pq.read_table(src).column("item_emb_d128").to_pylist(), np.float32), vec)


# ============================================================================ cache


def test_feature_cache_reopens_read_only_as_written(tmp_path):
    """What shards.merge_shards reads: the cache's own files through the cache, not by hand."""
    rng = np.random.default_rng(0)
    cache = FeatureCache(tmp_path / "c", 6, 4, {"model": "m"})
    rows = np.array([2, 5])
    parts = {"image": rng.normal(size=(2, 4)), "text": rng.normal(size=(2, 4))}
    cache.write(rows, parts, np.array([IMAGE_OK, IMAGE_MISSING], np.int8))
    cache.sync()
    ro = FeatureCache.open_readonly(tmp_path / "c")
    assert ro.meta == cache.meta and (ro.rows, ro.dim, ro.parts) == (6, 4, ("image", "text"))
    assert list(np.flatnonzero(ro.done)) == [2, 5]
    assert list(ro.image_status[rows]) == [IMAGE_OK, IMAGE_MISSING]
    np.testing.assert_array_equal(ro.text[rows], parts["text"].astype(np.float16))
    with pytest.raises(ValueError):
        ro.image[0] = 1.0                                  # read-only memmap
    (tmp_path / "c" / "done.npy").unlink()
    with pytest.raises(OSError):
        FeatureCache.open_readonly(tmp_path / "c")


# ============================================================================ student


def test_tiny_clip_loads_through_from_pretrained(tiny_clip):
    model, processor = load_clip(str(tiny_clip))
    assert clip_dim(model) == 512 and not model.training
    assert processor.tokenizer("a cat")["input_ids"][0] == processor.tokenizer.bos_token_id


def test_missing_clip_weights_say_how_to_point_at_a_local_copy(tmp_path):
    with pytest.raises(ClipUnavailableError, match="--clip /path/to/that/folder.*--tiny-clip"):
        load_clip(str(tmp_path / "no-such-clip"), local_files_only=True)


def test_fast_preprocessing_matches_the_processor(tiny_clip):
    from PIL import Image

    _, processor = load_clip(str(tiny_clip))
    fast = FastImageTransform.from_processor(processor.image_processor)
    assert fast is not None
    rng = np.random.default_rng(0)
    for shape in [(40, 48, 3), (64, 64, 3), (100, 37, 3), (1, 1, 3), (33, 200, 3)]:
        img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8))
        # channels_last: transformers 4.x guesses channels-first for a (1, 1, 3) image
        want = processor.image_processor(images=[img], return_tensors="pt",
                                         input_data_format="channels_last")["pixel_values"]
        got = fast.batch([fast.image(img)])
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)
    processor.image_processor.do_center_crop = False          # not CLIP's recipe: no fast path
    assert FastImageTransform.from_processor(processor.image_processor) is None


def test_fast_preprocessing_of_large_jpeg_covers_is_close_to_the_processor(tmp_path):
    """A large JPEG is decoded at a reduced scale (PIL's draft mode, the speed-up that
    bench/clip_extract.py measures): CLIP's 224-pixel recipe, within 3 grey levels."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor()                           # CLIP ViT's 224 recipe
    fast = FastImageTransform.from_processor(processor)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    path = tmp_path / "cover.jpg"
    Image.fromarray(small).resize((1280, 960), Image.Resampling.BICUBIC).save(path, quality=90)
    with Image.open(path) as img:
        got = fast.batch([fast.image(img)]).numpy()
        assert img.size == (320, 240)                          # decoded at 1/4 scale
    with Image.open(path) as img:
        want = processor(images=[img.convert("RGB")], return_tensors="pt")["pixel_values"].numpy()
    grey_level = 1 / 255 / min(processor.image_std)            # one step of 8 bits, normalised
    assert got.shape == want.shape == (1, 3, 224, 224)
    assert np.abs(got - want).max() < 3 * grey_level
    assert np.abs(got - want).mean() < 0.5 * grey_level


@pytest.mark.parametrize("fast", [True, False])
def test_bad_images_fall_back_to_text(tiny_clip, tmp_path, fast):
    from PIL import Image

    n = 9
    img = tmp_path / "item_images"
    write_images(img, n)
    Image.new("L", (50, 30), 128).save(img / "1.jpg")                    # grayscale
    Image.new("RGBA", (30, 30), (10, 20, 30, 40)).save(img / "2.jpg".replace(".jpg", ".png"))
    (img / "2.png").rename(img / "2.jpg")                                 # RGBA (png bytes)
    Image.new("RGB", (1, 1), (255, 0, 0)).save(img / "3.jpg")             # tiny
    (img / "4.jpg").write_bytes(b"not an image at all")                   # unreadable
    (img / "5.jpg").unlink()                                              # missing
    data = (img / "6.jpg").read_bytes()
    (img / "6.jpg").write_bytes(data[: len(data) // 3])                   # truncated
    texts = item_texts(n)
    texts[8] = ""                                                         # empty title
    model, processor = load_clip(str(tiny_clip))
    cache = FeatureCache(tmp_path / "cache", n + 1, clip_dim(model),
                         cache_fingerprint(str(tiny_clip), texts, img))
    res = extract_features(ClipEncoder(model, processor), texts, img, cache,
                           StudentConfig(batch_size=4, num_workers=0, progress=False,
                                         fast_preprocess=fast))
    assert res.complete
    st = res.image_status
    assert list(st[1:4]) == [IMAGE_OK] * 3
    assert st[4] == IMAGE_CORRUPT and st[5] == IMAGE_MISSING and st[6] == IMAGE_CORRUPT
    assert list(st[7:]) == [IMAGE_OK] * 3
    assert res.counts() == {"encoded": 9, "image_ok": 6, "image_missing": 1, "image_corrupt": 2,
                            "image_rejected": 0}
    feats = res.features()
    assert np.isfinite(feats).all() and not feats[0].any()
    np.testing.assert_allclose(np.linalg.norm(feats[1:], axis=1), 1.0, atol=1e-3)
    for i in (4, 5, 6):                                  # fallback == the text feature
        np.testing.assert_allclose(feats[i], l2_normalize(res.text[i]), atol=1e-6)
        assert not res.image[i].any()


def test_missing_image_folder_falls_back_to_text(tiny_clip, tmp_path):
    n = 5
    texts = item_texts(n)
    model, processor = load_clip(str(tiny_clip))
    cache = FeatureCache(tmp_path / "cache", n + 1, clip_dim(model), {"x": 1})
    res = extract_features(ClipEncoder(model, processor), texts, tmp_path / "no_images", cache,
                           StudentConfig(batch_size=2, num_workers=0, progress=False))
    assert res.complete and res.counts()["image_missing"] == n


# ============================================================================ end to end


def test_precomputed_columns_need_no_model_library(tiny_sample, tmp_path, monkeypatch):
    """``--source columns --fusion pca``: item_feature's vectors, no transformers, no gensim."""
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)       # import -> ImportError
    monkeypatch.setitem(sys.modules, "gensim", None)
    out = tmp_path / "item_info.parquet"
    assert build_embeddings_cli("--data-dir", tiny_sample, "--source", "columns", "--fusion",
                                "pca", "--no-progress", "--out", out) == 0
    vec = np.array(pq.read_table(out).column("item_emb_d128").to_pylist(), np.float32)
    check_vectors(vec, out)
    assert not (tmp_path / "item_info_work").exists() or \
        not list((tmp_path / "item_info_work").rglob("*.f16"))    # nothing was encoded


def test_cli_names_missing_inputs(tmp_path):
    assert build_embeddings_cli("--data-dir", tmp_path, "--tiny-clip", "--no-progress") == 2
    with pytest.raises(DataValidationError, match="item_info.parquet: file not found"):
        read_item_side(tmp_path / "MicroLens_1M_x1" / "item_info.parquet", None)




def test_a_decompression_bomb_is_refused_before_decoding_and_the_item_falls_back(
        tiny_clip, tmp_path):
    """Issue 19, class 7: a 1.25 KB PNG of 1 x 300,000 pixels asked the resize for a
    224 x 67,200,000 image. Its header is enough to refuse it; the pass goes on."""
    import time

    from PIL import Image

    n = 4
    img = tmp_path / "item_images"
    write_images(img, n)
    Image.new("RGB", (1, 300_000), (120, 30, 200)).save(img / "2.png", optimize=True)
    (img / "2.png").rename(img / "2.jpg")
    assert (img / "2.jpg").stat().st_size < 2_000
    Image.new("RGB", (4_000, 2_000)).save(img / "3.jpg")               # 8M pixels: fine
    t0 = time.perf_counter()
    decoded = ItemImages(np.array([2]), img)[0]
    assert decoded.status == IMAGE_REJECTED and decoded.image is None
    assert "1x300000 has an aspect ratio of 300,000:1" in decoded.error
    assert time.perf_counter() - t0 < 0.5                             # nothing decoded
    from fuxictr_mmctr.embeddings.images import ImageLimits

    small = ItemImages(np.array([3]), img, limits=ImageLimits(max_pixels=1_000_000))[0]
    assert small.status == IMAGE_REJECTED and "over the limit of 1,000,000" in small.error

    model, processor = load_clip(str(tiny_clip))
    texts = item_texts(n)
    cache = FeatureCache(tmp_path / "cache", n + 1, clip_dim(model), {"x": 1})
    res = extract_features(ClipEncoder(model, processor), texts, img, cache,
                           StudentConfig(batch_size=4, num_workers=0, progress=False))
    assert res.complete and list(res.image_status[1:]) == [IMAGE_OK, IMAGE_REJECTED,
                                                           IMAGE_OK, IMAGE_OK]
    np.testing.assert_allclose(res.features()[2], l2_normalize(res.text[2]), atol=1e-6)


# ============================================================================ sources


def test_source_specs_parse_and_name_what_is_wrong():
    spec = SourceSpec.parse("vlm:/models/Qwen2.5-VL-7B-Instruct:layer=-2,max_side=448")
    assert (spec.kind, spec.name) == ("vlm", "/models/Qwen2.5-VL-7B-Instruct")
    assert spec.option("layer") == -2 and spec.option("max_side") == 448
    assert str(spec) == "vlm:/models/Qwen2.5-VL-7B-Instruct:layer=-2,max_side=448"
    assert SourceSpec.parse(str(spec)) == spec
    assert SourceSpec.parse("clip") == SourceSpec("clip")
    assert SourceSpec.parse("text:sentence-transformers/all-MiniLM-L6-v2").name == \
        "sentence-transformers/all-MiniLM-L6-v2"
    assert SourceSpec.parse("clip:dim=64").option("dim") == 64
    assert [str(s) for s in parse_sources(["columns", "columns:a,b:dim=8"])] == [
        "columns:txt_emb_BERT", "columns:img_emb_CLIPRN50", "columns:a:dim=8",
        "columns:b:dim=8"]
    assert SourceSpec.parse("clip:/m").slug() != SourceSpec.parse("clip:/m:dim=8").slug()
    for bad, message in [("foo:bar", "unknown source kind 'foo'"),
                         ("text:m:pool=cls", "'pool=cls' is not an option of a text source"),
                         ("vlm:m:layer=x", "layer must be an integer"),
                         ("image", "a image source names its model"),
                         ("columns:a:dim=0", "dim must be at least 1")]:
        with pytest.raises(ConfigError, match=message) as err:
            SourceSpec.parse(bad)
        assert "option --source" in str(err.value)
    with pytest.raises(ConfigError, match="given twice"):
        parse_sources(["columns:txt_emb_BERT", "columns"])
    from fuxictr_mmctr.embeddings.pipeline import BuildConfig

    with pytest.raises(ConfigError, match="option --vlm-prompt: .* only {text} .*'title'"):
        BuildConfig(data_dir="d", sources=["vlm:/m"], vlm_prompt="{title}: {text}").resolved()
    assert BuildConfig(data_dir="d").resolved().sources == (SourceSpec("clip"),)


def _item_feature(path, ids, vectors, column="txt_emb_BERT"):
    pq.write_table(pa.table({"item_id": pa.array(ids, pa.int64()),
                             "item_title": pa.array(["t"] * len(ids)),
                             column: pa.array(vectors, pa.list_(pa.float32()))}), path)
    return path


def test_columns_source_reads_item_feature_vectors_by_item_id(tmp_path):
    path = _item_feature(tmp_path / "item_feature.parquet", [3, 1, 9, 2],
                         [[3.0, 0.0], [1.0, 1.0], [9.0, 9.0], None])
    vectors, mask = read_vector_column(path, "txt_emb_BERT", num_items=4, batch_rows=2)
    np.testing.assert_array_equal(vectors, [[0, 0], [1, 1], [0, 0], [3, 0], [0, 0]])
    assert list(mask) == [False, True, False, True, False]      # 2: null; 4: no row; 9: outside
    with pytest.raises(DataValidationError, match="no column 'img'; its vector columns: "
                                                  r"\['txt_emb_BERT'\]"):
        read_vector_column(path, "img", num_items=4)
    with pytest.raises(DataValidationError, match="column 'item_title'.*expected list<float>"):
        read_vector_column(path, "item_title", num_items=4)
    bad = _item_feature(tmp_path / "bad.parquet", [1, 2, 3], [[1.0, 2.0], [1.0, 2.0], [1.0]])
    with pytest.raises(DataValidationError, match="column 'txt_emb_BERT', row 2: vector of "
                                                  "length 1, expected 2"):
        read_vector_column(bad, "txt_emb_BERT", num_items=3, batch_rows=2)
    nan = _item_feature(tmp_path / "nan.parquet", [1, 2], [[1.0, 2.0], [float("nan"), 2.0]])
    with pytest.raises(DataValidationError, match="row 1: NaN or inf"):
        read_vector_column(nan, "txt_emb_BERT", num_items=2)


def test_sources_are_concatenated_as_equal_unit_blocks():
    rng = np.random.default_rng(0)

    def source(name, width, mask):
        vectors = l2_normalize(rng.normal(size=(len(mask), width)))
        vectors[~mask] = 0
        return SourceResult(SourceSpec.parse(name), vectors, mask)

    mask_a = np.array([False] + [True] * 30)
    mask_b = mask_a.copy()
    mask_b[5] = False                                      # e.g. an image-only source
    a, b = source("columns:a", 6, mask_a), source("columns:b:dim=3", 10, mask_b)
    one = combine_sources([a])
    assert one.vectors is a.vectors                        # one source: passed through
    both = combine_sources([a, b])
    assert both.vectors.shape == (31, 9) and both.widths == [6, 3]
    np.testing.assert_array_equal(both.vectors[:, :6], a.vectors)
    np.testing.assert_allclose(np.linalg.norm(both.vectors[mask_b, 6:], axis=1), 1, atol=1e-5)
    assert not both.vectors[5, 6:].any() and not both.vectors[0].any()
    assert list(both.mask) == list(mask_a)
    assert 0 < both.explained_variance["columns:b:dim=3"] <= 1


# ============================================================================ encoder families


FP16 = dict(rtol=2e-3, atol=2e-3)       # the cache keeps float16


def _texts(n=12):
    return [""] + [("a long title " * (i % 4)) + f"item {i} red cat" for i in range(1, n + 1)]


def _encode(encoder, texts, image_dir, tmp_path, batch_size=4):
    cache = FeatureCache(tmp_path / f"cache{batch_size}", len(texts), encoder.dim, {"x": 1},
                         parts=encoder.parts)
    return extract_features(encoder, texts, image_dir if encoder.uses_images else None, cache,
                            StudentConfig(batch_size=batch_size, num_workers=0, progress=False))


def test_siglip_towers_load_as_clip_image_and_text_sources(tiny_models, tmp_path):
    """SigLIP texts are padded to the full length as trained: an item's text feature does not
    depend on the other titles of its batch."""
    texts, img = _texts(), tmp_path / "img"
    write_images(img, 12)
    both = load_encoder("clip", str(tiny_models["siglip"]))
    image = load_encoder("image", str(tiny_models["siglip"]))
    text = load_encoder("text", str(tiny_models["siglip"]))
    assert (both.parts, image.parts, text.parts) == (("image", "text"), ("image",), ("text",))
    assert not text.uses_images and not image.uses_texts
    res = _encode(both, texts, img, tmp_path)
    alone = _encode(text, texts, img, tmp_path, batch_size=1)
    np.testing.assert_allclose(alone.text, res.text, **FP16)
    res_image = _encode(image, texts, img, tmp_path, batch_size=5)
    np.testing.assert_allclose(res_image.image, res.image, **FP16)
    with pytest.raises(ConfigError, match="do not apply to a tower of a siglip model"):
        load_encoder("text", str(tiny_models["siglip"]), {"pooling": "cls"})


def test_bert_mean_pooling_is_attention_mask_weighted(tiny_models, tmp_path):
    import torch

    texts = _texts()
    enc = load_encoder("text", str(tiny_models["bert"]))
    assert (enc.pooling, enc.max_length, enc.uses_images) == ("mean", 64, False)
    batched = _encode(enc, texts, None, tmp_path, batch_size=6).text
    alone = _encode(enc, texts, None, tmp_path, batch_size=1).text
    np.testing.assert_allclose(batched, alone, **FP16)       # padding does not count
    tokens = enc.tokenizer(texts[3], return_tensors="pt")
    with torch.inference_mode():
        want = enc.model(**tokens).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(alone[3], want, **FP16)
    cls = load_encoder("text", str(tiny_models["bert"]), {"pooling": "cls", "layer": -2})
    assert cls.settings() == {"pooling": "cls", "max_length": 64, "layer": -2}
    with torch.inference_mode():
        states = cls.model(**tokens, output_hidden_states=True).hidden_states[-2]
    np.testing.assert_allclose(_encode(cls, texts, None, tmp_path / "c").text[3],
                               states[0, 0].numpy(), **FP16)
    with pytest.raises(ConfigError, match="layer 3: the model has 3 hidden states"):
        load_encoder("text", str(tiny_models["bert"]), {"layer": 3})


def test_sentence_transformers_folder_pooling_is_honoured(tiny_models, tmp_path):
    """The folder says CLS pooling and 32 tokens (modules.json, 1_Pooling, sentence_bert_config):
    the features are the CLS states of its BERT, without the sentence-transformers library."""
    texts = _texts()
    st = load_encoder("text", str(tiny_models["st"]))
    assert (st.pooling, st.max_length, st.sentence_transformers) == ("cls", 32, True)
    plain = load_encoder("text", str(tiny_models["st"]), {"pooling": "cls", "max_length": 32})
    np.testing.assert_allclose(_encode(st, texts, None, tmp_path).text,
                               _encode(plain, texts, None, tmp_path / "p").text, **FP16)
    mean = load_encoder("text", str(tiny_models["st"]), {"pooling": "mean"})
    assert mean.pooling == "mean"                                # an option wins over the folder


def test_vision_automodel_pooled_or_mean_and_no_feature_without_an_image(tiny_models, tmp_path):
    import torch

    texts, img = _texts(), tmp_path / "img"
    write_images(img, 12)
    (img / "4.jpg").unlink()
    pooled = load_encoder("image", str(tiny_models["vit"]))
    mean = load_encoder("image", str(tiny_models["vit"]), {"pooling": "mean"})
    res = _encode(pooled, texts, img, tmp_path)
    assert res.image_status[4] == IMAGE_MISSING and not res.feature_mask()[4]
    assert not res.features()[4].any() and res.feature_mask()[1:].sum() == 11
    from PIL import Image

    with Image.open(img / "3.jpg") as im:
        px = pooled.image_processor(images=[im.convert("RGB")], return_tensors="pt")
    with torch.inference_mode():
        out = pooled.model(**px)
    np.testing.assert_allclose(res.image[3], out.pooler_output[0].numpy(), **FP16)
    np.testing.assert_allclose(_encode(mean, texts, img, tmp_path / "m").image[3],
                               out.last_hidden_state[0].mean(0).numpy(), **FP16)


def test_vlm_mean_of_a_chosen_layer_over_an_image_and_text_prompt(tiny_models, tmp_path):
    """The Task-1 winner's recipe on a tiny LLaVA-style model: the mean over the prompt's tokens
    of hidden layer -2; an item without an image gets a text-only prompt; batch-invariant."""
    import torch
    from PIL import Image

    texts, img = _texts(), tmp_path / "img"
    write_images(img, 12)
    (img / "5.jpg").write_bytes(b"not an image")
    enc = load_encoder("vlm", str(tiny_models["vlm"]))
    assert (enc.layer, enc.dim, enc.parts) == (-2, 32, ("hidden",))
    res = _encode(enc, texts, img, tmp_path)
    assert res.image_status[5] == IMAGE_CORRUPT and res.feature_mask()[1:].all()
    alone = _encode(enc, texts, img, tmp_path, batch_size=1)
    np.testing.assert_allclose(res.parts["hidden"], alone.parts["hidden"], **FP16)

    def manual(item, image, layer=-2):
        content = ([{"type": "image"}] if image is not None else []) + \
            [{"type": "text", "text": texts[item]}]
        prompt = enc.processor.apply_chat_template([{"role": "user", "content": content}],
                                                   tokenize=False)
        inputs = enc.processor(text=[prompt], images=[image] if image else None,
                               return_tensors="pt")
        with torch.inference_mode():
            states = enc.model(**inputs, output_hidden_states=True).hidden_states[layer]
        return states[0].mean(0).numpy()

    with Image.open(img / "3.jpg") as im:
        np.testing.assert_allclose(res.parts["hidden"][3], manual(3, im.convert("RGB")),
                                   atol=1e-5)
    np.testing.assert_allclose(res.parts["hidden"][5], manual(5, None), **FP16)
    last = load_encoder("vlm", str(tiny_models["vlm"]), {"layer": -1})
    assert last.settings() != enc.settings()                     # another cache fingerprint
    assert not np.allclose(_encode(last, texts, img, tmp_path / "l").parts["hidden"][3],
                           res.parts["hidden"][3])
    with pytest.raises(ConfigError, match="layer -9: the model has 4 hidden states"):
        load_encoder("vlm", str(tiny_models["vlm"]), {"layer": -9})


def test_vlm_encoder_runs_a_qwen2_5_vl_as_the_task1_winner_did(tmp_path):
    """The winner's family (windowed vision tower, multimodal rotary positions) through
    ``VlmEncoder.encode``, loaded with ``AutoModelForImageTextToText``: layer -2, mean over the
    prompt, the same vector for an item alone or in a batch, with or without its image."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    from helpers import build_tiny_qwen_vl

    from fuxictr_mmctr.embeddings.encoders.vlm import VlmEncoder

    folder = build_tiny_qwen_vl(tmp_path / "qwen", ["a red cat", "funny dog video"])
    model = AutoModelForImageTextToText.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pixels = AutoImageProcessor.from_pretrained(folder)(
        images=[Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3),
                                                                  dtype=np.uint8))],
        return_tensors="pt")
    image_tokens = int(pixels["image_grid_thw"][0].prod()) // 4

    def prompt(text, image):
        vision = "<|vision_start|>" + "<|image_pad|>" * image_tokens + "<|vision_end|>"
        return f"<|im_start|>user\n{vision if image else ''}{text}<|im_end|>\n"

    def inputs(prompts, image):
        out = dict(tokenizer(prompts, padding=True, return_tensors="pt"))
        return {**out, **pixels} if image else out

    class Processor:                       # what VlmEncoder reads of a processor here
        chat_template = None

    tokenizer.padding_side = "right"
    enc = VlmEncoder(model, Processor(), name="tiny-qwen2.5-vl")
    enc.place("cpu", fp16=False)
    assert enc.dim == 32 and enc.keep_one_logit
    both = enc.encode(inputs([prompt("a red cat", True), prompt("funny dog", False)], True),
                      np.array([IMAGE_OK, IMAGE_MISSING], np.int8))["hidden"]
    alone = enc.encode(inputs([prompt("a red cat", True)], True),
                       np.array([IMAGE_OK], np.int8))["hidden"]
    text_only = enc.encode(inputs([prompt("funny dog", False)], False),
                           np.array([IMAGE_MISSING], np.int8))["hidden"]
    np.testing.assert_allclose(both, np.concatenate([alone, text_only]), atol=1e-5)
    assert not np.allclose(both[0], both[1])
