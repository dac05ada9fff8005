"""SynthFER and SynthTFD: single 48x48 grayscale expression images framed like each dataset.

FER2013 crops are loose and poorly aligned (pose jitter, occlusion, noisy labels); TFD crops
are tighter and better aligned. The two framings differ on purpose, so that the alignment
stage (paper 2.1.2) has two mean shapes to map onto FER2013's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import NUM_CLASSES
from .expressions import expression, one_hot
from .face import canvas_size_for, keypoints, place_face, pose_matrix, render_face, sample_identity, transform_points
from .imaging import degrade, draw_occluder, gray_background, lighting, to_gray, to_uint8


@dataclass(frozen=True)
class Framing:
    """How a dataset crops faces: scale (px per canonical unit), centre, jitter, degradations."""

    size: int
    scale: float
    centre: tuple[float, float]
    rot_sd: float
    scale_jitter: float
    trans_sd: float
    intensity: tuple[float, float]
    p_mixed: float
    p_occluded: float
    p_label_noise: float
    blur: tuple[float, float]
    noise: tuple[float, float]


#: FER2013-like: loose crop, poor alignment, occlusions, some label noise.
FER_FRAMING = Framing(size=48, scale=24.0, centre=(24.0, 25.0), rot_sd=8.0, scale_jitter=0.09, trans_sd=1.8,
                      intensity=(0.25, 1.0), p_mixed=0.2, p_occluded=0.12, p_label_noise=0.06,
                      blur=(0.0, 1.1), noise=(0.01, 0.06))
#: TFD-like: tighter crop (bigger face), well aligned, posed expressions, clean labels.
TFD_FRAMING = Framing(size=48, scale=30.0, centre=(24.0, 27.0), rot_sd=3.0, scale_jitter=0.04, trans_sd=0.8,
                      intensity=(0.5, 1.0), p_mixed=0.08, p_occluded=0.03, p_label_noise=0.0,
                      blur=(0.0, 0.6), noise=(0.01, 0.03))


def render_static(rng: np.random.Generator, label: int, framing: Framing) -> tuple[np.ndarray, np.ndarray, int]:
    """One face image of class ``label``.

    Returns (image (S, S) uint8 grayscale, keypoints (5, 2) float32 pixels, written_label) where
    written_label differs from ``label`` with probability ``p_label_noise`` (annotation noise).
    """
    ident = sample_identity(rng)
    w = one_hot(label)
    if label != 6 and rng.random() < framing.p_mixed:
        other = int(rng.choice([c for c in range(NUM_CLASSES) if c != label]))
        w = 0.62 * w + 0.38 * one_hot(other)
    au = expression(w, rng.uniform(*framing.intensity))
    s = framing.scale * (1 + rng.uniform(-framing.scale_jitter, framing.scale_jitter))
    pose = pose_matrix(s, rng.normal(0, framing.rot_sd), framing.centre[0] + rng.normal(0, framing.trans_sd),
                       framing.centre[1] + rng.normal(0, framing.trans_sd))
    rgb, alpha = render_face(ident, au, canvas_size_for(s))
    face, a = place_face(rgb, alpha, pose, (framing.size, framing.size))
    img = gray_background(rng, framing.size)
    img = img * (1 - a[..., None]) + face * a[..., None]
    kps = transform_points(keypoints(ident, np.clip(au + np.asarray(ident.rest, dtype=np.float32), -1.3, 1.3)), pose)
    if rng.random() < framing.p_occluded:
        draw_occluder(img, rng, kps, s)
    img = img * lighting(rng, framing.size, framing.size)
    img = degrade(img, rng, framing.blur, framing.noise)
    out_label = label
    if rng.random() < framing.p_label_noise:
        out_label = int(rng.integers(0, NUM_CLASSES))
    return to_uint8(to_gray(img)), kps.astype(np.float32), out_label
