"""Keep FuxiCTR 2.3.7 (the version the official challenge repo asserts) and the newest 2.3.x
working side by side with NumPy 2.

* FuxiCTR 2.3.7 uses ``np.Inf``, which NumPy 2.0 removed: alias it back to ``np.inf``.
* ``RankDataLoader`` is a class with ``make_iterator()`` in 2.3.7 and a plain function that
  returns the generators in 2.3.8+: :func:`rank_data_loaders` hides the difference.
"""
from __future__ import annotations

import numpy as np


# NumPy 1 names removed in 2.0 that FuxiCTR 2.3.7 (``np.Inf`` in ``BaseModel.fit``) and its
# dependency keras_preprocessing (``np.unicode_`` in ``pad_sequences``) still use.
_NUMPY1_ALIASES = {"Inf": np.inf, "unicode_": np.str_}


def patch_numpy() -> None:
    """Restore the NumPy 1 aliases that FuxiCTR 2.3.7 still uses (idempotent)."""
    for name, value in _NUMPY1_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


patch_numpy()


def fuxictr_version() -> str:
    import fuxictr

    return fuxictr.__version__


def rank_data_loaders(feature_map, stage: str, **params):
    """Build FuxiCTR's loaders for ``stage`` (``train``, ``test`` or ``both``) on any 2.3.x.

    Returns what ``make_iterator()`` returns in 2.3.7: ``(train_gen, valid_gen)`` for
    ``train``, ``test_gen`` for ``test``, all three for ``both``.
    """
    from fuxictr.pytorch.dataloaders import RankDataLoader

    result = RankDataLoader(feature_map, stage=stage, **params)
    if hasattr(result, "make_iterator"):  # fuxictr <= 2.3.7
        result = result.make_iterator()
    return result
