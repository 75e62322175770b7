"""DCNv2: Deep & Cross Network V2.

Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
Learning to Rank Systems", WWW 2021. https://arxiv.org/abs/2008.13535

Follows FuxiCTR's DCNv2 (its hyper-parameter names, so a FuxiCTR DCNv2 config runs): a cross
network (``cross_type``: full-rank ``matrix``, low-rank ``mix``ture of experts, or DCN's
``vector``) stacked on or beside a DNN, over ``[row features, target item, pooled history]``;
the history is pooled over its real items (:class:`~fuxictr_mmctr.models.layers.MaskedHistoryPooling`).
"""
from __future__ import annotations


from .layers import DCNHead, history_pooling_layer
from .base import MMCTRModel


class DCNv2(MMCTRModel):
    """DCN-V2 over the MicroLens row features, target item and pooled history.

    Args:
        feature_map: FuxiCTR ``FeatureMap``.
        model_id: experiment id. Default: ``"DCNv2"``.
        gpu: GPU index, -1 for CPU. Default: -1.
        model_structure: ``"parallel"``, ``"stacked"``, ``"stacked_parallel"`` or
            ``"crossnet_only"``. Default: ``"parallel"``.
        cross_type: ``"matrix"``, ``"mix"`` or ``"vector"``. Default: ``"matrix"``.
        use_low_rank_mixture: FuxiCTR's switch; True means ``cross_type="mix"``.
            Default: False.
        low_rank: rank of each expert with ``mix``. Default: 32.
        num_experts: experts with ``mix``. Default: 4.
        num_cross_layers: cross layers. Default: 3.
        stacked_dnn_hidden_units: DNN on the cross output. Default: ``(512, 256)``.
        parallel_dnn_hidden_units: DNN beside the cross network. Default: ``(512, 256)``.
        mlp_hidden_units: MLP on the head's output; empty = one linear layer. Default: ``()``.
        dnn_activations: ``"ReLU"``, ``"Dice"``, ... Default: ``"ReLU"``.
        history_pooling: ``"mean"``, ``"sum"`` or ``"max"`` over the real history items, or
            ``"multi_interest"``: :class:`~fuxictr_mmctr.models.layers.MultiInterestPooling`
            (``num_interests`` interests, the target choosing among them). Default: ``"mean"``.
        num_interests: interests of ``multi_interest``. Default: 4.
        position_encoding: ``"none"`` or ``"learned"`` (``multi_interest`` only: an age
            embedding added before the extraction). Default: ``"none"``.
        max_len: history length of the data (the loader's ``max_len``). Default: 100.
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

    def __init__(self, feature_map, model_id="DCNv2", gpu=-1, model_structure="parallel",
                 cross_type="matrix", use_low_rank_mixture=False, low_rank=32, num_experts=4,
                 num_cross_layers=3, stacked_dnn_hidden_units=(512, 256),
                 parallel_dnn_hidden_units=(512, 256), mlp_hidden_units=(),
                 dnn_activations="ReLU", history_pooling="mean", learning_rate=1.0e-3,
                 embedding_dim=10, net_dropout=0.0, batch_norm=False, num_interests=4,
                 position_encoding="none", max_len=100, cross_input_norm="none", **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_dim=embedding_dim,
                         **kwargs)
        self.history_pooling = history_pooling_layer(
            history_pooling, self.item_info_dim, num_interests=num_interests, max_len=max_len,
            position_encoding=position_encoding)
        self.dcn = DCNHead(self.row_feature_dim + 2 * self.item_info_dim,
                           num_cross_layers=num_cross_layers,
                           cross_type="mix" if use_low_rank_mixture else cross_type,
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
        row_emb, target_emb, history_emb, mask = self.embed_batch(inputs)
        pooled = self.history_pooling(history_emb, mask, target=target_emb)  # (B, D_item)
        y_pred = self.dcn(self.concat_with_row(row_emb, target_emb, pooled))  # (B, 1)
        return {"y_pred": y_pred}
