"""RBF-kernel SVMs with probability outputs and hyperparameters chosen on the select split.

The paper uses an RBF SVM with "hyper-parameters [...] set via grid search" three times: on the
k-averaged CNN outputs (section 2.3), on the PCA-reduced audio features (section 3) and on the
activity bag-of-words histograms (section 4). :func:`fit_svm_grid` is that grid search (fitted on the
train split, scored on ``select_split``); :func:`fit_svm` refits with known hyperparameters (the
retraining protocols of Table 2); :func:`predict_proba_full` returns the 7-column class probabilities
of the stage contract.

Labels are ``0..6`` in :data:`emotiw_utils.constants.EMOTIONS` order; ``-1``
(:data:`~emotiw_utils.constants.UNKNOWN_LABEL`) is rejected in training data and ignored when scoring the
select split.

scikit-learn is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotiw_utils import metrics
from emotiw_utils.constants import NUM_CLASSES, UNKNOWN_LABEL

__all__ = ["DEFAULT_CS", "DEFAULT_GAMMAS", "SeedFit", "SoftmaxSvm", "SvmSearchResult", "calibrated_fit", "fit_seeds",
           "fit_svm", "fit_svm_grid", "predict_proba_full", "softmax_scale"]

#: Default SVM grid (C outer loop, gamma inner loop).
DEFAULT_CS: tuple[float, ...] = (0.1, 0.3, 1, 3, 10, 30, 100)
DEFAULT_GAMMAS: tuple[Any, ...] = ("scale", 0.001, 0.003, 0.01, 0.03, 0.1)


# --------------------------------------------------------------------------------------------------
# RBF SVM with grid search on the select split
# --------------------------------------------------------------------------------------------------


@dataclass
class SvmSearchResult:
    """Outcome of :func:`fit_svm_grid`.

    Attributes:
        model: fitted :class:`SoftmaxSvm` around ``Pipeline(StandardScaler, SVC(kernel="rbf"))`` with the chosen
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


def _make_svm(C: float, gamma: Any, seed: int) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return Pipeline([("scaler", StandardScaler()),
                     ("svc", SVC(kernel="rbf", C=C, gamma=gamma, random_state=seed))])


class SoftmaxSvm:
    """A fitted SVM (any scikit-learn estimator or pipeline ending in an ``SVC``) with class probabilities
    ``softmax(scale * d(x))``, ``d`` the one-vs-rest decision values (:func:`calibrated_fit`).

    ``predict`` is the argmax of ``d``, so probabilities and predictions always agree. ``classes_`` are the
    classes seen in training (use :func:`predict_proba_full` for all seven columns).
    """

    def __init__(self, model: Any, scale: float) -> None:
        self.model, self.scale = model, float(scale)
        self.classes_ = np.asarray(model.classes_)

    def __getattr__(self, name: str) -> Any:  # e.g. named_steps of a Pipeline
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def decision(self, x: Any) -> np.ndarray:
        """``(n, n_classes)`` one-vs-rest decision values (two classes: ``[-d/2, d/2]``)."""
        d = np.asarray(self.model.decision_function(x), dtype=np.float64)
        return np.stack([-d / 2, d / 2], axis=1) if d.ndim == 1 else d

    def predict_proba(self, x: Any) -> np.ndarray:
        z = self.scale * self.decision(x)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        return self.classes_[self.decision(x).argmax(axis=1)]


def softmax_scale(decisions: np.ndarray, y_index: np.ndarray) -> float:
    """The ``s > 0`` maximising the log-likelihood of ``softmax(s * decisions)`` for labels ``y_index``
    (column indices), searched over ``log s`` in [-8, 5]."""
    from scipy.optimize import minimize_scalar

    d = np.asarray(decisions, dtype=np.float64)
    rows = np.arange(len(d))

    def nll(log_s: float) -> float:
        z = np.exp(log_s) * d
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[rows, y_index] - np.log(np.exp(z).sum(axis=1))).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-8.0, 5.0), method="bounded").x))


def calibrated_fit(make_model: Any, x: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5) -> SoftmaxSvm:
    """Fit ``make_model()`` on ``(x, y)`` and give it probabilities that cannot contradict its predictions.

    scikit-learn's ``SVC(probability=True)`` (Platt scaling) fits one sigmoid per pair of classes on
    internal cross-validation; when the SVM overfits (the activity model: 99 % train, 24 % validation) the
    held-out decision values do not track the labels and the fitted sigmoids can invert, so that the
    argmax of the probabilities is wrong on almost every training clip although ``predict`` is right. Here
    the probabilities are ``softmax(s * d(x))`` with ONE positive scale ``s`` fitted by maximum
    likelihood on out-of-fold decision values (stratified, ``folds`` folds, shuffled with ``seed``; on the
    training values when a class has fewer than two clips): monotone in the decision values, so the most
    probable class is always the predicted one, and close to uniform when the held-out decision values
    carry no information.
    """
    from sklearn.model_selection import StratifiedKFold

    model = make_model().fit(x, y)
    classes = np.asarray(model.classes_)
    y_index = np.searchsorted(classes, y)
    k = min(int(folds), int(np.bincount(y_index).min()))
    if k >= 2:
        dec = np.zeros((len(y), len(classes)), dtype=np.float64)
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
            dec[te] = SoftmaxSvm(make_model().fit(x[tr], y[tr]), 1.0).decision(x[te])
    else:
        dec = SoftmaxSvm(model, 1.0).decision(x)
    return SoftmaxSvm(model, softmax_scale(dec, y_index))


