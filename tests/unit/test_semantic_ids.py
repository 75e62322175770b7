"""The residual quantizer on synthetic vectors: the codes reconstruct, the same seed gives the
same codes, and the report's figures are what they say."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fuxictr_mmctr.data.semantic_ids import QuantizerConfig, collision_stats, residual_quantize
from fuxictr_mmctr.errors import ConfigError


def clustered(n_clusters=8, per=50, dim=16, noise=0.01, seed=0):
    """``(n_clusters * per, dim)`` points around far-apart centres, and each one's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(n_clusters, dim))
    truth = np.repeat(np.arange(n_clusters), per)
    return centres[truth] + rng.normal(scale=noise, size=(truth.size, dim)), truth


def test_first_level_recovers_separated_clusters():
    x, truth = clustered()
    q = residual_quantize(x, QuantizerConfig(levels=2, codebook=8, seed=3))
    pairs = set(zip(truth.tolist(), q.codes[:, 0].tolist()))
    assert len(pairs) == 8  # one code per true cluster, one true cluster per code
    assert q.levels[0].used_codes == 8
    assert q.levels[0].unexplained < 1e-4


def test_each_level_reduces_the_error_and_the_report_measures_it():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 12))
    q = residual_quantize(x, QuantizerConfig(levels=3, codebook=16, seed=0))
    total = ((x - x.mean(0)) ** 2).sum(1).mean()
    mses = []
    for level in range(1, 4):
        mse = ((x - q.reconstruct(level)) ** 2).sum(1).mean()
        stats = q.levels[level - 1]
        assert stats.mse == pytest.approx(mse, rel=1e-9)
        assert stats.unexplained == pytest.approx(mse / total, abs=1e-6)
        mses.append(mse)
    assert mses[0] > mses[1] > mses[2]


def test_codebook_as_large_as_the_distinct_vectors_reconstructs_exactly():
    rng = np.random.default_rng(2)
    distinct = rng.normal(size=(20, 8))
    x = distinct[np.arange(100) % 20]  # every vector five times
    q = residual_quantize(x, QuantizerConfig(levels=1, codebook=20, seed=0))
    np.testing.assert_allclose(q.reconstruct(), x, atol=1e-9)
    assert q.levels[0].mse < 1e-12
    stats = q.collisions()
    assert stats == dict(distinct_full_codes=20, colliding_items=100, collision_groups=20,
                         largest_collision_group=5)


def test_usage_figures():
    x, _ = clustered(n_clusters=4, per=30)
    x = np.concatenate([x, x[:30]])  # the first cluster twice as large: 60 of 150
    q = residual_quantize(x, QuantizerConfig(levels=1, codebook=4, seed=0))
    stats = q.levels[0]
    counts = np.bincount(q.codes[:, 0], minlength=4)
    p = counts / counts.sum()
    assert stats.used_codes == 4
    assert stats.largest_code_share == pytest.approx(60 / 150)
    assert stats.perplexity == pytest.approx(np.exp(-(p * np.log(p)).sum()), abs=1e-4)
    assert 1 < stats.perplexity < 4


def test_same_seed_same_codes():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    config = QuantizerConfig(levels=3, codebook=8, seed=11)
    a, b = residual_quantize(x, config), residual_quantize(x, config)
    np.testing.assert_array_equal(a.codes, b.codes)
    for ca, cb in zip(a.centroids, b.centroids):
        np.testing.assert_array_equal(ca, cb)


def test_normalize_quantizes_directions():
    x, truth = clustered(n_clusters=4, per=40)
    scaled = x * np.random.default_rng(0).uniform(0.5, 5.0, size=(len(x), 1))
    q = residual_quantize(scaled, QuantizerConfig(levels=2, codebook=4, seed=0, normalize=True))
    assert len(set(zip(truth.tolist(), q.codes[:, 0].tolist()))) == 4  # scale does not matter
    err = np.linalg.norm(q.reconstruct() - scaled, axis=1) / np.linalg.norm(scaled, axis=1)
    assert err.max() < 0.05


def test_collision_stats_against_a_count():
    codes = np.array([[1, 2], [1, 2], [3, 4], [5, 6], [5, 6], [5, 6], [1, 3]])
    counts = Counter(map(tuple, codes))
    assert collision_stats(codes) == dict(
        distinct_full_codes=len(counts),
        colliding_items=sum(c for c in counts.values() if c > 1),
        collision_groups=sum(1 for c in counts.values() if c > 1),
        largest_collision_group=max(counts.values()))
    assert collision_stats(codes)["colliding_items"] == 5


@pytest.mark.parametrize("config, option", [
    (QuantizerConfig(codebook=101), "--codebook"),
    (QuantizerConfig(levels=0), "--levels"),
    (QuantizerConfig(codebook=1), "--codebook"),
])
def test_impossible_settings_name_the_option(config, option):
    with pytest.raises(ConfigError, match=option):
        residual_quantize(np.ones((100, 4)), config)
