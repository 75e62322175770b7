"""Behavioural teacher: item vectors learned by Word2Vec from co-occurrence in user sequences.

Skip-gram and CBOW vectors are L2-normalised, concatenated, reduced to ``dim`` by PCA and
L2-normalised again. Items that never occur in a sequence are imputed from the mean vectors
of their tags; items with neither keep no teacher vector (``source == NONE``), never zeros
posing as data.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from .vectors import l2_normalize, pca_reduce

logger = logging.getLogger(__name__)

# values of TeacherResult.source
NONE, SEQUENCE, IMPUTED = 0, 1, 2


@dataclass
class TeacherConfig:
    """Word2Vec teacher settings.

    Args:
        dim: output dimension after PCA. Default: 128.
        vector_size: Word2Vec dimension of each of the skip-gram and CBOW models. Default: 128.
        methods: which Word2Vec variants to train and combine, of ``("sg", "cbow")``.
            Default: both.
        window: context window. Default: 5.
        min_count: minimum occurrences for an item to get a vector. Default: 1.
        negative: negative samples. Default: 5.
        sample: down-sampling threshold of frequent items. Default: 1.0e-3.
        epochs: passes over the sequences. Default: 5.
        workers: gensim worker threads. Default: 1: gensim's threads race for the shared
            weights and the learning-rate schedule, so only one worker gives the same vectors
            for the same seed (with 1, the output is bit-identical run to run on the same
            machine and library versions). More workers are faster and not reproducible.
        seed: random seed of gensim and PCA. Default: 2024.
        impute_from_tags: impute items missing from the sequences from their tags.
            Default: True.
    """

    dim: int = 128
    vector_size: int = 128
    methods: Tuple[str, ...] = ("sg", "cbow")
    window: int = 5
    min_count: int = 1
    negative: int = 5
    sample: float = 1.0e-3
    epochs: int = 5
    workers: int = 1
    seed: int = 2024
    impute_from_tags: bool = True


@dataclass
class TeacherResult:
    """Teacher vectors indexed by item_id.

    Attributes:
        vectors: ``(num_items + 1, dim)`` float32, unit norm where ``source != NONE``,
            zeros elsewhere (row 0 and items without any teacher signal).
        source: ``(num_items + 1,)`` int8: ``SEQUENCE`` (1), ``IMPUTED`` (2) or ``NONE`` (0).
        explained_variance: share of variance kept by the PCA.
    """

    vectors: np.ndarray
    source: np.ndarray
    explained_variance: float

    @property
    def mask(self) -> np.ndarray:
        """True where the item has a teacher vector (learned or imputed)."""
        return self.source != NONE

    def counts(self) -> dict:
        return {"sequence": int((self.source == SEQUENCE).sum()),
                "imputed": int((self.source == IMPUTED).sum()),
                "none": int((self.source[1:] == NONE).sum())}


def stable_hash(text: str) -> int:
    """A hash that does not change between processes (Python's ``hash`` of a str is salted
    per process unless PYTHONHASHSEED is set); gensim seeds per-word vectors with it."""
    return zlib.crc32(str(text).encode("utf-8"))


def _word2vec(corpus: Iterable[List[str]], cfg: TeacherConfig, sg: int):
    from gensim.models import Word2Vec

    if cfg.workers > 1:
        logger.warning("Word2Vec with %d workers: faster, but the vectors differ run to run "
                       "(use 1 worker for a reproducible item_info)", cfg.workers)
    model = Word2Vec(vector_size=cfg.vector_size, window=cfg.window, min_count=cfg.min_count,
                     negative=cfg.negative, sample=cfg.sample, workers=cfg.workers,
                     seed=cfg.seed, sg=sg, hashfxn=stable_hash)
    model.build_vocab(corpus)
    if len(model.wv) == 0:
        return model
    model.train(corpus, total_examples=model.corpus_count, epochs=cfg.epochs)
    return model


def impute_from_tags(vectors: np.ndarray, known: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """Vectors for unknown items from the mean vectors of the tags they share with known items.

    Each tag gets the mean of the vectors of the known items carrying it; an unknown item gets
    the normalised mean of the vectors of its tags that have one.

    Args:
        vectors: ``(N, D)`` unit vectors, valid where ``known``.
        known: ``(N,)`` bool.
        tags: ``(N, K)`` int tag ids, 0 = padding.

    Returns:
        ``(N, D)`` float32: imputed unit vectors on unknown rows that share a tag with a known
        item, zeros elsewhere (including every known row).
    """
    from scipy import sparse

    n, k = tags.shape
    rows = np.repeat(np.arange(n), k)
    cols = tags.reshape(-1).astype(np.int64)
    keep = cols > 0
    num_tags = int(cols.max(initial=0)) + 1
    # A: item x tag incidence (duplicated tags within a row count once)
    inc = sparse.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
                            shape=(n, num_tags))
    inc.data[:] = 1.0
    known_inc = inc[np.flatnonzero(known)]
    tag_count = np.asarray(known_inc.sum(axis=0)).ravel()
    tag_sum = known_inc.T @ vectors[known]                       # (T, D)
    has = tag_count > 0
    tag_mean = np.zeros_like(tag_sum, dtype=np.float32)
    tag_mean[has] = tag_sum[has] / tag_count[has, None]
    unknown = np.flatnonzero(~known)
    out = np.zeros_like(vectors, dtype=np.float32)
    if unknown.size:
        unk_inc = inc[unknown]
        summed = np.asarray(unk_inc @ tag_mean)                  # (U, D)
        usable = np.asarray(unk_inc @ has.astype(np.float32)).ravel() > 0
        summed = l2_normalize(summed)
        ok = usable & (np.linalg.norm(summed, axis=1) > 0)
        out[unknown[ok]] = summed[ok]
    return out


def train_teacher(corpus: Iterable[List[str]], tags: np.ndarray,
                  cfg: Optional[TeacherConfig] = None) -> TeacherResult:
    """Train the Word2Vec teacher and impute cold items.

    Args:
        corpus: restartable iterable of token lists (item ids as strings), e.g.
            :class:`~fuxictr_mmctr.embeddings.data.SequenceCorpus`.
        tags: ``(num_items + 1, K)`` tag ids of item_info (row 0 = padding).
        cfg: the teacher settings.

    Raises:
        ConfigError: fewer than two distinct items occur in the sequences.
    """
    cfg = cfg or TeacherConfig()
    num_rows = tags.shape[0]
    parts = []
    known = None
    methods: Sequence[str] = tuple(cfg.methods)
    if not methods or any(m not in ("sg", "cbow") for m in methods):
        raise ConfigError(f"TeacherConfig.methods must be a subset of ('sg', 'cbow'), got {methods}")
    for method in methods:
        logger.info("Training Word2Vec %s (dim %d, %d epochs)", method, cfg.vector_size, cfg.epochs)
        model = _word2vec(corpus, cfg, sg=1 if method == "sg" else 0)
        keys = np.asarray([int(k) for k in model.wv.index_to_key], dtype=np.int64)
        mat = np.zeros((num_rows, cfg.vector_size), dtype=np.float32)
        if keys.size:
            mat[keys] = l2_normalize(model.wv.vectors)
        present = np.zeros(num_rows, dtype=bool)
        present[keys] = True
        known = present if known is None else (known & present)
        parts.append(mat)
    known[0] = False
    if known.sum() < 2:
        raise ConfigError(f"the item sequences hold {int(known.sum())} distinct known item(s); "
                         "the Word2Vec teacher needs at least 2")
    combined = np.concatenate(parts, axis=1)[known]
    reduced, explained = pca_reduce(combined, cfg.dim, cfg.seed)
    vectors = np.zeros((num_rows, cfg.dim), dtype=np.float32)
    vectors[known] = reduced
    source = np.where(known, SEQUENCE, NONE).astype(np.int8)
    if cfg.impute_from_tags:
        cold = ~known
        cold[0] = False
        if cold.any():
            imputed = impute_from_tags(vectors, known, tags)
            got = cold & (np.linalg.norm(imputed, axis=1) > 0)
            vectors[got] = imputed[got]
            source[got] = IMPUTED
    source[0] = NONE
    vectors[0] = 0.0
    result = TeacherResult(vectors=vectors, source=source, explained_variance=explained)
    logger.info("Teacher: %s (PCA keeps %.1f%% of the variance)", result.counts(),
                100 * explained)
    return result
