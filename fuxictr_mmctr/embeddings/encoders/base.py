"""What the extraction loop needs of a model: inputs built in the workers, features out."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..images import DecodedItem, FastImageTransform

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
    """

    name: str = ""
    label: str = "features"
    parts: Tuple[str, ...] = ()
    dim: int = 0
    uses_images: bool = True

    def image_transform(self) -> Optional[FastImageTransform]:
        """A resize-and-crop the workers may apply instead of the model's processor, or None."""
        return None

    def inputs_builder(self, texts: Sequence[str],
                       transform: Optional[FastImageTransform]) -> InputsBuilder:
        """The function the DataLoader workers run on each batch (see :data:`InputsBuilder`).

        Args:
            texts: ``N + 1`` item texts indexed by item id.
            transform: what the workers applied to the images (None: RGB PIL images).
        """
        raise NotImplementedError

    def place(self, device: str, fp16: bool) -> None:
        """Move the model to ``device`` (half precision with ``fp16``), in eval mode."""
        raise NotImplementedError

    def encode(self, inputs: dict, status: np.ndarray) -> Dict[str, np.ndarray]:
        """One batch's features: part -> ``(B, dim)`` float32, zeros where a part is absent
        (e.g. the image part of an item whose status is not ``IMAGE_OK``)."""
        raise NotImplementedError
