"""Content student: CLIP image and text features of every item, cached on disk and resumable.

Features go to float16 ``numpy.memmap`` files with a done-mask saved after every batch, so an
interrupted run starts again at the first unfinished batch and never re-encodes a finished one.
Images are decoded and preprocessed in DataLoader workers; the model runs batched under
``torch.inference_mode`` (fp16 on GPU). A missing or unreadable image is logged and counted and
the item falls back to its text feature.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, MMCTRError

logger = logging.getLogger(__name__)

DEFAULT_CLIP = "openai/clip-vit-base-patch32"

# values of StudentResult.image_status
PENDING, IMAGE_OK, IMAGE_MISSING, IMAGE_CORRUPT = 0, 1, 2, 3


class ClipUnavailableError(MMCTRError, RuntimeError):
    """The CLIP weights could not be loaded (typically: offline and not in the local cache)."""


@dataclass
class StudentConfig:
    """CLIP feature-extraction settings.

    Args:
        clip: Hugging Face model name or local folder for ``CLIPModel``/``CLIPProcessor``.
            Default: ``openai/clip-vit-base-patch32``.
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


@dataclass
class StudentResult:
    """CLIP features indexed by item_id (row 0 = padding, all zeros).

    Attributes:
        image: ``(N + 1, P)`` float32 image features (zeros where the image failed).
        text: ``(N + 1, P)`` float32 text features.
        image_status: ``(N + 1,)`` int8: ``IMAGE_OK``, ``IMAGE_MISSING``, ``IMAGE_CORRUPT``,
            ``PENDING`` (not encoded yet; row 0 always).
        done: ``(N + 1,)`` bool, True where the item is encoded (row 0 False).
        encoded_items: item ids encoded by this call, in order.
        batches: batches encoded by this call.
        seconds: wall time of this call; ``wait_seconds`` of it waiting for the loader,
            ``encode_seconds`` in the model; ``decode_seconds`` is worker time spent decoding
            and preprocessing images (summed over workers).
    """

    image: np.ndarray
    text: np.ndarray
    image_status: np.ndarray
    done: np.ndarray
    encoded_items: np.ndarray
    batches: int = 0
    seconds: float = 0.0
    wait_seconds: float = 0.0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return bool(self.done[1:].all())

    @property
    def dim(self) -> int:
        return int(self.text.shape[1])

    def features(self) -> np.ndarray:
        """One content vector per item: ``normalize(normalize(image) + normalize(text))``;
        the text feature alone where the image is missing or corrupt. Row 0 is zeros."""
        from .teacher import l2_normalize

        text = l2_normalize(self.text)
        image = l2_normalize(self.image)
        ok = (self.image_status == IMAGE_OK)[:, None]
        out = l2_normalize(np.where(ok, text + image, text))
        out[~self.done] = 0.0
        return out

    def counts(self) -> Dict[str, int]:
        st = self.image_status[1:]
        return {"encoded": int(self.done[1:].sum()), "image_ok": int((st == IMAGE_OK).sum()),
                "image_missing": int((st == IMAGE_MISSING).sum()),
                "image_corrupt": int((st == IMAGE_CORRUPT).sum())}


# ---------------------------------------------------------------------------- loading

def resolve_device(device: str = "auto") -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine")
    return device


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


