"""CLIP and its kin (SigLIP): two towers, ``get_image_features`` and ``get_text_features``.

One :class:`ClipEncoder` gives both towers (the ``clip`` source: image and text summed, the
text alone where the image fails) or one of them (an ``image`` or ``text`` source naming such
a model).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import ConfigError
from ..images import IMAGE_OK, DecodedItem, FastImageTransform, pixel_batch
from .base import Encoder, ModelUnavailableError

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
TOWERS = ("image", "text")


class ClipUnavailableError(ModelUnavailableError):
    """The CLIP weights could not be loaded (typically: offline and not in the local cache)."""


def is_dual_encoder(model) -> bool:
    """Whether ``model`` has an image and a text tower in one embedding space."""
    return hasattr(model, "get_image_features") and hasattr(model, "get_text_features")


def load_clip(name_or_path: str = DEFAULT_CLIP, local_files_only: bool = False):
    """The model and processor of a CLIP-like dual encoder (CLIP, SigLIP) from a Hub name or a
    local folder, in eval mode (``AutoModel``/``AutoProcessor``).

    Raises:
        ClipUnavailableError: the weights are neither reachable nor cached, with the ways to
            point at a local copy.
        ConfigError: the model has no image and text towers.
    """
    from transformers import AutoModel, AutoProcessor

    try:
        model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only)
        processor = AutoProcessor.from_pretrained(name_or_path, local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise ClipUnavailableError(
            f"cannot load CLIP {name_or_path!r} ({type(exc).__name__}: {str(exc)[:300]}). "
            "Without network access, download it on a connected machine, e.g. "
            f"`hf download {DEFAULT_CLIP} --local-dir clip-vit-base-patch32` (or "
            "`CLIPModel.from_pretrained(...).save_pretrained(DIR)` plus the processor), copy the "
            "folder here and pass `--clip /path/to/that/folder`; a copy already in the Hugging "
            "Face cache is found with HF_HUB_OFFLINE=1. For a demo without weights use "
            "`--tiny-clip` (random weights: the features carry no meaning).") from None
    if not is_dual_encoder(model):
        raise ConfigError(f"{name_or_path!r} is a {model.config.model_type!r} model without an "
                          "image and a text tower (get_image_features, get_text_features); "
                          "name a CLIP or SigLIP model, or use an image:/text: source",
                          option="--source")
    model.eval()
    return model, processor


def tower_dim(model, tower: str) -> int:
    """The width of one tower's features: CLIP's ``projection_dim``; SigLIP's hidden sizes."""
    config = model.config
    if getattr(config, "projection_dim", None):
        return int(config.projection_dim)
    if tower == "image":
        return int(config.vision_config.hidden_size)
    text = config.text_config
    return int(getattr(text, "projection_size", None) or text.hidden_size)


def clip_dim(model) -> int:
    return tower_dim(model, "text")


def text_max_length(model) -> int:
    return int(model.config.text_config.max_position_embeddings)


def pads_to_max_length(model) -> bool:
    """SigLIP was trained on texts padded to the full length (its pooled state is the last
    position's): pad every text that way, as its processor does."""
    return str(model.config.model_type).startswith("siglip")


def pooled(out):
    """``get_*_features`` return a tensor in transformers 4 and an output object in 5."""
    return out if hasattr(out, "shape") else out.pooler_output


class ClipInputs:
    """Runs in the workers: the pixel values and the tokens of one batch (those it needs)."""

    def __init__(self, processor, texts: Sequence[str], max_length: int,
                 transform: Optional[FastImageTransform] = None, towers: Tuple[str, ...] = TOWERS,
                 padding: str = "longest"):
        self.transform = transform
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.texts = texts
        self.max_length = max_length
        self.towers = towers
        self.padding = True if padding == "longest" else padding

    def __call__(self, batch: Sequence[DecodedItem], status: np.ndarray,
                 errors: List[str]) -> dict:
        inputs = {"pixel_values": None}
        if "image" in self.towers:
            inputs["pixel_values"] = pixel_batch(batch, status, errors, self.transform,
                                                 self.image_processor)
        if "text" in self.towers:
            tokens = self.tokenizer([self.texts[b.item] for b in batch], padding=self.padding,
                                    truncation=True, max_length=self.max_length,
                                    return_tensors="pt")
            # padded to the full length (SigLIP) the model is run as trained: without a mask
            mask = None if self.padding == "max_length" else tokens.get("attention_mask")
            inputs.update(input_ids=tokens["input_ids"], attention_mask=mask)
        return inputs


class ClipEncoder(Encoder):
    """The image and/or text features of a CLIP-like dual encoder.

    Args:
        model: a ``CLIPModel``, ``SiglipModel``... (from :func:`load_clip`).
        processor: its processor.
        name: the model's name or folder, for the logs.
        towers: ``("image", "text")`` (default), ``("image",)`` or ``("text",)``.

    Parts: one ``(N + 1, dim)`` feature per tower; the image part is zero where the image
    failed.
    """

    def __init__(self, model, processor, name: str = "", towers: Sequence[str] = TOWERS):
        towers = tuple(t for t in TOWERS if t in towers)
        if not towers:
            raise ConfigError(f"towers must name image and/or text, got {tuple(towers)}")
        dims = {tower_dim(model, t) for t in towers}
        if len(dims) != 1:
            raise ConfigError(f"{name!r}: its image and text features differ in width ({dims})")
        self.model, self.processor, self.name, self.towers = model, processor, name, towers
        self.parts = towers
        self.dim = dims.pop()
        self.uses_images, self.uses_texts = "image" in towers, "text" in towers
        self.label = "CLIP features" if towers == TOWERS else f"{'/'.join(towers)} features"

    def settings(self) -> dict:
        return {} if self.towers == TOWERS else {"towers": list(self.towers)}

    def image_transform(self) -> Optional[FastImageTransform]:
        return FastImageTransform.from_processor(self.processor.image_processor)

    def inputs_builder(self, texts, transform):
        return ClipInputs(self.processor, texts, text_max_length(self.model), transform,
                          self.towers, "max_length" if pads_to_max_length(self.model)
                          else "longest")

    def encode(self, inputs: dict, status: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        out = {}
        with torch.inference_mode():
            if "text" in self.towers:
                ids = inputs["input_ids"].to(self.device)
                mask = inputs["attention_mask"]
                kwargs = {} if mask is None else {"attention_mask": mask.to(self.device)}
                text = pooled(self.model.get_text_features(input_ids=ids, **kwargs))
                out["text"] = text.float().cpu().numpy()
            if "image" in self.towers:
                dtype = torch.float16 if self.half else torch.float32
                image = torch.zeros((len(status), self.dim), dtype=dtype, device=self.device)
                if inputs["pixel_values"] is not None:
                    px = inputs["pixel_values"].to(self.device, dtype=dtype)
                    feats = pooled(self.model.get_image_features(pixel_values=px))
                    image[torch.as_tensor(status == IMAGE_OK, device=self.device)] = \
                        feats.to(dtype)
                out["image"] = image.float().cpu().numpy()
        return out
