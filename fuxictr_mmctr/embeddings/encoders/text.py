"""Text models: any ``AutoModel`` encoder (BERT and its family) pooled over the tokens, and
sentence-transformers folders read without the sentence-transformers library.

A sentence-transformers model is a folder (or Hub repository) with ``modules.json``: a
``Transformer`` module (the model, at the root or in ``0_Transformer/``), a ``Pooling`` module
whose ``config.json`` says how tokens are pooled, and often ``Normalize``. Its pooling is
honoured when it is one simple mode (cls, mean, max, mean_sqrt_len, lasttoken), else the mean is
used; the vectors are L2-normalised afterwards anyway. Other modules (``Dense`` layers) are
not applied, and a warning says so.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ...errors import ConfigError
from ..images import DecodedItem
from .base import Encoder, check_layer, unavailable
from .pooling import TOKEN_POOLINGS, pool_tokens

logger = logging.getLogger(__name__)

TEXT_POOLINGS = TOKEN_POOLINGS + ("pooled",)
# sentence-transformers' Pooling config keys of the modes honoured here
ST_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
            "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
            "pooling_mode_lasttoken": "lasttoken"}
ST_SIMPLE_MODULES = ("Transformer", "Pooling", "Normalize")
DEFAULT_MAX_LENGTH = 512


def read_model_file(name_or_path: str, filename: str, local_files_only: bool = False
                    ) -> Optional[dict]:
    """A JSON file of a local folder or a Hub repository, or None when it has none."""
    folder = Path(name_or_path)
    if folder.is_dir():
        path = folder / filename
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(name_or_path, filename, local_files_only=local_files_only)
    except Exception:  # noqa: BLE001  absent, offline, not a repository: not that kind of model
        return None
    return json.loads(Path(path).read_text())


@dataclass
class SentenceTransformerLayout:
    """What a sentence-transformers folder says about its model.

    Attributes:
        subfolder: where the transformer model is ("" = the root).
        pooling: the pooling honoured (see :data:`ST_MODES`), or None where none is given.
        max_length: ``max_seq_length`` of ``sentence_bert_config.json``, if any.
        ignored: the modules that are not applied (e.g. ``Dense``).
    """

    subfolder: str = ""
    pooling: Optional[str] = None
    max_length: Optional[int] = None
    ignored: List[str] = field(default_factory=list)


def sentence_transformer_layout(name_or_path: str, local_files_only: bool = False
                                ) -> Optional[SentenceTransformerLayout]:
    """The layout of a sentence-transformers model, or None when ``modules.json`` is absent."""
    modules = read_model_file(name_or_path, "modules.json", local_files_only)
    if not modules:
        return None
    layout = SentenceTransformerLayout()
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = str(module.get("path", ""))
        if kind == "Transformer":
            layout.subfolder = path
            conf = read_model_file(name_or_path, f"{path}/sentence_bert_config.json".lstrip("/"),
                                   local_files_only) or {}
            if conf.get("max_seq_length"):
                layout.max_length = int(conf["max_seq_length"])
        elif kind == "Pooling":
            conf = read_model_file(name_or_path, f"{path}/config.json", local_files_only) or {}
            modes = [mode for key, mode in ST_MODES.items() if conf.get(key)]
            others = [k for k, v in conf.items()
                      if k.startswith("pooling_mode_") and v and k not in ST_MODES]
            if len(modes) == 1 and not others:
                layout.pooling = modes[0]
            else:
                logger.warning("%s: pooling %s is not one simple mode; using the mean",
                               name_or_path, modes + others)
                layout.pooling = "mean"
        elif kind not in ST_SIMPLE_MODULES:
            layout.ignored.append(f"{module.get('name', path)} ({kind})")
    if layout.ignored:
        logger.warning("%s: sentence-transformers module(s) %s are not applied; the vectors "
                       "are the pooled token states before them", name_or_path,
                       ", ".join(layout.ignored))
    return layout


def load_text(name_or_path: str, local_files_only: bool = False):
    """``AutoModel`` and ``AutoTokenizer`` of a text encoder (the transformer module of a
    sentence-transformers folder), its sentence-transformers layout or None."""
    from transformers import AutoModel, AutoTokenizer

    layout = sentence_transformer_layout(name_or_path, local_files_only)
    where = {"subfolder": layout.subfolder} if layout and layout.subfolder else {}
    try:
        model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only,
                                          **where)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path,
                                                  local_files_only=local_files_only, **where)
    except (OSError, ValueError) as exc:
        raise unavailable("text model", name_or_path, exc) from None
    return model.eval(), tokenizer, layout


class TextInputs:
    """Runs in the workers: the tokens of one batch."""

    def __init__(self, tokenizer, texts: Sequence[str], max_length: int):
        self.tokenizer, self.texts, self.max_length = tokenizer, texts, max_length

    def __call__(self, batch: Sequence[DecodedItem], status: np.ndarray,
                 errors: List[str]) -> dict:
        tokens = self.tokenizer([self.texts[b.item] for b in batch], padding=True,
                                truncation=True, max_length=self.max_length, return_tensors="pt")
        return dict(tokens)


class TextEncoder(Encoder):
    """One text feature per item from a text encoder's token states.

    Args:
        model: a text ``AutoModel`` (from :func:`load_text`).
        tokenizer: its tokenizer.
        name: the model's name or folder.
        pooling: one of :data:`TEXT_POOLINGS`: ``mean`` (attention-mask weighted; the default),
            ``cls``, ``max``, ``lasttoken``, ``mean_sqrt_len`` or ``pooled`` (the model's
            ``pooler_output``). Default: the sentence-transformers folder's, else mean.
        max_length: tokens per text at most. Default: the sentence-transformers folder's
            ``max_seq_length``, else the smallest of the tokenizer's, the model's positions and
            512.
        layer: pool this hidden layer (``-1`` = the last, ``-2`` = the one before) instead of
            the last states. Default: None (the last).
        layout: what a sentence-transformers folder says (from :func:`load_text`).
    """

    label = "text features"
    parts = ("text",)
    uses_images = False

    def __init__(self, model, tokenizer, name: str = "", pooling: Optional[str] = None,
                 max_length: Optional[int] = None, layer: Optional[int] = None,
                 layout: Optional[SentenceTransformerLayout] = None):
        check_layer(model, layer)
        self.model, self.tokenizer, self.name, self.layer = model, tokenizer, name, layer
        self.pooling = pooling or (layout.pooling if layout and layout.pooling else "mean")
        if self.pooling not in TEXT_POOLINGS:
            raise ConfigError(f"text pooling {self.pooling!r}: choose one of {TEXT_POOLINGS}",
                              option="--source")
        limits = [DEFAULT_MAX_LENGTH, getattr(model.config, "max_position_embeddings", None),
                  getattr(tokenizer, "model_max_length", None)]
        self.max_length = int(max_length or (layout.max_length if layout else None)
                              or min(int(x) for x in limits if x))
        self.sentence_transformers = layout is not None
        self.dim = int(model.config.hidden_size)
        if tokenizer.pad_token is None:             # decoder-style tokenizers ship without one
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token

    def settings(self) -> dict:
        return {"pooling": self.pooling, "max_length": self.max_length, "layer": self.layer}

    def inputs_builder(self, texts, transform):
        return TextInputs(self.tokenizer, texts, self.max_length)

    def encode(self, inputs: dict, status: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs, output_hidden_states=self.layer is not None)
            if self.pooling == "pooled":
                feats = out["pooler_output"].float()
            else:
                states = out["last_hidden_state"] if self.layer is None \
                    else out["hidden_states"][self.layer]
                feats = pool_tokens(states, inputs["attention_mask"], self.pooling)
        return {"text": feats.cpu().numpy()}
