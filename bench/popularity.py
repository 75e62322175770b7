"""Time of the popularity baseline on full-size splits.

    python bench/popularity.py [--data-dir DIR] [--repeat 3]

Without ``--data-dir`` a synthetic MicroLens-shaped folder is written to a temporary folder:
train 3,600,000 rows, valid 10,000, test 379,142, each with a 100-long left-padded
``item_seq`` (so the reader must skip a heavy list column), 91,717 items, 25% positives.
Prints the time of ``fit_item_ctr`` on train (first run cold, then warm) and of the whole
``run_popularity`` (fit, valid AUC, test submission written).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_ITEMS = 91_717
SEQ_LEN = 100
ROWS = {"train": 3_600_000, "valid": 10_000, "test": 379_142}


def _chunk(rng, n: int, label: bool) -> pa.Table:
    lengths = np.minimum(rng.geometric(0.15, size=n) + 2, SEQ_LEN)   # median about 6
    seq = np.zeros((n, SEQ_LEN), np.int64)
    filled = np.arange(SEQ_LEN)[None, :] >= (SEQ_LEN - lengths)[:, None]
    seq[filled] = rng.integers(1, N_ITEMS + 1, size=int(filled.sum()))
    columns = {
        "user_id": pa.array(rng.integers(1, 1_000_000, n)),
        "item_seq": pa.FixedSizeListArray.from_arrays(pa.array(seq.reshape(-1)), SEQ_LEN)
        .cast(pa.list_(pa.int64())),
        "likes_level": pa.array(rng.integers(1, 11, n)),
        "views_level": pa.array(rng.integers(1, 11, n)),
        "item_id": pa.array(rng.integers(1, N_ITEMS + 1, n)),
    }
    if label:
        columns["label"] = pa.array((rng.random(n) < 0.25).astype(np.int64))
    return pa.table(columns)


def write_splits(folder: Path, seed: int = 0) -> Path:
    """train/valid/test.parquet of :data:`ROWS` rows, written 200,000 rows at a time."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in ROWS.items():
        writer, done = None, 0
        while done < n:
            table = _chunk(rng, min(200_000, n - done), label=split != "test")
            writer = writer or pq.ParquetWriter(folder / f"{split}.parquet", table.schema)
            writer.write_table(table)
            done += table.num_rows
        writer.close()
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path,
                        help="folder with train/valid/test.parquet (default: synthetic)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from fuxictr_mmctr.submit.popularity import fit_item_ctr, run_popularity

    tmp = Path(tempfile.mkdtemp(prefix="popularity_bench_"))
    try:
        data = args.data_dir or write_splits(tmp / "data")
        fits = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            stats = fit_item_ctr(data / "train.parquet")
            fits.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = run_popularity(data, tmp / "popularity.zip")
        total = time.perf_counter() - start
        print(f"data: {data} ({stats.n_rows:,} train rows, {result.n_test_rows:,} test rows)")
        print(f"fit_item_ctr on train: first {fits[0]:.2f} s, best {min(fits):.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in fits)})")
        print(f"run_popularity (fit, valid AUC {result.valid_auc:.4f}, submission): {total:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
