"""The model registry: every model of the package, found by name.

``getattr(fuxictr_mmctr.models, "DIN")`` works as in FuxiCTR's scripts, and
:func:`get_model` fails with the list of available names.
"""
from ..errors import ConfigError
from .base import MMCTRModel
from .DCNv2 import DCNv2
from .DIN import DIN
from .DIN_DCN import DIN_DCN
from .FiBiNET import FiBiNET
from .QIN import QIN
from .TransformerDCN import TransformerDCN

MODELS = {cls.__name__: cls for cls in (DIN, DCNv2, TransformerDCN, DIN_DCN, FiBiNET,
                                             QIN)}


def get_model(name: str):
    """The model class called ``name``.

    Raises:
        ValueError: unknown name; the message lists the available models.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") \
            from None


__all__ = ["MMCTRModel", "get_model", "MODELS", *MODELS]
