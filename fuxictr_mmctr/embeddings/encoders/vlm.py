"""A vision-language model's hidden states: image and text in one prompt, a chosen layer, the
mean over the prompt's tokens (the Task-1 winner's recipe: Qwen2.5-VL-7B, second-to-last layer,
mean-pooled, then PCA to 128).

Loaded with transformers' generic classes (``AutoProcessor`` and
``AutoModelForImageTextToText``, else ``AutoModel``) and run with ``output_hidden_states``;
nothing model-specific is written here. The prompt is the processor's chat template around one
image and the item text where the processor has one, else its image token and the text. An
item without a usable image gets a text-only prompt. Qwen2-VL and Qwen2.5-VL processors need
torchvision in transformers 5 (their video processor); LLaVA-style processors do not.
"""
from __future__ import annotations

import inspect
import logging
from typing import Dict, List, Sequence

import numpy as np

from ...errors import ConfigError
from ..images import IMAGE_CORRUPT, IMAGE_OK, DecodedItem, Downscale
from .base import Encoder, check_layer, text_config, unavailable
from .pooling import pool_tokens

logger = logging.getLogger(__name__)

DEFAULT_LAYER = -2
DEFAULT_MAX_SIDE = 448
DEFAULT_PROMPT = "{text}"


def load_vlm(name_or_path: str, local_files_only: bool = False, dtype=None):
    """A vision-language model (``AutoModelForImageTextToText``, else ``AutoModel``) and its
    ``AutoProcessor``, in eval mode.

    Args:
        dtype: the torch dtype to load the weights in (``torch.bfloat16`` on a GPU: a 7B model
            loaded in float32 first would need 28 GB of host memory). Default: the model's
            float32.
    """
    import transformers
    from transformers import AutoModel, AutoProcessor

    classes = [getattr(transformers, "AutoModelForImageTextToText", None), AutoModel]
    kwargs = {"local_files_only": local_files_only}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, local_files_only=local_files_only)
        model, error = None, None
        for cls in [c for c in classes if c is not None]:
            try:
                model = cls.from_pretrained(name_or_path, **kwargs)
                break
            except ValueError as exc:          # not a model this auto class knows
                error = exc
        if model is None:
            raise error
    except (OSError, ValueError, ImportError) as exc:
        raise unavailable("vision-language model", name_or_path, exc) from None
    return model.eval(), processor


def check_prompt(prompt: str) -> str:
    """A prompt template with ``{text}`` and no other field, or :class:`ConfigError`."""
    try:
        filled = prompt.format(text="\0")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"the VLM prompt {prompt!r} is not a template with only {{text}} "
                          f"({type(exc).__name__}: {exc}); write literal braces as {{{{ }}}}",
                          option="--vlm-prompt") from None
    if "\0" not in filled:
        raise ConfigError(f"the VLM prompt {prompt!r} has no {{text}}", option="--vlm-prompt")
    return prompt


def hidden_size(model) -> int:
    return int(text_config(model).hidden_size)


