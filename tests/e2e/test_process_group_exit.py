"""A torchrun rank ends its gloo threads with the process group, whatever it imported meanwhile.

``torch._dynamo`` imported while a group existed kept the group alive past
``destroy_process_group``; its threads were torn down at interpreter exit, where now and then
one was still joinable and the rank aborted (``terminate called without an active exception``,
SIGABRT) after its work was done: ``torchrun ... mmctr build-embeddings`` failed in CI that
way. :func:`fuxictr_mmctr.process_group.session` imports it before creating the group."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ROOT, torchrun

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                                 reason="lists threads through Linux's /proc")]


def test_no_gloo_thread_outlives_the_process_group(tmp_path):
    result = torchrun(ROOT / "tests" / "e2e" / "process_group_exit_worker.py", tmp_path,
                      cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        threads = json.loads((tmp_path / f"threads.rank{rank}.json").read_text())
        assert not [name for name in threads if "gloo" in name], (rank, threads)
