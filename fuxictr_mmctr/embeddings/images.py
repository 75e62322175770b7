"""Item images for the student: decoding in DataLoader workers and CLIP-style preprocessing.

An item's cover is ``<image_dir>/<item_id>.jpg``. A missing file, one that cannot be decoded, or
one too large to decode safely is not an error: the item gets a status (:data:`IMAGE_MISSING`,
:data:`IMAGE_CORRUPT`, :data:`IMAGE_REJECTED`), the reason is logged, and the student falls back
to its text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError

# values of an item's image status (FeatureCache.image_status, StudentResult.image_status)
PENDING, IMAGE_OK, IMAGE_MISSING, IMAGE_CORRUPT, IMAGE_REJECTED = 0, 1, 2, 3, 4
STATUS_NAMES = {IMAGE_OK: "image_ok", IMAGE_MISSING: "image_missing",
                IMAGE_CORRUPT: "image_corrupt", IMAGE_REJECTED: "image_rejected"}


class ImageRejected(Exception):
    """An image's header promises a size the decoder and the resize must not be asked for."""


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on an image, checked from its header before it is decoded or resized.

    A 1.25 KB PNG of 1 x 300,000 pixels decodes cheaply, but resizing its short side to 224
    asks for a 224 x 67,200,000 image: such files are refused before any pixel is touched.

    Args:
        max_pixels: width x height at most this. Pillow's own decompression-bomb check only
            warns below ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (about 179M). Default: 40,000,000.
        max_aspect: the long side at most this many times the short one. Default: 20.
    """

    max_pixels: int = 40_000_000
    max_aspect: float = 20.0

    def check(self, size: Tuple[int, int]) -> None:
        """Raise :class:`ImageRejected` naming the bound ``size`` (width, height) breaks."""
        w, h = int(size[0]), int(size[1])
        if w < 1 or h < 1:
            raise ImageRejected(f"empty image {w}x{h}")
        if w * h > self.max_pixels:
            raise ImageRejected(f"{w}x{h} is {w * h:,} pixels, over the limit of "
                                f"{self.max_pixels:,}")
        if max(w, h) > self.max_aspect * min(w, h):
            raise ImageRejected(f"{w}x{h} has an aspect ratio of {max(w, h) / min(w, h):,.0f}:1, "
                                f"over the limit of {self.max_aspect:g}:1")


class DecodedItem(NamedTuple):
    """One item as a decoding worker hands it over.

    Attributes:
        item: the item id.
        image: the prepared image (``(H, W, 3)`` uint8 from :class:`FastImageTransform`, else
            an RGB PIL image), None when there is none.
        status: ``IMAGE_OK``, ``IMAGE_MISSING``, ``IMAGE_CORRUPT`` or ``IMAGE_REJECTED``.
        error: why the image is unusable (empty when it is fine or missing).
        seconds: time spent decoding.
    """

    item: int
    image: object
    status: int
    error: str
    seconds: float


class FastImageTransform:
    """CLIP's image preprocessing (RGB, resize shortest edge, center crop, rescale, normalise)
    with PIL per image and one vectorised normalisation per batch.

    Built from a ``CLIPImageProcessor``'s own settings by :meth:`from_processor`, which returns
    None when they are not of that shape (then the processor itself is used). Kept beside the
    processor because it is faster where it matters: a large JPEG is decoded at a reduced scale
    (PIL's draft mode, within 3 grey levels of the processor's pixels), 5x the processor's
    images/s on 1280-pixel covers with CLIP's 224 recipe, 1.1x on 480-pixel ones
    (``python bench/clip_extract.py``); on images PIL does not draft it gives the processor's
    pixels (tests/unit/test_embeddings.py).
    """

    def __init__(self, size: int, crop: Tuple[int, int], resample: int, scale: float,
                 mean: Sequence[float], std: Sequence[float]):
        self.size, self.crop, self.resample, self.scale = int(size), crop, int(resample), scale
        self.mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)

    @classmethod
    def from_processor(cls, image_processor) -> Optional["FastImageTransform"]:
        ip = image_processor
        try:
            size = dict(ip.size)["shortest_edge"]
            crop = dict(ip.crop_size)
            ok = (ip.do_resize and ip.do_center_crop and ip.do_rescale and ip.do_normalize
                  and getattr(ip, "do_convert_rgb", True) is not False
                  and not getattr(ip, "do_pad", False))
            resample = int(getattr(ip.resample, "value", ip.resample))
            if not ok:
                return None
            return cls(size, (int(crop["height"]), int(crop["width"])), resample,
                       float(ip.rescale_factor), list(ip.image_mean), list(ip.image_std))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None

    def image(self, img) -> np.ndarray:
        """One PIL image -> ``(H, W, 3)`` uint8 resized and cropped."""
        from PIL import Image

        w, h = img.size
        if getattr(img, "format", None) == "JPEG":
            img.draft("RGB", (self.size, self.size))         # decode at a reduced scale
            w, h = img.size
        img = img.convert("RGB")
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.size, int(self.size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        img = img.resize((new_w, new_h), resample=Image.Resampling(self.resample))
        ch, cw = self.crop
        top, left = (new_h - ch) // 2, (new_w - cw) // 2
        arr = np.asarray(img, dtype=np.uint8)
        if top < 0 or left < 0:                               # smaller than the crop: pad
            out = np.zeros((ch, cw, 3), np.uint8)
            t, l_ = max(-top, 0), max(-left, 0)
            src = arr[max(top, 0):max(top, 0) + ch, max(left, 0):max(left, 0) + cw]
            out[t:t + src.shape[0], l_:l_ + src.shape[1]] = src
            return out
        return arr[top:top + ch, left:left + cw]

    def batch(self, arrays: List[np.ndarray]):
        """``(H, W, 3)`` uint8 arrays -> ``(B, 3, H, W)`` float32 pixel values."""
        import torch

        x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32)   # (B, 3, H, W)
        x = (x * self.scale - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x))


class Downscale:
    """An RGB PIL image whose long side is at most ``max_side`` (aspect ratio kept), for models
    whose processor takes images of any size (a vision-language model's patches grow with it).
    A large JPEG is decoded at a reduced scale (PIL's draft mode)."""

    def __init__(self, max_side: int):
        self.max_side = int(max_side)

    def image(self, img):
        from PIL import Image

        if getattr(img, "format", None) == "JPEG":
            img.draft("RGB", (self.max_side, self.max_side))
        img = img.convert("RGB")
        w, h = img.size
        if max(w, h) > self.max_side:
            scale = self.max_side / max(w, h)
            img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                             resample=Image.Resampling.BICUBIC)
        return img


class ItemImages:
    """A map-style dataset: position -> :class:`DecodedItem` of ``items[position]``.

    Args:
        items: ``(P,)`` item ids in the order they are encoded.
        image_dir: folder of ``<item_id>.jpg``; None makes every image missing.
        transform: what the worker does to a decoded image (``.image(img)``, e.g.
            :class:`FastImageTransform` or :class:`Downscale`); None hands the RGB image on to
            the model's processor.
        limits: the sizes refused before decoding. Default: :class:`ImageLimits` ().
    """

    def __init__(self, items: np.ndarray, image_dir: Optional[Path], transform=None,
                 limits: Optional[ImageLimits] = None):
        self.items = items
        self.image_dir = image_dir
        self.transform = transform
        self.limits = limits or ImageLimits()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> DecodedItem:
        from PIL import Image

        item = int(self.items[i])
        t0 = time.perf_counter()
        if self.image_dir is None:
            return DecodedItem(item, None, IMAGE_MISSING, "", 0.0)
        path = self.image_dir / f"{item}.jpg"
        try:
            with Image.open(path) as img:
                self.limits.check(img.size)       # from the header: nothing decoded yet
                if self.transform is not None:
                    rgb = self.transform.image(img)
                else:
                    img.load()
                    rgb = img.convert("RGB")
                    if min(rgb.size) < 1:
                        raise ConfigError(f"empty image {rgb.size}")
            return DecodedItem(item, rgb, IMAGE_OK, "", time.perf_counter() - t0)
        except FileNotFoundError:
            return DecodedItem(item, None, IMAGE_MISSING, "", time.perf_counter() - t0)
        except (ImageRejected, Image.DecompressionBombError) as exc:
            return DecodedItem(item, None, IMAGE_REJECTED, f"{path}: refused before decoding: "
                               f"{exc}", time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001  (any unreadable file falls back to text)
            return DecodedItem(item, None, IMAGE_CORRUPT, f"{path}: {type(exc).__name__}: {exc}",
                               time.perf_counter() - t0)


def pixel_batch(batch: Sequence[DecodedItem], status: np.ndarray, errors: List[str],
                transform: Optional[FastImageTransform], image_processor):
    """The pixel values of the usable images of ``batch``, in order, or None without any.

    With a ``transform`` the images are already resized and cropped and are only normalised.
    Otherwise ``image_processor`` runs on the whole batch; when it fails, image by image, and an
    image it cannot process becomes ``IMAGE_CORRUPT`` in ``status`` (updated in place) with the
    reason appended to ``errors``: one odd image must not sink the batch.

    Returns:
        ``(K, 3, H, W)`` float32 pixel values for the ``K`` items whose status is ``IMAGE_OK``
        afterwards, or None.
    """
    import torch

    images = [b.image for b in batch if b.image is not None]
    if not images:
        return None
    if transform is not None:
        return transform.batch(images)
    try:
        return image_processor(images=images, return_tensors="pt")["pixel_values"]
    except Exception:  # noqa: BLE001  one odd image must not sink the batch
        pass
    pixel_values, ok = [], []
    for b in batch:
        if b.image is None:
            continue
        try:
            pixel_values.append(image_processor(images=[b.image],
                                                return_tensors="pt")["pixel_values"][0])
            ok.append(True)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"item {b.item}: preprocessing failed: {exc}")
            ok.append(False)
    pos = np.flatnonzero(status == IMAGE_OK)
    status[pos[~np.array(ok, dtype=bool)]] = IMAGE_CORRUPT
    return torch.stack(pixel_values) if pixel_values else None
