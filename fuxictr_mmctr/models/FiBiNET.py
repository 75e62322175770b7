"""FiBiNET: Feature Importance and Bilinear feature Interaction NETwork.

Huang et al., "FiBiNET: Combining Feature Importance and Bilinear feature Interaction for
Click-Through Rate Prediction", RecSys 2019. https://arxiv.org/abs/1905.09433

Follows FuxiCTR's FiBiNET: SENET re-weighting of the fields (``SqueezeExcitation``), a bilinear
interaction (``BilinearInteractionV2``: ``field_all`` / ``field_each`` / ``field_interaction``)
of the raw and of the re-weighted fields, a DNN on both, plus a first-order linear term. The
fields here are each row feature, each item-side feature of the target item and each of the
history pooled over its real items; fields of another width are projected to ``embedding_dim``
(:class:`~fuxictr_mmctr.models.layers.FieldProjector`).
"""
from __future__ import annotations

import torch
from fuxictr.pytorch.layers import BilinearInteractionV2, MLP_Block, SqueezeExcitation
from torch import nn

from .layers import FieldProjector, history_pooling_layer, resolve_activations
from .base import MMCTRModel


class FiBiNET(MMCTRModel):
    """SENET + bilinear interaction over row, target-item and pooled-history fields.

    Args:
        feature_map: FuxiCTR ``FeatureMap``.
        model_id: experiment id. Default: ``"FiBiNET"``.
        gpu: GPU index, -1 for CPU. Default: -1.
        dnn_hidden_units: DNN widths on the bilinear outputs. Default: ``(512, 256)``.
        dnn_activations: ``"ReLU"``, ``"Dice"``, ... Default: ``"ReLU"``.
        reduction_ratio: SENET squeeze ratio. Default: 3.
        excitation_activation: SENET's last activation, ``"ReLU"`` or ``"Sigmoid"``.
            Default: ``"ReLU"``.
        bilinear_type: ``"field_all"``, ``"field_each"`` or ``"field_interaction"``.
            Default: ``"field_interaction"``.
        history_pooling: ``"mean"``, ``"sum"``, ``"max"`` or ``"multi_interest"``
            (:class:`~fuxictr_mmctr.models.layers.MultiInterestPooling`, the target choosing
            among ``num_interests`` interests). Default: ``"mean"``.
        num_interests: interests of ``multi_interest``. Default: 4.
        position_encoding: ``"none"`` or ``"learned"`` (``multi_interest`` only). Default:
            ``"none"``.
        max_len: history length of the data (the loader's ``max_len``). Default: 100.
        use_lr: add a first-order linear term over the fields. Default: True.
        learning_rate: Default: 1.0e-3.
        embedding_dim: field width ``D``. Default: 10.
        net_dropout: Default: 0.
        batch_norm: Default: False.
        **kwargs: :class:`MMCTRModel` and FuxiCTR ``BaseModel`` arguments.

    Shapes: ``F = n_row + 2 * n_item`` fields of width ``D`` -> ``y_pred`` ``(B, 1)``.
    """

    def __init__(self, feature_map, model_id="FiBiNET", gpu=-1, dnn_hidden_units=(512, 256),
                 dnn_activations="ReLU", reduction_ratio=3, excitation_activation="ReLU",
                 bilinear_type="field_interaction", history_pooling="mean", use_lr=True,
                 learning_rate=1.0e-3, embedding_dim=10, net_dropout=0.0, batch_norm=False,
                 num_interests=4, position_encoding="none", max_len=100, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_dim=embedding_dim,
                         **kwargs)
        row_dims = [self._feature_dim(name) for name in self.row_features]
        item_dims = [self._feature_dim(name) for name in self.item_features]
        self.row_fields = FieldProjector(row_dims, embedding_dim)
        self.target_fields = FieldProjector(item_dims, embedding_dim)
        self.history_fields = FieldProjector(item_dims, embedding_dim)
        self.history_pooling = history_pooling_layer(
            history_pooling, self.item_info_dim, num_interests=num_interests, max_len=max_len,
            position_encoding=position_encoding)
        num_fields = len(row_dims) + 2 * len(item_dims)
        self.senet_layer = SqueezeExcitation(num_fields, reduction_ratio, excitation_activation)
        self.bilinear_interaction1 = BilinearInteractionV2(num_fields, embedding_dim,
                                                           bilinear_type)
        self.bilinear_interaction2 = BilinearInteractionV2(num_fields, embedding_dim,
                                                           bilinear_type)
        self.lr_layer = nn.Linear(num_fields * embedding_dim, 1) if use_lr else None
        dnn_hidden_units = list(dnn_hidden_units)
        self.dnn = MLP_Block(input_dim=num_fields * (num_fields - 1) * embedding_dim,
                             output_dim=1,
                             hidden_units=dnn_hidden_units,
                             hidden_activations=resolve_activations(dnn_activations,
                                                                    dnn_hidden_units),
                             dropout_rates=net_dropout,
                             batch_norm=batch_norm)
        self.finish_init(kwargs["optimizer"], kwargs["loss"], learning_rate)

    def forward(self, inputs):
        row_emb, target_emb, history_emb, mask = self.embed_batch(inputs)
        pooled = self.history_pooling(history_emb, mask, target=target_emb)  # (B, D_item)
        fields = [self.target_fields(target_emb), self.history_fields(pooled)]
        if row_emb is not None:
            fields.insert(0, self.row_fields(row_emb))
        feature_emb = torch.cat(fields, dim=1)                           # (B, F, D)
        senet_emb = self.senet_layer(feature_emb)                        # (B, F, D)
        bilinear_p = self.bilinear_interaction1(feature_emb)             # (B, F(F-1)/2, D)
        bilinear_q = self.bilinear_interaction2(senet_emb)               # (B, F(F-1)/2, D)
        comb_out = torch.cat([bilinear_p, bilinear_q], dim=1).flatten(start_dim=1)
        y_pred = self.dnn(comb_out)                                      # (B, 1)
        if self.lr_layer is not None:
            y_pred = y_pred + self.lr_layer(feature_emb.flatten(start_dim=1))
        if self.output_activation is not None:
            y_pred = self.output_activation(y_pred)
        return {"y_pred": y_pred}
