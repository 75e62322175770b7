"""Any vision backbone ``AutoModel`` loads (ViT, DINOv2, ConvNeXt, ...): its pooled output or
the mean of its last states, one image feature per item."""
from __future__ import annotations

import logging
from typing import Dict, List, Sequence

import numpy as np

from ...errors import ConfigError
from ..images import IMAGE_OK, DecodedItem, FastImageTransform, pixel_batch
from .base import Encoder, unavailable
from .pooling import pool_patches

logger = logging.getLogger(__name__)

VISION_POOLINGS = ("pooled", "mean")


def load_vision(name_or_path: str, local_files_only: bool = False):
    """``AutoModel`` and ``AutoImageProcessor`` of a vision backbone, in eval mode."""
    from transformers import AutoImageProcessor, AutoModel

    try:
        model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only)
        processor = AutoImageProcessor.from_pretrained(name_or_path,
                                                       local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise unavailable("image model", name_or_path, exc) from None
    return model.eval(), processor


class VisionInputs:
    """Runs in the workers: the pixel values of one batch."""

    def __init__(self, image_processor, transform=None):
        self.image_processor, self.transform = image_processor, transform

    def __call__(self, batch: Sequence[DecodedItem], status: np.ndarray,
                 errors: List[str]) -> dict:
        return {"pixel_values": pixel_batch(batch, status, errors, self.transform,
                                            self.image_processor)}


class VisionEncoder(Encoder):
    """One image feature per item from a vision backbone.

    Args:
        model: a vision ``AutoModel`` (from :func:`load_vision`).
        image_processor: its image processor.
        name: the model's name or folder.
        pooling: ``pooled`` (the model's ``pooler_output``; the mean where it has none) or
            ``mean`` (the mean of ``last_hidden_state`` over patches, or over the positions of
            a convolutional feature map). Default: pooled.

    Parts: ``image``, zero where the image failed (the item has no feature from this source).
    """

    label = "image features"
    parts = ("image",)
    uses_texts = False

    def __init__(self, model, image_processor, name: str = "", pooling: str = "pooled"):
        if pooling not in VISION_POOLINGS:
            raise ConfigError(f"image pooling {pooling!r}: choose one of {VISION_POOLINGS}",
                              option="--source")
        self.model, self.image_processor, self.name = model, image_processor, name
        self.pooling = pooling
        probe = self._probe_pixels()
        if pooling == "pooled" and self._forward(probe).get("pooler_output") is None:
            logger.warning("%s has no pooled output: using the mean of its last states", name)
            self.pooling = "mean"
        self.dim = int(self._features(probe).shape[1])

    def _probe_pixels(self):
        from PIL import Image

        return self.image_processor(images=[Image.new("RGB", (64, 64), (128, 128, 128))],
                                    return_tensors="pt")["pixel_values"]

    def _forward(self, pixel_values):
        import torch

        with torch.inference_mode():
            return self.model(pixel_values=pixel_values)

    def _features(self, pixel_values):
        """``(B, D)`` float32 features of a pixel batch (on the model's device)."""
        out = self._forward(pixel_values)
        if self.pooling == "pooled":
            return out["pooler_output"].float().reshape(len(pixel_values), -1)
        return pool_patches(out["last_hidden_state"])

    def settings(self) -> dict:
        return {"pooling": self.pooling}

    def image_transform(self):
        return FastImageTransform.from_processor(self.image_processor)

    def inputs_builder(self, texts, transform):
        return VisionInputs(self.image_processor, transform)

    def encode(self, inputs: dict, status: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        image = np.zeros((len(status), self.dim), dtype=np.float32)
        if inputs["pixel_values"] is not None:
            px = inputs["pixel_values"].to(self.device, dtype=torch.float16 if self.half
                                           else torch.float32)
            image[status == IMAGE_OK] = self._features(px).cpu().numpy()
        return {"image": image}
