"""Face alignment onto FER2013: similarity transforms between mean shapes (paper section 2.1.2).

The paper re-aligns every dataset to FER2013 so that one CNN can be trained on FER2013 + TFD and
applied to AFEW faces:

1. five facial keypoints for every image/frame (MTCNN, :mod:`emotiw_utils.detect`, or a dataset's
   own keypoint sidecar, :mod:`emotiw_utils.datasets.keypoints`);
2. per dataset, the **mean shape**: the average of those keypoints (:func:`mean_shape`);
3. ONE **similarity transform per dataset** mapping its mean shape onto FER2013's
   (:func:`fit_similarity`, :func:`fit_dataset_alignment`). Eyes, nose and mouth end up roughly in the
   same place while each image keeps its own slight deviation from the mean; where a dataset's
   crops are tighter than FER2013's (TFD, AFEW faces) the uncovered border is filled with noise
   (:func:`warp_with_noisy_border`);
4. AFEW Val and Test are mapped with the transform inferred on AFEW Train.

Then histogram equalisation (:func:`equalise`). The normalisation by the mean and standard deviation
image of FER+TFD happens inside the CNN (:mod:`emotiw_utils.cnn`).

AFEW faces: the organisers' aligned face crops are not part of AFEW's videos, so we cut the
equivalent ourselves: a square, tight box around each frame's keypoints (:func:`face_boxes`), so an
"AFEW face" is a ``FACE_SIZE`` crop of that box. Its keypoints in crop coordinates give AFEW's mean
shape and the one AFEW transform. :func:`align_frames` composes box crop and dataset transform into a
single warp per frame (one resampling), fills the parts outside the box with noise, and applies a
frame policy for frames without a face (:func:`fill_missing_keypoints`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotiw_utils.constants import FER_SIZE as FACE_SIZE
from emotiw_utils.constants import KEYPOINTS

__all__ = [
    "AFEW_BOX_SCALE",
    "FACE_SIZE",
    "DatasetAlignment",
    "align_frames",
    "align_static",
    "apply_similarity",
    "box_transforms",
    "compose",
    "crop_keypoints",
    "equalise",
    "face_boxes",
    "fill_missing_keypoints",
    "fit_dataset_alignment",
    "fit_similarity",
    "invert_similarity",
    "mean_shape",
    "similarity_parameters",
    "warp_with_noisy_border",
]

N_KEYPOINTS = len(KEYPOINTS)
#: Side of the square AFEW-face box in units of the eye-centre to mouth-centre distance. FER2013's
#: crops are about 3.4 such distances wide; 2.6 gives a tight crop (brows to chin), as the organisers'
#: AFEW faces were, so the noisy border of section 2.1.2 is needed around them.
AFEW_BOX_SCALE = 2.6
#: The box centre sits this fraction of the eye-mouth distance above the keypoints' centroid
#: (the centroid is pulled down by three of five points being nose and mouth).
_BOX_CENTRE_UP = 0.15


# ---------------------------------------------------------------------------------------------- geometry

def _as_points(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2:
        raise ValueError(f"{name} must be (K, 2) points with K >= 2, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return p


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation; no reflection)
    mapping points ``src`` onto ``dst`` (Umeyama 1991).

    Args:
        src, dst: ``(K, 2)`` corresponding (x, y) points, K >= 2, finite.

    Returns:
        ``(2, 3)`` float64 matrix ``M`` with ``dst ~ M @ [x, y, 1]`` (OpenCV's ``warpAffine`` layout).
    """
    src, dst = _as_points(src, "src"), _as_points(dst, "dst")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have the same shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(s)
    if var_s <= 0:
        raise ValueError("src points are all identical: no similarity transform is defined")
    cov = d.T @ s / len(s)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = float((sig * sign).sum() / var_s)
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def apply_similarity(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(..., 2)`` points with a ``(2, 3)`` matrix (NaN points stay NaN)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``(2, 3)`` matrix of ``outer`` applied after ``inner`` (both ``(2, 3)`` or stacked ``(N, 2, 3)``)."""
    outer, inner = np.asarray(outer, dtype=np.float64), np.asarray(inner, dtype=np.float64)
    lin = outer[..., :, :2] @ inner[..., :, :2]
    trans = (outer[..., :, :2] @ inner[..., :, 2:3])[..., 0] + outer[..., :, 2]
    return np.concatenate([lin, trans[..., None]], axis=-1)


def invert_similarity(m: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine matrix."""
    m = np.asarray(m, dtype=np.float64)
    a_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([a_inv, (-a_inv @ m[:, 2])[:, None]], axis=1)


def similarity_parameters(m: np.ndarray) -> dict[str, float]:
    """Scale, rotation (degrees) and translation of a similarity matrix, for tables."""
    m = np.asarray(m, dtype=np.float64)
    return {"scale": float(np.hypot(m[0, 0], m[1, 0])), "rotation_deg": float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))),
            "tx": float(m[0, 2]), "ty": float(m[1, 2])}


