"""Atomic file replacement used by every writer in the package (dataset files and stage artifacts).

A writer produces its output under a temporary name in the destination folder and only renames it
onto the final name (``os.replace``, atomic on POSIX and Windows) once the file is complete, so a
crash or an exception never leaves a truncated dataset file behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path


_PART = ".part"
#: The name :func:`atomic_path` gives a temporary file: ``.<name>.<pid>-<8 hex digits>.part<suffix>``.
_TEMPORARY_NAME = re.compile(r"^\..+\.\d+-[0-9a-f]{8}" + re.escape(_PART))


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
    tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{_PART}{tmp_suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def is_temporary(path: str | Path) -> bool:
    """True for a file named as :func:`atomic_path` names its temporary files."""
    return bool(_TEMPORARY_NAME.match(Path(path).name))


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` under ``folder`` (recursively) and return them.

    A process killed while writing (SIGKILL, the OOM killer, a power cut) cannot delete its temporary file;
    call this only when nothing writes under ``folder`` any more, e.g. before a stage runs again in its folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.rglob(".*") if p.is_file() and is_temporary(p)]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale
