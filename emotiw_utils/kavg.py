"""k-average pooling of per-frame CNN features, and frame averaging (paper section 2.3).

Section 2.3 of Kahou et al. (2015): "the per-frame CNN features are averaged into bins to generate a
fixed length vector of size k as video representation. Heuristically, we selected k = 15 and we used
the pre-softmax outputs of the CNN as per-frame features. For videos with a number of frames less than
k the frames are locally repeated until sequence length is k." With D = 7 logits this gives the
105-dimensional (7 x 15) clip vectors that are classified with an RBF SVM
(:func:`emotiw_utils.svm.fit_svm_grid`); the baseline the paper compares
against is the plain "averaging of the per-frame probabilities" (:func:`frame_average_probs`).

Stage 04 persists its fitted SVM; :func:`reapply` applies it again to a split of a finished run
(:func:`predict_clips`: the same computation for any clips' per-frame CNN outputs).

Conventions:

* A clip's frames are a ``(T, D)`` array in temporal order. A set of clips is stored flat as a
  ``(F, D)`` array plus ``offsets`` of shape ``(n + 1,)``: clip ``i`` is
  ``features[offsets[i]:offsets[i + 1]]`` (``offsets[0] == 0``, ``offsets[-1] == F``).
* The pooled vector is bin-major: bin 0's ``D`` values, then bin 1's, ... (``k * D`` values).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_K",
    "clip_slices",
    "frame_average_probs",
    "k_average",
    "k_average_clips",
    "load_svm",
    "predict_clips",
    "reapply",
]

#: Number of bins of the k-average pooling (paper section 2.3).
DEFAULT_K: int = 15


# --------------------------------------------------------------------------------------------------
# k-average pooling
# --------------------------------------------------------------------------------------------------


def k_average(frames: Any, k: int = DEFAULT_K) -> np.ndarray:
    """k-average pooling of one clip's per-frame features (paper section 2.3).

    Args:
        frames: ``(T, D)`` per-frame features in temporal order (``T >= 1``); a 1-D ``(T,)`` array is
            treated as ``D = 1``.
        k: number of bins (``>= 1``); the paper uses 15.

    Returns:
        ``(k * D,)`` float64 vector, bin-major (bin 0's ``D`` values first).

    * ``T >= k``: the ``T`` frames are split into ``k`` contiguous bins as equal as possible with
      :func:`numpy.array_split` semantics (the first ``T % k`` bins get one extra frame) and each bin
      is averaged.
    * ``T < k``: frames are "locally repeated until sequence length is k": output bin ``j`` is frame
      ``floor(j * T / k)`` (order preserved, each frame repeated ``k // T`` or ``k // T + 1`` times),
      so every bin is one frame.

    Raises:
        ValueError: ``T == 0``, ``k < 1`` or ``frames`` not 1-D/2-D.
    """
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"frames must be a (T, D) array, got shape {x.shape}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    t = x.shape[0]
    if t == 0:
        raise ValueError("cannot k-average a clip with no frames (T == 0)")
    if t < k:
        idx = (np.arange(k) * t) // k
        return x[idx].reshape(-1)
    # array_split semantics: first (t % k) bins have size t // k + 1, the rest t // k.
    q, r = divmod(t, k)
    sizes = np.full(k, q, dtype=np.int64)
    sizes[:r] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sums = np.add.reduceat(x, starts, axis=0)  # all sizes >= 1, so reduceat is exact
    return (sums / sizes[:, None]).reshape(-1)


def clip_slices(offsets: Any, n_frames: int | None = None) -> list[slice]:
    """Validate ``offsets`` (``(n + 1,)``, non-decreasing, starting at 0) and return one slice per clip.

    If ``n_frames`` is given, ``offsets[-1]`` must equal it.
    """
    off = np.asarray(offsets)
    if off.ndim != 1 or off.size < 1:
        raise ValueError(f"offsets must be a 1-D (n + 1,) array, got shape {off.shape}")
    if not np.issubdtype(off.dtype, np.integer):
        if not np.all(np.equal(np.mod(off, 1), 0)):
            raise ValueError("offsets must be integers")
        off = off.astype(np.int64)
    if off[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {off[0]}")
    if np.any(np.diff(off) < 0):
        raise ValueError("offsets must be non-decreasing")
    if n_frames is not None and off[-1] != n_frames:
        raise ValueError(f"offsets[-1] = {off[-1]} does not match the number of frames {n_frames}")
    return [slice(int(a), int(b)) for a, b in zip(off[:-1], off[1:])]


def k_average_clips(features: Any, offsets: Any, k: int = DEFAULT_K) -> np.ndarray:
    """k-average pooling of every clip of a flat frame array (paper section 2.3).

    Args:
        features: ``(F, D)`` per-frame features of all clips, concatenated in clip order.
        offsets: ``(n + 1,)`` clip boundaries; clip ``i`` is ``features[offsets[i]:offsets[i + 1]]``.
        k: number of bins.

    Returns:
        ``(n, k * D)`` float64 array, row ``i`` = :func:`k_average` of clip ``i``.

    Raises:
        ValueError: bad ``offsets``, an empty clip, ``k < 1``.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a (F, D) array, got shape {x.shape}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    slices = clip_slices(offsets, x.shape[0])
    out = np.empty((len(slices), int(k) * x.shape[1]), dtype=np.float64)
    for i, s in enumerate(slices):
        if s.stop == s.start:
            raise ValueError(f"clip {i} has no frames")
        out[i] = k_average(x[s], k)
    return out


def frame_average_probs(logits: Any, offsets: Any) -> np.ndarray:
    """Baseline "averaging of the per-frame probabilities" (paper section 2.3).

    Args:
        logits: ``(F, C)`` pre-softmax per-frame outputs (``C = 7``), all clips concatenated.
        offsets: ``(n + 1,)`` clip boundaries as in :func:`k_average_clips`.

    Returns:
        ``(n, C)`` float64: for each clip, the mean over its frames of the per-frame softmax; every
        row sums to 1.

    Raises:
        ValueError: bad shapes/offsets or a clip with no frames.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must be a (F, C) array, got shape {z.shape}")
    slices = clip_slices(offsets, z.shape[0])
    z = z - z.max(axis=1, keepdims=True) if z.shape[0] else z
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    out = np.empty((len(slices), z.shape[1]), dtype=np.float64)
    for i, s in enumerate(slices):
        if s.stop == s.start:
            raise ValueError(f"clip {i} has no frames")
        out[i] = p[s].mean(axis=0)
    return out


# --------------------------------------------------------------------------------------------------
# The persisted SVM of stage 04, applied again
# --------------------------------------------------------------------------------------------------


def predict_clips(model: Any, features: Any, offsets: Any, k: int = DEFAULT_K) -> np.ndarray:
    """``(n, 7)`` probabilities of a fitted k-average SVM (:func:`emotiw_utils.svm.fit_svm`) for clips given
    as their per-frame CNN outputs (``(F, 7)`` + ``offsets``, as in :func:`k_average_clips`): the pooling
    with ``k`` bins, then :func:`emotiw_utils.svm.predict_proba_full` -- the computation of chapter 04."""
    from emotiw_utils.svm import predict_proba_full

    return predict_proba_full(model, k_average_clips(features, offsets, k))


def load_svm(run_dir: Any) -> Any:
    """The SVM stage 04 persisted in ``run_dir`` (FileNotFoundError naming the stage when missing)."""
    from emotiw_utils import model_store, stages

    return model_store.load_model(stages.KAVG.require(run_dir, "svm"), "k-average SVM")


def reapply(run_dir: Any, split: str) -> np.ndarray:
    """Stage 04's persisted SVM applied again to ``split`` of a finished run: ``(n, 7)`` probabilities in the
    clip order of its ``clip_probs_{split}.npz`` (equal to them), from the CNN's per-frame outputs and the
    ``k`` of the stage's record."""
    from emotiw_utils import records, stages
    from emotiw_utils.frame_features import load_frame_features

    k = records.read(run_dir, stages.KAVG).k
    from emotiw_utils.clip_policy import refill

    frames = load_frame_features(run_dir, split, "logits")
    return refill(run_dir, stages.KAVG, split, frames.clip_ids,
                  predict_clips(load_svm(run_dir), frames.features, frames.offsets, k))
