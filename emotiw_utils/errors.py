"""Errors raised for bad input: each names the file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file or folder does not have the expected format.

    The message always starts with the offending path, so the user sees which file to fix.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # Rebuilt from (path, problem), so the error crosses process boundaries intact (a worker of a
        # multiprocessing pool raises it; the default pickling would call __init__ with the message only).
        return (type(self), (self.path, self.problem))
