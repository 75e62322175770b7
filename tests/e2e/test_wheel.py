"""The wheel works without the source tree.

The wheel is built from the package source (``setup.cfg``, ``pyproject.toml``, ``README.md``,
``fuxictr_mmctr/``) and installed into a fresh virtual environment; every command then runs
from an empty folder. The environment gets its dependencies from the one running the tests (a
``.pth`` line naming its site-packages, where FuxiCTR, torch, ... are already installed), so
nothing is downloaded; ``.pth`` files of that folder are not processed, so the editable
install of the source tree stays out of sight, and the test checks that the package imported
is the wheel's.
"""
from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

from helpers import ROOT
from official_repo import make_official_repo

from fuxictr_mmctr.submit.submission import check_submission_zip


def run(*cmd, cwd, expect=0):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == expect, (cmd, result.stdout[-3000:], result.stderr[-3000:])
    return result


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "fuxictr_mmctr", source / "fuxictr_mmctr",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("fuxictr_mmctr-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                  cwd=tmp_path).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "zz_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "-q", wheel, cwd=tmp_path)
    return venv


def test_wheel_runs_without_the_source_tree(tmp_path):
    wheel = build_wheel(tmp_path)
    venv = fresh_venv(tmp_path, wheel)
    python, mmctr = venv / "bin" / "python", venv / "bin" / "mmctr"
    work = tmp_path / "work"
    work.mkdir()

    # the package imported is the wheel's, and its configs came with it
    where = run(python, "-c", "import fuxictr_mmctr.resources as r; print(r.__file__); "
                "print(r.packaged_config_dir())", cwd=work).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert not Path(where[0]).is_relative_to(ROOT)

    # the demo: sample, baseline, training, submission, from the package's own config
    demo = run(mmctr, "demo", "--preset", "tiny", cwd=work)
    auc = float(re.search(r"DIN_demo\s+validation AUC ([0-9.]+)", demo.stdout).group(1))
    baseline = float(re.search(r"popularity baseline\s+validation AUC ([0-9.]+)",
                               demo.stdout).group(1))
    assert 0.5 < auc < 1 and 0.5 < baseline < 1, demo.stdout
    test_file = work / "data" / "sample" / "MicroLens_1M_x1" / "test.parquet"
    assert check_submission_zip(work / "submission" / "DIN_demo.zip", test_file).n_rows == 1000
    log = (work / "checkpoints" / "MicroLens_sample" / "DIN_demo.log").read_text()
    assert "Versions: fuxictr_mmctr " in log and " fuxictr " in log and " pandas " in log
    assert "[versions] fuxictr_mmctr " in (work / "mmctr_config.csv").read_text()

    # a config folder to edit, then the run_expid/prediction entry points on it
    run(mmctr, "init-config", "config", cwd=work)
    assert (work / "config" / "mmctr_config" / "model_config" / "DIN.yaml").is_file()
    refused = run(mmctr, "init-config", "config", cwd=work, expect=2)
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    run(python, "-m", "fuxictr_mmctr", "predict", "--config", "config/mmctr_config",
        "--expid", "DIN_demo", "--out", "again.zip", cwd=work)
    assert check_submission_zip(work / "again.zip", test_file).n_rows == 1000

    # drop-in finds the package's configs without a source checkout
    repo = make_official_repo(tmp_path / "official")
    run(mmctr, "drop-in", repo, cwd=work)
    written = repo / "config" / "mmctr_config"
    assert (written / "dataset_config.yaml").is_file()
    assert {p.name for p in (written / "model_config").glob("*.yaml")} == \
        {p.name for p in (ROOT / "config" / "mmctr_config" / "model_config").glob("*.yaml")}
