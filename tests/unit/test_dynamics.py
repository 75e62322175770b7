"""The dynamic sample variant and the oracle: determinism, the static variant unchanged, truth
files aligned with the splits, and a label that depends on the order of the history."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fuxictr_mmctr.data import dynamics
from fuxictr_mmctr.data.dynamics import Dynamics
from fuxictr_mmctr.data.sample import DATASET_DIR, MANIFEST_NAME, PRESETS, make_sample
from fuxictr_mmctr.errors import ConfigError

SEED = 7  # conftest's tiny_sample (static)
SPLITS = ("train", "valid", "test")
FILES = [f"{DATASET_DIR}/{name}.parquet" for name in ("train", "valid", "test", "item_info")] + [
    "item_feature.parquet", "item_emb.parquet", "item_seq.parquet", "_truth/test_labels.parquet"]

# Content digests of the static tiny sample (seed 7) as generated before the dynamic variant
# existed: the static variant must stay the same data, value for value.
STATIC_TINY_SEED7 = {
    f"{DATASET_DIR}/train.parquet": "033805aaf9afad7a",
    f"{DATASET_DIR}/valid.parquet": "d3b38fc50462062f",
    f"{DATASET_DIR}/test.parquet": "05fa767d6664ee73",
    f"{DATASET_DIR}/item_info.parquet": "8747f00a9a51833d",
    "item_feature.parquet": "89b7ba202c0c0e08",
    "item_emb.parquet": "ae6b776b28f34464",
    "item_seq.parquet": "cadeabd0cd900d6a",
    "_truth/test_labels.parquet": "57250b4c178dcb6b",
    "truth/train.parquet": "6a1f1ea056f7db0a",
    "truth/valid.parquet": "bdbd65c7aeb2b86b",
    "truth/test.parquet": "cf65f2dfdba3c33c",
}
# The same for the dynamic tiny sample (seed 7), as generated before sample.py was split into
# the world, the variants, the writers and the store: the split must not move a value.
DYNAMIC_TINY_SEED7 = {
    f"{DATASET_DIR}/train.parquet": "0aabbe544e3addc2",
    f"{DATASET_DIR}/valid.parquet": "6ba4ee7319cbfbda",
    f"{DATASET_DIR}/test.parquet": "0bf3515eb45f68c2",
    f"{DATASET_DIR}/item_info.parquet": "6f84c79a556d359a",
    "item_feature.parquet": "4191674b384c8521",
    "item_emb.parquet": "7d5e59b574a5deee",
    "item_seq.parquet": "a6041edfd3ee6b83",
    "_truth/test_labels.parquet": "c7bd1c5051669dc2",
    "truth/train.parquet": "ad53418ca535301f",
    "truth/valid.parquet": "689b9b6b4ba51368",
    "truth/test.parquet": "431275154588e01f",
}


def content_digest(path: Path) -> str:
    """A digest of a parquet file's column names and values (independent of the writer's
    version, unlike the file bytes)."""
    table = pq.read_table(path)
    h = hashlib.sha256()
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        h.update(name.encode())
        if str(col.type).startswith("list"):
            h.update(np.diff(col.offsets.to_numpy()).astype(np.int64).tobytes())
            col = col.flatten()
        if str(col.type) == "string":
            h.update("\x00".join(col.to_pylist()).encode())
        else:
            h.update(np.ascontiguousarray(col.to_numpy(zero_copy_only=False)).tobytes())
    return h.hexdigest()[:16]


def matrix(table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    return col.flatten().to_numpy().reshape(len(col), -1)


@pytest.fixture(scope="module")
def dynamic_sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamic")
    make_sample(out, preset="tiny", seed=SEED, variant="dynamic", images=False)
    return out


# --------------------------------------------------------------------------- the variants

def test_static_variant_is_unchanged(tiny_sample):
    for rel, digest in STATIC_TINY_SEED7.items():
        assert content_digest(tiny_sample / rel) == digest, rel
    manifest = json.loads((tiny_sample / MANIFEST_NAME).read_text())
    assert manifest["variant"] == "static" and manifest["dynamics"] == {}


def test_dynamic_variant_is_unchanged(dynamic_sample):
    for rel, digest in DYNAMIC_TINY_SEED7.items():
        assert content_digest(dynamic_sample / rel) == digest, rel


def test_dynamic_same_seed_same_bytes_other_seed_other_data(dynamic_sample, tmp_path):
    again = make_sample(tmp_path / "again", preset="tiny", seed=SEED, variant="dynamic",
                        images=False)
    for rel in FILES + [f"truth/{s}.parquet" for s in SPLITS]:
        assert (again.out_dir / rel).read_bytes() == (dynamic_sample / rel).read_bytes(), rel
    other = make_sample(tmp_path / "other", preset="tiny", seed=SEED + 1, variant="dynamic",
                        images=False, item_vectors=False)
    rel = f"{DATASET_DIR}/train.parquet"
    assert not pq.read_table(other.out_dir / rel).equals(pq.read_table(dynamic_sample / rel))


def test_dynamic_sample_has_the_real_schema_and_differs_from_static(dynamic_sample, tiny_sample):
    from fuxictr_mmctr.data.schema import validate_data_dir

    tiny = PRESETS["tiny"]
    assert validate_data_dir(dynamic_sample / DATASET_DIR, seq_len=100) == {
        "item_info": tiny.n_items, "train": tiny.n_train, "valid": tiny.n_valid,
        "test": tiny.n_test}
    for split in SPLITS:
        dyn = pq.read_table(dynamic_sample / DATASET_DIR / f"{split}.parquet").schema
        assert dyn.equals(pq.read_table(tiny_sample / DATASET_DIR / f"{split}.parquet").schema)
    train = pq.read_table(dynamic_sample / DATASET_DIR / "train.parquet")
    seq = matrix(train, "item_seq")
    users = train.column("user_id").to_numpy()
    # Each row has its own history (the static sample repeats one per user).
    first = np.flatnonzero(users == users[0])
    assert len(first) > 1 and not all((seq[i] == seq[first[0]]).all() for i in first[1:])
    # Repeat consumption: histories re-watch items.
    dup = [len(r[r > 0]) - len(np.unique(r[r > 0])) for r in seq[:500]]
    assert np.mean(dup) > 1.0
    manifest = json.loads((dynamic_sample / MANIFEST_NAME).read_text())
    assert manifest["variant"] == "dynamic"
    assert manifest["dynamics"] == Dynamics().to_dict()


def test_truth_files_align_with_the_splits(dynamic_sample, tiny_sample):
    from sklearn.metrics import log_loss, roc_auc_score

    for root in (dynamic_sample, tiny_sample):
        manifest = json.loads((root / MANIFEST_NAME).read_text())
        hidden = pq.read_table(root / "_truth" / "test_labels.parquet").column("label").to_numpy()
        for split in SPLITS:
            data = pq.read_table(root / DATASET_DIR / f"{split}.parquet")
            truth = pq.read_table(root / "truth" / f"{split}.parquet")
            assert truth.num_rows == data.num_rows == PRESETS["tiny"].__dict__[f"n_{split}"]
            assert (truth.column("item_id").to_numpy() == data.column("item_id").to_numpy()).all()
            label = truth.column("label").to_numpy()
            expected = data.column("label").to_numpy() if split != "test" else hidden
            assert (label == expected).all(), split
            prob = truth.column("click_prob").to_numpy()
            assert ((prob > 0) & (prob < 1)).all()
            oracle = manifest["oracle"][split]
            assert oracle["AUC"] == pytest.approx(roc_auc_score(label, prob), abs=1e-6)
            assert oracle["logloss"] == pytest.approx(log_loss(label, prob), abs=1e-5)
            assert 0.75 < oracle["AUC"] < 0.97 and 0.18 < oracle["positive_rate"] < 0.32


# --------------------------------------------------------------------------- the order matters

def _shuffle_within_rows(history: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each row's real items in a random order, padding kept on the left."""
    rng = np.random.default_rng(seed)
    keys = np.where(history > 0, rng.random(history.shape), -1.0)
    return np.take_along_axis(history, np.argsort(keys, axis=1), axis=1)


