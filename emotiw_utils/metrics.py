"""Classification metrics shared by every stage: accuracy, confusion matrix, per-class recall, UAR.

The paper reports plain accuracy (sections 2.1.3, 4); the confusion matrices and per-class accuracies
are what its figures show. Conventions, the same in every function here:

* ``y_true`` and ``y_pred`` are 1-D integer label arrays of the same length (numpy, lists or torch
  tensors). ``y_pred`` may also be a 2-D ``(N, n_classes)`` array of scores (logits or probabilities):
  its argmax along axis 1 is used.
* Samples whose true label is ``-1`` (:data:`emotiw_utils.constants.UNKNOWN_LABEL`, e.g. AFEW Test
  clips without ground truth) are ignored everywhere.
* A class without any (labelled) sample has recall NaN; a confusion-matrix row of such a class,
  normalised by the true class, is NaN. Functions of no labelled sample at all return NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from emotiw_utils.constants import NUM_CLASSES, UNKNOWN_LABEL

__all__ = ["accuracy", "confusion_matrix", "per_class_accuracy", "unweighted_average_recall"]

_NORMALISE = (None, "true", "pred", "all")


def _as_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _labels(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(true, pred)`` int64 label vectors with the unknown (-1) true labels removed."""
    t = _as_numpy(y_true)
    p = _as_numpy(y_pred)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"labels must be 1-D (predictions 1-D or 2-D scores); got shapes {t.shape} and {p.shape}")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred differ in length: {len(t)} != {len(p)}")
    t = t.astype(np.int64, copy=False)
    p = p.astype(np.int64, copy=False)
    keep = t != UNKNOWN_LABEL
    t, p = t[keep], p[keep]
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        raise ValueError(f"true labels must be in 0..{n_classes - 1} or {UNKNOWN_LABEL}; got {t.min()}..{t.max()}")
    if p.size and (p.min() < 0 or p.max() >= n_classes):
        raise ValueError(f"predicted labels must be in 0..{n_classes - 1}; got {p.min()}..{p.max()}")
    return t, p


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of labelled samples (true label != -1) predicted correctly; NaN if there are none."""
    t, p = _labels(y_true, y_pred, n_classes=np.iinfo(np.int64).max)
    return float(np.mean(t == p)) if t.size else float("nan")


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int = NUM_CLASSES,
                     normalise: str | None = None) -> np.ndarray:
    """Confusion matrix ``C`` of shape ``(n_classes, n_classes)``: rows true class, columns predicted class.

    ``normalise``: ``None`` -> counts (int64); ``"true"`` -> each row divided by its total (row ``i`` is the
    distribution of predictions for true class ``i``, its diagonal the class recall; NaN rows for absent
    classes); ``"pred"`` -> each column divided by its total (NaN columns for never-predicted classes);
    ``"all"`` -> divided by the number of labelled samples. Samples with true label -1 are ignored.
    """
    if normalise not in _NORMALISE:
        raise ValueError(f"normalise must be one of {_NORMALISE}; got {normalise!r}")
    t, p = _labels(y_true, y_pred, n_classes)
    cm = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    if normalise is None:
        return cm.astype(np.int64)
    cm = cm.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalise == "true":
            return cm / cm.sum(axis=1, keepdims=True)
        if normalise == "pred":
            return cm / cm.sum(axis=0, keepdims=True)
        return cm / cm.sum()


def per_class_accuracy(y_true: Any, y_pred: Any, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """Recall of every class, shape ``(n_classes,)`` float64; NaN for classes without labelled samples."""
    return np.diag(confusion_matrix(y_true, y_pred, n_classes, normalise="true")).copy()


def unweighted_average_recall(y_true: Any, y_pred: Any, n_classes: int = NUM_CLASSES) -> float:
    """Unweighted average recall (UAR): the mean of :func:`per_class_accuracy` over the classes present."""
    r = per_class_accuracy(y_true, y_pred, n_classes)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def split_accuracies(probs: Mapping[str, Any], labels: Mapping[str, Any], train_splits: Sequence[str]) -> dict[str, float]:
    """Accuracy of the argmax of ``probs[split]`` ``(n, C)`` on every split (NaN where nothing is labelled),
    plus ``"train"``: over the clips of all ``train_splits`` together."""
    out = {s: accuracy(labels[s], np.asarray(p).argmax(1)) for s, p in probs.items()}
    out["train"] = accuracy(np.concatenate([np.asarray(labels[s]) for s in train_splits]),
                            np.concatenate([np.asarray(probs[s]).argmax(1) for s in train_splits]))
    return out


def seed_table(accuracies: Mapping[Any, Mapping[str, float]], skip: Sequence[str] = ()):
    """DataFrame with one row per seed (``"seed {s}"``) and one ``"{split} (%)"`` column per accuracy of
    :func:`split_accuracies` (NaN ones and ``skip`` left out), in percent with one decimal."""
    import pandas as pd

    return pd.DataFrame.from_dict({f"seed {s}": {f"{k} (%)": round(100 * v, 1) for k, v in acc.items()
                                                 if np.isfinite(v) and k not in skip}
                                   for s, acc in accuracies.items()}, orient="index")
