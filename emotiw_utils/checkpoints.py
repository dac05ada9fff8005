"""Reading and writing the project's torch checkpoints (``cnn.pt``, ``irnn.pt``): one format, one set of errors.

A checkpoint is a dict of plain python values and tensors with a ``format`` marker and a ``version``,
written atomically and read with ``torch.load(weights_only=True)`` (no pickled code runs on load).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from emotiw_utils.atomic import atomic_path
from emotiw_utils.errors import DataFormatError

__all__ = ["read_payload", "write_payload"]


def write_payload(path: str | Path, fmt: str, version: int, payload: Mapping[str, Any]) -> Path:
    """Write ``{"format": fmt, "version": version, **payload}`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": fmt, "version": version, **payload}, tmp)
    return path


def read_payload(path: str | Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Read a :func:`write_payload` file whose marker is ``fmt`` and version ``version``.

    FileNotFoundError if ``path`` does not exist; :class:`~emotiw_utils.errors.DataFormatError` (naming
    ``what``, e.g. "CNN checkpoint") if it is not such a file or has another version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors: not a torch file, or not a weights-only one
        raise DataFormatError(path, f"not a {what} (torch.load failed: {type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise DataFormatError(path, f"not a {what} (no format marker {fmt!r})")
    if payload.get("version") != version:
        raise DataFormatError(path, f"unsupported {what} version {payload.get('version')!r}")
    return payload
