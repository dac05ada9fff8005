"""Reading and writing the project's torch checkpoints (``cnn.pt``, ``irnn.pt``, ``fusion_{regime}.pt``): one
format, one set of errors.

A checkpoint is a dict of plain python values and tensors with a ``format`` marker and a ``version``,
written atomically and read with ``torch.load(weights_only=True)`` (no pickled code runs on load).
:func:`write_model` / :func:`read_model` hold what every model checkpoint has: the constructor arguments
(``config``), the weights (``state_dict``), the learning curves (``history``), an ``extra`` dict and any
further fields of that model (an input scaler).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emotiw_utils.atomic import atomic_path
from emotiw_utils.device import torch_device
from emotiw_utils.errors import DataFormatError

__all__ = ["ModelCheckpoint", "read_model", "read_payload", "write_model", "write_payload"]


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


def write_model(path: str | Path, fmt: str, version: int, model: nn.Module, config: Mapping[str, Any], *,
                history: Any = None, extra: Mapping[str, Any] | None = None, **fields: Any) -> Path:
    """Write a model checkpoint: ``{"format", "version", "config", "state_dict", "history", "extra", **fields}``.

    ``config``: the plain-python constructor arguments that rebuild ``model``; the state dict is stored as
    contiguous CPU tensors; ``history``: an object with ``to_dict()`` (learning curves) or None; ``extra``
    and ``fields`` (e.g. ``scaler={...}``) must hold plain python values and tensors only, so that
    :func:`read_model` can read them with ``torch.load(weights_only=True)``.
    """
    return write_payload(path, fmt, version, {
        "config": dict(config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        **fields,
        "history": history.to_dict() if history is not None else None,
        "extra": dict(extra) if extra is not None else None,
    })


@dataclass
class ModelCheckpoint:
    """What :func:`read_model` read: the rebuilt model (eval mode), its history (or None), the ``extra``
    dict (or None) and the further ``fields``, each parsed by its reader (None where stored as None)."""

    model: nn.Module
    history: Any
    extra: dict[str, Any] | None
    fields: dict[str, Any]


def read_model(path: str | Path, fmt: str, version: int, what: str, build: Callable[[dict[str, Any]], nn.Module], *,
               device: Any = "cpu", history: Callable[[Mapping[str, Any]], Any] | None = None,
               fields: Mapping[str, Callable[[Any], Any]] | None = None) -> ModelCheckpoint:
    """Read a :func:`write_model` file: ``build(config)`` rebuilds the model, its weights are loaded and it is
    moved to ``device`` (:func:`~emotiw_utils.device.torch_device`) in eval mode; ``history`` parses the
    stored learning curves (e.g. ``SeqHistory.from_dict``); ``fields`` maps each further field to its reader.

    FileNotFoundError if ``path`` does not exist; :class:`~emotiw_utils.errors.DataFormatError` naming
    ``what`` if it is not such a checkpoint or cannot be rebuilt (``corrupt {what}: ...``).
    """
    path = Path(path)
    payload = read_payload(path, fmt, version, what)
    try:
        model = build(payload["config"])
        model.load_state_dict(payload["state_dict"])
        parsed = {k: (read(payload[k]) if payload[k] is not None else None) for k, read in (fields or {}).items()}
        curves = history(payload["history"]) if history is not None and payload.get("history") is not None else None
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise DataFormatError(path, f"corrupt {what}: {type(e).__name__}: {e}") from e
    model.to(torch_device(device)).eval()
    return ModelCheckpoint(model=model, history=curves, extra=payload.get("extra"), fields=parsed)