def build_tiny_clip(out_dir, texts: Sequence[str], seed: int = 0, hidden_size: int = 32,
                    num_layers: int = 2, image_size: int = 32, patch_size: int = 8,
                    projection_dim: int = 512, vocab_size: int = 500) -> Path:
    """Save a tiny randomly initialised CLIP (model, tokenizer, processor) to ``out_dir``.

    For tests and the offline demo only: the weights are random, so the features carry no
    meaning beyond the pixels and tokens hashing into them. The tokenizer is a byte-level BPE
    trained on ``texts`` in a fraction of a second. Load it back with :func:`load_clip`.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, processors, trainers
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              PreTrainedTokenizerFast)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[bos, eos],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [t for t in texts if t] or ["item"]
    tok.train_from_iterator(corpus, trainer=trainer)
    bos_id, eos_id = tok.token_to_id(bos), tok.token_to_id(eos)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, bos_id), (eos, eos_id)])
    max_len = 64
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   pad_token=eos, model_max_length=max_len)
    config = CLIPConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size,
                         intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=2, max_position_embeddings=max_len,
                         bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id),
        vision_config=dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                           num_hidden_layers=num_layers, num_attention_heads=2,
                           image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=image_processor, tokenizer=fast).save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------------------- cache

def _sha1(items: Sequence[str]) -> str:
    h = hashlib.sha1()
    for s in items:
        h.update(s.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()


class FeatureCache:
    """Float16 memmaps of image and text features plus a done-mask, in one folder.

    Files: ``image.f16`` and ``text.f16`` (``rows x dim`` float16), ``done.npy`` (bool),
    ``image_status.npy`` (int8) and ``meta.json`` (the fingerprint: model, shape, a hash of
    the texts, the image folder). A cache whose fingerprint differs is started afresh.

    Args:
        folder: where the files live.
        rows: ``num_items + 1``.
        dim: feature dimension.
        fingerprint: JSON-able description of what the features depend on.
        sync_seconds: at most this long between flushes of the memmaps to disk. Default: 30.
    """

    def __init__(self, folder, rows: int, dim: int, fingerprint: dict,
                 sync_seconds: float = 30.0):
        self.sync_seconds = float(sync_seconds)
        self._last_sync = time.monotonic()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rows, self.dim = int(rows), int(dim)
        meta = dict(fingerprint, rows=self.rows, dim=self.dim, version=1)
        meta_path = self.folder / "meta.json"
        fresh = True
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                old = None
            if old == meta and all((self.folder / f).exists() for f in
                                   ("image.f16", "text.f16", "done.npy", "image_status.npy")):
                fresh = False
            else:
                logger.warning("CLIP cache %s was made for other inputs; starting afresh",
                               self.folder)
        mode = "w+" if fresh else "r+"
        self.image = np.memmap(self.folder / "image.f16", dtype=np.float16, mode=mode,
                               shape=(self.rows, self.dim))
        self.text = np.memmap(self.folder / "text.f16", dtype=np.float16, mode=mode,
                              shape=(self.rows, self.dim))
        if fresh:
            self.done = np.zeros(self.rows, dtype=bool)
            self.image_status = np.zeros(self.rows, dtype=np.int8)
            self._save_masks()
            meta_path.write_text(json.dumps(meta, indent=1))
        else:
            self.done = np.load(self.folder / "done.npy")
            self.image_status = np.load(self.folder / "image_status.npy")
            if self.done.shape != (self.rows,) or self.image_status.shape != (self.rows,):
                raise ConfigError(f"CLIP cache {self.folder}: done-mask has the wrong shape; "
                                 "delete the folder")
            logger.info("CLIP cache %s: resuming, %d of %d items already encoded", self.folder,
                        int(self.done[1:].sum()), self.rows - 1)

    def refresh_images(self, stats: np.ndarray) -> int:
        """Forget the encoded rows whose image file changed since they were encoded.

        Args:
            stats: ``(rows, 2)`` int64 ``(size, mtime_ns)`` of each item's image now, -1 where
                there is none (see :func:`image_file_stats`).

        Returns:
            how many encoded rows were reset (they are encoded again by the next pass).
        """
        path = self.folder / "image_stat.npy"
        old = np.load(path) if path.exists() else None
        if old is not None and old.shape == stats.shape:
            changed = self.done & (old != stats).any(axis=1)
        else:  # no record: trust nothing that was encoded
            changed = self.done.copy()
        changed[0] = False
        if changed.any():
            logger.warning("CLIP cache %s: %d encoded item(s) have a new or changed image file; "
                           "encoding them again", self.folder, int(changed.sum()))
            self.done[changed] = False
            self._save_masks()          # first forget, then record: a kill in between re-checks
        tmp = self.folder / ".image_stat.tmp.npy"
        np.save(tmp, stats)
        os.replace(tmp, path)
        return int(changed.sum())

    def _save_masks(self) -> None:
        for name, arr in (("done.npy", self.done), ("image_status.npy", self.image_status)):
            tmp = self.folder / f".{name}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, self.folder / name)

    def write(self, items: np.ndarray, image: np.ndarray, text: np.ndarray,
              status: np.ndarray) -> None:
        """Store one batch in the memmaps, then mark it done (in that order, so a kill between
        the two re-encodes the batch rather than trusting half-written rows).

        The rows are in the shared mapping as soon as they are assigned, so a killed process
        loses nothing; :meth:`sync` (every ``sync_seconds`` and at the end) forces them to disk
        against an OS crash, which an ``msync`` per batch would do at a measurable cost.
        """
        self.image[items] = image.astype(np.float16)
        self.text[items] = text.astype(np.float16)
        self.image_status[items] = status
        self.done[items] = True
        if time.monotonic() - self._last_sync >= self.sync_seconds:
            self.sync()
        else:
            self._save_masks()

    def sync(self) -> None:
        """Flush the memmaps to disk, then save the masks."""
        self.image.flush()
        self.text.flush()
        self._save_masks()
        self._last_sync = time.monotonic()


# ---------------------------------------------------------------------------- data

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


class _ItemDataset:
    """Item ids -> (item_id, decoded RGB image or None, status, error, seconds)."""

    def __init__(self, items: np.ndarray, image_dir: Optional[Path],
                 transform: Optional[FastImageTransform] = None):
        self.items = items
        self.image_dir = image_dir
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        item = int(self.items[i])
        t0 = time.perf_counter()
        if self.image_dir is None:
            return item, None, IMAGE_MISSING, "", 0.0
        path = self.image_dir / f"{item}.jpg"
        try:
            with Image.open(path) as img:
                if self.transform is not None:
                    rgb = self.transform.image(img)
                else:
                    img.load()
                    rgb = img.convert("RGB")
                    if min(rgb.size) < 1:
                        raise ConfigError(f"empty image {rgb.size}")
            return item, rgb, IMAGE_OK, "", time.perf_counter() - t0
        except FileNotFoundError:
            return item, None, IMAGE_MISSING, "", time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001  (any unreadable file falls back to text)
            return item, None, IMAGE_CORRUPT, f"{path}: {type(exc).__name__}: {exc}", \
                time.perf_counter() - t0


class _Collate:
    """Runs in the workers: image preprocessing and tokenisation of one batch."""

    def __init__(self, processor, texts: Sequence[str], max_length: int,
                 transform: Optional[FastImageTransform] = None):
        self.transform = transform
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.texts = texts
        self.max_length = max_length

    def __call__(self, batch):
        import torch

        t0 = time.perf_counter()
        items = np.array([b[0] for b in batch], dtype=np.int64)
        status = np.array([b[2] for b in batch], dtype=np.int8)
        errors = [b[3] for b in batch if b[3]]
        images = [b[1] for b in batch if b[1] is not None]
        pixel_values = None
        if images and self.transform is not None:
            pixel_values = self.transform.batch(images)
        elif images:
            try:
                pixel_values = self.image_processor(images=images, return_tensors="pt")[
                    "pixel_values"]
            except Exception:  # noqa: BLE001  one odd image must not sink the batch
                pixel_values, ok = [], []
                for b in batch:
                    if b[1] is None:
                        continue
                    try:
                        pixel_values.append(self.image_processor(
                            images=[b[1]], return_tensors="pt")["pixel_values"][0])
                        ok.append(True)
                    except Exception as exc:  # noqa: BLE001
                        errors.append(f"item {b[0]}: preprocessing failed: {exc}")
                        ok.append(False)
                pos = np.flatnonzero(status == IMAGE_OK)
                status[pos[~np.array(ok, dtype=bool)]] = IMAGE_CORRUPT
                pixel_values = torch.stack(pixel_values) if pixel_values else None
        tokens = self.tokenizer([self.texts[i] for i in items], padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        decode = sum(b[4] for b in batch) + time.perf_counter() - t0
        return {"items": items, "status": status, "errors": errors, "pixel_values": pixel_values,
                "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                "decode_seconds": decode}


def _features(out):
    """``get_*_features`` return a tensor in transformers 4 and an output object in 5."""
    return out if hasattr(out, "shape") else out.pooler_output


def clip_dim(model) -> int:
    return int(model.config.projection_dim)


def text_max_length(model) -> int:
    return int(model.config.text_config.max_position_embeddings)


# ---------------------------------------------------------------------------- extraction

def pending_items(done: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Items not yet encoded, in the order they are encoded: by title length (stable), so a
    batch holds titles of similar length and the text tower pads little."""
    pending = np.flatnonzero(~done)
    pending = pending[pending > 0]
    return pending[np.argsort([len(texts[i]) for i in pending], kind="stable")]


