"""Run by test_process_group_exit.py under ``torchrun --standalone --nproc_per_node 2`` (gloo):

    torchrun ... process_group_exit_worker.py OUT_DIR

Each rank opens the package's process group (:func:`fuxictr_mmctr.process_group.session`),
imports ``torch._dynamo`` while it exists (as importing transformers does in
``mmctr build-embeddings``), runs a collective and leaves; at interpreter exit it writes the
names of its live threads to ``OUT_DIR/threads.rank<R>.json`` (Linux: ``/proc/self/task``).
"""
from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path


def write_threads(out: str) -> None:
    tasks = Path("/proc/self/task")
    names = sorted((task / "comm").read_text().strip() for task in tasks.iterdir())
    Path(out, f"threads.rank{os.environ['RANK']}.json").write_text(json.dumps(names))


def main(out: str) -> None:
    atexit.register(write_threads, out)
    from fuxictr_mmctr.process_group import all_gather_objects, session

    with session(backend="gloo", final_barrier=False) as cluster:
        import torch._dynamo  # noqa: F401  imported while the group exists
        all_gather_objects(cluster.rank)


if __name__ == "__main__":
    main(sys.argv[1])
