"""fuxictr_mmctr: multimodal CTR prediction on MicroLens as a FuxiCTR plugin.

The models and the loader are attributes of the package, so FuxiCTR-style scripts can do
``getattr(fuxictr_mmctr, params["model"])`` and ``fuxictr_mmctr.MMCTRDataLoader``.
"""
from . import compat  # noqa: F401  (must run before FuxiCTR trains: NumPy 2 aliases)
from .dataloader import MMCTRDataLoader
from .models import *  # noqa: F401,F403
from .models import MODELS, get_model

__version__ = "0.1.0"
