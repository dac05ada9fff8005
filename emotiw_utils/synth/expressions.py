"""Facial expressions as action-unit-like parameters (the synthetic faces' muscles).

Each expression is a vector over :data:`AU_NAMES`, loosely following FACS prototypes
(Ekman & Friesen): e.g. Happy = lip-corner puller + cheek raiser, Surprise = brow raiser +
upper-lid raiser + jaw drop. The renderer in :mod:`emotiw_utils.synth.face` draws these.
"""

from __future__ import annotations

import numpy as np

from ..constants import EMOTIONS, NUM_CLASSES

#: Parameters the face renderer understands (all roughly in [-1, 1]).
AU_NAMES: tuple[str, ...] = (
    "brow_height",      # + raised (AU1+2), - lowered (AU4)
    "brow_tilt",        # + inner ends up (AU1: sad, fear), - inner ends down (angry V)
    "eye_open",         # + upper-lid raiser (AU5), - narrowed (AU7 lid tightener)
    "cheek_raise",      # AU6: pushes the lower lid up (Duchenne smile)
    "nose_wrinkle",     # AU9
    "upper_lip_raise",  # AU10
    "mouth_corner",     # + lip-corner puller (AU12), - depressor (AU15)
    "lip_stretch",      # + horizontal stretch (AU20), - pucker / press
    "mouth_open",       # AU25-27: lips part, jaw drops
    "lip_press",        # AU23/24: thin, pressed lips
)
N_AU = len(AU_NAMES)
AU = {name: i for i, name in enumerate(AU_NAMES)}


def _proto(**values: float) -> np.ndarray:
    v = np.zeros(N_AU, dtype=np.float32)
    for k, x in values.items():
        v[AU[k]] = x
    return v


#: Apex expression (intensity 1) of each class, FER2013 class order.
PROTOTYPES: np.ndarray = np.stack([
    _proto(brow_height=-0.9, brow_tilt=-0.9, eye_open=0.25, lip_press=0.9, mouth_corner=-0.25,
           lip_stretch=-0.2),                                                    # Angry
    _proto(brow_height=-0.45, brow_tilt=-0.3, eye_open=-0.55, nose_wrinkle=1.0,
           upper_lip_raise=0.9, mouth_corner=-0.55, mouth_open=0.1),             # Disgust
    _proto(brow_height=0.6, brow_tilt=0.85, eye_open=0.85, lip_stretch=0.9, mouth_open=0.45,
           mouth_corner=-0.2),                                                   # Fear
    _proto(cheek_raise=0.85, eye_open=-0.3, mouth_corner=1.0, lip_stretch=0.5,
           mouth_open=0.3),                                                      # Happy
    _proto(brow_height=-0.1, brow_tilt=0.9, eye_open=-0.45, mouth_corner=-0.9,
           lip_press=0.3),                                                       # Sad
    _proto(brow_height=1.0, brow_tilt=0.15, eye_open=1.0, mouth_open=0.95,
           lip_stretch=-0.35),                                                   # Surprise
    _proto(),                                                                    # Neutral
])
assert PROTOTYPES.shape == (NUM_CLASSES, N_AU) and len(EMOTIONS) == NUM_CLASSES


def expression(weights: np.ndarray, intensity: float | np.ndarray) -> np.ndarray:
    """AU vector of a (possibly mixed) expression.

    weights: (7,) non-negative class weights (a blend, e.g. 0.65 Fear + 0.35 Surprise);
    intensity: scalar or (T,) per-frame intensity in [0, 1]. Returns (N_AU,) or (T, N_AU).
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.shape != (NUM_CLASSES,) or np.any(w < 0):
        raise ValueError(f"weights must be a non-negative vector of {NUM_CLASSES} values, got {w!r}")
    au = w @ PROTOTYPES
    inten = np.asarray(intensity, dtype=np.float32)
    return inten[..., None] * au if inten.ndim else inten * au


def one_hot(label: int) -> np.ndarray:
    """(7,) weights of a pure expression of class ``label``."""
    w = np.zeros(NUM_CLASSES, dtype=np.float32)
    w[label] = 1.0
    return w
