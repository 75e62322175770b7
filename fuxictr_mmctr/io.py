"""Small file-system helpers shared by every writer in the package: atomic writes, JSON
reports, file digests."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(target: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file lives in the same directory, so the final ``os.replace`` is
    atomic: readers see either the old file or the complete new one, never a
    half-written file. On any exception the temporary file is removed and the
    existing ``target`` is left untouched.

    Example::

        with atomic_path("out/prediction.csv") as tmp:
            df.to_csv(tmp, index=False)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            exc.filename = str(target)  # a failed write names the file it was for
        raise


# (resolved path, size, mtime_ns, inode) -> sha256: each file is hashed once per process until
# it changes (a file replaced in place gets a new inode or mtime, so it is hashed again).
_DIGESTS: dict = {}


def file_digest(path: PathLike) -> str:
    """The sha256 of a file's *contents* (hex), hashed once per process per file version.

    A 47 MB item table takes about 0.1 s; later calls for the same unchanged file are free.
    Keyed on the contents, not on the path and mtime: a file rewritten in place with other
    bytes (``build-embeddings --overwrite-input``) gets another digest, a copy the same one.

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    cached = _DIGESTS.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        cached = _DIGESTS[key] = digest.hexdigest()
    return cached


def write_json(path: PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically (NumPy scalars and arrays, paths allowed)."""
    path = Path(path)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default))
    return path


def _json_default(obj):
    import numpy as np  # the one helper here that knows NumPy

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def report_path_for(out_path: PathLike) -> Path:
    """The report beside an output: ``item_info_task1.parquet`` ->
    ``item_info_task1.report.json``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".report.json")