def mean_shape(keypoints: np.ndarray) -> np.ndarray:
    """Mean shape of a dataset (paper 2.1.2 step 2): the average of its keypoints.

    Args:
        keypoints: ``(N, 5, 2)``; rows with any NaN (no face found) are ignored.

    Returns:
        ``(5, 2)`` float64. ValueError when no row is complete.
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[1:] != (N_KEYPOINTS, 2):
        raise ValueError(f"keypoints must be (N, {N_KEYPOINTS}, 2), got shape {kps.shape}")
    ok = np.isfinite(kps).all(axis=(1, 2))
    if not ok.any():
        raise ValueError("no image has all five keypoints: cannot compute a mean shape")
    return kps[ok].mean(0)


@dataclass(frozen=True)
class DatasetAlignment:
    """The one similarity transform of a dataset onto FER2013 (paper 2.1.2 step 3).

    Attributes:
        name: dataset name (``FER2013``, ``TFD``, ``AFEW``).
        mean_shape: ``(5, 2)`` the dataset's mean keypoints in its own crop coordinates.
        target_shape: ``(5, 2)`` FER2013's mean shape (the common reference).
        transform: ``(2, 3)`` similarity mapping ``mean_shape`` onto ``target_shape``.
        source_size: side of the dataset's square crops, in pixels (48 for FER2013/TFD; ``FACE_SIZE``
            for the AFEW face boxes).
        n_images: how many images/frames the mean shape averages.
    """

    name: str
    mean_shape: np.ndarray
    target_shape: np.ndarray
    transform: np.ndarray
    source_size: int
    n_images: int

    @property
    def residual(self) -> float:
        """RMS distance (pixels) between the mapped mean shape and FER2013's."""
        mapped = apply_similarity(self.transform, self.mean_shape)
        return float(np.sqrt(((mapped - self.target_shape) ** 2).sum(1).mean()))

    def to_dict(self) -> dict:
        return {"name": self.name, "mean_shape": self.mean_shape.tolist(), "target_shape": self.target_shape.tolist(),
                "transform": self.transform.tolist(), "source_size": self.source_size, "n_images": self.n_images,
                "residual_px": self.residual, **similarity_parameters(self.transform)}

    @classmethod
    def from_dict(cls, d: dict) -> DatasetAlignment:
        return cls(d["name"], np.asarray(d["mean_shape"]), np.asarray(d["target_shape"]), np.asarray(d["transform"]),
                   int(d["source_size"]), int(d["n_images"]))


def fit_dataset_alignment(name: str, keypoints: np.ndarray, target_shape: np.ndarray,
                          source_size: int = FACE_SIZE) -> DatasetAlignment:
    """Mean shape of ``keypoints`` (``(N, 5, 2)`` in crop coordinates) and its similarity onto
    ``target_shape`` (FER2013's mean shape; FER2013 itself gets the identity up to rounding)."""
    ms = mean_shape(keypoints)
    n = int(np.isfinite(np.asarray(keypoints)).all(axis=(1, 2)).sum())
    return DatasetAlignment(name, ms, np.asarray(target_shape, dtype=np.float64),
                            fit_similarity(ms, target_shape), int(source_size), n)


# ------------------------------------------------------------------------------------------ image ops

def equalise(images: np.ndarray) -> np.ndarray:
    """Histogram equalisation of each ``(..., H, W)`` uint8 image (paper 2.1.2: "to account for varying
    lighting conditions (in particular, across datasets) we applied histogram equalization")."""
    import cv2

    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"equalise expects uint8 images, got {images.dtype}")
    flat = images.reshape(-1, *images.shape[-2:])
    out = np.empty_like(flat)
    for i, im in enumerate(flat):
        out[i] = cv2.equalizeHist(np.ascontiguousarray(im))
    return out.reshape(images.shape)


