"""Toronto Face Database reader and writer (``TFD_48x48.mat``).

The MATLAB file (v5/v7, as read by :func:`scipy.io.loadmat`) holds:

* ``images``  ``(N, 48, 48)`` uint8 grayscale faces;
* ``labs_ex`` ``(N, 1)`` expression: -1 unlabelled, else 1..7 = anger, disgust, fear, happy, sad,
  surprise, neutral (FER2013 order, shifted by one);
* ``labs_id`` ``(N, 1)`` identity id (-1 unknown);
* ``folds``   ``(N, 5)`` one column per fold: 0 unused, 1 train, 2 valid, 3 test.

In memory labels are 0-based like everywhere else in the project (``constants.EMOTIONS``), -1 kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotiw_utils.constants import NUM_CLASSES, TFD_FILENAME, TFD_SIZE, UNKNOWN_LABEL
from emotiw_utils.atomic import atomic_path
from emotiw_utils.errors import DataFormatError

__all__ = ["TFD_FOLD_PARTS", "TfdData", "load_tfd", "write_tfd_mat"]

#: Number of folds in the ``folds`` matrix.
TFD_NUM_FOLDS: int = 5
#: Values of the ``folds`` matrix.
TFD_FOLD_PARTS: dict[str, int] = {"unused": 0, "train": 1, "valid": 2, "test": 3}
_KEYS = ("images", "labs_ex", "labs_id", "folds")


@dataclass
class TfdData:
    """TFD faces with expression labels, identities and fold assignments.

    Attributes:
        images: ``(N, 48, 48)`` uint8 grayscale faces.
        labels: ``(N,)`` int64 class id 0..6 (FER2013 order) or -1 (``constants.UNKNOWN_LABEL``)
            for unlabelled faces.
        identities: ``(N,)`` int64 identity id, -1 unknown.
        folds: ``(N, 5)`` int64, per fold 0 unused, 1 train, 2 valid, 3 test.
        source: the file the data was read from.
    """

    images: np.ndarray
    labels: np.ndarray
    identities: np.ndarray
    folds: np.ndarray
    source: Path

    def __post_init__(self) -> None:
        n = len(self.images)
        if (
            self.images.shape[1:] != (TFD_SIZE, TFD_SIZE)
            or self.labels.shape != (n,)
            or self.identities.shape != (n,)
            or self.folds.shape != (n, TFD_NUM_FOLDS)
        ):
            raise ValueError(
                f"inconsistent TfdData: images {self.images.shape}, labels {self.labels.shape}, "
                f"identities {self.identities.shape}, folds {self.folds.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def _take(self, mask: np.ndarray) -> TfdData:
        return TfdData(
            self.images[mask], self.labels[mask], self.identities[mask], self.folds[mask], self.source
        )

    def labelled(self) -> TfdData:
        """Only the rows with an expression label (``labels >= 0``), in file order."""
        return self._take(self.labels >= 0)

    def fold(self, fold: int, part: str) -> TfdData:
        """Rows in ``part`` (``'train'``, ``'valid'``, ``'test'`` or ``'unused'``) of fold 0..4."""
        if not 0 <= fold < TFD_NUM_FOLDS:
            raise ValueError(f"fold must be 0..{TFD_NUM_FOLDS - 1}, got {fold}")
        if part not in TFD_FOLD_PARTS:
            raise ValueError(f"part must be one of {', '.join(TFD_FOLD_PARTS)}, got {part!r}")
        return self._take(self.folds[:, fold] == TFD_FOLD_PARTS[part])


def _column(mat: dict, key: str, n: int, width: int, path: Path) -> np.ndarray:
    """``mat[key]`` as int64 ``(n, width)``; ``(n,)`` and ``(1, n)`` vectors are accepted for width 1."""
    a = np.asarray(mat[key])
    if width == 1 and a.ndim == 2 and a.shape[0] == 1 and a.shape[1] != 1:
        a = a.T
    if width == 1 and a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] != width:
        raise DataFormatError(path, f"{key!r} has shape {a.shape}, expected (N, {width})")
    if a.shape[0] != n:
        raise DataFormatError(path, f"inconsistent lengths: 'images' has {n} rows but {key!r} has {a.shape[0]}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataFormatError(path, f"{key!r} must be numeric, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a) & (a == np.round(a))):
        raise DataFormatError(path, f"{key!r} must hold integers")
    return a.astype(np.int64)


def load_tfd(path: str | Path) -> TfdData:
    """Read ``TFD_48x48.mat`` (``path`` is the file or a folder holding it).

    Returns:
        :class:`TfdData` with labels converted to 0..6 (-1 kept for unlabelled faces).

    Raises:
        DataFormatError: missing or unreadable file (including MATLAB v7.3/HDF5 files), a missing
            key (the message lists the keys found), images not ``(N, 48, 48)`` 0..255, an
            expression label outside {-1, 1..7}, fold values outside 0..3, or arrays whose
            lengths disagree.
    """
    import scipy.io  # imported lazily: keeps `import emotiw_utils.datasets` light

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / TFD_FILENAME
    if not p.is_file():
        raise DataFormatError(p, "file not found")
    try:
        mat = scipy.io.loadmat(p)
    except NotImplementedError as e:  # scipy raises this for v7.3 files
        raise DataFormatError(p, f"unsupported MATLAB file ({e}); re-save it with save(..., '-v7')") from e
    except Exception as e:  # scipy raises many types (ValueError, TypeError, OSError...) on bad files
        raise DataFormatError(p, f"cannot read MATLAB file: {type(e).__name__}: {e}") from e
    found = sorted(k for k in mat if not k.startswith("__"))
    for key in _KEYS:
        if key not in mat:
            raise DataFormatError(p, f"missing key {key!r} (found: {', '.join(found) or 'none'})")

    images = np.asarray(mat["images"])
    if images.ndim != 3 or images.shape[1:] != (TFD_SIZE, TFD_SIZE):
        raise DataFormatError(p, f"'images' has shape {images.shape}, expected (N, {TFD_SIZE}, {TFD_SIZE})")
    if images.dtype != np.uint8:
        if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
            raise DataFormatError(p, f"'images' must be numeric, got dtype {images.dtype}")
        if images.size and not (
            np.all(images == np.round(images)) and images.min() >= 0 and images.max() <= 255
        ):
            raise DataFormatError(p, f"'images' (dtype {images.dtype}) must hold integers 0..255")
        images = images.astype(np.uint8)
    n = len(images)

    labs_ex = _column(mat, "labs_ex", n, 1, p)[:, 0]
    bad = np.flatnonzero((labs_ex != -1) & ((labs_ex < 1) | (labs_ex > NUM_CLASSES)))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            p, f"'labs_ex' row {i + 1}: label {int(labs_ex[i])} not in {{-1, 1..{NUM_CLASSES}}} "
            f"({bad.size} bad rows)"
        )
    identities = _column(mat, "labs_id", n, 1, p)[:, 0]
    folds = _column(mat, "folds", n, TFD_NUM_FOLDS, p)
    bad_fold = np.argwhere((folds < 0) | (folds > 3))
    if bad_fold.size:
        i, j = (int(x) for x in bad_fold[0])
        raise DataFormatError(p, f"'folds' row {i + 1}, fold {j + 1}: value {int(folds[i, j])} not in 0..3")

    labels = np.where(labs_ex == -1, UNKNOWN_LABEL, labs_ex - 1).astype(np.int64)
    return TfdData(images=images, labels=labels, identities=identities, folds=folds, source=p)


def write_tfd_mat(
    path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    identities: np.ndarray,
    folds: np.ndarray,
) -> Path:
    """Write a ``TFD_48x48.mat``-structured file (compressed MATLAB v5), atomically.

    Args:
        path: destination file (a folder is not accepted; name it ``TFD_48x48.mat`` to match
            the real layout).
        images: ``(N, 48, 48)`` uint8 (or integers 0..255).
        labels: ``(N,)`` 0-based class ids 0..6, or -1 for unlabelled (stored 1-based in
            ``labs_ex``, -1 kept).
        identities: ``(N,)`` integer identity ids (-1 unknown).
        folds: ``(N, 5)`` integers 0..3.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: inputs of the wrong shape, dtype or range (nothing is written).
    """
    import scipy.io

    path = Path(path)
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (TFD_SIZE, TFD_SIZE):
        raise ValueError(f"images must have shape (N, {TFD_SIZE}, {TFD_SIZE}), got {images.shape}")
    if images.dtype != np.uint8:
        in_range = images.size == 0 or (images.min() >= 0 and images.max() <= 255)
        if not np.issubdtype(images.dtype, np.integer) or not in_range:
            raise ValueError(f"images must be uint8 (or integers 0..255), got {images.dtype}")
        images = images.astype(np.uint8)
    n = len(images)
    arrays = {"labels": np.asarray(labels), "identities": np.asarray(identities), "folds": np.asarray(folds)}
    shapes = {"labels": (n,), "identities": (n,), "folds": (n, TFD_NUM_FOLDS)}
    for name, a in arrays.items():
        if a.shape != shapes[name] or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be integers of shape {shapes[name]}, got {a.dtype} {a.shape}")
    labs = arrays["labels"]
    if np.any((labs != UNKNOWN_LABEL) & ((labs < 0) | (labs >= NUM_CLASSES))):
        raise ValueError(f"labels must be 0..{NUM_CLASSES - 1} or {UNKNOWN_LABEL}")
    if np.any((arrays["folds"] < 0) | (arrays["folds"] > 3)):
        raise ValueError("folds must hold 0 (unused), 1 (train), 2 (valid) or 3 (test)")
    mdict = {
        "images": images,
        "labs_ex": np.where(labs == UNKNOWN_LABEL, -1, labs + 1).astype(np.int32).reshape(n, 1),
        "labs_id": arrays["identities"].astype(np.int32).reshape(n, 1),
        "folds": arrays["folds"].astype(np.int32),
    }
    with atomic_path(path, suffix=".mat") as tmp:
        scipy.io.savemat(tmp, mdict, do_compression=True, oned_as="column")
    return path
