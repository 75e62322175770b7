"""fuxictr_mmctr: multimodal CTR prediction on MicroLens as a FuxiCTR plugin.

The models and the loader are attributes of the package, so FuxiCTR-style scripts can do
``getattr(fuxictr_mmctr, params["model"])`` and ``fuxictr_mmctr.MMCTRDataLoader``. They are
imported on first access, so commands that need neither torch nor FuxiCTR start fast.
"""
import importlib

__version__ = "0.1.0"  # before compat, which records it in every versions line

from . import compat  # noqa: E402,F401  (NumPy 2 aliases FuxiCTR 2.3.7 needs; cheap)

_FROM_MODELS = ("get_model", "MODELS", "MMCTRModel")


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(name)
    if name == "MMCTRDataLoader":
        return importlib.import_module(f"{__name__}.data.loader").MMCTRDataLoader
    models = importlib.import_module(f"{__name__}.models")
    if name in _FROM_MODELS:
        return getattr(models, name)
    if name in models.MODELS:
        return models.MODELS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    models = importlib.import_module(f"{__name__}.models")
    return sorted(set(globals()) | {"MMCTRDataLoader", *_FROM_MODELS, *models.MODELS})
