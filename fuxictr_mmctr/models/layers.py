"""Layers the MM-CTR models compose: written once, shared by DCNv2, TransformerDCN, FiBiNET and
DIN_DCN.

* :class:`MaskedHistoryPooling`: mean / sum / max over the real items of a left-padded history.
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

from ..errors import ConfigError

import torch
from torch import nn

from fuxictr.pytorch.layers import CrossNet, CrossNetMix, CrossNetV2, Dice, MLP_Block


def resolve_activations(activation, hidden_units: Sequence[int]):
    """FuxiCTR's activation spec for ``MLP_Block``, with ``"Dice"`` sized per layer.

    ``MLP_Block`` cannot build ``Dice`` from a bare string (it needs each layer's width), so a
    string ``"Dice"`` becomes one ``Dice(units)`` per hidden layer; anything else passes through.
    """
    if isinstance(activation, str) and activation.lower() == "dice":
        return [Dice(units) for units in hidden_units]
    return activation


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

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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

    TYPES = ("matrix", "mix", "vector")

    def __init__(self, input_dim: int, num_layers: int = 3, cross_type: str = "matrix",
                 low_rank: int = 32, num_experts: int = 4):
        super().__init__()
        if cross_type not in self.TYPES:
            raise ConfigError(f"cross_type {cross_type!r}: expected one of {self.TYPES}")
        self.cross_type = cross_type
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

    Shapes: ``(B, input_dim)`` -> ``(B, 1)``.
    """

    STRUCTURES = ("parallel", "stacked", "stacked_parallel", "crossnet_only")

    def __init__(self, input_dim: int, num_cross_layers: int = 3, cross_type: str = "matrix",
                 low_rank: int = 32, num_experts: int = 4, model_structure: str = "parallel",
                 parallel_dnn_hidden_units: Sequence[int] = (512, 256),
                 stacked_dnn_hidden_units: Sequence[int] = (512, 256),
                 mlp_hidden_units: Sequence[int] = (), dnn_activations="ReLU",
                 net_dropout: float = 0.0, batch_norm: bool = False,
                 output_activation: Optional[nn.Module] = None):
        super().__init__()
        if model_structure not in self.STRUCTURES:
            raise ConfigError(f"model_structure {model_structure!r}: expected one of "
                             f"{self.STRUCTURES}")
        self.model_structure = model_structure
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
        cross_out = self.crossnet(x_0)                                   # (B, input_dim)
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

    Shapes: target ``(B, D)``, history ``(B, L, D)``, mask ``(B, L)`` ->
    ``(B, output_dim)`` with ``output_dim = (first_k_cols + concat_max_pool) * 2 * D``.
    """

    def __init__(self, item_dim: int, transformer_layers: int = 2, num_heads: int = 1,
                 dim_feedforward: int = 256, transformer_dropout: float = 0.0,
                 first_k_cols: int = 16, concat_max_pool: bool = True,
                 reproduce_published_mask_bug: bool = False):
        super().__init__()
        d_model = 2 * item_dim
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
