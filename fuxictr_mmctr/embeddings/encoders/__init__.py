"""The models of the Task-1 student, one file per family, behind one :class:`~.base.Encoder`.

:func:`load_encoder` turns a source's kind, model and options into an encoder:

- ``clip``: :class:`~.clip.ClipEncoder`, both towers of CLIP or SigLIP;
- ``image``: one tower of CLIP/SigLIP, else :class:`~.vision.VisionEncoder`;
- ``text``: one tower of CLIP/SigLIP, else :class:`~.text.TextEncoder` (BERT family,
  sentence-transformers folders);
- ``vlm``: :class:`~.vlm.VlmEncoder`, a vision-language model's hidden states.
"""
from __future__ import annotations

from typing import Optional

from ...errors import ConfigError
from .base import Encoder, InputsBuilder, ModelUnavailableError, unavailable
from .clip import (DEFAULT_CLIP, ClipEncoder, ClipUnavailableError, clip_dim, is_dual_encoder,
                   load_clip)
from .text import TextEncoder, load_text
from .vision import VisionEncoder, load_vision
from .vlm import DEFAULT_LAYER, DEFAULT_MAX_SIDE, DEFAULT_PROMPT, VlmEncoder, load_vlm

MODEL_KINDS = ("clip", "image", "text", "vlm")


def _dual_tower(kind: str, name: str, local_files_only: bool, options: dict
                ) -> Optional[ClipEncoder]:
    """The ``kind`` tower of ``name`` when it is a CLIP-like dual encoder, else None."""
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local_files_only)
        model_class = AutoModel._model_mapping[type(config)]
    except (OSError, ValueError, KeyError):
        return None                   # the family's own loader says what is wrong
    if not (hasattr(model_class, "get_image_features")
            and hasattr(model_class, "get_text_features")):
        return None
    extra = set(options) - {"dim", "batch_size"}
    if extra:
        raise ConfigError(f"{kind}:{name}: option(s) {sorted(extra)} do not apply to a tower of "
                          f"a {config.model_type} model (its pooling is its own)",
                          option="--source")
    model, processor = load_clip(name, local_files_only)
    return ClipEncoder(model, processor, name=name, towers=(kind,))


def load_encoder(kind: str, name: str, options: Optional[dict] = None,
                 local_files_only: bool = False, half: bool = False,
                 vlm_prompt: str = DEFAULT_PROMPT) -> Encoder:
    """The encoder of a model source.

    Args:
        kind: ``clip``, ``image``, ``text`` or ``vlm``.
        name: the model's Hub name or local folder.
        options: the source's options (``pooling``, ``layer``, ``max_length``, ``max_side``).
        local_files_only: never try the network.
        half: the model will run in half precision on a GPU (a VLM is then loaded in bfloat16
            directly).
        vlm_prompt: the VLM prompt template (``{text}`` = the item text).

    Raises:
        ModelUnavailableError: the weights cannot be loaded (with how to point at a copy).
        ConfigError: an option the model does not take.
    """
    options = dict(options or {})
    if kind == "clip":
        model, processor = load_clip(name, local_files_only)
        return ClipEncoder(model, processor, name=name)
    if kind in ("image", "text"):
        tower = _dual_tower(kind, name, local_files_only, options)
        if tower is not None:
            return tower
    if kind == "image":
        model, processor = load_vision(name, local_files_only)
        return VisionEncoder(model, processor, name=name,
                             pooling=options.get("pooling", "pooled"))
    if kind == "text":
        model, tokenizer, layout = load_text(name, local_files_only)
        return TextEncoder(model, tokenizer, name=name, pooling=options.get("pooling"),
                           max_length=options.get("max_length"), layer=options.get("layer"),
                           layout=layout)
    if kind == "vlm":
        dtype = None
        if half:
            import torch

            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        model, processor = load_vlm(name, local_files_only, dtype=dtype)
        return VlmEncoder(model, processor, name=name,
                          layer=options.get("layer", DEFAULT_LAYER),
                          max_side=options.get("max_side", DEFAULT_MAX_SIDE), prompt=vlm_prompt)
    raise ConfigError(f"{kind!r} is not a model source; expected one of {MODEL_KINDS}",
                      option="--source")


__all__ = ["Encoder", "InputsBuilder", "ModelUnavailableError", "unavailable", "DEFAULT_CLIP",
           "ClipEncoder", "ClipUnavailableError", "clip_dim", "is_dual_encoder", "load_clip",
           "TextEncoder", "load_text", "VisionEncoder", "load_vision", "VlmEncoder", "load_vlm",
           "MODEL_KINDS", "load_encoder"]