def cache_result(cache: FeatureCache, encoded_items: Optional[np.ndarray] = None, **stats
                 ) -> StudentResult:
    """The content of ``cache`` as a :class:`StudentResult` (row 0 zeros, not done);
    ``stats`` fill the counters (``batches``, ``seconds``, ...)."""
    result = StudentResult(
        image=np.asarray(cache.image, dtype=np.float32),
        text=np.asarray(cache.text, dtype=np.float32),
        image_status=cache.image_status.copy(), done=cache.done.copy(),
        encoded_items=encoded_items if encoded_items is not None else np.zeros(0, np.int64),
        **stats)
    result.done[0] = False
    result.image[0] = 0.0
    result.text[0] = 0.0
    return result


def extract_clip_features(model, processor, texts: Sequence[str], image_dir: Optional[Path],
                          cache: FeatureCache, cfg: Optional[StudentConfig] = None,
                          items: Optional[np.ndarray] = None) -> StudentResult:
    """Encode every item not yet done in ``cache``; return the cache content.

    Args:
        model: a ``CLIPModel`` (from :func:`load_clip`).
        processor: its ``CLIPProcessor``.
        texts: ``N + 1`` item texts (row 0 unused).
        image_dir: folder of ``<item_id>.jpg``; None or a missing folder makes every item fall
            back to its text feature (logged).
        cache: the feature cache (from the pipeline), ``rows == len(texts)``.
        cfg: batch size, workers, device, ``max_batches``.
        items: encode only these items (those not done yet), in this order, in batches of
            ``cfg.batch_size`` (a rank's share, see :mod:`.shards`). Default: every pending
            item in :func:`pending_items` order.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    cfg = cfg or StudentConfig()
    if len(texts) != cache.rows:
        raise ConfigError(f"{len(texts)} texts for a cache of {cache.rows} rows")
    start = time.perf_counter()
    if image_dir is not None and not Path(image_dir).is_dir():
        logger.warning("image folder %s not found: every item falls back to its text feature",
                       image_dir)
        image_dir = None
    image_dir = Path(image_dir) if image_dir is not None else None
    device = resolve_device(cfg.device)
    half = cfg.fp16 and device.startswith("cuda")
    model = model.to(device)
    if half:
        model = model.half()
    model.eval()
    if items is None:
        pending = pending_items(cache.done, texts)
    else:
        items = np.asarray(items, dtype=np.int64)
        pending = items[~cache.done[items]]
    encoded: List[np.ndarray] = []
    batches = 0
    wait = encode = decode = 0.0
    n_corrupt_logged = 0
    if pending.size:
        threads_before = torch.get_num_threads()
        if device == "cpu":
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else (os.cpu_count() or 1)
            threads = cfg.cpu_threads or min(threads_before, max(1, cpus - cfg.num_workers))
            torch.set_num_threads(threads)
        transform = FastImageTransform.from_processor(processor.image_processor) \
            if cfg.fast_preprocess else None
        dataset = _ItemDataset(pending, image_dir, transform)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False,
                            num_workers=cfg.num_workers,
                            collate_fn=_Collate(processor, texts, text_max_length(model),
                                                transform),
                            pin_memory=device.startswith("cuda"),
                            persistent_workers=False)
        total = len(loader) if cfg.max_batches is None else min(len(loader), cfg.max_batches)
        bar = tqdm(total=total, desc="CLIP features", unit="batch", disable=not cfg.progress)
        it = iter(loader)
        try:
            while cfg.max_batches is None or batches < cfg.max_batches:
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                wait += t1 - t0
                decode += batch["decode_seconds"]
                for err in batch["errors"]:
                    if n_corrupt_logged < 20:
                        logger.warning("unreadable image, using the text feature: %s", err)
                    n_corrupt_logged += 1
                items, status = batch["items"], batch["status"]
                with torch.inference_mode():
                    ids = batch["input_ids"].to(device)
                    mask = batch["attention_mask"].to(device)
                    text = _features(model.get_text_features(input_ids=ids, attention_mask=mask))
                    image = torch.zeros((len(items), text.shape[1]), dtype=text.dtype,
                                        device=text.device)
                    if batch["pixel_values"] is not None:
                        px = batch["pixel_values"].to(device, dtype=torch.float16 if half
                                                      else torch.float32)
                        feats = _features(model.get_image_features(pixel_values=px))
                        image[torch.as_tensor(status == IMAGE_OK, device=text.device)] = feats
                text_np = text.float().cpu().numpy()
                image_np = image.float().cpu().numpy()
                encode += time.perf_counter() - t1
                cache.write(items, image_np, text_np, status)
                encoded.append(items)
                batches += 1
                bar.update(1)
        finally:
            bar.close()
            del it
            cache.sync()
            torch.set_num_threads(threads_before)
    if n_corrupt_logged > 20:
        logger.warning("... %d unreadable images in all", n_corrupt_logged)
    result = cache_result(
        cache, np.concatenate(encoded) if encoded else None, batches=batches,
        seconds=time.perf_counter() - start, wait_seconds=wait, encode_seconds=encode,
        decode_seconds=decode)
    if items is not None:
        left = int((~cache.done[items]).sum())
        logger.info("CLIP: %d batches of this share encoded in %.1fs; %d of its %d items left",
                    batches, result.seconds, left, len(items))
    else:
        logger.info("CLIP: %d batches encoded this run in %.1fs; %s%s", batches, result.seconds,
                    result.counts(), "" if result.complete else " (INCOMPLETE: rerun to resume)")
    return result


def image_file_stats(image_dir: Optional[Path], rows: int) -> np.ndarray:
    """``(rows, 2)`` int64 ``(size, mtime_ns)`` of ``<image_dir>/<item_id>.jpg``; -1 where the
    file (or the folder) is absent. One directory scan, no file is opened."""
    stats = np.full((rows, 2), -1, dtype=np.int64)
    if image_dir is None or not Path(image_dir).is_dir():
        return stats
    with os.scandir(image_dir) as entries:
        for entry in entries:
            stem, dot, ext = entry.name.partition(".")
            if ext != "jpg" or not stem.isdigit() or int(stem) >= rows:
                continue
            st = entry.stat()
            stats[int(stem)] = (st.st_size, st.st_mtime_ns)
    return stats


def cache_fingerprint(clip: str, texts: Sequence[str], image_dir: Optional[Path],
                      tiny: bool = False) -> dict:
    """What the cached features depend on (see :class:`FeatureCache`)."""
    clip_id = str(Path(clip).resolve()) if Path(clip).exists() else clip
    return {"clip": clip_id, "tiny": bool(tiny), "texts_sha1": _sha1(texts),
            "image_dir": str(Path(image_dir).resolve()) if image_dir else None}
