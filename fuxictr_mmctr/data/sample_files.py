"""The sample's files: the splits and their truth, item_seq, the item side, the JPEG covers.

Row files are written through the :class:`~fuxictr_mmctr.data.sample_world.Variant` protocol
(any variant's rows and sequences, in chunks of ``ROW_CHUNK`` from their own streams); the item
side is a function of the item world alone:

* ``item_info``: tags (mostly from the item's cluster block, some generic) and
  ``item_emb_d128``; ``item_emb.parquet``: four more 128-d views. Each view is a noisy linear
  projection of what the variant's views see (:meth:`Variant.view_latent`), popular items with
  larger norms (as with embeddings trained on clicks), noise levels differing per view;
* ``item_feature``: titles (words of the item's cluster vocabulary and common ones), tags as
  text, levels, a text vector leaning on the cluster and an image vector on the latent;
* ``item_images/<id>.jpg``: two colours in stripes plus a disc, all set by the item latent.

Every file is written under the staging folder :func:`~fuxictr_mmctr.data.sample.make_sample`
passes in. :func:`oracle_metrics` scores the true probabilities of a split against its labels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .sample_world import (N_ITEM_TAGS, ROW_CHUNK, ItemWorld, Variant, fixed_list, left_pad,
                           lognormal_lengths, n_generic_tags, pad_row, sigmoid, stream_rng)

EMB_DIM = 128  # item_emb_d128 and the item_emb.parquet views
TXT_DIM = 768  # txt_emb_BERT
IMG_DIM = 1024  # img_emb_CLIPRN50
_ITEM_CHUNK = 16_384  # items per chunk for the wide item_feature vectors
_IMAGE_CHUNK = 512  # images rendered at once (float arrays of B x S x S x 3)

# Stream ids (sample_world's table) of the item-side files.
_S_TAGS, _S_TITLES, _S_ITEM_EMB, _S_FEATURE = range(7, 11)
_S_IMAGES = 13

SPLIT_SCHEMA = pa.schema([
    ("user_id", pa.int64()), ("item_seq", pa.list_(pa.int64())), ("likes_level", pa.int64()),
    ("views_level", pa.int64()), ("item_id", pa.int64()), ("label", pa.int64()),
])
SEQ_SCHEMA = pa.schema([("user_id", pa.int64()), ("item_seq", pa.list_(pa.int64()))])


# ============================================================================ rows

def write_split(variant: Variant, path: Path, n_rows: int, split: str, with_label: bool,
                truth_path: Path, labels_path: Optional[Path] = None) -> Tuple[int, int]:
    """Write one split in row groups of ``ROW_CHUNK`` and its truth file; return (rows,
    positives).

    Args:
        variant: draws the rows (chunk c from stream ``variant.split_streams[split]``, the
            labels drawn from the same generator after the rows).
        path: the split's parquet.
        n_rows: rows to write.
        split: ``train``, ``valid`` or ``test``.
        with_label: write the ``label`` column (not for test).
        truth_path: gets ``item_id``, ``click_prob`` and ``label`` per row, in split order.
        labels_path: gets the labels alone (the hidden test labels).
    """
    schema = SPLIT_SCHEMA
    if not with_label:
        schema = schema.remove(schema.get_field_index("label"))
    positives = 0
    probs: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    items: List[np.ndarray] = []
    seed, stream = variant.world.seed, variant.split_streams[split]
    bar = tqdm(total=n_rows, desc=f"sample {path.stem}", unit="row", unit_scale=True)
    with pq.ParquetWriter(path, schema) as writer, bar:
        for c, start in enumerate(range(0, n_rows, ROW_CHUNK)):
            m = min(ROW_CHUNK, n_rows - start)
            gen = stream_rng(seed, stream, c)
            rows = variant.draw(gen, m)
            label = (gen.random(m) < rows.prob).astype(np.int64)
            positives += int(label.sum())
            probs.append(rows.prob)
            labels.append(label)
            items.append(rows.items)
            arrays = [pa.array(rows.users + 1, type=pa.int64()),
                      fixed_list(rows.history.astype(np.int64), pa.int64()),
                      pa.array(rows.likes, type=pa.int64()),
                      pa.array(rows.views, type=pa.int64()),
                      pa.array(rows.items, type=pa.int64())]
            if with_label:
                arrays.append(pa.array(label, type=pa.int64()))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema),
                               row_group_size=ROW_CHUNK)
            del rows, arrays
            bar.update(m)
    all_labels = np.concatenate(labels)
    write_truth(truth_path, np.concatenate(items), np.concatenate(probs), all_labels)
    if labels_path is not None:
        pq.write_table(pa.table({"label": pa.array(all_labels, type=pa.int64())}), labels_path)
    return n_rows, positives


def write_truth(path: Path, items: np.ndarray, prob: np.ndarray, label: np.ndarray) -> None:
    """``truth/<split>.parquet``: ``item_id``, ``click_prob`` and ``label`` per row."""
    pq.write_table(pa.table({"item_id": pa.array(items, type=pa.int64()),
                             "click_prob": pa.array(prob, type=pa.float64()),
                             "label": pa.array(label, type=pa.int64())}), path)


def write_item_seq(variant: Variant, path: Path) -> int:
    """item_seq.parquet: ``n_seq`` sequences of owners drawn from a pool of ``2 * n_users``
    users (sorted by owner), each of a log-normal length around ``seq_median``."""
    world = variant.world
    p = world.preset
    owners = np.sort(stream_rng(world.seed, variant.seq_stream).integers(
        0, 2 * p.n_users, size=p.n_seq))
    bar = tqdm(total=p.n_seq, desc="sample item_seq", unit="row", unit_scale=True)
    with pq.ParquetWriter(path, SEQ_SCHEMA) as writer, bar:
        for c, start in enumerate(range(0, p.n_seq, ROW_CHUNK)):
            users = owners[start:start + ROW_CHUNK]
            gen = stream_rng(world.seed, variant.seq_stream, c + 1)
            lengths = lognormal_lengths(gen, len(users), p.seq_median, 0.6, 3, p.seq_len)
            seq = variant.sequences(gen, users, lengths)
            writer.write_table(pa.Table.from_arrays(
                [pa.array(users + 1, type=pa.int64()), fixed_list(seq, pa.int64())],
                schema=SEQ_SCHEMA), row_group_size=ROW_CHUNK)
            bar.update(len(users))
    return p.n_seq


# ============================================================================ oracle

def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula, tied scores sharing their average rank (NaN when one
    class is missing)."""
    label = np.asarray(label)
    n_pos = int(label.sum())
    n_neg = len(label) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    return float((ranks[label == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def oracle_metrics(prob: np.ndarray, label: np.ndarray) -> Dict[str, float]:
    """AUC and logloss of the true probabilities against the drawn labels."""
    p = np.clip(prob, 1e-7, 1 - 1e-7)
    logloss = float(-np.mean(label * np.log(p) + (1 - label) * np.log(1 - p)))
    return {"AUC": round(roc_auc(label, prob), 6), "logloss": round(logloss, 6),
            "positive_rate": round(float(label.mean()), 6), "rows": int(len(label))}


def read_truth(sample_root, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(click_prob, label)`` of one split of a sample, from ``truth/<split>.parquet``."""
    table = pq.read_table(Path(sample_root) / "truth" / f"{split}.parquet")
    return table.column("click_prob").to_numpy(), table.column("label").to_numpy()


def item_exposure(root: Path, n_items: int) -> Dict[str, float]:
    """How often the items of a written sample are seen: train rows per item (on the real data
    3.6M rows over 91,717 items, most of them seen a few times) and item_seq tokens per item."""
    items = pq.read_table(Path(root) / "truth" / "train.parquet",
                          columns=["item_id"]).column("item_id").to_numpy()
    rows = np.bincount(items, minlength=n_items + 1)[1:]
    seq = pq.read_table(Path(root) / "item_seq.parquet", columns=["item_seq"]).column("item_seq")
    flat = seq.combine_chunks().flatten().to_numpy()
    tokens = np.bincount(flat[flat > 0], minlength=n_items + 1)[1:]
    top = np.sort(rows)[::-1][:max(1, n_items // 100)]
    return {"train_rows_per_item_mean": round(float(rows.mean()), 3),
            "train_rows_per_item_median": float(np.median(rows)),
            "train_rows_per_item_p90": float(np.quantile(rows, 0.9)),
            "train_rows_per_item_max": int(rows.max()),
            "items_in_at_most_5_train_rows": round(float((rows <= 5).mean()), 4),
            "items_in_no_train_row": round(float((rows == 0).mean()), 4),
            "train_rows_on_top_1pct_items": round(float(top.sum() / max(rows.sum(), 1)), 4),
            "item_seq_tokens_per_item_median": float(np.median(tokens)),
            "items_in_no_item_seq": round(float((tokens == 0).mean()), 4)}


# ============================================================================ item side

def _pseudo_words(gen: np.random.Generator, n: int) -> List[str]:
    """``n`` distinct pronounceable words (2-3 syllables)."""
    consonants = list("bcdfghjklmnprstvwz")
    vowels = list("aeiou")
    words: List[str] = []
    seen = set()
    while len(words) < n:
        k = int(gen.integers(2, 4))
        word = "".join(consonants[gen.integers(len(consonants))] + vowels[gen.integers(5)]
                       for _ in range(k))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def item_tags(world: ItemWorld) -> np.ndarray:
    """``(n+1, 5)`` left-padded tag ids: mostly from the item's cluster block, some generic."""
    p = world.preset
    gen = stream_rng(world.seed, _S_TAGS)
    n_generic = n_generic_tags(p.n_tags)
    block = (p.n_tags - 1 - n_generic) // p.n_clusters
    n = p.n_items
    # Popular tags within a block are used more (Zipf); sampling without replacement by
    # Gumbel-top-k over the block.
    log_w = -1.0 * np.log(np.arange(1, block + 1))
    keys = log_w[None, :] - np.log(-np.log(gen.random((n, block)) + 1e-300) + 1e-300)
    top = np.argsort(-keys, axis=1)[:, :N_ITEM_TAGS]  # (n, 5) positions in the block
    del keys
    cluster = world.item_category[1:]
    tags = 1 + n_generic + cluster[:, None] * block + top
    generic = gen.random((n, N_ITEM_TAGS)) < 0.15
    tags[generic] = 1 + gen.integers(0, n_generic, size=int(generic.sum()))
    # Keep tags unique within an item: a generic tag repeated is dropped (moved to padding).
    tags.sort(axis=1)
    dup = np.zeros_like(tags, dtype=bool)
    dup[:, 1:] = tags[:, 1:] == tags[:, :-1]
    count = gen.choice(np.arange(1, N_ITEM_TAGS + 1), size=n, p=[0.1, 0.2, 0.3, 0.25, 0.15])
    keep = (np.arange(N_ITEM_TAGS)[None, :] < count[:, None]) & ~dup
    perm = np.argsort(gen.random((n, N_ITEM_TAGS)), axis=1)  # random order within an item
    tags = np.take_along_axis(tags, perm, axis=1)
    keep = np.take_along_axis(keep, perm, axis=1)
    lengths = keep.sum(axis=1)
    out = np.zeros((n + 1, N_ITEM_TAGS), dtype=np.int64)
    out[1:] = left_pad(lengths, tags[keep], N_ITEM_TAGS)
    return out


def titles(world: ItemWorld) -> List[str]:
    """One title per item 1..n: words from its cluster's vocabulary and a common one."""
    p = world.preset
    gen = stream_rng(world.seed, _S_TITLES)
    per_cluster, n_common = 30, 200
    words = _pseudo_words(gen, p.n_clusters * per_cluster + n_common)
    vocab = np.array(words, dtype=object)
    n, width = p.n_items, 10
    zipf = np.arange(1, per_cluster + 1) ** -1.0
    local = np.searchsorted(np.cumsum(zipf) / zipf.sum(), gen.random((n, width)), side="right")
    local = np.minimum(local, per_cluster - 1) + world.item_category[1:, None] * per_cluster
    common = p.n_clusters * per_cluster + gen.integers(0, n_common, size=(n, width))
    idx = np.where(gen.random((n, width)) < 0.7, local, common)
    lengths = gen.integers(3, width + 1, size=n)
    empty = gen.random(n) < 0.01
    table = vocab[idx]
    return ["" if e else " ".join(row[:k]) for row, k, e in zip(table, lengths, empty)]


def _projection(gen: np.random.Generator, d: int, out_dim: int) -> np.ndarray:
    return (gen.standard_normal((d, out_dim)) / np.sqrt(d)).astype(np.float32)


def _noisy_view(gen: np.random.Generator, latent: np.ndarray, proj: np.ndarray, noise: float,
                scale: np.ndarray) -> np.ndarray:
    """``(n, D)`` float32: ``scale * (latent @ proj + noise * N(0, 1))``, unnormalised."""
    out = latent @ proj
    out += noise * gen.standard_normal(out.shape, dtype=np.float32)
    out *= scale[:, None]
    return out


def item_embeddings(world: ItemWorld, latent: Optional[np.ndarray] = None,
                    noise_scale: float = 1.0) -> Dict[str, np.ndarray]:
    """``item_emb_d128`` (item_info) and the four item_emb.parquet views, each ``(n+1, 128)``
    float32 with a zero padding row. Noise levels differ, so do the views' quality.

    ``latent`` ``(n, d')`` replaces the item content (``world.content``) as what the views see
    (the dynamic variant adds the item quality); ``noise_scale`` multiplies every view's
    noise. With an item view, :func:`content_pca` replaces ``item_emb_d128``."""
    gen = stream_rng(world.seed, _S_ITEM_EMB)
    latent = world.content[1:] if latent is None else latent
    d = latent.shape[1]
    # Popular items have larger norms (as with embeddings trained on clicks).
    scale = (0.5 + 0.1 * np.log1p(world.item_pop[1:] * world.preset.n_items)).astype(np.float32)
    out = {}
    for name, noise in (("item_emb_d128", 0.5), ("item_emb_d128_v1", 0.4),
                        ("item_emb_d128_v2", 0.8), ("item_emb_d128_v3", 1.5),
                        ("item_emb_d128_e4", 0.25)):
        emb = np.zeros((len(latent) + 1, EMB_DIM), dtype=np.float32)
        emb[1:] = _noisy_view(gen, latent, _projection(gen, d, EMB_DIM), noise * noise_scale,
                              scale)
        out[name] = emb
    return out


def write_item_info(world: ItemWorld, path: Path, tags: np.ndarray, emb: np.ndarray) -> None:
    """``item_info.parquet``: ``item_id`` 0..n, ``item_tags`` (5), ``item_emb_d128`` (128)."""
    n = world.preset.n_items
    table = pa.Table.from_arrays(
        [pa.array(np.arange(n + 1), type=pa.int64()), fixed_list(tags, pa.int64()),
         fixed_list(emb, pa.float32())],
        schema=pa.schema([("item_id", pa.int64()), ("item_tags", pa.list_(pa.int64())),
                          ("item_emb_d128", pa.list_(pa.float32()))]))
    pq.write_table(table, path)


def write_item_emb(path: Path, embs: Dict[str, np.ndarray]) -> None:
    """``item_emb.parquet``: ``item_id`` 0..n and the four alternative 128-d views."""
    names = ["item_emb_d128_v1", "item_emb_d128_v2", "item_emb_d128_v3", "item_emb_d128_e4"]
    n1 = len(embs[names[0]])
    table = pa.Table.from_arrays(
        [pa.array(np.arange(n1), type=pa.int64())] + [fixed_list(embs[k], pa.float32())
                                                      for k in names],
        schema=pa.schema([("item_id", pa.int64())]
                         + [(k, pa.list_(pa.float32())) for k in names]))
    pq.write_table(table, path)


def _item_chunks(n: int) -> Iterator[Tuple[int, np.ndarray]]:
    """``(c, ids)``: chunk ``c`` of item ids 1..n, ``_ITEM_CHUNK`` at a time."""
    for c, start in enumerate(range(1, n + 1, _ITEM_CHUNK)):
        yield c, np.arange(start, min(start + _ITEM_CHUNK, n + 1))


class FeatureVectors:
    """The text (768) and image (1024) vectors of item_feature, chunk by chunk.

    The text vector leans on the category (its words), the image one on the content; each is
    a noisy linear projection. Chunk ``c`` draws from its own stream, so any chunk can be
    made again (:func:`content_pca` makes them twice).

    Args:
        world: the item world.
        latent: ``(n, d')`` (rows = items 1..n) replaces the content the image vector sees.
        noise_scale: multiplies the vectors' noise (the dynamic variant's knob).
    """

    def __init__(self, world: ItemWorld, latent: Optional[np.ndarray] = None,
                 noise_scale: float = 1.0):
        self.world = world
        self.noise_scale = noise_scale
        prng = stream_rng(world.seed, _S_FEATURE)
        self.image_latent = world.content if latent is None else pad_row(latent)
        self.p_txt = _projection(prng, world.preset.latent_dim, TXT_DIM)
        self.p_img = _projection(prng, self.image_latent.shape[1], IMG_DIM)
        self.centers = world.category_centers.astype(np.float32)

    def chunks(self) -> Iterator[Tuple[int, np.ndarray]]:
        return _item_chunks(self.world.preset.n_items)

    def vectors(self, c: int, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(txt (B, 768), img (B, 1024))`` float32 of chunk ``c`` (items ``ids``)."""
        w = self.world
        gen = stream_rng(w.seed, _S_FEATURE, c + 1)
        ones = np.ones(len(ids), dtype=np.float32)
        txt_in = 0.7 * self.centers[w.item_category[ids]] + 0.3 * w.content[ids]
        txt = _noisy_view(gen, txt_in, self.p_txt, 0.6 * self.noise_scale, ones)
        img = _noisy_view(gen, self.image_latent[ids], self.p_img, 0.8 * self.noise_scale, ones)
        return txt, img


def content_pca(features: FeatureVectors, dim: int = EMB_DIM) -> np.ndarray:
    """``(n+1, dim)`` float32: the PCA of the text and image vectors, each block scaled to unit
    mean square, to ``dim`` components (row 0 zeros): the given ``item_emb_d128`` of a sample
    with an item view, made the way the real one was.

    With more items than the 1,792 feature columns the covariance is summed over the chunks
    and only its top ``dim`` eigenvectors are computed; with fewer, the items' Gram matrix
    gives them (cheaper, and the same components). Most of the ``dim`` components span noise
    of nearly equal variance, where the last bits decide the eigenvectors: the linear algebra
    runs on one BLAS thread (the same bytes whatever the thread settings) and each
    component's sign is fixed (its largest loading positive)."""
    import scipy.linalg  # scipy and threadpoolctl are dependencies of scikit-learn
    from threadpoolctl import threadpool_limits

    n = features.world.preset.n_items
    width, k = TXT_DIM + IMG_DIM, min(dim, n)
    blocks = np.array([TXT_DIM, IMG_DIM])

    def rows(c, ids):
        return np.concatenate(features.vectors(c, ids), axis=1).astype(np.float64)

    with threadpool_limits(limits=1, user_api="blas"):
        if n <= width:
            x = np.concatenate([rows(c, ids) for c, ids in features.chunks()])
            mean = x.mean(axis=0)
            squares = np.array([np.square(x[:, :TXT_DIM]).sum(), np.square(x[:, TXT_DIM:]).sum()])
            scale = np.repeat(1.0 / np.sqrt(squares / (n * blocks)), blocks)
            xs = (x - mean) * scale
            lam, u = scipy.linalg.eigh(xs @ xs.T / n, subset_by_index=[n - k, n - 1])
            vecs = xs.T @ (u / np.sqrt(n * np.maximum(lam, 1e-300)))  # (width, k) unit columns
        else:
            total, gram, squares = np.zeros(width), np.zeros((width, width)), np.zeros(2)
            for c, ids in features.chunks():
                x = rows(c, ids)
                total += x.sum(axis=0)
                gram += x.T @ x
                squares += [np.square(x[:, :TXT_DIM]).sum(), np.square(x[:, TXT_DIM:]).sum()]
            mean = total / n
            scale = np.repeat(1.0 / np.sqrt(squares / (n * blocks)), blocks)
            cov = (gram / n - np.outer(mean, mean)) * np.outer(scale, scale)
            _, vecs = scipy.linalg.eigh(cov, subset_by_index=[width - k, width - 1])
        vecs = vecs[:, ::-1]  # largest components first
        vecs *= np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(k)])
        basis = vecs * scale[:, None]
        out = np.zeros((n + 1, dim), dtype=np.float32)
        for c, ids in features.chunks():
            out[ids, :k] = (rows(c, ids) - mean) @ basis
    return out


def write_item_feature(world: ItemWorld, path: Path, tags: np.ndarray, item_titles: List[str],
                       features: Optional[FeatureVectors] = None) -> None:
    """item_feature.parquet, in chunks of items so the 768/1024-d vectors stay small in memory;
    without ``features`` it holds no vectors."""
    fields = [("item_id", pa.int64()), ("item_title", pa.string()), ("item_tags", pa.string()),
              ("likes_level", pa.int64()), ("views_level", pa.int64())]
    if features is not None:
        fields += [("txt_emb_BERT", pa.list_(pa.float32())),
                   ("img_emb_CLIPRN50", pa.list_(pa.float32()))]
    schema = pa.schema(fields)
    with pq.ParquetWriter(path, schema) as writer:
        for c, ids in _item_chunks(world.preset.n_items):
            tag_str = [",".join(f"tag_{t}" for t in row if t) for row in tags[ids]]
            arrays = [pa.array(ids, type=pa.int64()),
                      pa.array([item_titles[i - 1] for i in ids], type=pa.string()),
                      pa.array(tag_str, type=pa.string()),
                      pa.array(world.item_likes[ids], type=pa.int64()),
                      pa.array(world.item_views[ids], type=pa.int64())]
            if features is not None:
                arrays += [fixed_list(v, pa.float32()) for v in features.vectors(c, ids)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


# ============================================================================ JPEG covers

def _render_images(world: ItemWorld, gen: np.random.Generator, params: Dict[str, np.ndarray],
                   ids: np.ndarray) -> np.ndarray:
    """``(B, S, S, 3)`` uint8 covers: two colours in stripes plus a disc, all set by the item's
    content (orientation and palette mostly by its category), plus pixel noise."""
    s = world.preset.image_size
    v = world.content[ids]  # (B, d)
    c1 = 255.0 * sigmoid(v @ params["c1"])  # (B, 3)
    c2 = 255.0 * sigmoid(v @ params["c2"])
    c3 = 255.0 * sigmoid(v @ params["c3"])
    theta = np.pi * sigmoid(v @ params["theta"])  # (B,)
    freq = 1.0 + 5.0 * sigmoid(v @ params["freq"])  # stripes per image
    cx = 0.25 + 0.5 * sigmoid(v @ params["cx"])
    cy = 0.25 + 0.5 * sigmoid(v @ params["cy"])
    radius = 0.12 + 0.18 * sigmoid(v @ params["radius"])
    phase = gen.uniform(0.0, 2.0 * np.pi, size=len(ids))
    grid = (np.arange(s, dtype=np.float32) + 0.5) / s
    yy, xx = np.meshgrid(grid, grid, indexing="ij")  # (S, S)
    proj = xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]
    m = 0.5 + 0.5 * np.sin(2 * np.pi * freq[:, None, None] * proj + phase[:, None, None])
    img = c1[:, None, None, :] * (1 - m[..., None]) + c2[:, None, None, :] * m[..., None]
    disc = (xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2 \
        < radius[:, None, None] ** 2  # (B, S, S)
    img = np.where(disc[..., None], c3[:, None, None, :], img)
    img += gen.normal(0.0, 12.0, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_images(world: ItemWorld, folder: Path) -> int:
    """``folder/<item_id>.jpg`` for items 1..n (JPEG, quality 90); returns the count."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    prng = stream_rng(world.seed, _S_IMAGES)
    d = world.preset.latent_dim
    params = {name: value for name, value in (
        ("c1", prng.standard_normal((d, 3)) * 0.5), ("c2", prng.standard_normal((d, 3)) * 0.5),
        ("c3", prng.standard_normal((d, 3)) * 0.5), ("theta", prng.standard_normal(d) * 0.4),
        ("freq", prng.standard_normal(d) * 0.4), ("cx", prng.standard_normal(d) * 0.4),
        ("cy", prng.standard_normal(d) * 0.4), ("radius", prng.standard_normal(d) * 0.4))}
    n = world.preset.n_items
    bar = tqdm(total=n, desc="sample images", unit="img", unit_scale=True)
    for c, start in enumerate(range(1, n + 1, _IMAGE_CHUNK)):
        ids = np.arange(start, min(start + _IMAGE_CHUNK, n + 1))
        pixels = _render_images(world, stream_rng(world.seed, _S_IMAGES, c + 1), params, ids)
        for item_id, arr in zip(ids, pixels):
            Image.fromarray(arr, mode="RGB").save(folder / f"{item_id}.jpg", format="JPEG",
                                                   quality=90)
        bar.update(len(ids))
    bar.close()
    return n
