"""Fitted scikit-learn models on disk, in a format that runs no code when loaded.

The SVMs, PCA projections and scalers of stages 04-06 are written with skops (``.skops``, a zip of JSON and
numpy arrays, never pickle) and read back only when every type in the file is trusted: scikit-learn's own
types (skops' default list) and the few classes of this package named in :data:`TRUSTED`. A file holding any
other type is refused with the type's name. Torch models use :mod:`emotiw_utils.checkpoints` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .atomic import atomic_path
from .errors import DataFormatError

__all__ = ["TRUSTED", "load_model", "save_model"]

#: This package's classes that may appear in a model file (besides scikit-learn's and numpy's types).
TRUSTED: tuple[str, ...] = (
    "emotiw_utils.svm.SoftmaxSvm",
    "emotiw_utils.capped_pca.CappedPCA",
)


def save_model(path: str | Path, model: Any) -> Path:
    """Write a fitted scikit-learn object (or one of :data:`TRUSTED`) to ``path`` atomically."""
    import skops.io as sio

    path = Path(path)
    with atomic_path(path) as tmp:
        sio.dump(model, tmp)
    return path


def load_model(path: str | Path, what: str = "model") -> Any:
    """Read a :func:`save_model` file. FileNotFoundError when missing; DataFormatError when the file is not
    a skops file or holds a type that is not trusted (the type is named; nothing of it is run)."""
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as e:  # noqa: BLE001 (zip/JSON errors: not a skops file)
        raise DataFormatError(path, f"not a {what} file (skops could not read it: {type(e).__name__}: {e})") from e
    refused = sorted(set(untrusted) - set(TRUSTED))
    if refused:
        raise DataFormatError(path, f"{what} holds types that are not trusted: {', '.join(refused)}")
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(path, f"cannot load {what} ({type(e).__name__}: {e})") from e
