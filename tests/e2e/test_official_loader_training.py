"""MMCTRDataLoader against a plain reference gather (the official collate's semantics)."""
from __future__ import annotations

import torch

from helpers import feature_map_for


from fuxictr_mmctr.data.loader import MMCTRDataLoader


def test_a_model_written_for_the_official_loader_trains_on_it(handmade, tmp_path):
    """A FuxiCTR BaseModel that unpacks batches the way the official challenge models do."""
    from fuxictr.pytorch.layers import FeatureEmbedding, MLP_Block
    from fuxictr.pytorch.models import BaseModel

    class OfficialStyle(BaseModel):
        def __init__(self, feature_map, **kwargs):
            super().__init__(feature_map, model_id="official_style", **kwargs)
            self.embedding_layer = FeatureEmbedding(feature_map, 4)
            self.item_dim = 4 + 4 + 128
            self.mlp = MLP_Block(input_dim=8 + 2 * self.item_dim, output_dim=1,
                                 hidden_units=[8], output_activation=self.output_activation)
            self.compile(kwargs["optimizer"], kwargs["loss"], 1.0e-2)
            self.reset_parameters()
            self.model_to_device()

        def forward(self, inputs):
            batch_dict, item_dict, mask = inputs
            X = {k: v for k, v in batch_dict.items()
                 if k not in self.feature_map.labels
                 and self.feature_map.features[k]["type"] != "meta"}
            row = self.embedding_layer(X, flatten_emb=True)
            items = self.embedding_layer(item_dict, flatten_emb=True)
            items = items.view(mask.shape[0], -1, self.item_dim)
            history = (items[:, :-1] * mask.unsqueeze(-1)).sum(1) / (mask.sum(1, keepdim=True)
                                                                      + 1e-9)
            return {"y_pred": self.mlp(torch.cat([row, items[:, -1], history], -1))}

        def get_labels(self, inputs):
            return inputs[0]["label"].float().view(-1, 1)

    fm = feature_map_for()
    (tmp_path / fm.dataset_id).mkdir()  # FuxiCTR's own save_weights does not create it
    model = OfficialStyle(fm, model_root=str(tmp_path), metrics=["AUC", "logloss"], verbose=0,
                          optimizer="adam", loss="binary_crossentropy")
    loader = MMCTRDataLoader(fm, handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=8, max_len=6,
                             shuffle=True)
    valid = MMCTRDataLoader(fm, handmade / "valid.parquet",
                            item_info=handmade / "item_info.parquet", batch_size=8, max_len=6)
    model.fit(loader, validation_data=valid, epochs=1)
    assert model.predict(valid).shape == (20,)
