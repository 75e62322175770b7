"""QIN: Quadratic Interest Network.

Li et al., "Quadratic Interest Network for Multimodal Click-Through Rate Prediction", arXiv
2504.17699 (2nd place of the WWW 2025 MM-CTR challenge, team DISCO.AHU; code:
github.com/salmon1802/QIN, on FuxiCTR 2.3.7). https://arxiv.org/abs/2504.17699

Two parts, each a shared layer:

* adaptive sparse target attention (ASTA,
  :class:`~fuxictr_mmctr.models.layers.AdaptiveSparseTargetAttention`): FuxiCTR's
  multi-head target attention with its softmax replaced by a ReLU gate, so history items
  the target does not match get exactly zero weight, and the target added back;
* a Quadratic Neural Network (QNN, :class:`~fuxictr_mmctr.models.layers.
  QuadraticNeuralNetwork`): residual layers that multiply the input by ``num_row`` learned
  linear maps of itself (the multi-head Khatri-Rao product), then a linear read-out,

over ``[row features, target item, ASTA output]``. The hyper-parameter names are the
authors' (``num_layers``, ``num_row``, ``net_dropout``, ``batch_norm``); ``attention_dim``,
``attention_heads`` and ``position_encoding`` are this package's options of the attention
(the authors' code: ``attention_dim = 2 * D``, one head, no positions).
"""
from __future__ import annotations

from .base import MMCTRModel
from .layers import AdaptiveSparseTargetAttention, QuadraticNeuralNetwork


class QIN(MMCTRModel):
    """Adaptive sparse target attention over the history feeding a quadratic network.

    Args:
        feature_map: FuxiCTR ``FeatureMap``.
        model_id: experiment id. Default: ``"QIN"``.
        gpu: GPU index, -1 for CPU. Default: -1.
        num_layers: QNN layers. Default: 3.
        num_row: rows of each QNN layer (the authors' README: 4 trained unstably on some
            setups, 3 reproduces their result). Default: 3.
        attention_dim: width of ASTA's queries, keys and values; None = ``2 * D_item``.
            Default: None.
        attention_heads: ASTA heads; must divide ``attention_dim``. Default: 1.
        attention_dropout: dropout on ASTA's weights. Default: 0.
        position_encoding: ``"none"`` or ``"learned"``: a learned embedding of each history
            item's age added before ASTA (BST-style). Default: ``"none"``.
        attention_normalization: ``"none"`` (the authors': ASTA's raw ReLU weights, whose
            sum grows with the matching items and their scores) or ``"sum"`` (the ReLU
            weights divided by their sum: a weighted mean over the matching items, still
            exactly zero elsewhere) or ``"sum_plus_one"`` (divided by ``1 + sum``: no jump
            where the first item starts to match). Default: ``"none"``.
        max_len: history length of the data (the loader's ``max_len``); sizes the age table.
            Default: 100.
        learning_rate: Default: 1.0e-3.
        embedding_dim: Default: 10.
        net_dropout: dropout in the QNN. Default: 0.
        batch_norm: batch norm in the QNN (the authors' and both shipped configs: on). Without
            it each layer squares the scale of its input, so ``num_layers`` layers raise it to
            the power ``2 ** num_layers``: on the sample, three layers saturate the sigmoid
            of half the rows at initialisation (tiny models: 3 seeds of 40 gave an exact 0 or 1).
            Default: True.
        **kwargs: :class:`MMCTRModel` and FuxiCTR ``BaseModel`` arguments.

    Shapes: history ``(B, L, D_item)``, target ``(B, D_item)`` -> ``y_pred`` ``(B, 1)``.
    """

    def __init__(self, feature_map, model_id="QIN", gpu=-1, num_layers=3, num_row=3,
                 attention_dim=None, attention_heads=1, attention_dropout=0.0,
                 position_encoding="none", attention_normalization="none", max_len=100,
                 learning_rate=1.0e-3, embedding_dim=10, net_dropout=0.0, batch_norm=True,
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu, embedding_dim=embedding_dim,
                         **kwargs)
        self.attention_layers = AdaptiveSparseTargetAttention(
            self.item_info_dim, attention_dim=attention_dim, num_heads=attention_heads,
            dropout_rate=attention_dropout, max_len=max_len,
            position_encoding=position_encoding, normalization=attention_normalization)
        self.qnn = QuadraticNeuralNetwork(self.row_feature_dim + 2 * self.item_info_dim,
                                          num_layers=num_layers, num_row=num_row,
                                          net_dropout=net_dropout, batch_norm=batch_norm,
                                          output_activation=self.output_activation)
        self.finish_init(kwargs["optimizer"], kwargs["loss"], learning_rate)

    def forward(self, inputs):
        row_emb, target_emb, history_emb, mask = self.embed_batch(inputs)
        interest = self.attention_layers(target_emb, history_emb, mask)   # (B, D_item)
        y_pred = self.qnn(self.concat_with_row(row_emb, target_emb, interest))  # (B, 1)
        return {"y_pred": y_pred}
