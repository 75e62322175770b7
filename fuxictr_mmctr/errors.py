"""Errors raised at the edge of the package, each naming what is wrong and where."""
from __future__ import annotations

from typing import Optional


class DataValidationError(ValueError):
    """A data file violates the MicroLens schema.

    The message always names the file and, where it applies, the column and the
    first offending row, so a user can find the problem without a traceback from
    deep inside pandas or torch.

    Args:
        path: the file that failed validation.
        problem: what is wrong, in words.
        column: the column at fault, if any.
        row: the first offending row (0-based), if any.
    """

    def __init__(self, path, problem: str, column: Optional[str] = None, row: Optional[int] = None):
        self.path = str(path)
        self.problem = problem
        self.column = column
        self.row = row
        where = f"{self.path}"
        if column is not None:
            where += f", column '{column}'"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {problem}")


class ConfigError(ValueError):
    """An experiment or dataset config is missing a key or holds a bad value."""
