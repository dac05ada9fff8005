"""Atomic file replacement used by every writer in the package (dataset files and stage artifacts).

A writer produces its output under a temporary name in the destination folder and only renames it
onto the final name (``os.replace``, atomic on POSIX and Windows) once the file is complete, so a
crash or an exception never leaves a truncated dataset file behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; on success move it onto ``path``, else delete it.

    The temporary file does not exist yet: the caller creates it (so it gets the usual permissions).
    ``suffix`` is the temporary file's suffix (default: ``path``'s own suffix), for libraries that
    pick the format from the file name. The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_suffix = path.suffix if suffix is None else suffix
    tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part{tmp_suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
