"""Every validation error at the edge, each triggered by a crafted bad file."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from helpers import ITEM_TYPES, make_item_info_columns, make_split_columns, write_table

from fuxictr_mmctr.errors import DataValidationError
from fuxictr_mmctr.data.schema import (narrowest_int_dtype, read_item_info, read_split,
                                  validate_data_dir)

LEVELS = {"likes_level": 11, "views_level": 11}


def _split(tmp_path, name="train.parquet", types=None, **changes):
    cols = make_split_columns(10, 12, 6, seed=5)
    for key, value in changes.items():
        if value is None:
            del cols[key]
        else:
            cols[key] = value
    return write_table(tmp_path / name, cols, types)


def _read(path, **kw):
    return read_split(path, n_items=12, extra_columns=list(LEVELS), vocab_sizes=LEVELS, **kw)


def _raises(fn, *, file, column=None, row=None, match=None):
    with pytest.raises(DataValidationError, match=match) as info:
        fn()
    err = info.value
    assert str(file) in str(err)
    assert err.column == column
    assert err.row == row
    return err


def test_valid_handmade_dir_passes(handmade):
    counts = validate_data_dir(handmade)
    assert counts == {"item_info": 12, "train": 40, "valid": 20, "test": 20}


def test_narrowest_dtype():
    assert narrowest_int_dtype(10) == np.int8
    assert narrowest_int_dtype(11_739) == np.int16
    assert narrowest_int_dtype(91_717) == np.int32
    assert narrowest_int_dtype(2**40) == np.int64


def test_split_ids_are_stored_narrow(handmade):
    data = _read(handmade / "train.parquet")
    assert data.columns["item_seq"].dtype == np.int8
    assert data.columns["likes_level"].dtype == np.int8
    assert data.columns["label"].dtype == np.int8


def test_missing_file(tmp_path):
    _raises(lambda: _read(tmp_path / "nope.parquet"), file=tmp_path / "nope.parquet",
            match="not found")


def test_not_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("user_id,item_id\n1,2\n")
    _raises(lambda: _read(path), file=path, match="not a readable parquet")


def test_missing_column(tmp_path):
    path = _split(tmp_path, likes_level=None)
    _raises(lambda: _read(path), file=path, column="likes_level", match="missing column")


def test_missing_label_in_train_but_fine_in_test(tmp_path):
    path = _split(tmp_path, label=None)
    _raises(lambda: _read(path), file=path, column="label", match="missing column 'label'")
    data = _read(path, require_label=False)
    assert "label" not in data.columns


def test_float_item_id_is_a_dtype_error(tmp_path):
    path = _split(tmp_path, item_id=np.arange(1, 11, dtype=np.float64))
    _raises(lambda: _read(path), file=path, column="item_id", match="expected int")


def test_item_seq_not_a_list(tmp_path):
    path = _split(tmp_path, item_seq=np.arange(10))
    _raises(lambda: _read(path), file=path, column="item_seq", match="list<int>")


def test_ragged_item_seq(tmp_path):
    cols = make_split_columns(10, 12, 6, seed=5)["item_seq"]
    cols[4] = cols[4][:5]
    path = _split(tmp_path, item_seq=cols)
    _raises(lambda: _read(path), file=path, column="item_seq", row=4, match="list length 5")


def test_right_padded_item_seq(tmp_path):
    seqs = make_split_columns(10, 12, 6, seed=5)["item_seq"]
    seqs[7] = [3, 4, 0, 0, 0, 0]
    path = _split(tmp_path, item_seq=seqs)
    _raises(lambda: _read(path), file=path, column="item_seq", row=7, match="left-padded")


def test_history_item_absent_from_item_info(tmp_path):
    seqs = make_split_columns(10, 12, 6, seed=5)["item_seq"]
    seqs[2] = [0, 0, 0, 0, 5, 13]
    path = _split(tmp_path, item_seq=seqs)
    _raises(lambda: _read(path), file=path, column="item_seq", row=2, match="value 13 outside")


def test_target_item_zero_or_too_large(tmp_path):
    ids = np.full(10, 3)
    ids[6] = 0
    path = _split(tmp_path, item_id=ids)
    _raises(lambda: _read(path), file=path, column="item_id", row=6, match="value 0 outside")


def test_level_outside_vocab(tmp_path):
    levels = np.full(10, 4)
    levels[9] = 11
    path = _split(tmp_path, views_level=levels)
    _raises(lambda: _read(path), file=path, column="views_level", row=9, match="vocabulary")


def test_null_target(tmp_path):
    path = _split(tmp_path, item_id=[1, 2, None, 4, 5, 6, 7, 8, 9, 10],
                  types={"item_id": pa.int64()})
    _raises(lambda: _read(path), file=path, column="item_id", row=2, match="null")


def test_label_not_binary(tmp_path):
    labels = np.zeros(10, dtype=np.int64)
    labels[3] = 2
    path = _split(tmp_path, label=labels)
    _raises(lambda: _read(path), file=path, column="label", row=3, match="not 0 or 1")


def test_float_labels_of_zero_and_one_are_accepted(tmp_path):
    path = _split(tmp_path, label=np.array([0.0, 1.0] * 5))
    assert _read(path).columns["label"].tolist() == [0, 1] * 5


def test_empty_split(tmp_path):
    cols = {k: v[:0] for k, v in make_split_columns(10, 12, 6, seed=5).items()}
    path = write_table(tmp_path / "train.parquet", cols,
                       {"item_seq": pa.list_(pa.int64()), "user_id": pa.int64(),
                        "item_id": pa.int64(), "likes_level": pa.int64(),
                        "views_level": pa.int64(), "label": pa.int64()})
    _raises(lambda: _read(path), file=path, match="no rows")


# ------------------------------------------------------------------ item_info

def _item_info(tmp_path, types=ITEM_TYPES, **changes):
    cols = make_item_info_columns(12)
    cols.update(changes)
    return write_table(tmp_path / "item_info.parquet", cols, types)


def test_item_info_row_index_must_equal_item_id(tmp_path):
    ids = np.arange(13)
    ids[[5, 6]] = [6, 5]
    path = _item_info(tmp_path, item_id=ids)
    _raises(lambda: read_item_info(path), file=path, column="item_id", row=5,
            match="row index == item_id")


def test_item_info_without_padding_row(tmp_path):
    path = _item_info(tmp_path, item_id=np.arange(1, 14))
    _raises(lambda: read_item_info(path), file=path, column="item_id", row=0)


def test_item_info_padding_row_tags_nonzero(tmp_path):
    tags = make_item_info_columns(12)["item_tags"]
    tags[0] = [0, 0, 0, 0, 3]
    path = _item_info(tmp_path, item_tags=tags)
    _raises(lambda: read_item_info(path), file=path, column="item_tags", row=0,
            match="padding row 0")


def test_item_info_nan_embedding(tmp_path):
    emb = make_item_info_columns(12)["item_emb_d128"]
    emb[8] = [float("nan")] * len(emb[8])
    path = _item_info(tmp_path, item_emb_d128=emb)
    _raises(lambda: read_item_info(path), file=path, column="item_emb_d128", row=8,
            match="NaN or inf")


def test_item_info_embedding_of_wrong_dimension(tmp_path):
    path = _item_info(tmp_path)
    _raises(lambda: read_item_info(path, list_widths={"item_emb_d128": 64}), file=path,
            column="item_emb_d128", row=0, match="expected 64")


def test_item_info_missing_requested_column(tmp_path):
    path = _item_info(tmp_path)
    _raises(lambda: read_item_info(path, columns=["item_emb_d128_v3"]), file=path,
            column="item_emb_d128_v3", match="missing column")


def test_validate_cli_reports_error_without_traceback(handmade, capsys, caplog):
    from fuxictr_mmctr.cli import main

    assert main(["validate", str(handmade)]) == 0
    (handmade / "valid.parquet").write_bytes(b"garbage")
    assert main(["validate", str(handmade)]) == 2
    assert "valid.parquet: not a readable parquet file" in caplog.text


def test_a_corrupt_data_page_names_the_file(tmp_path):
    """A damaged page fails inside pyarrow's batch loop (OSError: Corrupt snappy compressed
    data): it must still be one DataValidationError naming the file, not a traceback."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fuxictr_mmctr.data.schema import open_parquet
    from fuxictr_mmctr.errors import DataValidationError

    path = tmp_path / "train.parquet"
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"item_id": rng.integers(1, 100, 50_000)}), path,
                   compression="snappy", use_dictionary=False)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 256] = bytes(256)
    path.write_bytes(bytes(data))
    with pytest.raises(DataValidationError, match="train.parquet: corrupt data"):
        list(open_parquet(path).iter_batches(batch_size=1000))
    with pytest.raises(DataValidationError, match="train.parquet: corrupt data"):
        open_parquet(path).read()
