"""DIN-DCN: DIN's target attention over the history feeding a DCN-V2 head.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018
(https://arxiv.org/abs/1706.06978) and Wang et al., "DCN V2: Improved Deep & Cross Network",
WWW 2021 (https://arxiv.org/abs/2008.13535).

Composed from shared pieces, not copies: the attention is
:class:`~fuxictr_mmctr.models.layers.TargetAttention` (FuxiCTR's ``DIN_Attention`` with optional
position encodings and heads), built with the optional SENET by DIN's own
:class:`~fuxictr_mmctr.models.DIN.TargetAttentionInput`, and the head is
:class:`~fuxictr_mmctr.models.layers.DCNHead`, the cross network + DNN of
:class:`~fuxictr_mmctr.models.DCNv2.DCNv2`.
"""
from __future__ import annotations

from .base import MMCTRModel
from .DIN import TargetAttentionInput
from .layers import DCNHead


class DIN_DCN(TargetAttentionInput, MMCTRModel):
    """DIN target attention + DCN-V2 head (cross and DNN in parallel by default).

    Args:
        feature_map: FuxiCTR ``FeatureMap``.
        model_id: experiment id. Default: ``"DIN_DCN"``.
        gpu: GPU index, -1 for CPU. Default: -1.
        attention_hidden_units: widths of the attention MLP. Default: ``(64,)``.
        attention_hidden_activations: its activation. Default: ``"Dice"``.
        attention_output_activation: activation of the attention score. Default: None.
        attention_dropout: dropout in the attention MLP. Default: 0.
        din_use_softmax: masked softmax over the attention scores, so the pooled history is a
            weighted mean. On by default here, unlike DIN: the cross network multiplies its
            inputs, and DIN's unnormalised weighted sum (it grows with the history length)
            made it diverge (test AUC 0.48 after one epoch on the tiny sample). Default: True.
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
            with SENET before the DCN head (:class:`~fuxictr_mmctr.models.layers.
            FieldSqueezeExcitation`, FuxiCTR's ``SqueezeExcitation`` as in FiBiNET).
            Default: False.
        reduction_ratio: SENET's squeeze ratio. Default: 3.
        excitation_activation: SENET's weights, ``"ReLU"`` or ``"Sigmoid"``. Default: ``"ReLU"``.
        model_structure: DCN head layout, see :class:`~fuxictr_mmctr.models.layers.DCNHead`.
            Default: ``"parallel"``.
        cross_type: ``"matrix"``, ``"mix"`` or ``"vector"``. Default: ``"matrix"``.
        low_rank, num_experts: the ``mix`` cross network. Default: 32, 4.
        num_cross_layers: cross layers. Default: 3.
        parallel_dnn_hidden_units: DNN beside the cross network. Default: ``(512, 256)``.
        stacked_dnn_hidden_units: DNN on the cross output (stacked layouts).
            Default: ``(512, 256)``.
        mlp_hidden_units: MLP on the head's output; empty = one linear layer. Default: ``()``.
        dnn_activations: ``"ReLU"``, ``"Dice"``, ... Default: ``"ReLU"``.
        learning_rate: Default: 1.0e-3.
        embedding_dim: Default: 10.
        net_dropout: Default: 0.
        batch_norm: Default: False.
        cross_input_norm: ``"none"``, ``"batch"`` or ``"layer"``: normalise the cross
            network's input (:class:`~fuxictr_mmctr.models.layers.DCNHead`'s ``input_norm``).
            Default: ``"none"``.
        **kwargs: :class:`MMCTRModel` and FuxiCTR ``BaseModel`` arguments.

    Shapes: history ``(B, L, D_item)``, target ``(B, D_item)`` -> ``y_pred`` ``(B, 1)``.
    """

    def __init__(self, feature_map, model_id="DIN_DCN", gpu=-1, attention_hidden_units=(64,),
                 attention_hidden_activations="Dice", attention_output_activation=None,
                 attention_dropout=0.0, din_use_softmax=True, model_structure="parallel",
                 cross_type="matrix", low_rank=32, num_experts=4, num_cross_layers=3,
                 parallel_dnn_hidden_units=(512, 256), stacked_dnn_hidden_units=(512, 256),
                 mlp_hidden_units=(), dnn_activations="ReLU", learning_rate=1.0e-3,
                 embedding_dim=10, net_dropout=0.0, batch_norm=False, position_encoding="none",
                 recency_bias=False, max_len=100, attention_heads=1, use_senet=False,
                 reduction_ratio=3, excitation_activation="ReLU", cross_input_norm="none",
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_dim=embedding_dim,
                         **kwargs)
        head_input_dim = self.build_target_attention_input(
            attention_hidden_units, attention_hidden_activations, attention_output_activation,
            attention_dropout, din_use_softmax, max_len, position_encoding, recency_bias,
            attention_heads, use_senet, reduction_ratio, excitation_activation)
        self.dcn = DCNHead(head_input_dim,
                           num_cross_layers=num_cross_layers, cross_type=cross_type,
                           low_rank=low_rank, num_experts=num_experts,
                           model_structure=model_structure,
                           parallel_dnn_hidden_units=parallel_dnn_hidden_units,
                           stacked_dnn_hidden_units=stacked_dnn_hidden_units,
                           mlp_hidden_units=mlp_hidden_units, dnn_activations=dnn_activations,
                           net_dropout=net_dropout, batch_norm=batch_norm,
                           output_activation=self.output_activation,
                           input_norm=cross_input_norm)
        self.finish_init(kwargs["optimizer"], kwargs["loss"], learning_rate)

    def forward(self, inputs):
        return {"y_pred": self.dcn(self.target_attention_input(inputs))}  # (B, 1)
