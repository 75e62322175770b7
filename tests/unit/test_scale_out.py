"""Scale-out pieces that need no process group or cluster: batch shares, the sharded loader,
the torchrun detection, Ray as an optional dependency. Training under torchrun and sweeps on Ray
are tested in tests/e2e/test_distributed.py and tests/e2e/test_ray_sweep.py."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from helpers import feature_map_for

from fuxictr_mmctr.data.loader import MMCTRDataLoader, Share, batch_share, epoch_order
from fuxictr_mmctr.errors import ConfigError, MissingDependencyError
from fuxictr_mmctr import process_group
from fuxictr_mmctr.train import distributed


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 1, 2, 5, 1024, 1025])
def test_shares_put_together_are_the_batch(world, size):
    rows = np.random.default_rng(size).permutation(5000)[:size]
    shares = [batch_share(rows, rank, world) for rank in range(world)]
    np.testing.assert_array_equal(np.concatenate(shares), rows)
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)           # the first ranks take the extra rows
    if size < world:
        assert sizes.count(0) == world - size


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ConfigError, match="rank 2 outside a world of 2"):
        batch_share(np.arange(4), 2, 2)


def _loader(handmade, split="train", **kwargs):
    name = {"train": "train", "valid": "valid"}[split]
    return MMCTRDataLoader(feature_map_for(), handmade / f"{name}.parquet", split=split,
                           item_info=handmade / "item_info.parquet", max_len=6, **kwargs)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("world", [2, 3])
def test_train_shares_of_every_rank_make_the_single_process_batches(handmade, world, shuffle):
    # 40 rows in batches of 13: 13, 13, 13 and a last batch of 1 row, smaller than the world.
    # Shuffled: every rank draws the order one process draws, whatever the global RNGs hold.
    np.random.seed(1)
    whole = list(_loader(handmade, batch_size=13, shuffle=shuffle))
    per_rank = []
    for r in range(world):
        np.random.seed(100 + r)
        per_rank.append(list(_loader(handmade, batch_size=13, rank=r, world_size=world,
                                     shuffle=shuffle)))
    assert [len(b) for b in per_rank] == [4] * world  # the same number of steps on every rank
    for step, batch in enumerate(whole):
        shares = [ranks[step] for ranks in per_rank]
        assert all(isinstance(s, Share) for s in shares)
        assert {s.global_rows for s in shares} == {len(batch[2])}
        counted = [s for s in shares if s.rows > 0]
        assert sum(s.rows for s in shares) == len(batch[2])
        for key, value in batch[0].items():                      # batch_dict
            torch.testing.assert_close(torch.cat([s[0][key] for s in counted]), value)
        for key, value in batch[1].items():                      # item_dict
            torch.testing.assert_close(torch.cat([s[1][key] for s in counted]), value)
        torch.testing.assert_close(torch.cat([s[2] for s in counted]), batch[2])  # mask
    last = [ranks[-1] for ranks in per_rank]
    assert [s.rows for s in last] == [1] + [0] * (world - 1)
    for stand_in in last[1:]:                 # one row, the batch's first, with no weight
        assert stand_in[2].shape[0] == 1
        torch.testing.assert_close(stand_in[0]["user_id"], last[0][0]["user_id"])


def test_the_shuffled_order_is_a_function_of_seed_and_epoch(handmade):
    def users(loader):
        return torch.cat([b[0]["user_id"] for b in loader])

    loader = _loader(handmade, batch_size=7, shuffle=True, seed=5)
    epochs = [users(loader) for _ in range(3)]
    assert loader.epoch == 3
    assert not torch.equal(epochs[0], epochs[1])                 # a new order each epoch
    other = _loader(handmade, batch_size=7, shuffle=True, seed=5)
    other.set_epoch(2)                                           # a run resumed at epoch 2
    np.random.seed(12345)                                        # the global RNG plays no part
    torch.testing.assert_close(users(other), epochs[2])
    assert not torch.equal(users(_loader(handmade, batch_size=7, shuffle=True, seed=6)),
                           epochs[0])
    rows = epoch_order(40, seed=5, epoch=1)
    assert sorted(rows.tolist()) == list(range(40))


def test_a_share_unpacks_like_the_official_batch(handmade):
    share = next(iter(_loader(handmade, batch_size=8, rank=1, world_size=2)))
    batch_dict, item_dict, mask = share
    assert (share.rows, share.global_rows) == (4, 8) and mask.shape[0] == 4


@pytest.mark.parametrize("world", [2, 3])
def test_valid_blocks_of_every_rank_are_the_split_in_file_order(handmade, world):
    whole = torch.cat([b[0]["user_id"] for b in _loader(handmade, "valid", batch_size=7)])
    blocks = []
    for rank in range(world):
        loader = _loader(handmade, "valid", batch_size=7, rank=rank, world_size=world)
        batches = list(loader)
        assert len(batches) == len(loader) and not any(isinstance(b, Share) for b in batches)
        blocks.append(torch.cat([b[0]["user_id"] for b in batches]))
    torch.testing.assert_close(torch.cat(blocks), whole)
    assert max(len(b) for b in blocks) - min(len(b) for b in blocks) <= 1


def test_more_ranks_than_valid_rows_leaves_some_blocks_empty(handmade):
    loaders = [_loader(handmade, "valid", batch_size=7, rank=r, world_size=30) for r in (0, 29)]
    assert [len(list(lo)) for lo in loaders] == [1, 0]


def test_without_torchrun_the_cluster_is_one_plain_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not process_group.launched_by_torchrun()
    with process_group.session(gpu=-1) as cluster:
        assert not cluster.active and cluster.is_main and cluster.world_size == 1
    assert distributed.attach(object(), cluster) is None          # nothing to wrap
    fm = object()
    assert distributed.share_feature_map(cluster, fm, {}) is fm


def test_a_broken_torchrun_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ConfigError, match="RANK"):
        with process_group.session(gpu=-1):
            pass


def test_a_ray_sweep_without_ray_installed_names_the_extra(monkeypatch, tmp_path):
    from fuxictr_mmctr.train import ray_sweep

    monkeypatch.setitem(sys.modules, "ray", None)   # import ray -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'fuxictr_mmctr\[ray\]'"):
        ray_sweep.tune_on_ray(tmp_path / "none.yaml", "local")
