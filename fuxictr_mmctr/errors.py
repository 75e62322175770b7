"""The package's one error type and the one place that turns it into an exit code.

Every error a user can cause (a bad file, a bad config value, a bad option) is an
:class:`MMCTRError`: its message names the culprit (file, column, row, config key or option)
so it can be fixed without a traceback. :func:`run_guarded` is used by ``mmctr`` and by the
root scripts: a user error prints one line and exits 2; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import errno
import importlib
import logging
import sys
from typing import Callable, Optional

logger = logging.getLogger("fuxictr_mmctr")

EXIT_USER_ERROR = 2


class MMCTRError(Exception):
    """Base class of every user-facing error of the package.

    Args:
        problem: what is wrong, in words.
        path: the file at fault, if any.
        column: the column at fault, if any.
        row: the first offending row (0-based), if any.
        option: the config key or command-line option at fault, if any.

    The message reads ``<path>, column '<column>', row <row>, option <option>: <problem>``
    with the parts that apply.
    """

    def __init__(self, problem: str, *, path=None, column: Optional[str] = None,
                 row: Optional[int] = None, option: Optional[str] = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.column = column
        self.row = row
        self.option = option
        where = [self.path] if self.path is not None else []
        if column is not None:
            where.append(f"column '{column}'")
        if row is not None:
            where.append(f"row {row}")
        if option is not None:
            where.append(f"option {option}")
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


class DataValidationError(MMCTRError, ValueError):
    """A data file violates the MicroLens schema (names the file, column and first bad row).

    Args:
        path: the file that failed validation.
        problem: what is wrong, in words.
        column: the column at fault, if any.
        row: the first offending row (0-based), if any.
    """

    def __init__(self, path, problem: str, column: Optional[str] = None,
                 row: Optional[int] = None):
        super().__init__(problem, path=path, column=column, row=row)


class DataFileNotFound(DataValidationError):
    """A data file named by a config or an option does not exist.

    Args:
        path: the missing file.
    """

    def __init__(self, path):
        super().__init__(path, "file not found")


class ConfigError(MMCTRError, ValueError):
    """An experiment or dataset config is missing a key or holds a bad value, or a
    command-line option is wrong (``option`` names it)."""

    def __init__(self, problem: str, *, option: Optional[str] = None, path=None):
        super().__init__(problem, option=option, path=path)


class TrainingDiverged(MMCTRError, RuntimeError):
    """A model's predictions became NaN or infinite while it trained (names the expid, epoch
    and batch); a lower ``learning_rate`` or a ``max_gradient_norm`` usually cures it."""


class MissingDependencyError(MMCTRError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(f"{purpose} needs `{package}`, which is not installed: "
                         f"pip install 'fuxictr_mmctr[{extra}]'")


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from None


# OSErrors a user causes (and can fix): a missing or unreadable input, a read-only or full disk,
# a file past the file system's or the shell's (ulimit -f) size limit, a name too long.
USER_OS_ERRORS = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
                  errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR,
                  errno.EEXIST)


def user_os_error(exc: BaseException) -> Optional[OSError]:
    """The OSError a user can fix behind ``exc``: ``exc`` itself, or the one a library's
    ``RuntimeError`` was raised from or while handling (torch wraps a failed write of
    ``torch.save`` so), else None. Only that one wrapper: any other error raised while an
    OSError was handled is a bug, and keeps its traceback."""
    if isinstance(exc, RuntimeError):
        exc = exc.__cause__ or exc.__context__
    if isinstance(exc, OSError) and exc.errno in USER_OS_ERRORS:
        return exc
    return None


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system error, naming the file."""
    name = exc.filename if exc.filename is not None else "(a file)"
    return f"{name}: {exc.strerror or exc}"


def run_guarded(job: Callable[[], Optional[int]], prog: str = "mmctr") -> int:
    """Run ``job``; a user error becomes one line on stderr (and in the log) and exit code 2.

    ``MMCTRError`` and file-system errors a user can fix (missing file, permission, read-only
    or full disk, a file too large), also when a library wrapped them in its own error, are
    user errors; any other exception is a bug and propagates with its traceback.
    """
    try:
        return int(job() or 0)
    except MMCTRError as exc:
        message = str(exc)
    except Exception as exc:  # noqa: BLE001  re-raised unless a user-fixable OSError is behind it
        cause = user_os_error(exc)
        if cause is None:
            raise
        message = describe_os_error(cause)
    logger.error("%s", message)
    if not logs_to_stderr():
        print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def logs_to_stderr() -> bool:
    """True when a logged error already reaches stderr, so it is not printed twice: a handler
    of the package logger or the root writes to stderr, or there is no handler at all and
    Python's last-resort handler prints it."""
    handlers = logger.handlers + logging.getLogger().handlers
    if not handlers:
        return logging.lastResort is not None
    return any(getattr(h, "stream", None) is sys.stderr for h in handlers)
