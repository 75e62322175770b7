"""The models of the Task-1 student, one file per family, behind one :class:`~.base.Encoder`."""
from .base import Encoder, InputsBuilder
from .clip import DEFAULT_CLIP, ClipEncoder, ClipUnavailableError, clip_dim, load_clip

__all__ = ["Encoder", "InputsBuilder", "DEFAULT_CLIP", "ClipEncoder", "ClipUnavailableError",
           "clip_dim", "load_clip"]