def fit_svm(x_train: Any, y_train: Any, C: float, gamma: Any, seed: int = 0) -> Any:
    """``Pipeline(StandardScaler, SVC(rbf))`` fitted with known hyperparameters, as a :class:`SoftmaxSvm`.

    For the retraining protocols of Table 2 (e.g. train on Train+Val with the ``C``/``gamma`` that
    :func:`fit_svm_grid` chose when training on Train and selecting on Val). ``x_train`` ``(n, d)``,
    ``y_train`` ``(n,)`` in 0..6 (``-1`` rejected, at least two classes).
    """
    xt, yt = _check_xy(x_train, y_train, "train", allow_unknown=False)
    if np.unique(yt).size < 2:
        raise ValueError("y_train must contain at least two classes")
    if not (isinstance(gamma, str) or float(gamma) > 0) or float(C) <= 0:
        raise ValueError(f"need C > 0 and gamma > 0 (or 'scale'/'auto'), got C={C!r}, gamma={gamma!r}")
    return calibrated_fit(lambda: _make_svm(float(C), gamma, seed), xt, yt, seed)


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
    The grid is scored with the SVC's ``predict``; the chosen point is refitted once with calibrated
    probabilities (:func:`calibrated_fit`), whose argmax is the same prediction.

    Args:
        x_train, y_train: ``(n_train, d)`` features, ``(n_train,)`` labels in 0..6; ``-1`` is rejected.
        x_select, y_select: ``(n_select, d)``, ``(n_select,)``; labels ``-1`` are ignored in scoring
            (at least one labelled sample is required).
        Cs, gammas: the grid (``gamma`` may be ``"scale"``/``"auto"`` or a float).
        seed: shuffles the folds of the probability calibration (:func:`calibrated_fit`).

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
            m = _make_svm(C, gamma, seed).fit(xt, yt)
            train_acc = float(np.mean(m.predict(xt) == yt))
            select_acc = float(np.mean(m.predict(xs[sel]) == ys[sel]))
            rows.append({"C": C, "gamma": gamma, "train_acc": train_acc, "select_acc": select_acc})
            if best is None or select_acc > best[2]:
                best = (C, gamma, select_acc)
    assert best is not None
    C, gamma, select_acc = best
    model = calibrated_fit(lambda: _make_svm(C, gamma, seed), xt, yt, seed)
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


# --------------------------------------------------------------------------------------------------
# Refits over seeds
# --------------------------------------------------------------------------------------------------


@dataclass
class SeedFit:
    """One seed's refit (:func:`fit_seeds`): the fitted ``model``, its ``(n, 7)`` ``probs`` on every split and
    their ``accuracy`` (:func:`emotiw_utils.metrics.split_accuracies`: per split, and ``"train"`` over the
    training splits together)."""

    seed: int
    model: Any
    probs: dict[str, np.ndarray]
    accuracy: dict[str, float]


def fit_seeds(fit: Callable[[int], Any], features: Mapping[str, Any], labels: Mapping[str, Any],
              train_splits: Sequence[str], seeds: Sequence[int],
              predict: Callable[[Any, Any], np.ndarray] = predict_proba_full) -> dict[int, SeedFit]:
    """The chapters' per-seed loop: for each seed ``s`` (in order), ``model = fit(s)``, then
    ``predict(model, features[split])`` on every split of ``features`` and the accuracies against ``labels``.

    ``fit`` closes over the training data and hyperparameters (e.g. ``lambda s: fit_svm(x, y, C, gamma, seed=s)``);
    ``predict`` defaults to :func:`predict_proba_full`. Returns seed -> :class:`SeedFit`, in the order of ``seeds``.
    """
    if not list(seeds):
        raise ValueError("need at least one seed")
    out: dict[int, SeedFit] = {}
    for s in seeds:
        model = fit(s)
        probs = {sp: predict(model, x) for sp, x in features.items()}
        out[s] = SeedFit(int(s), model, probs, metrics.split_accuracies(probs, labels, train_splits))
    return out