class VlmInputs:
    """Runs in the workers: the prompts of one batch and the processor's tensors.

    Args:
        processor: the model's ``AutoProcessor``.
        texts: ``N + 1`` item texts.
        prompt: a template with ``{text}``, filled with the item text.
    """

    def __init__(self, processor, texts: Sequence[str], prompt: str = DEFAULT_PROMPT):
        self.processor, self.texts, self.prompt = processor, texts, prompt
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            # padding after the prompt leaves a causal model's states of the prompt as they
            # are alone: an item's feature does not depend on the batch it is in
            tokenizer.padding_side = "right"

    def prompt_for(self, item: int, with_image: bool) -> str:
        text = self.prompt.format(text=self.texts[item])
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                      tokenize=False)
        image_token = getattr(self.processor, "image_token", "<image>")
        return f"{image_token}\n{text}" if with_image else text

    def _run(self, batch: Sequence[DecodedItem], use_image: np.ndarray):
        prompts = [self.prompt_for(b.item, bool(use)) for b, use in zip(batch, use_image)]
        images = [b.image for b, use in zip(batch, use_image) if use]
        return dict(self.processor(text=prompts, images=images or None, return_tensors="pt",
                                   padding=True))

    def __call__(self, batch: Sequence[DecodedItem], status: np.ndarray,
                 errors: List[str]) -> dict:
        use_image = status == IMAGE_OK
        try:
            return self._run(batch, use_image)
        except Exception:  # noqa: BLE001  find the image the processor cannot take
            pass
        for i, b in enumerate(batch):
            if not use_image[i]:
                continue
            one = np.zeros(len(batch), bool)
            one[i] = True
            try:
                self._run([b], one[i:i + 1])
            except Exception as exc:  # noqa: BLE001
                errors.append(f"item {b.item}: preprocessing failed: {exc}")
                use_image[i] = False
                status[i] = IMAGE_CORRUPT
        return self._run(batch, use_image)


class VlmEncoder(Encoder):
    """The mean of one hidden layer over the tokens of an image + text prompt.

    Args:
        model: a vision-language model (from :func:`load_vlm`).
        processor: its ``AutoProcessor``.
        name: the model's name or folder.
        layer: which of ``hidden_states`` (``-1`` the last layer's output, ``-2`` the one
            before: the Task-1 winner's). Default: -2.
        max_side: images are shrunk so their long side is at most this many pixels before
            the processor sees them (the prompt's image tokens grow with the image).
            Default: 448.
        prompt: template of the text part, ``{text}`` = the item text. Default: ``{text}``.

    Parts: ``hidden`` (the language model's width), for every item (text-only where the
    image failed).
    """

    label = "VLM features"
    parts = ("hidden",)

    def __init__(self, model, processor, name: str = "", layer: int = DEFAULT_LAYER,
                 max_side: int = DEFAULT_MAX_SIDE, prompt: str = DEFAULT_PROMPT):
        check_prompt(prompt)
        check_layer(model, layer)
        self.model, self.processor, self.name = model, processor, name
        self.layer, self.max_side, self.prompt = int(layer), int(max_side), prompt
        self.dim = hidden_size(model)
        self.keep_one_logit = "logits_to_keep" in inspect.signature(model.forward).parameters

    def settings(self) -> dict:
        return {"layer": self.layer, "max_side": self.max_side, "prompt": self.prompt}

    def image_transform(self):
        return Downscale(self.max_side)

    def inputs_builder(self, texts, transform):
        return VlmInputs(self.processor, texts, self.prompt)

    def place(self, device: str, fp16: bool) -> None:
        """On a GPU with ``fp16`` the model runs in bfloat16 where the GPU has it (a language
        model's hidden states can overflow float16), else float16."""
        import torch

        self.device = device
        self.model = self.model.to(device)
        if fp16 and device.startswith("cuda") and self.model.dtype == torch.float32:
            self.model = self.model.to(torch.bfloat16 if torch.cuda.is_bf16_supported()
                                       else torch.float16)
        self.model.eval()

    def encode(self, inputs: dict, status: np.ndarray) -> Dict[str, np.ndarray]:
        import torch

        dtype = self.model.dtype
        inputs = {k: (v.to(self.device, dtype=dtype) if v.is_floating_point()
                      else v.to(self.device)) for k, v in inputs.items()}
        extra = {"logits_to_keep": 1} if self.keep_one_logit else {}
        with torch.inference_mode():
            out = self.model(**inputs, output_hidden_states=True, **extra)
            states = out.hidden_states[self.layer]                   # (B, T, H)
            feats = pool_tokens(states, inputs["attention_mask"], "mean")
        feats = feats.cpu().numpy()
        if not np.isfinite(feats).all():
            raise ConfigError(f"{self.name}: non-finite hidden states (dtype {dtype}); run it "
                              "in float32 (--device cpu) or bfloat16", option="--source")
        return {"hidden": feats}
