"""Procedural face renderer with ground-truth keypoints.

A face is drawn in a canonical frame (face centre at the origin, y pointing down, face
half-height about 1) from an :class:`Identity` (face shape, feature spacing, skin tone, hair
line, ...) and an action-unit vector (:mod:`emotiw_utils.synth.expressions`). The canonical
drawing is then placed into a target image by a similarity transform (head pose: rotation,
scale, translation) with the five keypoints mapped by the same transform, so every image and
frame comes with exact eye centres, nose tip and mouth corners (the MTCNN keypoints the paper
aligns on, section 2.1.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .expressions import AU, N_AU

#: Half-extent of the canonical drawing, in canonical units.
CANVAS_R = 1.45


@dataclass(frozen=True)
class Identity:
    """Per-person face geometry and appearance (canonical units; colours RGB in [0, 1])."""

    face_w: float
    face_h: float
    jaw: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_thick: float
    nose_y: float
    mouth_y: float
    mouth_hw: float
    lip_thick: float
    hairline: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    lips: tuple[float, float, float]
    rest: tuple[float, ...]  # resting AU offsets (idiosyncratic neutral face)


_LIGHT_SKIN = np.array([0.96, 0.80, 0.68])
_DARK_SKIN = np.array([0.38, 0.25, 0.18])


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw a random person: face shape, feature spacing, skin tone, hair line and colour."""
    tone = rng.uniform(0.0, 1.0)
    skin = (1 - tone) * _LIGHT_SKIN + tone * _DARK_SKIN + rng.normal(0, 0.02, 3)
    hair_level = rng.uniform(0.05, 0.55)
    hair = np.clip(hair_level * np.array([1.0, 0.85, 0.7]) + rng.normal(0, 0.03, 3), 0, 1)
    lips = np.clip(skin * np.array([0.85, 0.6, 0.6]), 0, 1)
    return Identity(
        face_w=rng.uniform(0.62, 0.78), face_h=rng.uniform(0.9, 1.02), jaw=rng.uniform(0.7, 0.92),
        eye_dx=rng.uniform(0.27, 0.33), eye_y=rng.uniform(-0.22, -0.12),
        eye_w=rng.uniform(0.10, 0.13), eye_h=rng.uniform(0.045, 0.062),
        brow_gap=rng.uniform(0.11, 0.16), brow_thick=rng.uniform(0.03, 0.055),
        nose_y=rng.uniform(0.16, 0.25), mouth_y=rng.uniform(0.46, 0.56),
        mouth_hw=rng.uniform(0.22, 0.29), lip_thick=rng.uniform(0.025, 0.045),
        hairline=rng.uniform(-0.78, -0.5),
        skin=tuple(np.clip(skin, 0, 1).tolist()), hair=tuple(hair.tolist()), lips=tuple(lips.tolist()),
        rest=tuple(rng.normal(0, 0.08, N_AU).tolist()),
    )


def _grid(size: int) -> tuple[np.ndarray, np.ndarray, float]:
    xs = np.linspace(-CANVAS_R, CANVAS_R, size, dtype=np.float32)
    u, v = np.meshgrid(xs, xs)
    return u, v, 2 * CANVAS_R / (size - 1)


