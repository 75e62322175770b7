"""Train, load and score FuxiCTR experiments: the public API behind the entry scripts.

::

    from fuxictr_mmctr.train import load_trained_model, score_split

    params, feature_map, model = load_trained_model("config/mmctr_config", "DIN_sample")
    y_valid = score_split(params, feature_map, model, "valid")   # (N,) probabilities

:mod:`~fuxictr_mmctr.train.experiment` holds the jobs (``train``, ``predict``) and the pieces
(``load_params``, ``build_feature_map``, ``build_model``, ``make_loaders``); :mod:`.sweep` the
grid search (``tune``), :mod:`.results` the results CSV, :mod:`.blend` blends of trained
experiments, :mod:`~fuxictr_mmctr.train.config_keys` the check for config keys no component
reads. Names are imported on first access.
"""
import importlib

_EXPORTS = {
    "experiment": ("TrainResult", "PredictResult", "REQUIRED_KEYS", "SPLITS", "load_params",
                   "require_files", "build_feature_map", "load_feature_map", "build_model",
                   "make_loaders", "load_trained_model", "score_split", "train",
                   "predict_split", "predict"),
    "sweep": ("tune", "sweep_plan", "tuner_files"),
    "results": ("read_results", "finished_expids", "metric_line"),
    "config_keys": ("known_keys", "unknown_keys", "warn_unknown_keys"),
}
_OWNER = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_OWNER)


def __getattr__(name):
    if name in _OWNER:
        return getattr(importlib.import_module(f"{__name__}.{_OWNER[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_OWNER))
