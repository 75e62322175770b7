"""Transformer-DCN: the rank-1 architecture of the WWW 2025 MM-CTR challenge.

A transformer over the user's history, each history item paired with the target item (after
Xia et al., "TransAct: Transformer-based Realtime User Action Model for Recommendation at
Pinterest", KDD 2023, https://arxiv.org/abs/2306.00248), feeding a DCN-V2 head (Wang et al.,
WWW 2021, https://arxiv.org/abs/2008.13535). Test AUC 0.9839 on MicroLens_1M_x1.

The published code passed the loader's mask (1 = item) straight to ``src_key_padding_mask``
(True = ignore), so its transformer attended only to padding. Here the padding is masked;
``reproduce_published_mask_bug: True`` brings the published behaviour back for comparison.
"""
from __future__ import annotations


from .layers import DCNHead, TransformerHistoryEncoder
from .base import MMCTRModel


class TransformerDCN(MMCTRModel):
    """Transformer history encoder + DCN-V2 (cross and DNN in parallel) + MLP.

    Hyper-parameter names are the published ones, so the rank-1 config runs unchanged.

    Args:
        feature_map: FuxiCTR ``FeatureMap``.
        model_id: experiment id. Default: ``"TransformerDCN"``.
        gpu: GPU index, -1 for CPU. Default: -1.
        hidden_activations: activation of the DNN and MLP, ``"ReLU"`` or ``"Dice"``.
            Default: ``"ReLU"``.
        dcn_cross_layers: cross layers. Default: 3.
        cross_type: ``"matrix"``, ``"mix"`` or ``"vector"``. Default: ``"matrix"``.
        dcn_hidden_units: DNN beside the cross network. Default: ``(1024, 512, 256)``.
        mlp_hidden_units: MLP on ``[cross output, DNN output]``. Default: ``(64, 32)``.
        num_heads: attention heads; must divide ``2 * D_item``. Default: 1.
        transformer_layers: encoder layers. Default: 2.
        transformer_dropout: dropout in the encoder. Default: 0.2.
        dim_feedforward: feed-forward width of the encoder. Default: 256.
        first_k_cols: most recent encoder outputs kept. Default: 16.
        concat_max_pool: add a max-pool of the encoder outputs. Default: True.
        reproduce_published_mask_bug: attend to the padding only, as the published code.
            Default: False.
        position_encoding: ``"none"`` or ``"learned"``: a learned embedding of each history
            item's age added before the transformer (BST). Default: ``"none"``.
        max_len: history length of the data (the loader's ``max_len``); sizes the age table.
            Default: 100.
        learning_rate: Default: 5.0e-4.
        embedding_dim: Default: 64.
        net_dropout: dropout in the DNN and MLP. Default: 0.2.
        batch_norm: Default: False.
        cross_input_norm: ``"none"``, ``"batch"`` or ``"layer"``: normalise the cross
            network's input (:class:`~fuxictr_mmctr.models.layers.DCNHead`'s ``input_norm``).
            Default: ``"none"``.
        **kwargs: :class:`MMCTRModel` and FuxiCTR ``BaseModel`` arguments.

    Shapes: history ``(B, L, D_item)``, target ``(B, D_item)`` -> ``y_pred`` ``(B, 1)``.
    """

    def __init__(self, feature_map, model_id="TransformerDCN", gpu=-1,
                 hidden_activations="ReLU", dcn_cross_layers=3, cross_type="matrix",
                 dcn_hidden_units=(1024, 512, 256), mlp_hidden_units=(64, 32), num_heads=1,
                 transformer_layers=2, transformer_dropout=0.2, dim_feedforward=256,
                 first_k_cols=16, concat_max_pool=True, reproduce_published_mask_bug=False,
                 learning_rate=5.0e-4, embedding_dim=64, net_dropout=0.2, batch_norm=False,
                 position_encoding="none", max_len=100, cross_input_norm="none", **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_dim=embedding_dim,
                         **kwargs)
        self.encoder = TransformerHistoryEncoder(
            self.item_info_dim, transformer_layers=transformer_layers, num_heads=num_heads,
            dim_feedforward=dim_feedforward, transformer_dropout=transformer_dropout,
            first_k_cols=first_k_cols, concat_max_pool=concat_max_pool,
            reproduce_published_mask_bug=reproduce_published_mask_bug, max_len=max_len,
            position_encoding=position_encoding)
        self.dcn = DCNHead(self.row_feature_dim + self.item_info_dim + self.encoder.output_dim,
                           num_cross_layers=dcn_cross_layers, cross_type=cross_type,
                           model_structure="parallel",
                           parallel_dnn_hidden_units=dcn_hidden_units,
                           mlp_hidden_units=mlp_hidden_units,
                           dnn_activations=hidden_activations, net_dropout=net_dropout,
                           batch_norm=batch_norm, output_activation=self.output_activation,
                           input_norm=cross_input_norm)
        self.finish_init(kwargs["optimizer"], kwargs["loss"], learning_rate)

    def forward(self, inputs):
        row_emb, target_emb, history_emb, mask = self.embed_batch(inputs)
        encoded = self.encoder(target_emb, history_emb, mask)            # (B, (k+1) * 2D_item)
        y_pred = self.dcn(self.concat_with_row(row_emb, target_emb, encoded))  # (B, 1)
        return {"y_pred": y_pred}