def _soft(d: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased mask from a signed distance (negative inside)."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _ellipse(u, v, cx, cy, a, b):
    return (np.sqrt(((u - cx) / a) ** 2 + ((v - cy) / b) ** 2) - 1.0) * min(a, b)


def _paint(img, mask, colour):
    """Blend ``colour`` into ``img`` (in place) with opacity ``mask``, touching only its bounding box."""
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    if rows.size == 0:
        return
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = mask[r0:r1, c0:c1, None].astype(np.float32, copy=False)
    sub = img[r0:r1, c0:c1]
    sub += m * (np.asarray(colour, dtype=np.float32) - sub)


def _band(u, v, x0, x1, yc_fn, half_thick, px):
    """Mask of a horizontal curved stroke: x in [x0, x1], |y - yc(t)| < half_thick(t)."""
    lo, hi = min(x0, x1), max(x0, x1)
    t = np.clip((u - x0) / (x1 - x0), 0, 1)
    d_y = np.abs(v - yc_fn(t)) - half_thick(t)
    d_x = np.maximum(lo - u, u - hi)
    return _soft(np.maximum(d_y, d_x), px)


def keypoints(ident: Identity, au: np.ndarray) -> np.ndarray:
    """The five keypoints (5, 2) in canonical units: eyes, nose tip, mouth corners."""
    hw, cy = _mouth_geometry(ident, au)
    return np.array([[-ident.eye_dx, ident.eye_y], [ident.eye_dx, ident.eye_y], [0.0, ident.nose_y],
                     [-hw, cy], [hw, cy]], dtype=np.float32)


def _mouth_geometry(ident: Identity, au: np.ndarray) -> tuple[float, float]:
    hw = ident.mouth_hw * (1 + 0.28 * au[AU["lip_stretch"]] + 0.12 * max(0.0, au[AU["mouth_corner"]]))
    cy = ident.mouth_y - 0.085 * au[AU["mouth_corner"]]
    return float(hw), float(cy)


def render_face(ident: Identity, au: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw a face in the canonical frame.

    ident: who; au: (N_AU,) expression (added to the identity's resting offsets); size: canvas
    side in pixels covering [-CANVAS_R, CANVAS_R]^2. Returns rgb (size, size, 3) float32 in
    [0, 1] and alpha (size, size) float32 (head, hair and neck).
    """
    a = np.clip(np.asarray(au, dtype=np.float32) + np.asarray(ident.rest, dtype=np.float32), -1.3, 1.3)
    u, v, px = _grid(size)
    img = np.zeros((size, size, 3), dtype=np.float32)
    skin = np.asarray(ident.skin, dtype=np.float32)
    # Head: ellipse whose lower half narrows towards the jaw.
    narrowing = 1 - (1 - ident.jaw) * np.clip(v / ident.face_h, 0, 1) ** 2
    head_d = (np.sqrt((u / (ident.face_w * narrowing)) ** 2 + (v / ident.face_h) ** 2) - 1) * ident.face_w
    head = _soft(head_d, px)
    neck = _soft(np.maximum(np.abs(u) - 0.3 * ident.face_w * 1.25, 0.55 - v), px)
    hair_cap = _soft(_ellipse(u, v, 0, -0.06, ident.face_w * 1.1, ident.face_h * 1.08), px)
    hair_mask = hair_cap * _soft(v - (ident.hairline + 0.35 * (u / ident.face_w) ** 2), px)
    alpha = np.clip(np.maximum(np.maximum(head, neck), hair_mask), 0, 1)
    shade = 1 - 0.22 * np.clip((u / ident.face_w) ** 2 + 0.4 * (v / ident.face_h) ** 2, 0, 1.5)
    img[:] = skin * shade[..., None]
    _paint(img, neck * (1 - head), skin * 0.72)
    # Cheek raise and smile/disgust fold lines (nasolabial), drawn faintly.
    fold = 0.35 * np.clip(a[AU["cheek_raise"]] + a[AU["nose_wrinkle"]] + max(0.0, a[AU["mouth_corner"]]), 0, 1.5)
    hw, cy = _mouth_geometry(ident, a)
    for s in (-1.0, 1.0):
        x0, y0 = s * 0.13, ident.nose_y - 0.02
        x1, y1 = s * (hw + 0.04), cy + 0.02
        m = _band(u, v, x0, x1, lambda t, y0=y0, y1=y1: y0 + (y1 - y0) * t, lambda t: 0.012 + 0 * t, px)
        _paint(img, m * min(fold, 0.6), skin * 0.55)
        cheek = _soft(_ellipse(u, v, s * (ident.eye_dx + 0.02), ident.eye_y + 0.2, 0.12, 0.07), px * 4)
        _paint(img, cheek * 0.25 * max(0.0, a[AU["cheek_raise"]]), np.minimum(skin * 1.12, 1))
    # Eyebrows: inner/outer end heights from brow height and tilt.
    brow_col = np.minimum(np.asarray(ident.hair, dtype=np.float32), np.asarray(ident.skin, dtype=np.float32) * 0.45)
    for s in (-1.0, 1.0):
        x_in, x_out = s * (ident.eye_dx - ident.eye_w * 0.95), s * (ident.eye_dx + ident.eye_w * 1.15)
        base = ident.eye_y - ident.brow_gap - 0.085 * a[AU["brow_height"]]
        tilt = 0.075 * a[AU["brow_tilt"]]
        yc = lambda t, base=base, tilt=tilt: base - tilt * (1 - t) - 0.025 * np.sin(np.pi * np.clip(t, 0, 1))
        m = _band(u, v, x_in, x_out, yc, lambda t: ident.brow_thick * (1.0 - 0.35 * t), px)
        _paint(img, m, brow_col)
    frown = max(0.0, -a[AU["brow_height"]] - 0.2)
    for s in (-1.0, 1.0):
        m = _soft(np.maximum(np.abs(u - s * 0.045) - 0.008, np.abs(v - (ident.eye_y - 0.07)) - 0.05), px)
        _paint(img, m * min(frown, 0.8), skin * 0.5)
    # Eyes: opening from lid raiser/tightener and cheek raise.
    open_h = ident.eye_h * float(np.clip(1 + 0.75 * a[AU["eye_open"]] - 0.35 * a[AU["cheek_raise"]], 0.12, 2.2))
    for s in (-1.0, 1.0):
        cx, cy_e = s * ident.eye_dx, ident.eye_y
        d = _ellipse(u, v, cx, cy_e, ident.eye_w, open_h)
        outline = _soft(d - 0.012, px)
        _paint(img, outline, skin * 0.35)
        _paint(img, _soft(d, px), (0.92, 0.9, 0.88))
        iris = _soft(np.maximum(_ellipse(u, v, cx, cy_e, 0.048, 0.048), d), px)
        _paint(img, iris, (0.12, 0.09, 0.08))
        lid = _soft(np.maximum(np.abs(d + 0.004) - 0.006, v - cy_e), px)
        _paint(img, lid, skin * 0.25)
    # Nose: bridge shadow, nostrils, wrinkles.
    bridge = _soft(np.maximum(np.abs(u - 0.055) - 0.01, np.maximum(ident.eye_y + 0.05 - v, v - ident.nose_y)), px)
    _paint(img, bridge * 0.35, skin * 0.6)
    for s in (-1.0, 1.0):
        _paint(img, _soft(_ellipse(u, v, s * 0.065, ident.nose_y + 0.015, 0.035, 0.02), px), skin * 0.3)
    wr = min(1.0, max(0.0, a[AU["nose_wrinkle"]]))
    for k in range(3):
        y = ident.eye_y + 0.05 + 0.035 * k
        m = _soft(np.maximum(np.abs(u) - 0.075, np.abs(v - y) - 0.007), px)
        _paint(img, m * 0.8 * wr, skin * 0.45)
    # Mouth: centre line bends with the corners; cavity, teeth and lips when it opens.
    o = float(np.clip(a[AU["mouth_open"]], 0, 1.2))
    ulr = float(np.clip(a[AU["upper_lip_raise"]], 0, 1.2))
    press = float(np.clip(a[AU["lip_press"]], 0, 1.2))
    t = np.clip(u / hw, -1, 1)
    inside = 1 - t ** 2
    yc = ident.mouth_y + (cy - ident.mouth_y) * t ** 2
    top = yc - (0.012 + 0.045 * o + 0.05 * ulr) * inside
    bot = yc + (0.004 + 0.17 * o) * inside
    in_x = np.abs(u) - hw
    lip_t = ident.lip_thick * (1 - 0.65 * press)
    lips = _soft(np.maximum(in_x, np.maximum(top - lip_t * inside - v, v - bot - 1.3 * lip_t * inside)), px)
    _paint(img, lips, ident.lips)
    cavity = _soft(np.maximum(in_x + 0.01, np.maximum(top - v, v - bot)), px)
    _paint(img, cavity * min(1.0, (o + ulr) * 3), (0.12, 0.04, 0.05))
    teeth = _soft(np.maximum(in_x + 0.04, np.maximum(top - v, v - (top + 0.03 * inside))), px)
    _paint(img, teeth * min(1.0, (o + ulr) * 2.5), (0.93, 0.92, 0.86))
    line = _soft(np.maximum(in_x, np.abs(v - yc) - (0.006 + 0.006 * press)), px)
    _paint(img, line * max(0.0, 1 - 3 * (o + ulr)), np.asarray(ident.lips) * 0.4)
    # Hair on top of everything inside the cap.
    _paint(img, hair_mask, ident.hair)
    return np.clip(img, 0, 1), alpha


def pose_matrix(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    """(2, 3) similarity mapping canonical units to target pixels (head pose)."""
    th = np.deg2rad(angle_deg)
    c, s = scale * np.cos(th), scale * np.sin(th)
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float32)


def place_face(rgb: np.ndarray, alpha: np.ndarray, pose: np.ndarray, out_hw: tuple[int, int]):
    """Warp a canonical drawing into a target image of shape ``out_hw`` by the (2,3) ``pose``.

    Returns the warped rgb (H, W, 3) and alpha (H, W), ready to composite.
    """
    size = rgb.shape[0]
    k = 2 * CANVAS_R / (size - 1)
    to_canon = np.array([[k, 0, -CANVAS_R], [0, k, -CANVAS_R], [0, 0, 1]], dtype=np.float32)
    m = pose.astype(np.float32) @ to_canon
    h, w = out_hw
    rgb_w = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a_w = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return rgb_w, a_w


def transform_points(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine ``pose`` to points (..., 2)."""
    return points @ pose[:, :2].T + pose[:, 2]


def canvas_size_for(scale: float) -> int:
    """Canvas side that gives about one canonical pixel per target pixel at ``scale`` px/unit."""
    return int(np.clip(np.ceil(2 * CANVAS_R * scale * 1.2), 32, 256))
