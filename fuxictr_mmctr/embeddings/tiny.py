"""Tiny randomly initialised models for tests and offline demos (``--tiny-clip``).

Each builder saves a model with ``save_pretrained`` (and its processor or tokenizer) to a folder,
so it is loaded back through the same ``from_pretrained`` path as real weights. The weights are
random: the features carry no meaning beyond the pixels and tokens hashing into them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


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
