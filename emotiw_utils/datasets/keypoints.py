"""Keypoint sidecars: five facial keypoints per frame (AFEW clips) or per image (FER2013, TFD).

A sidecar is a CSV next to the data file it describes, ``<stem>.keypoints.csv``, with the header
``frame,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y,mouth_left_x,mouth_left_y,
mouth_right_x,mouth_right_y`` and one row per frame of a clip, or per image of a static dataset in
file order (the column is still called ``frame``). Coordinates are pixels in that frame or image,
``constants.KEYPOINTS`` order (``left_eye`` is the eye with the smaller x), empty fields (NaN)
where no face was found. The synthetic generator writes sidecars for every dataset (its renderer
knows the keypoints exactly); real data has none and gets its keypoints from the MTCNN detector
(:mod:`emotiw_utils.detect`, paper section 2.1.2 step 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotiw_utils.atomic import atomic_path
from emotiw_utils.constants import KEYPOINTS, KEYPOINTS_SUFFIX
from emotiw_utils.errors import DataFormatError

__all__ = ["KEYPOINT_COLUMNS", "keypoints_path_for", "read_keypoints", "read_static_keypoints", "write_keypoints"]

#: Columns of a keypoint sidecar, in order.
KEYPOINT_COLUMNS: tuple[str, ...] = ("frame",) + tuple(f"{k}_{c}" for k in KEYPOINTS for c in ("x", "y"))


def keypoints_path_for(data_path: str | Path) -> Path:
    """The keypoint sidecar of a clip or static-image file: ``<dir>/<stem>.keypoints.csv``
    (``Train/Happy/c1.avi`` -> ``Train/Happy/c1.keypoints.csv``, ``fer2013.csv`` -> ``fer2013.keypoints.csv``;
    for ``fer2013.csv.gz`` the sidecar is ``fer2013.keypoints.csv``)."""
    p = Path(data_path)
    if p.suffix == ".gz":
        p = p.with_suffix("")
    return p.parent / (p.stem + KEYPOINTS_SUFFIX)



def _format_coord(v: float) -> str:
    if np.isnan(v):
        return ""
    return np.format_float_positional(np.float32(v), unique=True, trim="-")


def write_keypoints(path: str | Path, keypoints: np.ndarray) -> Path:
    """Write a keypoint sidecar, atomically.

    Args:
        path: the ``<clip>.keypoints.csv`` file (see :func:`keypoints_path_for`).
        keypoints: ``(T, 5, 2)`` float pixel (x, y) per frame and keypoint (``constants.KEYPOINTS``
            order); NaN (written as an empty field) where no face was found.

    Values are written with the shortest text that reads back to the same float32.
    """
    path = Path(path)
    kps = np.asarray(keypoints)
    if kps.ndim != 3 or kps.shape[1:] != (len(KEYPOINTS), 2):
        raise ValueError(f"keypoints must have shape (T, {len(KEYPOINTS)}, 2), got {kps.shape}")
    if not np.issubdtype(kps.dtype, np.number) or np.isinf(kps).any():
        raise ValueError("keypoints must be finite numbers or NaN")
    flat = kps.astype(np.float32).reshape(len(kps), -1)
    lines = [",".join(KEYPOINT_COLUMNS)]
    lines.extend(f"{t}," + ",".join(_format_coord(v) for v in row) for t, row in enumerate(flat.tolist()))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_keypoints(path: str | Path) -> np.ndarray:
    """Read a keypoint sidecar as ``(T, 5, 2)`` float32, NaN for empty fields.

    Raises:
        DataFormatError: missing/unreadable file, header not exactly :data:`KEYPOINT_COLUMNS`, a row
            with the wrong number of fields, frame numbers not 0, 1, 2, ..., or a value that is not
            a number. Row numbers are 1-based data rows (after the header).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(path, f"cannot read file: {e}") from e
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataFormatError(path, "file is empty (expected a header line)")
    header = [h.strip() for h in lines[0].split(",")]
    if tuple(header) != KEYPOINT_COLUMNS:
        raise DataFormatError(
            path, f"wrong columns: expected {','.join(KEYPOINT_COLUMNS)} (found: {','.join(header)})"
        )
    rows: list[list[float]] = []
    for row, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != len(KEYPOINT_COLUMNS):
            raise DataFormatError(
                path, f"row {row}: expected {len(KEYPOINT_COLUMNS)} fields, found {len(fields)}"
            )
        frame = fields[0].strip()
        if frame != str(len(rows)):
            raise DataFormatError(
                path, f"row {row}: frame {frame!r}, expected {len(rows)} (one row per frame from 0)"
            )
        values = []
        for name, f in zip(KEYPOINT_COLUMNS[1:], fields[1:]):
            f = f.strip()
            if not f or f.lower() == "nan":
                values.append(np.nan)
                continue
            try:
                v = float(f)
            except ValueError:
                raise DataFormatError(path, f"row {row}: {name} value {f!r} is not a number") from None
            if not np.isfinite(v):
                raise DataFormatError(path, f"row {row}: {name} value {f!r} is not finite")
            values.append(v)
        rows.append(values)
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(KEYPOINTS), 2)


def read_static_keypoints(data_path: str | Path, n_images: int) -> np.ndarray | None:
    """Keypoints of a static-image dataset file (``fer2013.csv``, ``TFD_48x48.mat``) from its sidecar.

    Returns ``(n_images, 5, 2)`` float32 (NaN rows where no face was found), or None when the file
    has no sidecar (then the detector has to find them).

    Raises:
        DataFormatError: an unreadable sidecar, or one whose row count is not ``n_images``.
    """
    side = keypoints_path_for(data_path)
    if not side.is_file():
        return None
    kps = read_keypoints(side)
    if len(kps) != n_images:
        raise DataFormatError(side, f"{len(kps)} keypoint rows for {n_images} images in {Path(data_path).name}")
    return kps