def _oracle_rows(dyn: Dynamics, n: int = 6000):
    dw = dynamics.build(PRESETS["tiny"], SEED, dyn)
    rows = dynamics.draw_rows(dw.world, dyn, dw.users, np.random.default_rng(0), n)

    def logit(history):
        return dynamics.true_logit(dw.world, dyn, dw.users, dw.labels, rows["users"], history,
                                   rows["intent"], rows["items"], rows["likes"])

    z = logit(rows["history"])
    label = (np.random.default_rng(1).random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return rows, logit, z, label


def test_shuffling_the_history_lowers_the_oracle():
    from sklearn.metrics import roc_auc_score

    rows, logit, z, label = _oracle_rows(Dynamics())
    shuffled = logit(_shuffle_within_rows(rows["history"]))
    assert roc_auc_score(label, z) > roc_auc_score(label, shuffled) + 0.005


def test_without_recency_and_repeats_the_order_does_not_matter():
    rows, logit, z, _ = _oracle_rows(Dynamics(recency=0.0, repeat=0.0), n=2000)
    np.testing.assert_allclose(logit(_shuffle_within_rows(rows["history"])), z, atol=1e-9)


def _history_features(root: Path, split: str, order_aware: bool, shuffle: bool = False):
    """Features a model can compute from the files: similarity (item_emb_d128) of the target
    to the history's mean and max, a re-watch flag; order-aware adds the similarity to the
    last 1 / 3 / 8 items and the recency of a re-watch."""
    emb = matrix(pq.read_table(root / DATASET_DIR / "item_info.parquet"), "item_emb_d128")
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)
    table = pq.read_table(root / DATASET_DIR / f"{split}.parquet")
    seq = matrix(table, "item_seq")
    if shuffle:
        seq = _shuffle_within_rows(seq)
    target = table.column("item_id").to_numpy()
    real = seq > 0
    n = np.maximum(real.sum(axis=1), 1)
    sim = np.einsum("nld,nd->nl", unit[seq], unit[target])  # padding rows of unit are 0
    seen = seq == target[:, None]
    feats = [sim.sum(axis=1) / n, np.where(real, sim, -2.0).max(axis=1), seen.any(axis=1)]
    if order_aware:
        feats += [sim[:, -k:].sum(axis=1) / np.minimum(k, n) for k in (1, 3, 8)]
        age = np.arange(seq.shape[1] - 1, -1, -1)
        feats.append(np.where(seen, 2.0 ** (-age / 10.0), 0.0).max(axis=1))
    return np.c_[tuple(feats)], table.column("label").to_numpy()


