"""CLIP: both towers of a ``CLIPModel`` loaded with ``from_pretrained``, as one encoder."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from ...errors import MMCTRError
from ..images import IMAGE_OK, DecodedItem, FastImageTransform, pixel_batch
from .base import Encoder

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class ClipUnavailableError(MMCTRError, RuntimeError):
    """The CLIP weights could not be loaded (typically: offline and not in the local cache)."""


def load_clip(name_or_path: str = DEFAULT_CLIP, local_files_only: bool = False):
    """``CLIPModel`` and ``CLIPProcessor`` from a Hub name or a local folder, in eval mode.

    Raises:
        ClipUnavailableError: the weights are neither reachable nor cached, with the ways to
            point at a local copy.
    """
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(name_or_path, local_files_only=local_files_only)
        processor = CLIPProcessor.from_pretrained(name_or_path, local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise ClipUnavailableError(
            f"cannot load CLIP {name_or_path!r} ({type(exc).__name__}: {str(exc)[:300]}). "
            "Without network access, download it on a connected machine, e.g. "
            f"`hf download {DEFAULT_CLIP} --local-dir clip-vit-base-patch32` (or "
            "`CLIPModel.from_pretrained(...).save_pretrained(DIR)` plus the processor), copy the "
            "folder here and pass `--clip /path/to/that/folder`; a copy already in the Hugging "
            "Face cache is found with HF_HUB_OFFLINE=1. For a demo without weights use "
            "`--tiny-clip` (random weights: the features carry no meaning).") from None
    model.eval()
    return model, processor


def clip_dim(model) -> int:
    return int(model.config.projection_dim)


def text_max_length(model) -> int:
    return int(model.config.text_config.max_position_embeddings)


def pooled(out):
    """``get_*_features`` return a tensor in transformers 4 and an output object in 5."""
    return out if hasattr(out, "shape") else out.pooler_output


class ClipInputs:
    """Runs in the workers: the pixel values and the tokens of one batch."""

    def __init__(self, processor, texts: Sequence[str], max_length: int,
                 transform: Optional[FastImageTransform] = None):
        self.transform = transform
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.texts = texts
        self.max_length = max_length

    def __call__(self, batch: Sequence[DecodedItem], status: np.ndarray,
                 errors: List[str]) -> dict:
        pixel_values = pixel_batch(batch, status, errors, self.transform, self.image_processor)
        tokens = self.tokenizer([self.texts[b.item] for b in batch], padding=True,
                                truncation=True, max_length=self.max_length, return_tensors="pt")
        return {"pixel_values": pixel_values, "input_ids": tokens["input_ids"],
                "attention_mask": tokens["attention_mask"]}


class ClipEncoder(Encoder):
    """The image and text features of a ``CLIPModel`` (its projection width each).

    Args:
        model: a ``CLIPModel`` (from :func:`load_clip`).
        processor: its ``CLIPProcessor``.
        name: the model's name or folder, for the logs.
    """

    label = "CLIP features"
    parts = ("image", "text")

    def __init__(self, model, processor, name: str = ""):
        self.model, self.processor, self.name = model, processor, name
        self.dim = clip_dim(model)
        self.device, self.half = "cpu", False

    def image_transform(self) -> Optional[FastImageTransform]:
        return FastImageTransform.from_processor(self.processor.image_processor)

    def inputs_builder(self, texts, transform):
        return ClipInputs(self.processor, texts, text_max_length(self.model), transform)

    def place(self, device: str, fp16: bool) -> None:
        self.device, self.half = device, fp16 and device.startswith("cuda")
        self.model = self.model.to(device)
        if self.half:
            self.model = self.model.half()
        self.model.eval()

    def encode(self, inputs: dict, status: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            ids = inputs["input_ids"].to(self.device)
            mask = inputs["attention_mask"].to(self.device)
            text = pooled(self.model.get_text_features(input_ids=ids, attention_mask=mask))
            image = torch.zeros((len(status), text.shape[1]), dtype=text.dtype,
                                device=text.device)
            if inputs["pixel_values"] is not None:
                px = inputs["pixel_values"].to(self.device, dtype=torch.float16 if self.half
                                               else torch.float32)
                feats = pooled(self.model.get_image_features(pixel_values=px))
                image[torch.as_tensor(status == IMAGE_OK, device=text.device)] = feats
            return {"text": text.float().cpu().numpy(), "image": image.float().cpu().numpy()}
