"""Blending trained experiments: the array functions, then two DINs trained on the tiny sample."""
from __future__ import annotations


import numpy as np
import pytest

from fuxictr_mmctr.submit.blend import (BlendError, blend_predictions, fit_blend_weights,
                                        normalised_rank, select_members, simplex_grid)
from fuxictr_mmctr.submit.metrics import auc


# ------------------------------------------------------------------ arrays

def test_mean_blend_equal_and_given_weights():
    a, b = np.array([0.1, 0.5, 0.9]), np.array([0.3, 0.5, 0.7])
    np.testing.assert_allclose(blend_predictions([a, b]), [0.2, 0.5, 0.8])
    np.testing.assert_allclose(blend_predictions([a, b], weights=[3, 1]),
                               0.75 * a + 0.25 * b)
    np.testing.assert_allclose(blend_predictions([a, b], weights=[1, 0]), a)


def test_rank_blend_is_in_unit_interval_and_ignores_calibration():
    a = np.array([0.1, 0.4, 0.35, 0.8])
    b = np.array([10.0, 40.0, 35.0, 80.0])  # same order, another scale
    ranks = blend_predictions([a, b], method="rank")
    np.testing.assert_allclose(ranks, [0.0, 2 / 3, 1 / 3, 1.0])
    rng = np.random.default_rng(0)
    many = [rng.normal(size=50) for _ in range(3)]
    out = blend_predictions(many, method="rank", weights=[0.2, 0.3, 0.5])
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_normalised_rank_ties_and_single_row():
    np.testing.assert_allclose(normalised_rank(np.array([0.2, 0.2, 0.9])), [0.25, 0.25, 1.0])
    np.testing.assert_allclose(normalised_rank(np.array([0.3])), [0.5])


@pytest.mark.parametrize("preds,weights,match", [
    ([np.zeros(3), np.zeros(4)], None, "different row counts"),
    ([np.zeros(3), np.array([0.1, np.nan, 0.2])], None, "input 1: NaN or inf prediction at row 1"),
    ([np.zeros(3), np.zeros(3)], [1.0], "1 weight\\(s\\) for 2 input\\(s\\)"),
    ([np.zeros(3), np.zeros(3)], [1.0, -0.5], "non-negative"),
    ([np.zeros(3), np.zeros(3)], [0.0, 0.0], "at least one must be positive"),
    ([], None, "no predictions"),
])
def test_bad_inputs_are_refused(preds, weights, match):
    with pytest.raises(BlendError, match=match):
        blend_predictions(preds, weights=weights)


def test_simplex_grid():
    grid = simplex_grid(3, 4)
    assert grid.shape == (15, 3)  # C(6, 2)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all() and len({tuple(r) for r in grid}) == 15


def test_fitted_weights_find_the_informative_model():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=2000)
    good = y + rng.normal(scale=0.8, size=y.size)
    noise = rng.normal(size=y.size)
    for method in ("mean", "rank"):
        w = fit_blend_weights([noise, good], y, method=method)
        assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
        assert w[1] > 0.8
    # deterministic, and ties go to equal weights
    np.testing.assert_array_equal(fit_blend_weights([noise, good], y),
                                  fit_blend_weights([noise, good], y))
    np.testing.assert_allclose(fit_blend_weights([good, good], y), [0.5, 0.5])


def test_fitted_weights_with_many_inputs_stay_bounded():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=300)
    preds = [y + rng.normal(scale=s, size=y.size) for s in (1, 2, 3, 4, 5, 6, 7, 8)]
    w = fit_blend_weights(preds, y, max_points=500)
    assert w.shape == (8,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)


def test_logloss_objective_and_rank_do_not_mix():
    with pytest.raises(ValueError, match="not a probability"):
        fit_blend_weights([np.zeros(4), np.ones(4)], [0, 1, 0, 1], method="rank",
                          objective="logloss")


# ------------------------------------------------------------------ trained experiments




def test_ensemble_selection_adds_only_members_that_help():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000).astype(float)
    signal = y + rng.normal(0, 1.0, y.size)
    a = signal + rng.normal(0, 1.0, y.size)          # two views of the signal with their own noise
    b = signal + rng.normal(0, 1.0, y.size)
    noise = rng.normal(0, 1.0, y.size)                 # a candidate that knows nothing
    w = select_members([a, b, noise], y, method="rank")
    assert w[2] == 0 and w[0] > 0 and w[1] > 0 and abs(w.sum() - 1) < 1e-12
    blended = blend_predictions([a, b, noise], method="rank", weights=w)
    assert auc(y, blended) > max(auc(y, a), auc(y, b)) + 0.01
    # one useful candidate: it alone, whatever else is offered
    np.testing.assert_array_equal(select_members([a, noise], y), [1.0, 0.0])