def warp_with_noisy_border(image: np.ndarray, m: np.ndarray, rng: np.random.Generator,
                           valid: tuple[float, float, float, float] | None = None,
                           size: int = FACE_SIZE) -> tuple[np.ndarray, float]:
    """Warp a grayscale image into a ``size x size`` face with ``m`` (source -> face coordinates) and
    fill every face pixel whose source lies outside ``valid`` with noise (paper 2.1.2: "we added a
    noisy border for TFD and AFEW-faces as faces were cropped more tightly compared to FER2013").

    Args:
        image: ``(H, W)`` uint8.
        m: ``(2, 3)`` source -> face matrix.
        rng: noise source.
        valid: source rectangle ``(x0, y0, x1, y1)`` that counts as the crop (default: the whole image).
        size: output side.

    Returns:
        (``(size, size)`` uint8 face, fraction of it that is noise). The noise is Gaussian with the
        mean and standard deviation of the covered pixels, so equalisation treats it like the face's
        own surroundings.
    """
    import cv2

    h, w = image.shape
    x0, y0, x1, y1 = valid if valid is not None else (0.0, 0.0, float(w), float(h))
    face = cv2.warpAffine(image, np.asarray(m, dtype=np.float64), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    # Source coordinates of every output pixel centre.
    inv = invert_similarity(m)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    sy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    outside = (sx < x0 - 0.5) | (sx > x1 - 0.5) | (sy < y0 - 0.5) | (sy > y1 - 0.5)
    frac = float(outside.mean())
    if frac == 0.0:
        return face, 0.0
    inside = face[~outside]
    mu, sd = (float(inside.mean()), float(inside.std()) + 1.0) if inside.size else (128.0, 40.0)
    noise = rng.normal(mu, sd, size=int(outside.sum()))
    face = face.copy()
    face[outside] = np.clip(np.rint(noise), 0, 255).astype(np.uint8)
    return face, frac


def align_static(images: np.ndarray, alignment: DatasetAlignment, seed: int = 0) -> np.ndarray:
    """Align a static face dataset (FER2013, TFD) onto FER2013 and equalise its histograms.

    Every image gets the dataset's one transform (so each keeps its own slight misalignment, as in
    the paper); pixels coming from outside the source image are noise. FER2013 itself (identity
    transform) is only equalised.

    Args:
        images: ``(N, S, S)`` uint8 crops, ``S == alignment.source_size``.
        seed: noise seed (image ``i`` uses ``default_rng([seed, i])``).

    Returns:
        ``(N, FACE_SIZE, FACE_SIZE)`` uint8.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, S, S) uint8, got {images.shape} {images.dtype}")
    if images.shape[1] != alignment.source_size or images.shape[2] != alignment.source_size:
        raise ValueError(f"{alignment.name} alignment expects {alignment.source_size}px images, "
                         f"got {images.shape[1]}x{images.shape[2]}")
    if np.allclose(alignment.transform, [[1, 0, 0], [0, 1, 0]], atol=1e-6) and alignment.source_size == FACE_SIZE:
        return equalise(images)
    out = np.empty((len(images), FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i], _ = warp_with_noisy_border(im, alignment.transform, np.random.default_rng([seed, i]))
    return equalise(out)


# ------------------------------------------------------------------------------------------ AFEW frames

def fill_missing_keypoints(keypoints: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The frame policy for frames without a face: reuse the keypoints of the nearest frame (in
    time; the earlier one on ties) that has a face.

    Args:
        keypoints: ``(T, 5, 2)`` with NaN rows for frames without a face.

    Returns:
        (``(T, 5, 2)`` filled keypoints, or None when no frame of the clip has a face;
        ``(T,)`` bool: which frames had their own face).
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[1:] != (N_KEYPOINTS, 2):
        raise ValueError(f"keypoints must be (T, {N_KEYPOINTS}, 2), got shape {kps.shape}")
    has = np.isfinite(kps).all(axis=(1, 2))
    if not has.any():
        return None, has
    idx = np.flatnonzero(has)
    t = np.arange(len(kps))
    nearest = idx[np.abs(t[:, None] - idx[None, :]).argmin(axis=1)]
    return kps[nearest], has


def face_boxes(keypoints: np.ndarray, scale: float = AFEW_BOX_SCALE) -> np.ndarray:
    """Square face boxes around keypoints: ``(T, 5, 2)`` -> ``(T, 3)`` centre x, centre y, side.

    The side is ``scale`` times the distance from the eyes' centre to the mouth's centre (robust to
    head roll and to profile views, unlike the eye distance).
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    eyes = kps[:, 0:2].mean(1)
    mouth = kps[:, 3:5].mean(1)
    span = np.linalg.norm(mouth - eyes, axis=1)
    centre = kps.mean(1)
    up = (eyes - mouth) / np.maximum(span, 1e-6)[:, None]
    centre = centre + _BOX_CENTRE_UP * span[:, None] * up
    return np.column_stack([centre, scale * span])


def box_transforms(boxes: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """``(T, 2, 3)`` frame -> crop matrices of ``(T, 3)`` boxes (axis-aligned scale + shift)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    s = size / boxes[:, 2]
    m = np.zeros((len(boxes), 2, 3))
    m[:, 0, 0] = m[:, 1, 1] = s
    m[:, 0, 2] = size / 2 - s * boxes[:, 0]
    m[:, 1, 2] = size / 2 - s * boxes[:, 1]
    return m


def crop_keypoints(keypoints: np.ndarray, scale: float = AFEW_BOX_SCALE) -> np.ndarray:
    """Keypoints of frames in the coordinates of their own face box crop (``(T, 5, 2)``, NaN kept):
    the input of AFEW's mean shape."""
    kps = np.asarray(keypoints, dtype=np.float64)
    out = np.full_like(kps, np.nan)
    ok = np.isfinite(kps).all(axis=(1, 2))
    if ok.any():
        m = box_transforms(face_boxes(kps[ok], scale))
        out[ok] = np.einsum("tij,tkj->tki", m[:, :, :2], kps[ok]) + m[:, None, :, 2]
    return out


def align_frames(frames: np.ndarray, keypoints: np.ndarray | None, alignment: DatasetAlignment,
                 fallback_keypoints: np.ndarray, rng: np.random.Generator,
                 box_scale: float = AFEW_BOX_SCALE) -> tuple[np.ndarray, np.ndarray, bool]:
    """Aligned, equalised faces of one clip.

    Each frame: face box from its keypoints -> (box crop composed with AFEW's dataset transform) ->
    one warp to ``FACE_SIZE`` -> noise outside the box -> histogram equalisation.

    Frame policy: a frame without a face reuses the nearest detected frame's keypoints
    (:func:`fill_missing_keypoints`). A clip without any face (or without keypoints at all) is kept:
    its frames use ``fallback_keypoints`` (the Train mean keypoints scaled to this frame size) and
    the clip is flagged.

    Args:
        frames: ``(T, H, W)`` uint8 gray frames.
        keypoints: ``(T, 5, 2)`` pixel keypoints with NaN rows, or None.
        alignment: AFEW's :class:`DatasetAlignment` (fitted on Train).
        fallback_keypoints: ``(5, 2)`` keypoints in this frame's pixel coordinates.
        rng: noise source.

    Returns:
        (faces ``(T, FACE_SIZE, FACE_SIZE)`` uint8, ``(T,)`` bool frames with their own face,
        bool "no face in the whole clip").
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W) uint8 gray, got {frames.shape} {frames.dtype}")
    t = len(frames)
    if keypoints is not None and len(keypoints) != t:
        # A sidecar of another length: use what overlaps, the rest counts as missing.
        k = np.full((t, N_KEYPOINTS, 2), np.nan)
        n = min(t, len(keypoints))
        k[:n] = np.asarray(keypoints)[:n]
        keypoints = k
    filled, has = (fill_missing_keypoints(keypoints) if keypoints is not None
                   else (None, np.zeros(t, dtype=bool)))
    no_face = filled is None
    if no_face:
        filled = np.broadcast_to(np.asarray(fallback_keypoints, dtype=np.float64), (t, N_KEYPOINTS, 2))
    boxes = face_boxes(filled, box_scale)
    crop = box_transforms(boxes, alignment.source_size)
    full = compose(alignment.transform, crop)
    out = np.empty((t, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    for i in range(t):
        cx, cy, side = boxes[i]
        h, w = frames.shape[1:]
        valid = (max(cx - side / 2, 0.0), max(cy - side / 2, 0.0), min(cx + side / 2, w), min(cy + side / 2, h))
        out[i], _ = warp_with_noisy_border(frames[i], full[i], rng, valid=valid)
    return equalise(out), has, no_face
