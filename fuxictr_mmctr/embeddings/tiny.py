"""Tiny randomly initialised models for tests and offline demos (``--tiny-clip``).

Each builder saves a model with ``save_pretrained`` (and its processor or tokenizer) to a folder,
so it is loaded back through the same ``from_pretrained`` path as real weights. The weights are
random: the features carry no meaning beyond the pixels and tokens hashing into them. The
tokenizers are trained on the given texts by the ``tokenizers`` library in a fraction of a
second; nothing is downloaded. Every model has 2 layers of width 32 and 32-pixel images.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

HIDDEN, LAYERS, IMAGE, PATCH = 32, 2, 32, 8


def _blocks(**more) -> dict:
    """The tiny transformer stack every builder uses: 2 layers of width 32, 2 heads."""
    return dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
                num_attention_heads=2, **more)


def bpe_tokenizer(texts: Sequence[str], specials: Sequence[str], vocab_size: int):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t for t in texts if t] or ["item"], trainer=trainer)
    return tok


def _folder(out_dir) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def build_tiny_clip(out_dir, texts: Sequence[str], seed: int = 0, hidden_size: int = HIDDEN,
                    num_layers: int = LAYERS, image_size: int = IMAGE, patch_size: int = PATCH,
                    projection_dim: int = 512, vocab_size: int = 500) -> Path:
    """Save a tiny randomly initialised CLIP (model, tokenizer, processor) to ``out_dir``.

    For tests and the offline demo only. Load it back with :func:`~.encoders.clip.load_clip`.
    """
    import torch
    from tokenizers import processors
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              PreTrainedTokenizerFast)

    out_dir = _folder(out_dir)
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    tok = bpe_tokenizer(texts, [bos, eos], vocab_size)
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


def build_tiny_siglip(out_dir, texts: Sequence[str], seed: int = 0) -> Path:
    """Save a tiny random SigLIP (``SiglipModel``, its processor: a resize to 32 x 32 without a
    crop, texts padded to 16 tokens) to ``out_dir``."""
    import torch
    from transformers import (PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor,
                              SiglipModel, SiglipProcessor)

    out_dir = _folder(out_dir)
    pad, eos, unk = "<pad>", "</s>", "<unk>"
    tok = bpe_tokenizer(texts, [pad, eos, unk], 400)
    max_len = 16
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, eos_token=eos,
                                   unk_token=unk, model_max_length=max_len)
    config = SiglipConfig(
        text_config=_blocks(vocab_size=tok.get_vocab_size(), max_position_embeddings=max_len,
                            pad_token_id=tok.token_to_id(pad), bos_token_id=tok.token_to_id(eos),
                            eos_token_id=tok.token_to_id(eos)),
        vision_config=_blocks(image_size=IMAGE, patch_size=PATCH))
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    image_processor = SiglipImageProcessor(size={"height": IMAGE, "width": IMAGE})
    SiglipProcessor(image_processor=image_processor, tokenizer=fast).save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def build_tiny_bert(out_dir, texts: Sequence[str], seed: int = 0,
                    sentence_transformers: bool = False, pooling: str = "mean") -> Path:
    """Save a tiny random BERT (``BertModel`` and a WordPiece tokenizer) to ``out_dir``.

    With ``sentence_transformers`` the folder is laid out as sentence-transformers saves a
    model: ``modules.json`` (Transformer, Pooling, Normalize), ``1_Pooling/config.json`` with
    ``pooling`` (``mean``, ``cls``, ``max``...) and ``sentence_bert_config.json``.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out_dir = _folder(out_dir)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator([t for t in texts if t] or ["item"],
                            trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=64)
    config = BertConfig(**_blocks(vocab_size=tok.get_vocab_size(), max_position_embeddings=64))
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    if sentence_transformers:
        modules = [{"idx": 0, "name": "0", "path": "",
                    "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize"}]
        (out_dir / "modules.json").write_text(json.dumps(modules, indent=2))
        (out_dir / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": 32, "do_lower_case": False}))
        modes = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "lasttoken")
        want = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens",
                "mean_sqrt_len": "mean_sqrt_len_tokens", "lasttoken": "lasttoken"}[pooling]
        (out_dir / "1_Pooling").mkdir(exist_ok=True)
        (out_dir / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": HIDDEN,
             **{f"pooling_mode_{m}": m == want for m in modes}}, indent=2))
        (out_dir / "2_Normalize").mkdir(exist_ok=True)
    return out_dir


def build_tiny_vit(out_dir, seed: int = 0) -> Path:
    """Save a tiny random ViT (``ViTModel`` with its pooler, ``ViTImageProcessor`` resizing to
    32 x 32) to ``out_dir``: a vision backbone that is not CLIP."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    out_dir = _folder(out_dir)
    config = ViTConfig(**_blocks(image_size=IMAGE, patch_size=PATCH))
    torch.manual_seed(seed)
    ViTModel(config).eval().save_pretrained(out_dir)
    ViTImageProcessor(size={"height": IMAGE, "width": IMAGE}).save_pretrained(out_dir)
    return out_dir


# A minimal chat template: the user's turn, an image placeholder where the content has one.
LLAVA_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}\n{% endfor %}")


def build_tiny_vlm(out_dir, texts: Sequence[str], seed: int = 0, text_layers: int = 3) -> Path:
    """Save a tiny random LLaVA-style vision-language model to ``out_dir``: a CLIP vision tower
    (32-pixel images, 8-pixel patches: 16 image tokens), a Qwen2 language model of
    ``text_layers`` layers (the family of Qwen2.5-VL's), a ``LlavaProcessor`` with a chat
    template. Loads with ``AutoProcessor`` and ``AutoModelForImageTextToText``."""
    import torch
    from transformers import (CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)

    out_dir = _folder(out_dir)
    specials = ["<pad>", "<s>", "</s>", "<image>"]
    tok = bpe_tokenizer(texts, specials, 400)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", model_max_length=256)
    config = LlavaConfig(
        vision_config=_blocks(model_type="clip_vision_model", image_size=IMAGE,
                              patch_size=PATCH),
        text_config=dict(model_type="qwen2", vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN,
                         intermediate_size=2 * HIDDEN, num_hidden_layers=text_layers,
                         num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, pad_token_id=tok.token_to_id("<pad>")),
        image_token_index=tok.token_to_id("<image>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).eval().save_pretrained(out_dir)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE},
                                         crop_size={"height": IMAGE, "width": IMAGE})
    LlavaProcessor(image_processor=image_processor, tokenizer=fast,
                   chat_template=LLAVA_CHAT_TEMPLATE, patch_size=PATCH,
                   vision_feature_select_strategy="default",
                   num_additional_image_tokens=1).save_pretrained(out_dir)
    return out_dir
