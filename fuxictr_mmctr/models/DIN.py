"""DIN: Deep Interest Network.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.
https://arxiv.org/abs/1706.06978

The architecture and hyper-parameter names follow the official MM-CTR challenge baseline, so
its DIN config runs unchanged: target attention (FuxiCTR's ``DIN_Attention``) pools the history
against the target item, and an MLP reads ``[row features, target item, pooled history]``.
"""
from __future__ import annotations

from fuxictr.pytorch.layers import MLP_Block

from .base import MMCTRModel
from .layers import TargetAttention, field_senet, resolve_activations


class TargetAttentionInput:
    """What DIN and DIN_DCN share before their heads (a mixin of :class:`MMCTRModel`): the
    target attention over the history (``attention_layers``, :class:`~fuxictr_mmctr.models.
    layers.TargetAttention`) and the optional SENET over the head's input fields (``senet``).
    """

    def build_target_attention_input(self, attention_hidden_units, attention_hidden_activations,
                                     attention_output_activation, attention_dropout,
                                     din_use_softmax, max_len, position_encoding, recency_bias,
                                     attention_heads, use_senet, reduction_ratio,
                                     excitation_activation) -> int:
        """Build ``attention_layers`` and ``senet``; returns the head's input width
        ``D_row + (1 + H) D_item``."""
        self.attention_layers = TargetAttention(
            self.item_info_dim,
            attention_units=list(attention_hidden_units),
            hidden_activations=attention_hidden_activations,
            output_activation=attention_output_activation,
            dropout_rate=attention_dropout,
            use_softmax=din_use_softmax, max_len=max_len,
            position_encoding=position_encoding, recency_bias=recency_bias,
            num_heads=attention_heads)
        self.senet = field_senet(use_senet, self.field_dims(1 + attention_heads),
                                 reduction_ratio, excitation_activation)
        return self.row_feature_dim + self.item_info_dim + self.attention_layers.output_dim

    def target_attention_input(self, inputs):
        """``[row features, target item, pooled history]`` of a batch, SENET-weighted when on:
        ``(B, D_row + (1 + H) D_item)``."""
        row_emb, target_emb, history_emb, mask = self.embed_batch(inputs)
        pooled = self.attention_layers(target_emb, history_emb, mask)    # (B, H * D_item)
        x = self.concat_with_row(row_emb, target_emb, pooled)            # (B, D_row + (1+H) D_item)
        if self.senet is not None:
            x = self.senet(x)                                            # fields re-weighted
        return x


class DIN(TargetAttentionInput, MMCTRModel):
    """Deep Interest Network over the MicroLens item side.

    Args:
        feature_map: FuxiCTR ``FeatureMap``.
        model_id: experiment id. Default: ``"DIN"``.
        gpu: GPU index, -1 for CPU. Default: -1.
        dnn_hidden_units: MLP widths. Default: ``(512, 128, 64)``.
        dnn_activations: MLP activation, e.g. ``"ReLU"`` or ``"Dice"``. Default: ``"ReLU"``.
        attention_hidden_units: widths of the attention MLP. Default: ``(64,)``.
        attention_hidden_activations: its activation. Default: ``"Dice"``.
        attention_output_activation: activation of the attention score. Default: None.
        attention_dropout: dropout in the attention MLP. Default: 0.
        learning_rate: Default: 1.0e-3.
        embedding_dim: Default: 10.
        net_dropout: dropout in the MLP. Default: 0.
        batch_norm: batch norm in the MLP. Default: False.
        din_use_softmax: normalise attention scores with a masked softmax. Default: False.
        position_encoding: ``"none"`` or ``"learned"``: a learned embedding of each history
            item's age added before the target attention (BST-style). Default: ``"none"``.
        recency_bias: a learned attention score per age (0 = the most recent item), added to
            the target attention's scores. Default: False.
        max_len: history length of the data (the loader's ``max_len``); sizes the age tables.
            Default: 100.
        attention_heads: heads of the target attention (the Task-2 winner's multi-head DIN):
            each head pools the history with its own scores, and the pools are concatenated
            (:class:`~fuxictr_mmctr.models.layers.TargetAttention`); 1 is DIN's attention.
            Default: 1.
        use_senet: re-weight the fields of ``[row features, target item, pooled history]``
            with SENET before the MLP (:class:`~fuxictr_mmctr.models.layers.
            FieldSqueezeExcitation`, FuxiCTR's ``SqueezeExcitation`` as in FiBiNET).
            Default: False.
        reduction_ratio: SENET's squeeze ratio. Default: 3.
        excitation_activation: SENET's weights, ``"ReLU"`` or ``"Sigmoid"``. Default: ``"ReLU"``.
        **kwargs: :class:`MMCTRModel` and FuxiCTR ``BaseModel`` arguments.

    Shapes: history ``(B, L, D_item)``, target ``(B, D_item)`` -> ``y_pred`` ``(B, 1)``.
    """

    def __init__(self, feature_map, model_id="DIN", gpu=-1,
                 dnn_hidden_units=(512, 128, 64), dnn_activations="ReLU",
                 attention_hidden_units=(64,), attention_hidden_activations="Dice",
                 attention_output_activation=None, attention_dropout=0.0,
                 learning_rate=1.0e-3, embedding_dim=10, net_dropout=0.0, batch_norm=False,
                 din_use_softmax=False, position_encoding="none", recency_bias=False,
                 max_len=100, attention_heads=1, use_senet=False, reduction_ratio=3,
                 excitation_activation="ReLU", **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_dim=embedding_dim,
                         **kwargs)
        dnn_hidden_units = list(dnn_hidden_units)
        head_input_dim = self.build_target_attention_input(
            attention_hidden_units, attention_hidden_activations, attention_output_activation,
            attention_dropout, din_use_softmax, max_len, position_encoding, recency_bias,
            attention_heads, use_senet, reduction_ratio, excitation_activation)
        self.dnn = MLP_Block(input_dim=head_input_dim,
                             output_dim=1,
                             hidden_units=dnn_hidden_units,
                             hidden_activations=resolve_activations(dnn_activations,
                                                                    dnn_hidden_units),
                             output_activation=self.output_activation,
                             dropout_rates=net_dropout,
                             batch_norm=batch_norm)
        self.finish_init(kwargs["optimizer"], kwargs["loss"], learning_rate)

    def forward(self, inputs):
        return {"y_pred": self.dnn(self.target_attention_input(inputs))}  # (B, 1)
