"""The config folder that ships inside the package, and ``mmctr init-config`` to copy it out.

The YAML configs live in ``fuxictr_mmctr/configs/`` (package data: a wheel carries them, and
``config/`` at the root of the source tree links to the same folder)::

    configs/mmctr_config/dataset_config.yaml
    configs/mmctr_config/model_config/{Base,DIN,DCNv2,...}.yaml
    configs/tuners/<Model>_sample_tuner_config.yaml

A user who installed the wheel starts with::

    mmctr init-config config          # writes ./config/{mmctr_config,tuners}
    mmctr train --config config/mmctr_config --expid DIN_sample

The folder is built beside ``DIR`` and moved into place, so ``DIR`` never holds half a copy.
An existing non-empty ``DIR`` is refused unless ``--force``; with ``--force`` the shipped files
are rewritten and files of your own in ``DIR`` (extra expids, say) are kept.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Union

from .errors import ConfigError

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

CONFIG_NAME = "mmctr_config"
TUNERS = "tuners"
# What the shipped tuner configs name as their base config (relative to the working dir).
_TUNER_BASE = "./config/mmctr_config/"
# Where the shipped sample datasets read their files (relative to the working dir).
SAMPLE_ROOT = "./data/sample/"


def config_root() -> Path:
    """The package's ``configs`` folder (``mmctr_config/`` and ``tuners/``)."""
    return Path(__file__).resolve().parent / "configs"


def packaged_config_dir() -> Path:
    """The package's FuxiCTR config directory (``configs/mmctr_config``).

    Raises:
        ConfigError: the install carries no configs (a build that left out package data).
    """
    path = config_root() / CONFIG_NAME
    if not (path / "dataset_config.yaml").is_file():
        raise ConfigError(f"{path}/dataset_config.yaml not found: this install of "
                          "fuxictr_mmctr lacks its package data; reinstall it")
    return path


def default_config_dir() -> Path:
    """``./config/mmctr_config`` when the working directory has one (a source checkout, or a
    folder written by ``mmctr init-config config``), else the package's own."""
    local = Path("config") / CONFIG_NAME
    if (local / "dataset_config.yaml").is_file():
        return local
    return packaged_config_dir()


def point_at_sample(config_dir: PathLike, sample_root: PathLike) -> Path:
    """Make the sample datasets of the FuxiCTR config dir ``config_dir`` (those reading
    ``./data/sample/``) read the sample at ``sample_root`` instead; returns ``config_dir``.
    The real-data datasets are left alone."""
    path = Path(config_dir) / "dataset_config.yaml"
    text = path.read_text()
    path.write_text(text.replace(SAMPLE_ROOT, f"{str(sample_root).rstrip('/')}/"))
    return Path(config_dir)


def _shipped_files() -> List[Path]:
    root = config_root()
    packaged_config_dir()  # fail clearly when the package data is missing
    # the patterns of [options.package_data] in setup.cfg (a sweep's enumerated tuner folders
    # under tuners/ are outputs, not configs)
    patterns = (f"{CONFIG_NAME}/*.yaml", f"{CONFIG_NAME}/model_config/*.yaml", f"{TUNERS}/*.yaml")
    return sorted({p.relative_to(root) for pattern in patterns for p in root.glob(pattern)})


def write_config(dest: PathLike, force: bool = False,
                 sample_root: PathLike = None) -> List[Path]:
    """Copy the package's configs to ``dest`` (``dest/mmctr_config``, ``dest/tuners``).

    The tuner configs' ``base_config`` is pointed at ``dest/mmctr_config`` (as ``dest`` was
    given: a relative ``dest`` stays relative to the directory you run the tuner from).

    Args:
        dest: the folder to write.
        force: rewrite the shipped files in an existing non-empty ``dest``; other files there
            are kept. Default: False.
        sample_root: where the sample datasets read their files (:func:`point_at_sample`).
            Default: None (``./data/sample/``, relative to where you run).

    Returns:
        The files written, under ``dest``.

    Raises:
        ConfigError: ``dest`` exists and is not empty (without ``force``), or is not a folder.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise ConfigError(f"{dest} already exists and is not empty: pass --force to rewrite "
                          "the shipped config files in it (your other files stay), or choose "
                          "another folder")
    base = f"{str(dest).rstrip('/')}/{CONFIG_NAME}/"
    if not dest.is_absolute() and not base.startswith((".", "/")):
        base = f"./{base}"
    root = config_root()
    files = _shipped_files()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
    try:
        if dest.is_dir():
            shutil.copytree(dest, staging, dirs_exist_ok=True, symlinks=True)
        for rel in files:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            text = (root / rel).read_text()
            if rel.parts[0] == TUNERS:
                text = text.replace(f"base_config: {_TUNER_BASE}", f"base_config: {base}")
            target.write_text(text)
        if sample_root is not None:
            point_at_sample(staging / CONFIG_NAME, sample_root)
        os.chmod(staging, 0o755)  # mkdtemp makes 0700 folders
        if dest.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, trash / dest.name)
            os.replace(staging, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / rel for rel in files]