def _logistic_auc(root: Path, order_aware: bool, shuffle: bool = False) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x, y = _history_features(root, "train", order_aware, shuffle)
    xv, yv = _history_features(root, "valid", order_aware, shuffle)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    return roc_auc_score(yv, model.decision_function(xv))


def test_order_aware_features_beat_the_history_mean_on_dynamic_only(dynamic_sample, tiny_sample):
    """A logistic fit on order-aware history features beats one on order-free features on the
    dynamic variant; not on the static one, nor on the dynamic one with shuffled histories."""
    gain = _logistic_auc(dynamic_sample, True) - _logistic_auc(dynamic_sample, False)
    assert gain > 0.015
    shuffled = (_logistic_auc(dynamic_sample, True, shuffle=True)
                - _logistic_auc(dynamic_sample, False, shuffle=True))
    assert shuffled < 0.01
    static_gain = _logistic_auc(tiny_sample, True) - _logistic_auc(tiny_sample, False)
    assert static_gain < 0.01


# --------------------------------------------------------------------------- knobs and CLI

def test_knobs_switch_mechanisms_off():
    dyn = Dynamics(repeat=0.0, multi_interest=0.0, session=0.0)
    dw = dynamics.build(PRESETS["tiny"], SEED, dyn)
    rows = dynamics.draw_rows(dw.world, dyn, dw.users, np.random.default_rng(0), 1500)
    users = dw.users
    # one interest per user; no re-watch beyond chance; every history item in that interest's
    # cluster or a popularity draw
    assert (users.cumw[:, 0] == 1.0).all()
    hist = rows["history"]
    cluster = dw.world.item_cluster[hist]
    own = users.clusters[rows["users"], 0][:, None]
    share = ((cluster == own) & (hist > 0)).sum() / (hist > 0).sum()
    assert share > 0.85
    with pytest.raises(ConfigError, match="recency"):
        Dynamics(recency=-1.0)


def test_cli_variant_and_knobs(tmp_path, capsys):
    from fuxictr_mmctr.cli import main

    out = tmp_path / "dyn"
    assert main(["make-sample", "--out", str(out), "--preset", "tiny", "--seed", "3",
                 "--variant", "dynamic", "--recency", "0.5", "--no-images",
                 "--no-item-vectors"]) == 0
    printed = capsys.readouterr().out
    assert "dynamic variant" in printed and "oracle valid AUC" in printed
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["dynamics"]["recency"] == 0.5 and manifest["dynamics"]["repeat"] == 1.0
    # knobs belong to the dynamic variant; another variant in the same folder needs --force
    assert main(["make-sample", "--out", str(tmp_path / "s"), "--preset", "tiny",
                 "--recency", "0.5", "--no-images"]) == 2
    assert main(["make-sample", "--out", str(out), "--preset", "tiny", "--seed", "3",
                 "--no-images", "--no-item-vectors"]) == 2
    assert "variant='dynamic'" in capsys.readouterr().err


def test_the_dynamic_variant_runs_in_an_item_view():
    """Item views are an axis of their own: the dynamic variant's users take one audience
    each, its multimodal views see the content (and quality), not the audience."""
    from fuxictr_mmctr.data.sample import WORLDS

    view = WORLDS["partial"]
    dw = dynamics.build(PRESETS["tiny"], SEED, Dynamics(), view)
    world = dw.world
    assert world.item_latent.shape[1] == 2 * PRESETS["tiny"].latent_dim
    audience = dw.users.clusters % view.communities  # (U, 4) every interest's audience
    assert (audience == audience[:, :1]).mean() > 0.95
    latent = dw.view_latent()
    assert latent.shape == (PRESETS["tiny"].n_items, PRESETS["tiny"].latent_dim + 1)
    np.testing.assert_array_equal(latent[:, :-1], world.content[1:])
    rows = dw.draw(np.random.default_rng(0), 500)
    assert ((rows.prob > 0) & (rows.prob < 1)).all() and rows.history.shape == (500, 100)
