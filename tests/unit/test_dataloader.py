"""MMCTRDataLoader against a plain reference gather (the official collate's semantics)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import feature_map_for, within


from fuxictr_mmctr.data.loader import MMCTRDataLoader
from fuxictr_mmctr.errors import ConfigError, DataValidationError


def reference_batch(split_path, item_info_path, rows, max_len, with_label=True):
    """Row by row, as the official BatchCollator does it with pandas ``.iloc``."""
    df = pd.read_parquet(split_path).iloc[rows]
    info = pd.read_parquet(item_info_path)
    seqs = np.array(df["item_seq"].to_list())[:, -max_len:]
    cols = ["user_id", "likes_level", "views_level"] + (["label"] if with_label else [])
    batch = {c: df[c].to_numpy() for c in cols}
    flat = np.hstack([seqs, df["item_id"].to_numpy()[:, None]]).reshape(-1)
    gathered = info.iloc[flat]
    items = {c: np.array(gathered[c].to_list()) for c in ["item_id", "item_tags", "item_emb_d128"]}
    mask = (seqs > 0).astype(np.float32)
    return batch, items, mask


def assert_batch_equal(batch, reference):
    batch_dict, item_dict, mask = batch
    ref_batch, ref_items, ref_mask = reference
    assert set(batch_dict) == set(ref_batch)
    for key, value in ref_batch.items():
        np.testing.assert_array_equal(batch_dict[key].numpy(), value, err_msg=key)
    assert set(item_dict) == set(ref_items)
    for key, value in ref_items.items():
        np.testing.assert_array_equal(item_dict[key].numpy(), value, err_msg=key)
    assert mask.dtype == torch.float32
    np.testing.assert_array_equal(mask.numpy(), ref_mask)


@pytest.mark.parametrize("max_len", [3, 6, 50])
def test_batches_equal_reference_gather(handmade, max_len):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=16,
                             max_len=max_len)
    assert len(loader) == 3 and loader.num_samples == 40
    batches = list(loader)
    assert [b[2].shape for b in batches] == [(16, min(max_len, 6))] * 2 + [(8, min(max_len, 6))]
    for i, batch in enumerate(batches):
        rows = list(range(16 * i, min(16 * i + 16, 40)))
        assert_batch_equal(batch, reference_batch(handmade / "train.parquet",
                                                  handmade / "item_info.parquet", rows,
                                                  max_len))


def test_item_dict_is_flattened_history_then_target(handmade):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train", split="train",
                             item_info=handmade / "item_info.parquet", batch_size=4, max_len=6)
    batch_dict, item_dict, mask = next(iter(loader))
    assert "item_seq" not in batch_dict and "item_id" not in batch_dict
    ids = item_dict["item_id"].view(4, 7)
    assert item_dict["item_tags"].shape == (28, 5)
    assert item_dict["item_emb_d128"].shape == (28, 128)
    assert item_dict["item_emb_d128"].dtype == torch.float32
    np.testing.assert_array_equal((ids[:, :-1] > 0).float().numpy(), mask.numpy())
    assert (ids[:, -1] > 0).all()  # the target is never padding


def test_shuffle_covers_every_row_once_and_matches_reference(handmade):
    np.random.seed(0)
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=7,
                             shuffle=True, max_len=6)
    df = pd.read_parquet(handmade / "train.parquet")
    seen = []
    for batch_dict, item_dict, mask in loader:
        targets = item_dict["item_id"].view(len(mask), -1)[:, -1].numpy()
        seen.extend(zip(batch_dict["user_id"].tolist(), targets.tolist(),
                        batch_dict["label"].tolist()))
    expected = list(zip(df.user_id, df.item_id, df.label))
    assert sorted(seen) == sorted(expected)
    first_epoch = [b[0]["user_id"].tolist() for b in loader]
    second_epoch = [b[0]["user_id"].tolist() for b in loader]
    assert first_epoch != second_epoch  # reshuffled every epoch


def test_prefetch_thread_yields_the_same_batches(handmade):
    kwargs = dict(item_info=handmade / "item_info.parquet", batch_size=6, max_len=4)
    inline = list(MMCTRDataLoader(feature_map_for(), handmade / "train.parquet", **kwargs))
    threaded = list(MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                                    num_workers=2, **kwargs))
    assert len(inline) == len(threaded) == 7
    for a, b in zip(inline, threaded):
        for key in a[1]:
            assert torch.equal(a[1][key], b[1][key])
        assert torch.equal(a[2], b[2])


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "mmctr-prefetch" and t.is_alive()]


def test_prefetch_stops_its_thread_when_the_consumer_breaks_out(handmade):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=4,
                             num_workers=1)  # 10 batches, the producer blocks on a full queue
    before = len(_prefetch_threads())

    def break_out():
        for i, _ in enumerate(loader):
            if i == 1:
                time.sleep(0.5)  # the producer fills the queue and blocks on put
                break
        return len(_prefetch_threads())
    # a hang fails the test after 20 s instead of blocking the suite
    assert within(20, break_out) == before  # the producer thread has ended


def test_prefetch_surfaces_errors(handmade):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=4,
                             num_workers=1)

    def boom(rows):
        raise RuntimeError("bad batch")
    loader.make_batch = boom
    with pytest.raises(RuntimeError, match="bad batch"):
        within(20, lambda: list(loader))


def test_test_split_without_label(handmade):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "test.parquet", split="test",
                             item_info=handmade / "item_info.parquet", batch_size=32, max_len=6)
    batch = next(iter(loader))
    assert_batch_equal(batch, reference_batch(handmade / "test.parquet",
                                              handmade / "item_info.parquet", list(range(20)),
                                              6, with_label=False))


def test_user_id_as_categorical_feature_is_range_checked(handmade):
    fm = feature_map_for(user_as_feature=True)
    fm.features["user_id"]["vocab_size"] = 5  # the handmade users go up to 29
    with pytest.raises(DataValidationError, match="user_id"):
        MMCTRDataLoader(fm, handmade / "train.parquet", item_info=handmade / "item_info.parquet")


def test_ids_only_route_ships_item_ids_only(handmade):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=8, max_len=6,
                             item_side="ids")
    _, item_dict, _ = next(iter(loader))
    assert list(item_dict) == ["item_id"] and item_dict["item_id"].shape == (56,)


def test_missing_item_info_is_a_config_error(handmade):
    with pytest.raises(ConfigError, match="item_info"):
        MMCTRDataLoader(feature_map_for(), handmade / "train.parquet")


