"""Image-level helpers shared by the static-face and clip generators: backgrounds, lighting,
occluders and degradations (noise, blur). All functions take an explicit ``rng``."""

from __future__ import annotations

import cv2
import numpy as np


def clutter_background(rng: np.random.Generator, h: int, w: int, n_shapes: tuple[int, int] = (4, 9)) -> np.ndarray:
    """A cluttered scene (h, w, 3) float32 in [0, 1]: colour gradient, rectangles, blobs, texture."""
    base = rng.uniform(0.15, 0.75, 3).astype(np.float32)
    tint = rng.uniform(-0.25, 0.25, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = (xx / w * np.cos(rng.uniform(0, 2 * np.pi)) + yy / h * np.sin(rng.uniform(0, 2 * np.pi)))[..., None]
    img = np.clip(base + tint * g, 0, 1).astype(np.float32)
    for _ in range(int(rng.integers(*n_shapes))):
        col = tuple(float(c) for c in rng.uniform(0.05, 0.95, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.6:
            x2, y2 = x + int(rng.integers(w // 10, w // 2)), y + int(rng.integers(h // 10, h // 2))
            cv2.rectangle(img, (x, y), (x2, y2), col, -1, lineType=cv2.LINE_AA)
        else:
            axes = (int(rng.integers(w // 20, w // 5)), int(rng.integers(h // 20, h // 5)))
            cv2.ellipse(img, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, col, -1, lineType=cv2.LINE_AA)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 0.8), 0, 1)


def gray_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plain-ish backdrop for static face crops (size, size, 3) float32."""
    return clutter_background(rng, size, size, n_shapes=(0, 3))


def lighting(rng: np.random.Generator, h: int, w: int, strength: float = 0.35) -> np.ndarray:
    """Multiplicative lighting field (h, w, 1): directional gradient times a global gain."""
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang)) * 2
    gain = rng.uniform(0.7, 1.2)
    return (gain * (1 + rng.uniform(0, strength) * ramp))[..., None].astype(np.float32)


def draw_occluder(img: np.ndarray, rng: np.random.Generator, kps: np.ndarray, scale: float) -> np.ndarray:
    """Cover part of the face in-place with a hand, a bar (sunglasses, microphone) or a blob.

    kps: (5, 2) keypoints in pixels; scale: pixels per canonical unit. Returns a (5,) bool mask
    of the keypoints that ended up covered.
    """
    kind = rng.choice(["hand", "bar", "blob"])
    col = tuple(float(c) for c in rng.uniform(0.05, 0.9, 3))
    target = kps[int(rng.integers(0, 5))] + rng.normal(0, 0.1 * scale, 2)
    mask = np.zeros(img.shape[:2], dtype=np.float32)
    cx, cy = int(target[0]), int(target[1])
    if kind == "bar":
        half = (int(0.55 * scale), max(1, int(0.09 * scale)))
        ang = float(rng.normal(0, 10))
    else:
        half = (max(1, int(rng.uniform(0.2, 0.4) * scale)), max(1, int(rng.uniform(0.15, 0.35) * scale)))
        ang = float(rng.uniform(0, 180))
    cv2.ellipse(mask, (cx, cy), half, ang, 0, 360, 1.0, -1, lineType=cv2.LINE_AA)
    img *= 1 - mask[..., None]
    img += mask[..., None] * np.asarray(col, dtype=np.float32)
    inside = np.zeros(5, dtype=bool)
    for i, (x, y) in enumerate(kps):
        xi, yi = int(round(x)), int(round(y))
        if 0 <= yi < mask.shape[0] and 0 <= xi < mask.shape[1]:
            inside[i] = mask[yi, xi] > 0.5
    return inside


def degrade(img: np.ndarray, rng: np.random.Generator, blur: tuple[float, float], noise: tuple[float, float]) -> np.ndarray:
    """Gaussian blur (sigma drawn from ``blur``) and additive noise (sd from ``noise``)."""
    sigma = rng.uniform(*blur)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, rng.uniform(*noise), img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def to_gray(img: np.ndarray) -> np.ndarray:
    """RGB float (..., 3) -> luminance (...), ITU-R BT.601 weights."""
    return img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
