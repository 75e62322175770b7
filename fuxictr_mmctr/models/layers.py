"""Layers the MM-CTR models compose: written once, shared by DIN, DCNv2, TransformerDCN, FiBiNET,
DIN_DCN and QIN.

* :class:`MaskedHistoryPooling`: mean / sum / max over the real items of a left-padded history.
* :class:`HistoryPositionEncoding`: a learned embedding of each history item's age (0 = the most
  recent item) added to the history, as BST adds position embeddings.
* :class:`TargetAttention`: FuxiCTR's ``DIN_Attention`` with optional position encoding, a
  learned per-age recency bias on the attention scores and several heads (all off =
  ``DIN_Attention``'s output), its MLP run on the real history positions only.
* :class:`FieldSqueezeExcitation`: FuxiCTR's ``SqueezeExcitation`` (SENET) over fields of any
  widths laid side by side in one flat vector (DIN's and DIN_DCN's ``use_senet``).
* :class:`AdaptiveSparseTargetAttention`: QIN's target attention, FuxiCTR's
  ``MultiHeadTargetAttention`` with its softmax replaced by a ReLU gate
  (:class:`ReLUGatedDotProductAttention`) and the target added back.
* :class:`QuadraticNeuralNetwork`: QIN's stack of :class:`QuadraticLayer` (a learned quadratic
  form of the input, the multi-head Khatri-Rao product of QNN) with residual connections.
* :class:`MultiInterestPooling`: self-attentive multi-interest extraction (ComiRec-SA) and the
  target choosing among the interests.
* :class:`CrossNetwork`: FuxiCTR's cross networks behind one switch (``vector`` = DCN's
  ``CrossNet``, ``matrix`` = ``CrossNetV2``, ``mix`` = ``CrossNetMix``).
* :class:`DCNHead`: cross network and DNN (``parallel``, ``stacked``, ``stacked_parallel`` or
  ``crossnet_only``) then an MLP to the prediction, as in FuxiCTR's DCNv2 and the rank-1
  Transformer-DCN.
* :class:`TransformerHistoryEncoder`: a transformer over ``[history item, target item]`` pairs
  with the padding masked (or, for comparison, the published rank-1 mask bug), the last ``k``
  outputs and a max-pool.
* :class:`FieldProjector`: a flat embedding cut into fields and brought to one width
  ``(B, F, D)``, for the field-wise layers of FiBiNET.
* :func:`resolve_activations`: FuxiCTR's activation spec for ``MLP_Block``, with ``"Dice"``
  sized per layer (DIN's activation).

Shapes: ``B`` batch, ``L`` history length, ``D`` item width; a history ``mask`` is ``(B, L)``,
1 where the position holds an item, 0 for padding (the loader's convention).
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..config_contract import Rule, check_value
from ..errors import ConfigError

import torch
from torch import nn

from fuxictr.pytorch.layers import (CrossNet, CrossNetMix, CrossNetV2, DIN_Attention, Dice,
                                    MaskedAveragePooling, MLP_Block, MultiHeadTargetAttention,
                                    ScaledDotProductAttention, SqueezeExcitation)


def resolve_activations(activation, hidden_units: Sequence[int]):
    """FuxiCTR's activation spec for ``MLP_Block``, with ``"Dice"`` sized per layer.

    ``MLP_Block`` cannot build ``Dice`` from a bare string (it needs each layer's width), so a
    string ``"Dice"`` becomes one ``Dice(units)`` per hidden layer; anything else passes through.
    """
    if isinstance(activation, str) and activation.lower() == "dice":
        return [Dice(units) for units in hidden_units]
    return activation

def history_ages(seq_len: int, device=None) -> torch.Tensor:
    """``(L,)`` age of each position of a left-padded, right-aligned history: ``L-1 .. 0``."""
    return torch.arange(seq_len - 1, -1, -1, device=device)


class MaskedHistoryPooling(nn.Module):
    """Pool a padded history over its real items.

    A row without items pools to zeros (never NaN), and padded positions never reach the output.

    Args:
        mode: ``"mean"``, ``"sum"`` or ``"max"``. Default: ``"mean"``.

    Shapes: history ``(B, L, D)``, mask ``(B, L)`` -> ``(B, D)``.
    """

    MODES = ("mean", "sum", "max")

    def __init__(self, mode: str = "mean"):
        super().__init__()
        if mode not in self.MODES:
            raise ConfigError(f"history pooling {mode!r}: expected one of {self.MODES}")
        self.mode = mode

    def forward(self, history: torch.Tensor, mask: torch.Tensor,
                target: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``target`` is accepted (and ignored) so every history pooling is called alike."""
        keep = mask.unsqueeze(-1) > 0                                   # (B, L, 1)
        if self.mode == "max":
            filled = history.masked_fill(~keep, float("-inf"))          # (B, L, D)
            pooled = filled.max(dim=1).values                           # (B, D)
            return pooled.masked_fill(~keep.any(dim=1), 0.0)            # empty rows -> 0
        summed = history.masked_fill(~keep, 0.0).sum(dim=1)             # (B, D)
        if self.mode == "sum":
            return summed
        count = keep.sum(dim=1).clamp(min=1).to(history.dtype)          # (B, 1)
        return summed / count


class PaddingAwareAveragePooling(MaskedAveragePooling):
    """FuxiCTR's mean of a sequence feature's embeddings (``item_tags``), padding found right.

    FuxiCTR's ``MaskedAveragePooling`` takes a position for padding when its embedding's
    elements *sum* to 0 and divides by the count of the others plus 1e-12. A learned embedding
    whose elements cancel exactly is then padding, a row of such tags has a count of 0, and its
    mean is 1e12 times its sum: DCNv2 on the sample, epoch 4, met an ``item_tags`` mean of
    5e10, its cross network overflowed and the loss refused the NaN. Padding here is an
    all-zero embedding (row 0, FuxiCTR's ``padding_idx``); a row without tags pools to zeros.
    Every other mean is the same bits as FuxiCTR's.

    Shapes: ``(B, L, D)`` -> ``(B, D)``.
    """

    def forward(self, embedding_matrix: torch.Tensor, mask=None) -> torch.Tensor:
        if mask is None:
            mask = (embedding_matrix != 0).any(dim=-1)                    # (B, L)
        count = mask.to(embedding_matrix.dtype).sum(-1, keepdim=True)     # (B, 1)
        return embedding_matrix.sum(dim=1) / count.clamp(min=1)


def use_padding_aware_pooling(embedding_layer: nn.Module) -> int:
    """Replace every FuxiCTR ``MaskedAveragePooling`` feature encoder under
    ``embedding_layer`` (a ``FeatureEmbedding``) by :class:`PaddingAwareAveragePooling`;
    returns how many. Neither has weights, so checkpoints are unchanged."""
    swapped = 0
    for module in list(embedding_layer.modules()):
        for name, child in list(module.named_children()):
            if type(child) is MaskedAveragePooling:
                setattr(module, name, PaddingAwareAveragePooling())
                swapped += 1
    return swapped


class HistoryPositionEncoding(nn.Module):
    """Add a learned embedding of each position's age to a left-padded history (BST, Chen et
    al., DLP-KDD 2019, embeds positions the same way).

    The age is counted from the most recent item (0 = the last position), so an item's
    encoding does not depend on how much padding precedes it or on ``max_len``; ages beyond
    ``max_len - 1`` share the last row.

    Args:
        max_len: the longest history the table covers.
        dim: width ``D`` of the history items.
        init_std: standard deviation of the initial table. Default: 0.01.

    The table is drawn from its own generator (seeded from ``torch.initial_seed()``, so a
    seeded run stays reproducible): switching the option on does not shift the global random
    stream, so every other layer of the model starts exactly as without it.

    Shapes: ``(B, L, D)`` -> ``(B, L, D)``.
    """

    def __init__(self, max_len: int, dim: int, init_std: float = 0.01):
        super().__init__()
        if int(max_len) < 1:
            raise ConfigError(f"max_len={max_len} must be >= 1 for position encodings")
        self.max_len = int(max_len)
        generator = torch.Generator().manual_seed(torch.initial_seed() % (2 ** 63))
        self.table = nn.Parameter(torch.randn(self.max_len, dim, generator=generator)
                                  * init_std)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        ages = history_ages(history.shape[1], history.device).clamp(max=self.max_len - 1)
        return history + self.table[ages].unsqueeze(0)                  # (B, L, D)


class TargetAttention(DIN_Attention):
    """DIN's target attention (FuxiCTR's ``DIN_Attention``) that can see the order, with heads.

    The attention MLP is FuxiCTR's (``self.attention_layer``), and with every option off the
    output is ``DIN_Attention``'s within float rounding (its first layer is applied by
    linearity, the target's part once per row: :meth:`first_layer`): the pooled history does
    not change when the history is permuted. The MLP runs on the real history positions only
    (a padded position's score is multiplied by 0, or masked out of the softmax, in
    ``DIN_Attention`` anyway), which saves the work on padding: most of it when histories are
    much shorter than ``max_len``. Compiled
    for a GPU (``torch.compile``, CUDA tensors) it runs on every position instead: the gather's
    data-dependent size would cost a device-to-host sync every step and break the graph, and a
    GPU has the arithmetic to spare. The scores of the real positions are the same. Not when
    the MLP normalises with batch statistics (``Dice``, ``batch_norm``), which padding would
    enter: such a layer keeps the gather. On the CPU the gather stays (the saved work is worth
    more there than one graph).

    ``position_encoding: learned`` adds a learned age embedding to the history items (scored
    and pooled); ``recency_bias`` adds a learned score per age (initialised at 0) to every
    attention score: without softmax this adds a learned recency-weighted sum of the history,
    with softmax it tilts the weights towards (or away from) recent items.

    ``num_heads`` (the models' ``attention_heads``, the multi-head target attention of the
    MM-CTR Task-2 winner's DIN): the MLP's last layer gives one score per head (the hidden
    layers are shared, so a head costs one output unit), each head pools the whole history
    with its own weights (its own softmax with ``use_softmax``), and the heads' pools are
    concatenated: ``output_dim = num_heads * D``. One head is ``DIN_Attention`` (the same
    modules and state_dict keys, the same outputs within float rounding).

    Args:
        embedding_dim: width ``D`` of an item.
        attention_units, hidden_activations, output_activation, dropout_rate, batch_norm,
            use_softmax: ``DIN_Attention``'s.
        max_len: the longest history (size of the age tables). Default: 100.
        position_encoding: ``"none"`` or ``"learned"``. Default: ``"none"``.
        recency_bias: learn a score per age. Default: False.
        num_heads: attention heads ``H``. Default: 1.

    Shapes: target ``(B, D)``, history ``(B, L, D)``, mask ``(B, L)`` -> ``(B, H * D)``.
    """

    def __init__(self, embedding_dim: int = 64, attention_units=(32,),
                 hidden_activations="ReLU", output_activation=None, dropout_rate: float = 0.0,
                 batch_norm: bool = False, use_softmax: bool = False, max_len: int = 100,
                 position_encoding: str = "none", recency_bias: bool = False,
                 num_heads: int = 1):
        super().__init__(embedding_dim, attention_units=list(attention_units),
                         hidden_activations=hidden_activations,
                         output_activation=output_activation, dropout_rate=dropout_rate,
                         batch_norm=batch_norm, use_softmax=use_softmax)
        self.num_heads = int(check_value("attention_heads", num_heads))
        if self.num_heads > 1:  # DIN_Attention's MLP with one score per head
            units = list(attention_units)
            self.attention_layer = MLP_Block(
                input_dim=4 * embedding_dim, output_dim=self.num_heads, hidden_units=units,
                hidden_activations=resolve_activations(hidden_activations, units),
                output_activation=output_activation, dropout_rates=dropout_rate,
                batch_norm=batch_norm)
        self.output_dim = self.num_heads * embedding_dim
        check_value("position_encoding", position_encoding)
        self.positions = (HistoryPositionEncoding(max_len, embedding_dim)
                          if position_encoding == "learned" else None)
        self.recency = nn.Parameter(torch.zeros(int(max_len))) if recency_bias else None
        # batch statistics (Dice, batch_norm) must see the real positions only
        self._dense_when_compiled = not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                            for m in self.attention_layer.modules())

    def every_position(self, seq: torch.Tensor) -> bool:
        """Score every history position, not the real ones only: compiled for a GPU, with no
        batch statistics in the attention MLP (see the class docstring)."""
        return self._dense_when_compiled and seq.is_cuda and torch.compiler.is_compiling()

    def first_layer(self, target: torch.Tensor, flat_seq: torch.Tensor,
                    rows: torch.Tensor) -> torch.Tensor:
        """The attention MLP's first layer on ``[t, s, t - s, t * s]`` for history items
        ``flat_seq`` ``(N, D)`` of batch rows ``rows`` ``(N,)``: ``(N, U)``.

        Its weight ``[W_t, W_s, W_d, W_p]`` is applied by linearity as
        ``t (W_t + W_d) + s (W_s - W_d) + (t * s) W_p``: the target's part once per batch row
        instead of once per history item, and no ``(N, 4D)`` input built. Half the layer's
        arithmetic, which was most of DIN's train step on a CPU (fwd + bwd of the whole layer
        at B 256, L 32, D 192, 4 heads, one thread: 91 -> 37 ms); the same output within float
        rounding."""
        first = self.attention_layer.mlp[0]                              # nn.Linear(4D, U)
        w_t, w_s, w_d, w_p = first.weight.split(flat_seq.shape[-1], dim=1)   # each (U, D)
        per_row = nn.functional.linear(target, w_t + w_d, first.bias)   # (B, U)
        flat_target = target[rows]                                       # (N, D)
        per_item = nn.functional.linear(torch.cat([flat_seq, flat_target * flat_seq], dim=-1),
                                        torch.cat([w_s - w_d, w_p], dim=1))  # (N, U)
        return per_row[rows] + per_item

    def scores(self, target: torch.Tensor, seq: torch.Tensor,
               mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``(B, H, L)`` raw attention scores, 0 at padded positions (the MLP skips them)."""
        batch_size, seq_len, dim = seq.shape
        flat_seq = seq.reshape(-1, dim)                                  # (B*L, D)
        rows = torch.arange(batch_size, device=seq.device).repeat_interleave(seq_len)
        keep = None if mask is None else mask.reshape(-1) > 0            # (B*L,)
        gather = keep is not None and not self.every_position(seq)
        if gather:
            flat_seq, rows = flat_seq[keep], rows[keep]                  # (N_real, D)
        hidden = self.first_layer(target, flat_seq, rows)                # (N, U)
        real_scores = self.attention_layer.mlp[1:](hidden)               # (N, H)
        if keep is None:
            scores = real_scores
        elif not gather:
            scores = real_scores.masked_fill(~keep.unsqueeze(-1), 0.0)
        else:
            scores = real_scores.new_zeros(batch_size * seq_len, self.num_heads)
            scores = scores.masked_scatter(keep.unsqueeze(-1), real_scores)
        return scores.view(batch_size, seq_len, self.num_heads).transpose(1, 2)  # (B, H, L)

    def forward(self, target_item, history_sequence, mask=None):
        seq = history_sequence if self.positions is None else self.positions(history_sequence)
        batch_size, seq_len, _ = seq.shape
        scores = self.scores(target_item, seq, mask)                     # (B, H, L)
        if self.recency is not None:
            ages = history_ages(seq_len, seq.device).clamp(max=len(self.recency) - 1)
            scores = scores + self.recency[ages]
        if mask is not None:
            mask = mask.float().unsqueeze(1)                             # (B, 1, L)
            scores = scores * mask
        if self.use_softmax:
            if mask is not None:
                scores = scores - 1.0e9 * (1 - mask)
            scores = scores.softmax(dim=-1)
        # one batched matmul: no (B, H, L, D) product (10x faster at H=4 on a CPU)
        pooled = torch.bmm(scores.to(seq.dtype), seq)                    # (B, H, D)
        return pooled.view(batch_size, -1)                               # (B, H * D)


class MultiInterestPooling(nn.Module):
    """Several interests read from the history, the target choosing among them.

    Self-attentive multi-interest extraction (ComiRec-SA: Cen et al., "Controllable
    Multi-Interest Framework for Recommendation", KDD 2020): ``A = softmax_L(W2 tanh(W1 H))``
    over the real items gives ``K`` interest vectors ``A^T H``; the target then attends over
    them (``softmax_k(<interest_k, target> / sqrt(D))``), so a target matching one interest
    is not diluted by the others (MIND's label-aware attention does the same in training).

    Args:
        dim: width ``D`` of the items.
        num_interests: ``K``. Default: 4.
        hidden_units: width of ``W1``. Default: ``min(4 * D, 128)``.
        max_len: the longest history (for position encodings). Default: 100.
        position_encoding: ``"none"`` or ``"learned"`` (added before the extraction).
            Default: ``"none"``.

    Shapes: history ``(B, L, D)``, mask ``(B, L)``, target ``(B, D)`` -> ``(B, D)``; a row
    without items pools to zeros.
    """

    def __init__(self, dim: int, num_interests: int = 4, hidden_units: Optional[int] = None,
                 max_len: int = 100, position_encoding: str = "none"):
        super().__init__()
        if int(num_interests) < 1:
            raise ConfigError(f"num_interests={num_interests} must be >= 1")
        hidden = int(hidden_units or min(4 * dim, 128))
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, int(num_interests), bias=False)
        check_value("position_encoding", position_encoding)
        self.positions = (HistoryPositionEncoding(max_len, dim)
                          if position_encoding == "learned" else None)
        self.scale = dim ** -0.5

    def interests(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, K, D)`` interest vectors (zeros for a row without items)."""
        seq = history if self.positions is None else self.positions(history)
        scores = self.w2(torch.tanh(self.w1(seq)))                       # (B, L, K)
        keep = (mask > 0).unsqueeze(-1).to(scores.dtype)                 # (B, L, 1)
        scores = scores - 1.0e9 * (1.0 - keep)
        weights = torch.softmax(scores, dim=1) * keep                    # (B, L, K); empty row: 0
        return torch.einsum("blk,bld->bkd", weights, history)            # (B, K, D)

    def forward(self, history: torch.Tensor, mask: torch.Tensor,
                target: Optional[torch.Tensor] = None) -> torch.Tensor:
        if target is None:
            raise ConfigError("multi-interest pooling needs the target item")
        interests = self.interests(history, mask)                        # (B, K, D)
        choice = torch.softmax(torch.einsum("bkd,bd->bk", interests, target) * self.scale,
                               dim=-1)                                   # (B, K)
        return torch.einsum("bk,bkd->bd", choice, interests)             # (B, D)


def history_pooling_layer(mode: str, dim: int, num_interests: int = 4, max_len: int = 100,
                          position_encoding: str = "none") -> nn.Module:
    """``mean``/``sum``/``max`` (:class:`MaskedHistoryPooling`) or ``multi_interest``
    (:class:`MultiInterestPooling`); all are called ``(history, mask, target=...)``."""
    check_value("history_pooling", mode)
    if mode == "multi_interest":
        return MultiInterestPooling(dim, num_interests=num_interests, max_len=max_len,
                                    position_encoding=position_encoding)
    if position_encoding != "none":
        raise ConfigError(f"position_encoding={position_encoding!r} needs an order-aware "
                          f"history pooling (multi_interest); {mode!r} pools positions away")
    return MaskedHistoryPooling(mode)


class CrossNetwork(nn.Module):
    """FuxiCTR's cross networks behind one switch.

    Args:
        input_dim: width of the input ``x_0``.
        num_layers: cross layers. Default: 3.
        cross_type: ``"matrix"`` (DCN-V2, ``CrossNetV2``: full-rank ``W`` per layer),
            ``"mix"`` (DCN-V2's low-rank mixture of experts, ``CrossNetMix``) or ``"vector"``
            (DCN, ``CrossNet``: one weight vector per layer). Default: ``"matrix"``.
        low_rank: rank of each expert with ``mix``. Default: 32.
        num_experts: experts with ``mix``. Default: 4.

    Shapes: ``(B, input_dim)`` -> ``(B, input_dim)``.
    """

    def __init__(self, input_dim: int, num_layers: int = 3, cross_type: str = "matrix",
                 low_rank: int = 32, num_experts: int = 4):
        super().__init__()
        self.cross_type = check_value("cross_type", cross_type)
        if cross_type == "matrix":
            self.cross = CrossNetV2(input_dim, num_layers)
        elif cross_type == "mix":
            self.cross = CrossNetMix(input_dim, num_layers, low_rank=low_rank,
                                     num_experts=num_experts)
        else:
            self.cross = CrossNet(input_dim, num_layers)

    def forward(self, x_0: torch.Tensor) -> torch.Tensor:
        # CrossNetMix ends with a bare squeeze(): a batch of one would lose its batch axis
        return self.cross(x_0).reshape(x_0.shape[0], -1)                # (B, input_dim)


def input_normalization(kind: str, dim: int) -> nn.Module:
    """``"none"`` (identity, no parameters), ``"batch"`` or ``"layer"`` normalisation of
    ``(B, dim)`` features (the ``cross_input_norm`` key)."""
    kind = check_value("cross_input_norm", kind)
    if kind == "batch":
        return nn.BatchNorm1d(dim)
    if kind == "layer":
        return nn.LayerNorm(dim)
    return nn.Identity()


class DCNHead(nn.Module):
    """DCN-V2's head: a cross network and a DNN, then an MLP to one output.

    Args:
        input_dim: width of the concatenated input features.
        num_cross_layers: cross layers. Default: 3.
        cross_type: see :class:`CrossNetwork`. Default: ``"matrix"``.
        low_rank, num_experts: :class:`CrossNetwork` with ``mix``. Default: 32, 4.
        model_structure: ``"parallel"`` (cross and DNN side by side over the input, outputs
            concatenated), ``"stacked"`` (DNN over the cross output), ``"stacked_parallel"``
            (both DNNs) or ``"crossnet_only"``. Default: ``"parallel"``.
        parallel_dnn_hidden_units: DNN beside the cross network. Default: ``(512, 256)``.
        stacked_dnn_hidden_units: DNN on top of the cross network. Default: ``(512, 256)``.
        mlp_hidden_units: hidden widths of the final MLP; empty = one linear layer (FuxiCTR's
            DCNv2). Default: ``()``.
        dnn_activations: activation of the DNNs and the MLP, ``"ReLU"``, ``"Dice"``, ...
            Default: ``"ReLU"``.
        net_dropout: dropout in the DNNs and the MLP. Default: 0.
        batch_norm: batch norm in the DNNs and the MLP. Default: False.
        output_activation: e.g. ``nn.Sigmoid()`` for a probability. Default: None (logit).
        input_norm: normalise the cross network's input ``x_0`` (the DNN sees it as it is; its
            own ``batch_norm`` follows each linear layer): ``"none"``, ``"batch"``
            (``BatchNorm1d``) or ``"layer"`` (``LayerNorm``). The cross network multiplies
            ``x_0`` into every layer, so an input whose scale grows (DIN's unnormalised
            attention sum over a long history) makes it diverge; a normalised ``x_0`` keeps
            each layer's product bounded. Default: ``"none"`` (DCN-V2 as published).

    Shapes: ``(B, input_dim)`` -> ``(B, 1)``.
    """

    def __init__(self, input_dim: int, num_cross_layers: int = 3, cross_type: str = "matrix",
                 low_rank: int = 32, num_experts: int = 4, model_structure: str = "parallel",
                 parallel_dnn_hidden_units: Sequence[int] = (512, 256),
                 stacked_dnn_hidden_units: Sequence[int] = (512, 256),
                 mlp_hidden_units: Sequence[int] = (), dnn_activations="ReLU",
                 net_dropout: float = 0.0, batch_norm: bool = False,
                 output_activation: Optional[nn.Module] = None, input_norm: str = "none"):
        super().__init__()
        self.model_structure = check_value("model_structure", model_structure)
        self.input_norm = input_normalization(input_norm, input_dim)
        self.crossnet = CrossNetwork(input_dim, num_cross_layers, cross_type, low_rank,
                                     num_experts)

        def dnn(units):
            units = list(units)
            if not units:
                raise ConfigError(f"model_structure {model_structure!r} needs DNN hidden units")
            return MLP_Block(input_dim=input_dim, output_dim=None, hidden_units=units,
                             hidden_activations=resolve_activations(dnn_activations, units),
                             dropout_rates=net_dropout, batch_norm=batch_norm)

        final_dim = 0
        self.stacked_dnn = self.parallel_dnn = None
        if model_structure in ("stacked", "stacked_parallel"):
            self.stacked_dnn = dnn(stacked_dnn_hidden_units)
            final_dim += list(stacked_dnn_hidden_units)[-1]
        if model_structure in ("parallel", "stacked_parallel"):
            self.parallel_dnn = dnn(parallel_dnn_hidden_units)
            final_dim += list(parallel_dnn_hidden_units)[-1]
        if model_structure in ("parallel", "crossnet_only"):
            final_dim += input_dim  # the cross output itself reaches the MLP
        mlp_units = list(mlp_hidden_units)
        self.mlp = MLP_Block(input_dim=final_dim, output_dim=1, hidden_units=mlp_units,
                             hidden_activations=resolve_activations(dnn_activations, mlp_units),
                             output_activation=output_activation,
                             dropout_rates=net_dropout, batch_norm=batch_norm)

    def forward(self, x_0: torch.Tensor) -> torch.Tensor:
        cross_out = self.crossnet(self.input_norm(x_0))                  # (B, input_dim)
        parts = []
        if self.stacked_dnn is not None:
            parts.append(self.stacked_dnn(cross_out))                    # (B, H_stacked)
        elif self.model_structure in ("parallel", "crossnet_only"):
            parts.append(cross_out)
        if self.parallel_dnn is not None:
            parts.append(self.parallel_dnn(x_0))                         # (B, H_parallel)
        return self.mlp(torch.cat(parts, dim=-1))                        # (B, 1)


class TransformerHistoryEncoder(nn.Module):
    """The rank-1 MM-CTR sequence encoder (after TransAct, Xia et al., KDD 2023).

    Each history item is concatenated with the target item, a transformer encoder runs over the
    ``L`` pairs with the padding masked, and the output is the last ``first_k_cols`` positions
    (flattened) plus, optionally, a linear map of the max-pool over the real positions.

    Padded positions never influence the output: they are masked as keys, their outputs are
    zeroed before the last-``k`` slice and excluded from the max-pool. A row with no item at all
    attends to one position (so the softmax stays finite) and its encoding is zeroed, so it is a
    constant (the max-pool branch gives ``out_linear``'s bias).

    Args:
        item_dim: width ``D`` of one item; the transformer's ``d_model`` is ``2 * D``.
        transformer_layers: encoder layers. Default: 2.
        num_heads: attention heads; must divide ``2 * D``. Default: 1.
        dim_feedforward: width of each layer's feed-forward block. Default: 256.
        transformer_dropout: dropout inside the encoder layers. Default: 0.
        first_k_cols: most recent positions kept from the output. Default: 16.
        concat_max_pool: append ``Linear(max-pool of the outputs)``. Default: True.
        reproduce_published_mask_bug: pass the loader's mask (1 = item) straight to
            ``src_key_padding_mask`` (True = ignore) as the published rank-1 code did, so the
            encoder attends only to padding and zeroes the outputs at the real items. For
            comparison only. Default: False.
        max_len: the longest history (size of the position table). Default: 100.
        position_encoding: ``"none"`` (self-attention alone is blind to the order; only the
            last-``k`` slice sees it) or ``"learned"``: a learned age embedding added to each
            history item before pairing (:class:`HistoryPositionEncoding`, as BST).
            Default: ``"none"``.

    Shapes: target ``(B, D)``, history ``(B, L, D)``, mask ``(B, L)`` ->
    ``(B, output_dim)`` with ``output_dim = (first_k_cols + concat_max_pool) * 2 * D``.
    """

    def __init__(self, item_dim: int, transformer_layers: int = 2, num_heads: int = 1,
                 dim_feedforward: int = 256, transformer_dropout: float = 0.0,
                 first_k_cols: int = 16, concat_max_pool: bool = True,
                 reproduce_published_mask_bug: bool = False, max_len: int = 100,
                 position_encoding: str = "none"):
        super().__init__()
        d_model = 2 * item_dim
        check_value("position_encoding", position_encoding)
        self.positions = (HistoryPositionEncoding(max_len, item_dim)
                          if position_encoding == "learned" else None)
        if d_model % num_heads:
            raise ConfigError(f"num_heads={num_heads} does not divide the transformer width "
                             f"2 * item_dim = {d_model}")
        if first_k_cols < 1:
            raise ConfigError(f"first_k_cols={first_k_cols} must be >= 1")
        self.first_k_cols = int(first_k_cols)
        self.concat_max_pool = bool(concat_max_pool)
        self.reproduce_published_mask_bug = bool(reproduce_published_mask_bug)
        layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=num_heads,
                                           dim_feedforward=dim_feedforward,
                                           dropout=transformer_dropout, batch_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=transformer_layers,
                                                         enable_nested_tensor=False)
        self.out_linear = nn.Linear(d_model, d_model) if self.concat_max_pool else None
        self.output_dim = (self.first_k_cols + int(self.concat_max_pool)) * d_model

    def key_padding_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``src_key_padding_mask`` (True = ignore) with at least one attended key per row."""
        if self.reproduce_published_mask_bug:
            ignore = mask > 0                      # the published bug: ignores the real items
        else:
            ignore = mask <= 0                     # correct: ignores the padding
        ignore = ignore.clone()
        ignore[ignore.all(dim=-1), -1] = False     # a row must attend somewhere (finite softmax)
        return ignore

    def forward(self, target: torch.Tensor, history: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        batch_size, seq_len, _ = history.shape
        if self.positions is not None:
            history = self.positions(history)                            # (B, L, D)
        pairs = torch.cat([history, target.unsqueeze(1).expand(-1, seq_len, -1)],
                          dim=-1)                                        # (B, L, 2D)
        ignore = self.key_padding_mask(mask)                             # (B, L)
        out = self.transformer_encoder(pairs, src_key_padding_mask=ignore)  # (B, L, 2D)
        if self.reproduce_published_mask_bug:
            drop = ignore                          # as published: zero the ignored positions
        else:
            drop = mask <= 0                       # every padded position, forced ones included
        out = out.masked_fill(drop.unsqueeze(-1), 0.0)                   # (B, L, 2D)
        last = out[:, -self.first_k_cols:]                               # (B, min(k, L), 2D)
        if last.shape[1] < self.first_k_cols:      # shorter history than k: pad on the left
            last = nn.functional.pad(last, (0, 0, self.first_k_cols - last.shape[1], 0))
        parts = [last.flatten(start_dim=1)]                              # (B, k * 2D)
        if self.concat_max_pool:
            pooled = out.masked_fill(drop.unsqueeze(-1), float("-inf")).max(dim=1).values
            pooled = pooled.masked_fill(drop.all(dim=-1, keepdim=True), 0.0)  # (B, 2D)
            parts.append(self.out_linear(pooled))                        # (B, 2D)
        return torch.cat(parts, dim=-1)                                  # (B, output_dim)


class FieldProjector(nn.Module):
    """Cut a flat embedding into fields and bring each to one width.

    Fields already ``field_dim`` wide pass through; others get their own ``nn.Linear``.

    Args:
        field_dims: width of each field, in order; they sum to the input width.
        field_dim: common output width ``D``.

    Shapes: ``(B, sum(field_dims))`` -> ``(B, F, D)``.
    """

    def __init__(self, field_dims: Sequence[int], field_dim: int):
        super().__init__()
        self.field_dims = [int(d) for d in field_dims]
        self.projections = nn.ModuleList(
            nn.Identity() if d == field_dim else nn.Linear(d, field_dim)
            for d in self.field_dims)

    @property
    def num_fields(self) -> int:
        return len(self.field_dims)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(flat, self.field_dims, dim=-1)              # F x (B, d_f)
        return torch.stack([proj(chunk) for proj, chunk in zip(self.projections, chunks)],
                           dim=1)                                        # (B, F, D)


class FieldSqueezeExcitation(nn.Module):
    """SENET re-weighting (FuxiCTR's ``SqueezeExcitation``) of fields of any widths.

    FuxiCTR's layer squeezes each field of a ``(B, F, D)`` stack to its mean, excites the ``F``
    means through a bottleneck MLP and scales each field by its weight. Here the fields lie
    side by side in one flat vector and may differ in width (an embedding of ``embedding_dim``
    beside the 128-d item embedding): each is squeezed to the mean over its own width, the
    excitation is FuxiCTR's (``self.senet.excitation``), and each field is scaled by its
    weight. With equal widths this is ``SqueezeExcitation`` on the ``(B, F, D)`` view.

    Args:
        field_dims: width of each field, in order; they sum to the input width.
        reduction_ratio: the bottleneck is ``max(1, int(F / reduction_ratio))`` wide.
            Default: 3.
        excitation_activation: the weights' activation, ``"ReLU"`` or ``"Sigmoid"``.
            Default: ``"ReLU"``.

    Shapes: ``(B, sum(field_dims))`` -> the same.
    """

    def __init__(self, field_dims: Sequence[int], reduction_ratio: float = 3,
                 excitation_activation: str = "ReLU"):
        super().__init__()
        self.field_dims = [int(d) for d in field_dims]
        check_value("reduction_ratio", reduction_ratio)
        check_value("excitation_activation", excitation_activation)
        self.senet = SqueezeExcitation(len(self.field_dims), reduction_ratio,
                                       excitation_activation)
        self.register_buffer("widths", torch.tensor(self.field_dims), persistent=False)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        fields = torch.split(flat, self.field_dims, dim=-1)              # F x (B, d_f)
        squeezed = torch.stack([f.mean(dim=-1) for f in fields], dim=-1)  # (B, F)
        weights = self.senet.excitation(squeezed)                        # (B, F)
        return flat * weights.repeat_interleave(self.widths, dim=-1)     # (B, sum d_f)


def field_senet(use_senet: bool, field_dims: Sequence[int], reduction_ratio: float = 3,
                excitation_activation: str = "ReLU") -> Optional[FieldSqueezeExcitation]:
    """The models' ``use_senet`` switch: a :class:`FieldSqueezeExcitation` or None (no module,
    so a model without it keeps its state_dict keys)."""
    check_value("use_senet", use_senet, Rule("bool"))
    if not use_senet:
        return None
    return FieldSqueezeExcitation(field_dims, reduction_ratio, excitation_activation)


class ReLUGatedDotProductAttention(ScaledDotProductAttention):
    """FuxiCTR's ``ScaledDotProductAttention`` with the softmax replaced by a ReLU.

    ``ReLU(Q K^T / scale)``: a key scoring at or below zero gets exactly zero weight. With
    ``normalization="none"`` (QIN's authors') the weights are not normalised (they need not
    sum to 1, and a history with no relevant item pools to zeros), so the pooled history's
    scale grows with the number of matching items and with the scores themselves. With
    ``"sum"`` they are divided by their sum: a weighted mean over the matching items only,
    as bounded as a softmax's and as sparse as the ReLU's (a history with no matching item
    still pools to zeros). ``"sum_plus_one"`` divides them by ``1 + sum``: continuous where
    ``"sum"`` jumps (one key crossing zero turns zeros into a full mean there), close to the
    raw weights while they are small and to the mean once they add up to much more than 1.
    Masked keys (``mask == 0``) score 0 before the ReLU, so they get 0 too.

    Args:
        dropout_rate: dropout on the weights. Default: 0.
        normalization: ``"none"``, ``"sum"`` or ``"sum_plus_one"``. Default: ``"none"``.

    Shapes: ``Q (..., 1, d)``, ``K, V (..., L, d)``, mask broadcastable to ``(..., 1, L)`` ->
    ``(output (..., 1, d), weights (..., 1, L))``.
    """

    EPS = 1.0e-6  # an all-zero row stays zero

    def __init__(self, dropout_rate: float = 0.0, normalization: str = "none"):
        super().__init__(dropout_rate)
        self.normalization = check_value("attention_normalization", normalization)

    def forward(self, Q, K, V, scale=None, mask=None):
        scores = torch.matmul(Q, K.transpose(-1, -2))                     # (..., 1, L)
        if scale:
            scores = scores / scale
        if mask is not None:
            scores = scores.masked_fill(mask == 0, 0.0)
        weights = torch.relu(scores)
        if self.normalization != "none":  # in fp32 under autocast, as autocast runs a softmax
            gates = weights.float()
            offset = self.EPS if self.normalization == "sum" else 1.0
            weights = (gates / (gates.sum(dim=-1, keepdim=True) + offset)).to(weights.dtype)
        if self.dropout is not None:
            weights = self.dropout(weights)
        return torch.matmul(weights, V), weights


class AdaptiveSparseTargetAttention(MultiHeadTargetAttention):
    """QIN's adaptive sparse target attention (ASTA).

    Li et al., "Quadratic Interest Network for Multimodal Click-Through Rate Prediction",
    arXiv 2504.17699: ``o = W_o ReLU(Q K^T / sqrt(d)) V + x_t`` with ``Q = W_q x_t`` (the target
    item), ``K = W_k x_b``, ``V = W_v x_b`` (the history): FuxiCTR's ``MultiHeadTargetAttention``
    (its projections and head split) with :class:`ReLUGatedDotProductAttention` in place of
    the softmax, and the target added back. History items the target does not match get
    exactly zero weight instead of a softmax's small share, so a long history does not
    dilute the few relevant items. The authors' released code has one head
    (``attention_dim = 2 * D``) and a bias on ``W_o`` (FuxiCTR's has none; the target added
    back carries the offset); with ``H`` heads each scores in ``attention_dim / H``
    dimensions (scaled by ``sqrt(attention_dim / H)``).

    Args:
        input_dim: width ``D`` of an item.
        attention_dim: width of ``Q``, ``K``, ``V``; None = ``2 * D`` (the authors').
            Default: None.
        num_heads: heads ``H``; must divide ``attention_dim``. Default: 1.
        dropout_rate: dropout on the attention weights. Default: 0.
        max_len: the longest history (size of the age table). Default: 100.
        position_encoding: ``"none"`` or ``"learned"`` (:class:`HistoryPositionEncoding` added
            to the history before the projections). Default: ``"none"``.
        normalization: ``"none"`` (the authors': raw ReLU weights), ``"sum"`` (the ReLU
            weights divided by their sum: a sparse weighted mean) or ``"sum_plus_one"``
            (divided by ``1 + sum``); see :class:`ReLUGatedDotProductAttention`.
            Default: ``"none"``.

    Shapes: target ``(B, D)``, history ``(B, L, D)``, mask ``(B, L)`` -> ``(B, D)``; a row with
    no history item gives the target itself.
    """

    def __init__(self, input_dim: int, attention_dim: Optional[int] = None, num_heads: int = 1,
                 dropout_rate: float = 0.0, max_len: int = 100,
                 position_encoding: str = "none", normalization: str = "none"):
        attention_dim = int(check_value("attention_dim", attention_dim) or 2 * input_dim)
        check_value("attention_heads", num_heads)
        if attention_dim % num_heads:
            raise ConfigError(f"attention_heads={num_heads} does not divide attention_dim="
                              f"{attention_dim}", option="attention_heads")
        super().__init__(input_dim, attention_dim=attention_dim, num_heads=num_heads,
                         dropout_rate=dropout_rate, use_scale=True, use_qkvo=True)
        self.dot_attention = ReLUGatedDotProductAttention(dropout_rate, normalization)
        check_value("position_encoding", position_encoding)
        self.positions = (HistoryPositionEncoding(max_len, input_dim)
                          if position_encoding == "learned" else None)

    def forward(self, target_item, history_sequence, mask=None):
        if self.positions is not None:
            history_sequence = self.positions(history_sequence)          # (B, L, D)
        interest = super().forward(target_item, history_sequence, mask)  # (B, D)
        return interest + target_item                                    # (B, D)


class QuadraticLayer(nn.Module):
    """One layer of QIN's Quadratic Neural Network: ``x * sum_r (W_r x + b_r)``.

    The multi-head Khatri-Rao product of QNN (Li et al., "Revisiting Feature Interactions from
    the Perspective of Quadratic Neural Networks for Click-through Rate Prediction",
    arXiv 2505.17999): ``num_row`` linear maps of the input, each multiplied element-wise with
    the input and summed, so every output unit is a learned quadratic form of the input (all
    pairwise feature interactions, weighted). The sum of the rows is itself one linear map:
    the rows change the parametrisation (a wider initial spread, dropout on each row), not
    the functions the layer can express, which is what the authors' ``num_row`` tunes.

    Args:
        input_dim: width ``D`` of the input (and output).
        num_row: rows ``R``. Default: 2.
        net_dropout: dropout on each row's output. Default: 0.

    Shapes: ``(B, D)`` -> ``(B, D)``.
    """

    def __init__(self, input_dim: int, num_row: int = 2, net_dropout: float = 0.0):
        super().__init__()
        self.num_row = int(check_value("num_row", num_row))
        self.input_dim = int(input_dim)
        self.linear = nn.Linear(self.input_dim, self.input_dim * self.num_row)
        self.dropout = nn.Dropout(net_dropout) if net_dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.linear(x)                                            # (B, R * D)
        if self.dropout is not None:
            rows = self.dropout(rows)
        rows = rows.view(-1, self.num_row, self.input_dim)               # (B, R, D)
        return x * rows.sum(dim=1)                                       # (B, D)


class QuadraticNeuralNetwork(nn.Module):
    """QIN's Quadratic Neural Network: residual :class:`QuadraticLayer` blocks, then a linear
    read-out.

    Each block is ``x + dropout(PReLU(batch_norm(QuadraticLayer(x))))``, as in the authors'
    code, so ``num_layers`` blocks reach interactions of order ``2 ** num_layers``.

    Args:
        input_dim: width of the input features.
        num_layers: blocks. Default: 3.
        num_row: rows of each :class:`QuadraticLayer`. Default: 2.
        net_dropout: dropout in each layer and block. Default: 0.
        batch_norm: batch norm in each block. Default: False.
        output_activation: e.g. the model's sigmoid. Default: None (a logit).

    Shapes: ``(B, input_dim)`` -> ``(B, 1)``.
    """

    def __init__(self, input_dim: int, num_layers: int = 3, num_row: int = 2,
                 net_dropout: float = 0.0, batch_norm: bool = False,
                 output_activation: Optional[nn.Module] = None):
        super().__init__()
        check_value("num_layers", num_layers)
        check_value("net_dropout", net_dropout)
        self.blocks = nn.ModuleList()
        for _ in range(int(num_layers)):
            block = [QuadraticLayer(input_dim, num_row=num_row, net_dropout=net_dropout)]
            if batch_norm:
                block.append(nn.BatchNorm1d(input_dim))
            block.append(nn.PReLU())
            if net_dropout > 0:
                block.append(nn.Dropout(net_dropout))
            self.blocks.append(nn.Sequential(*block))
        self.fc = nn.Linear(input_dim, 1)
        self.output_activation = output_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)                                             # (B, input_dim)
        logit = self.fc(x)                                               # (B, 1)
        return logit if self.output_activation is None else self.output_activation(logit)
