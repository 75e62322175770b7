"""What the extraction loop needs of a model: inputs built in the workers, features out."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import ConfigError, MMCTRError
from ..images import DecodedItem


class ModelUnavailableError(MMCTRError, RuntimeError):
    """A model's weights could not be loaded (typically: offline and not in the local cache)."""


def unavailable(what: str, name: str, exc: Exception) -> ModelUnavailableError:
    """The error for a model that cannot be loaded, with the ways to point at a local copy."""
    cause = f"{type(exc).__name__}: {str(exc)[:300]}"
    if name.startswith(("/", ".", "~")) or Path(name).exists():
        return ModelUnavailableError(
            f"cannot load {what} from the folder {name!r} ({cause}); it must hold what "
            "save_pretrained wrote: config.json, the weights and the processor or tokenizer "
            "files")
    return ModelUnavailableError(
        f"cannot load {what} {name!r} ({cause}). Without network access, download it on a "
        f"connected machine (`hf download {name} --local-dir DIR`, or "
        "`from_pretrained(...).save_pretrained(DIR)` for the model and its processor), copy the "
        "folder here and name that folder in --source; a copy already in the Hugging Face "
        "cache is found with HF_HUB_OFFLINE=1.")


def text_config(model):
    """The config of a model's language part (the model's own config for a text model)."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def check_layer(model, layer: Optional[int]) -> None:
    """Refuse a hidden layer the model does not have (``hidden_states`` holds the embeddings
    and each layer's output: layers + 1 entries, ``-1`` the last).

    Raises:
        ConfigError: naming the range of valid layers.
    """
    if layer is None:
        return
    n = int(text_config(model).num_hidden_layers) + 1
    if not -n <= int(layer) < n:
        raise ConfigError(f"layer {layer}: the model has {n} hidden states ({-n}..{n - 1})",
                          option="--source")


# (decoded items of one batch, their image status (updated in place), error messages) -> the
# model's inputs; runs in a DataLoader worker, so it holds processors, never the model
InputsBuilder = Callable[[Sequence[DecodedItem], np.ndarray, List[str]], dict]


class Encoder:
    """One model of the student: a batch of items in, one or more feature parts out.

    Subclasses set the attributes and implement :meth:`inputs_builder`, :meth:`place` and
    :meth:`encode`; :func:`~fuxictr_mmctr.embeddings.extract.extract_features` runs them.

    Attributes:
        name: the model's name or folder.
        label: what the progress bar and the logs call it.
        parts: the feature parts it gives (one memmap each in the cache).
        dim: the width of every part.
        uses_images: whether it reads the item images.
        uses_texts: whether it reads the item texts.
    """

    name: str = ""
    label: str = "features"
    parts: Tuple[str, ...] = ()
    dim: int = 0
    uses_images: bool = True
    uses_texts: bool = True

    def settings(self) -> dict:
        """What, besides the model and the inputs, the features depend on (layer, pooling...):
        part of the cache's fingerprint."""
        return {}

    def image_transform(self):
        """What the workers do to each decoded image (an object with ``.image(img)``:
        :class:`~..images.FastImageTransform`, :class:`~..images.Downscale`), or None to hand
        RGB images to the model's processor."""
        return None

    def inputs_builder(self, texts: Sequence[str],
                       transform) -> InputsBuilder:
        """The function the DataLoader workers run on each batch (see :data:`InputsBuilder`).

        Args:
            texts: ``N + 1`` item texts indexed by item id.
            transform: what the workers applied to the images (None: RGB PIL images).
        """
        raise NotImplementedError

    model = None
    device: str = "cpu"
    half: bool = False

    def place(self, device: str, fp16: bool) -> None:
        """Move ``self.model`` to ``device`` (half precision with ``fp16`` on a GPU), in eval
        mode."""
        self.device, self.half = device, fp16 and device.startswith("cuda")
        self.model = self.model.to(device)
        if self.half:
            self.model = self.model.half()
        self.model.eval()

    def encode(self, inputs: dict, status: np.ndarray) -> Dict[str, np.ndarray]:
        """One batch's features: part -> ``(B, dim)`` float32, zeros where a part is absent
        (e.g. the image part of an item whose status is not ``IMAGE_OK``)."""
        raise NotImplementedError
