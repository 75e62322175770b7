"""Content student: its settings and its result, the image and text features of every item.

The pieces live beside it: the models in :mod:`.encoders`, the on-disk cache in :mod:`.cache`,
image decoding in :mod:`.images`, the pass itself in :mod:`.extract`, the pass across torchrun
ranks in :mod:`.shards`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from .encoders.clip import DEFAULT_CLIP
from .images import IMAGE_OK, STATUS_NAMES, ImageLimits
from .vectors import l2_normalize


@dataclass
class StudentConfig:
    """Feature-extraction settings, shared by every model source.

    Args:
        clip: Hugging Face model name or local folder of the ``clip`` source that names no
            model. Default: ``openai/clip-vit-base-patch32``.
        batch_size: items per batch. Default: 64.
        num_workers: DataLoader workers decoding images; 0 decodes in the main process.
            Default: 2.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``. Default: auto.
        fp16: run the model in half precision on GPU (ignored on CPU). Default: True.
        max_batches: stop after this many batches (for tests and to simulate a killed run);
            None runs to the end. Default: None.
        local_files_only: never try the network when loading ``clip``. Default: False.
        progress: show a tqdm bar. Default: True.
        cpu_threads: torch intra-op threads while encoding on CPU; None leaves the cores the
            decoding workers use, ``max(1, cpus - num_workers)`` (oversubscribed cores make
            PyTorch's spinning threads many times slower). Default: None.
        fast_preprocess: resize and crop with PIL in the workers (JPEG draft decoding) and
            normalise the whole batch at once, instead of the Hugging Face image processor
            image by image; same steps and settings, read from the processor. Falls back to the
            processor when its settings are not the CLIP ones. Default: True.
        image_limits: image sizes refused before decoding (a decompression bomb, an extreme
            aspect ratio): the item falls back as for a corrupt image. Default:
            :class:`~.images.ImageLimits` ().
    """

    clip: str = DEFAULT_CLIP
    batch_size: int = 64
    num_workers: int = 2
    device: str = "auto"
    fp16: bool = True
    max_batches: Optional[int] = None
    local_files_only: bool = False
    progress: bool = True
    cpu_threads: Optional[int] = None
    fast_preprocess: bool = True
    image_limits: ImageLimits = field(default_factory=ImageLimits)


@dataclass
class StudentResult:
    """Encoder features indexed by item_id (row 0 = padding, all zeros).

    Attributes:
        parts: part name -> ``(N + 1, P)`` float32 features; CLIP gives ``image`` (zeros where
            the image failed) and ``text``.
        image_status: ``(N + 1,)`` int8: ``IMAGE_OK``, ``IMAGE_MISSING``, ``IMAGE_CORRUPT``,
            ``IMAGE_REJECTED``, ``PENDING`` (not encoded yet; row 0 always).
        done: ``(N + 1,)`` bool, True where the item is encoded (row 0 False).
        encoded_items: item ids encoded by this call, in order.
        batches: batches encoded by this call.
        seconds: wall time of this call; ``wait_seconds`` of it waiting for the loader,
            ``encode_seconds`` in the model; ``decode_seconds`` is worker time spent decoding
            and preprocessing images (summed over workers).
    """

    parts: Dict[str, np.ndarray]
    image_status: np.ndarray
    done: np.ndarray
    encoded_items: np.ndarray
    batches: int = 0
    seconds: float = 0.0
    wait_seconds: float = 0.0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def image(self) -> np.ndarray:
        return self.parts["image"]

    @property
    def text(self) -> np.ndarray:
        return self.parts["text"]

    @property
    def complete(self) -> bool:
        return bool(self.done[1:].all())

    @property
    def dim(self) -> int:
        return int(next(iter(self.parts.values())).shape[1])

    def features(self) -> np.ndarray:
        """One unit content vector per item, zeros where it has none (row 0 too).

        Image and text (CLIP): ``normalize(normalize(image) + normalize(text))``, the text
        feature alone where the image is missing, corrupt or rejected. An image alone: its
        feature where the image was usable. Any other part (text, a VLM's hidden states): that
        part, normalised.
        """
        ok = (self.image_status == IMAGE_OK)[:, None]
        if "image" in self.parts and "text" in self.parts:
            text = l2_normalize(self.text)
            image = l2_normalize(self.image)
            out = l2_normalize(np.where(ok, text + image, text))
        elif "image" in self.parts:
            out = np.where(ok, l2_normalize(self.image), 0.0).astype(np.float32)
        else:
            out = l2_normalize(next(iter(self.parts.values())))
        out[~self.feature_mask()] = 0.0
        return out

    def feature_mask(self) -> np.ndarray:
        """``(N + 1,)`` bool: the items :meth:`features` gives a vector (encoded; for an image
        alone, with a usable image)."""
        if "image" in self.parts and "text" not in self.parts:
            return self.done & (self.image_status == IMAGE_OK)
        return self.done.copy()

    def counts(self) -> Dict[str, int]:
        st = self.image_status[1:]
        out = {"encoded": int(self.done[1:].sum())}
        out.update({name: int((st == code).sum()) for code, name in STATUS_NAMES.items()})
        return out
