"""k-average pooling of per-frame CNN features + RBF SVM (paper section 2.3).

Section 2.3 of Kahou et al. (2015): "the per-frame CNN features are averaged into bins to generate a
fixed length vector of size k as video representation. Heuristically, we selected k = 15 and we used
the pre-softmax outputs of the CNN as per-frame features. For videos with a number of frames less than
k the frames are locally repeated until sequence length is k." With D = 7 logits this gives the
105-dimensional (7 x 15) clip vectors that are classified with an SVM; the baseline the paper compares
against is the plain "averaging of the per-frame probabilities" (:func:`frame_average_probs`).

Conventions:

* A clip's frames are a ``(T, D)`` array in temporal order. A set of clips is stored flat as a
  ``(F, D)`` array plus ``offsets`` of shape ``(n + 1,)``: clip ``i`` is
  ``features[offsets[i]:offsets[i + 1]]`` (``offsets[0] == 0``, ``offsets[-1] == F``).
* The pooled vector is bin-major: bin 0's ``D`` values, then bin 1's, ... (``k * D`` values).
* Labels are ``0..6`` in :data:`emotiw_utils.constants.EMOTIONS` order; ``-1``
  (:data:`~emotiw_utils.constants.UNKNOWN_LABEL`) is rejected in training data and ignored when scoring
  the select split.

scikit-learn is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotiw_utils.constants import NUM_CLASSES, UNKNOWN_LABEL

__all__ = [
    "DEFAULT_CS",
    "DEFAULT_GAMMAS",
    "DEFAULT_K",
    "SvmSearchResult",
    "clip_slices",
    "fit_svm_grid",
    "frame_average_probs",
    "k_average",
    "k_average_clips",
    "predict_proba_full",
]

#: Number of bins of the k-average pooling (paper section 2.3).
DEFAULT_K: int = 15
#: Default SVM grid (C outer loop, gamma inner loop).
DEFAULT_CS: tuple[float, ...] = (0.1, 0.3, 1, 3, 10, 30, 100)
DEFAULT_GAMMAS: tuple[Any, ...] = ("scale", 0.001, 0.003, 0.01, 0.03, 0.1)


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
# RBF SVM with grid search on the select split
# --------------------------------------------------------------------------------------------------


@dataclass
class SvmSearchResult:
    """Outcome of :func:`fit_svm_grid`.

    Attributes:
        model: fitted ``Pipeline(StandardScaler, SVC(kernel="rbf", probability=True))`` with the chosen
            hyperparameters, trained on the train split.
        C: chosen ``C``.
        gamma: chosen ``gamma`` (a float or ``"scale"``).
        grid: one row per grid point, in search order (C outer, gamma inner); columns ``C``,
            ``gamma``, ``train_acc``, ``select_acc``.
        select_acc: select-split accuracy of the chosen point (labels ``-1`` ignored).
    """

    model: Any
    C: float
    gamma: Any
    grid: Any  # pandas.DataFrame
    select_acc: float


def _check_xy(x: Any, y: Any, name: str, allow_unknown: bool) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y)
    if xa.ndim != 2:
        raise ValueError(f"x_{name} must be a 2-D (n, d) array, got shape {xa.shape}")
    if ya.ndim != 1 or ya.shape[0] != xa.shape[0]:
        raise ValueError(f"y_{name} must be 1-D with {xa.shape[0]} labels, got shape {ya.shape}")
    if ya.size and not np.all(np.equal(np.mod(ya, 1), 0)):
        raise ValueError(f"y_{name} must hold integer labels")
    ya = ya.astype(np.int64)
    if not np.all(np.isfinite(xa)):
        raise ValueError(f"x_{name} contains NaN or inf")
    if not allow_unknown and np.any(ya == UNKNOWN_LABEL):
        raise ValueError(
            f"y_{name} contains unknown labels ({UNKNOWN_LABEL}); drop those samples before training"
        )
    valid = ya != UNKNOWN_LABEL
    if np.any((ya[valid] < 0) | (ya[valid] >= NUM_CLASSES)):
        raise ValueError(f"y_{name} labels must be in 0..{NUM_CLASSES - 1} (or {UNKNOWN_LABEL})")
    return xa, ya


def _make_svm(C: float, gamma: Any, seed: int, probability: bool) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    kw = {"probability": True} if probability else {}  # sklearn >= 1.9 warns whenever it is passed
    return Pipeline(
        [
            ("scaler", StandardScaler()),
            ("svc", SVC(kernel="rbf", C=C, gamma=gamma, random_state=seed, **kw)),
        ]
    )


def fit_svm_grid(
    x_train: Any,
    y_train: Any,
    x_select: Any,
    y_select: Any,
    Cs: Sequence[float] = DEFAULT_CS,
    gammas: Sequence[Any] = DEFAULT_GAMMAS,
    seed: int = 0,
) -> SvmSearchResult:
    """RBF SVM on k-averaged features with (C, gamma) chosen on the select split (paper section 2.3).

    Every grid point (C outer loop, gamma inner loop) is fitted on the train split and scored by
    accuracy on the select split; the best select accuracy wins, ties go to the earlier grid point.
    The grid is searched without probability estimates (an SVC's ``predict`` does not depend on the
    Platt calibration, so the accuracies are the same, at a fraction of the cost) and the chosen point is refitted once
    as ``Pipeline(StandardScaler(), SVC(kernel="rbf", probability=True, random_state=seed))``.

    Args:
        x_train, y_train: ``(n_train, d)`` features, ``(n_train,)`` labels in 0..6; ``-1`` is rejected.
        x_select, y_select: ``(n_select, d)``, ``(n_select,)``; labels ``-1`` are ignored in scoring
            (at least one labelled sample is required).
        Cs, gammas: the grid (``gamma`` may be ``"scale"``/``"auto"`` or a float).
        seed: ``random_state`` of the SVC (Platt scaling's internal CV).

    Returns:
        :class:`SvmSearchResult`.

    Raises:
        ValueError: bad shapes, labels outside 0..6 (or ``-1`` in training), fewer than two training
            classes, no labelled select sample, empty grid, mismatched feature dimensions.
    """
    import pandas as pd

    xt, yt = _check_xy(x_train, y_train, "train", allow_unknown=False)
    xs, ys = _check_xy(x_select, y_select, "select", allow_unknown=True)
    if xt.shape[1] != xs.shape[1]:
        raise ValueError(f"x_train has {xt.shape[1]} features but x_select has {xs.shape[1]}")
    if np.unique(yt).size < 2:
        raise ValueError("y_train must contain at least two classes")
    sel = ys != UNKNOWN_LABEL
    if not np.any(sel):
        raise ValueError("y_select has no labelled sample (all -1)")
    Cs, gammas = list(Cs), list(gammas)
    if not Cs or not gammas:
        raise ValueError("Cs and gammas must be non-empty")

    rows = []
    best: tuple[float, Any, float] | None = None
    for C in Cs:
        for gamma in gammas:
            m = _make_svm(C, gamma, seed, probability=False).fit(xt, yt)
            train_acc = float(np.mean(m.predict(xt) == yt))
            select_acc = float(np.mean(m.predict(xs[sel]) == ys[sel]))
            rows.append({"C": C, "gamma": gamma, "train_acc": train_acc, "select_acc": select_acc})
            if best is None or select_acc > best[2]:
                best = (C, gamma, select_acc)
    assert best is not None
    C, gamma, select_acc = best
    with warnings.catch_warnings():
        # scikit-learn 1.9 deprecates SVC(probability=True) (removal in 1.11); it still works and is
        # what the project pins, so that one FutureWarning is silenced here.
        warnings.filterwarnings("ignore", message=".*`probability` parameter", category=FutureWarning)
        model = _make_svm(C, gamma, seed, probability=True).fit(xt, yt)
    grid = pd.DataFrame(rows, columns=["C", "gamma", "train_acc", "select_acc"])
    return SvmSearchResult(model=model, C=C, gamma=gamma, grid=grid, select_acc=select_acc)


def predict_proba_full(model: Any, x: Any, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """Class probabilities with one column per class ``0..n_classes-1`` (default 7).

    ``model.predict_proba`` only has columns for the classes seen in training (``model.classes_``);
    they are placed in their class columns, classes absent from training get probability 0 and each
    row is renormalised to sum to 1.

    Args:
        model: fitted classifier with ``predict_proba`` and ``classes_`` (e.g.
            :attr:`SvmSearchResult.model`).
        x: ``(n, d)`` features.

    Returns:
        ``(n, n_classes)`` float64, rows summing to 1.
    """
    xa = np.asarray(x, dtype=np.float64)
    if xa.ndim != 2:
        raise ValueError(f"x must be a 2-D (n, d) array, got shape {xa.shape}")
    classes = np.asarray(model.classes_).astype(np.int64)
    if np.any((classes < 0) | (classes >= n_classes)):
        raise ValueError(f"model classes {classes.tolist()} outside 0..{n_classes - 1}")
    p = np.asarray(model.predict_proba(xa), dtype=np.float64)
    out = np.zeros((xa.shape[0], n_classes), dtype=np.float64)
    out[:, classes] = p
    s = out.sum(axis=1, keepdims=True)
    np.divide(out, s, out=out, where=s > 0)
    return out
