"""Audio hyperparameters chosen by cross-validation grouped by speaker, and audio classifiers compared on
the same folds (chapter 05, ``bench/bench_audio.py``).

The paper sets the audio SVM's hyperparameters "via grid search" (section 3) without saying on what.
Scoring a grid on one small select split is noise: on RAVDESS, 120 clips of two actors leave many grid
points tied and the choice among them moves speaker-independent accuracy by about 9 points. Here:

* :func:`grouped_folds`: ``k`` folds in which every group (a speaker; on AFEW, which has no speaker
  ids, each clip is its own group) lies in exactly one fold; groups are dealt to the folds in turn after
  sorting them by their most frequent class, so the folds are about equally large and class-balanced.
* :func:`cross_validate`: every grid point of a classifier fitted on ``k - 1`` folds and scored on the
  left-out one, for every fold; the score of a point is its mean held-out accuracy over the folds.
* :func:`choose`, the tie rule: among the points with the best mean accuracy, the **smallest model**:
  fewest PCA components, then smallest C, then smallest gamma (``"scale"`` counts as 1 / the number of
  inputs, its value on unit-variance inputs). When the folds cannot tell points apart,
  the one with the least capacity to fit the training speakers' idiosyncrasies (fewer dimensions, a wider
  margin, a smoother kernel) is the safer bet for unseen speakers, and the cheapest.
* :data:`CANDIDATES`: the paper's model (standardisation -> PCA -> RBF SVM,
  :func:`emotiw_utils.audio.fit_audio_model`'s pipeline) and the alternatives compared with it: an RBF
  SVM without PCA, a linear SVM and logistic regression on the standardised IS10 features, and an RBF SVM
  on the 88 eGeMAPSv02 functionals (:mod:`emotiw_utils.egemaps`). Every classifier standardises its inputs
  first (on the training rows of each fit) and predicts the argmax of its decision values, the class the
  stage's calibrated model (:func:`emotiw_utils.svm.calibrated_fit`) predicts too.
* :func:`compare_on_folds`: each candidate selected on the same folds of the training clips, refitted on
  all of them and scored on a held-out split (chapter 05, synthetic AFEW).
* :func:`speaker_independent`: nested evaluation by speaker (RAVDESS): for each outer fold of left-out
  speakers, every candidate is selected by grouped cross-validation over the remaining speakers (the same
  inner folds for all), refitted on them and scored on the unseen speakers; accuracy and unweighted
  average recall per outer fold, and every clip's prediction (each clip is tested exactly once).

scikit-learn is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emotiw_utils import metrics
from emotiw_utils.constants import NUM_CLASSES

__all__ = ["CANDIDATES", "PAPER", "Candidate", "Selection", "SpeakerResult", "choose", "compare_on_folds",
           "cross_validate", "fit_predict", "grid_points", "grouped_folds", "make_model", "paper_model", "select",
           "speaker_independent"]


@dataclass(frozen=True)
class Candidate:
    """One compared classifier: ``name`` (key), ``label`` (for tables), the ``features`` it reads
    (``"is10"`` or ``"egemaps"``) and the hyperparameter ``axes`` it searches, in the order of the tie rule."""

    name: str
    label: str
    features: str
    axes: tuple[str, ...]


#: The paper's model (section 3) and the alternatives chapter 05 compares with it.
CANDIDATES: dict[str, Candidate] = {c.name: c for c in (
    Candidate("pca_rbf", "IS10, PCA + RBF SVM (the paper)", "is10", ("n_components", "C", "gamma")),
    Candidate("rbf", "IS10, RBF SVM without PCA", "is10", ("C", "gamma")),
    Candidate("linear_svm", "IS10, linear SVM", "is10", ("C",)),
    Candidate("logreg", "IS10, logistic regression", "is10", ("C",)),
    Candidate("egemaps_rbf", "eGeMAPSv02, RBF SVM", "egemaps", ("C", "gamma")),
)}
#: The paper's model.
PAPER = "pca_rbf"
#: Axes fitted before the classifier (the scaler and PCA are fitted once per fold and value of these).
_FRONT_AXES = ("n_components",)


def _candidate(name: str) -> Candidate:
    try:
        return CANDIDATES[name]
    except KeyError:
        raise ValueError(f"unknown audio classifier {name!r}; known: {', '.join(CANDIDATES)}") from None


def grid_points(name: str, pca_dims: Sequence[int] = (), Cs: Sequence[float] = (), gammas: Sequence[Any] = (),
                linear_Cs: Sequence[float] = ()) -> list[dict[str, Any]]:
    """The grid of candidate ``name`` as a list of points (dicts over its axes). The RBF SVMs search
    ``Cs`` x ``gammas`` (the paper's model also ``pca_dims``); the linear SVM and logistic regression,
    whose useful C on 1582 standardised features is far smaller, search ``linear_Cs``."""
    cand = _candidate(name)
    values = {"n_components": [int(d) for d in pca_dims],
              "C": [float(c) for c in (linear_Cs if name in ("linear_svm", "logreg") else Cs)],
              "gamma": list(gammas)}
    axes = [values[a] for a in cand.axes]
    empty = [a for a, v in zip(cand.axes, axes) if not v]
    if empty:
        raise ValueError(f"{name}: empty grid for {', '.join(empty)}")
    points: list[dict[str, Any]] = [{}]
    for axis, vals in zip(cand.axes, axes):
        points = [{**p, axis: v} for p in points for v in vals]
    return points


def paper_model(n_components: int, C: float, gamma: Any, seed: int = 0):
    """The paper's audio model, unfitted: standardiser -> PCA of ``n_components`` (capped by the data, not
    whitened) -> RBF SVM."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from emotiw_utils.capped_pca import CappedPCA

    return Pipeline([("scaler", StandardScaler()),
                     # not whitened: whitening would give the 200th component, mostly noise, the weight of the
                     # first in the RBF distance (RAVDESS, leave-two-actors-out: 51.9 % whitened, 58.3 % not)
                     ("pca", CappedPCA(n_components=int(n_components), whiten=False, random_state=seed)),
                     ("svc", SVC(kernel="rbf", C=C, gamma=gamma, random_state=seed))])


def make_model(name: str, point: Mapping[str, Any], seed: int = 0):
    """The unfitted scikit-learn pipeline of candidate ``name`` at grid ``point`` (a standardiser first)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    _candidate(name)
    if name == "pca_rbf":
        return paper_model(int(point["n_components"]), float(point["C"]), point["gamma"], seed)
    if name in ("rbf", "egemaps_rbf"):
        head = SVC(kernel="rbf", C=float(point["C"]), gamma=point["gamma"], random_state=seed)
    elif name == "linear_svm":
        head = SVC(kernel="linear", C=float(point["C"]), random_state=seed)
    else:
        head = LogisticRegression(C=float(point["C"]), max_iter=2000, random_state=seed)
    return Pipeline([("scaler", StandardScaler()), ("clf", head)])


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The argmax of the decision values (what :class:`emotiw_utils.svm.SoftmaxSvm` predicts)."""
    from emotiw_utils.svm import SoftmaxSvm

    return SoftmaxSvm(model, 1.0).predict(x)


def grouped_folds(groups: Any, labels: Any, n_folds: int, seed: int = 0) -> np.ndarray:
    """``(n,)`` fold index in ``0..n_folds-1`` of every row; all rows of a group share one fold.

    The groups are shuffled (``seed``), stably sorted by their most frequent label and dealt to the folds
    in turn: equal group counts per fold (to one) and, with one-row groups (clips), stratified folds.
    ValueError when there are fewer groups than folds or fewer than two folds.
    """
    g = np.asarray(groups)
    y = np.asarray(labels).astype(np.int64)
    if g.ndim != 1 or y.shape != g.shape:
        raise ValueError(f"groups and labels must be (n,) alike; got {g.shape} and {y.shape}")
    if int(n_folds) < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    uniq, inverse = np.unique(g, return_inverse=True)
    if len(uniq) < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} groups (speakers, or clips where there are "
                         f"no speaker ids); got {len(uniq)}")
    dominant = np.array([np.bincount(y[inverse == i] - y.min()).argmax() for i in range(len(uniq))])
    order = np.random.default_rng(seed).permutation(len(uniq))
    order = order[np.argsort(dominant[order], kind="stable")]
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    fold_of_group[order] = np.arange(len(uniq)) % int(n_folds)
    return fold_of_group[inverse]


def _check(x: Any, y: Any, fold_of: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xa, ya, fa = np.asarray(x, dtype=np.float64), np.asarray(y).astype(np.int64), np.asarray(fold_of)
    if xa.ndim != 2 or ya.shape != (len(xa),) or fa.shape != (len(xa),):
        raise ValueError(f"x must be (n, d), y and fold_of (n,); got {xa.shape}, {ya.shape}, {fa.shape}")
    if not np.isfinite(xa).all():
        raise ValueError(f"{int((~np.isfinite(xa).all(axis=1)).sum())} rows have missing (NaN) features: "
                         f"leave them out of the selection (their extraction status says why)")
    if ((ya < 0) | (ya >= NUM_CLASSES)).any():
        raise ValueError(f"labels must be in 0..{NUM_CLASSES - 1} (unlabelled clips cannot be scored)")
    for k in np.unique(fa):
        if np.unique(ya[fa != k]).size < 2:
            raise ValueError(f"the training folds without fold {k} hold fewer than two classes")
    if np.unique(fa).size < 2:
        raise ValueError("need at least two folds")
    return xa, ya, fa


def _capped(name: str, points: Sequence[Mapping[str, Any]], max_components: int) -> list[dict[str, Any]]:
    """PCA sizes capped at ``max_components`` (duplicates removed, first kept)."""
    if "n_components" not in _candidate(name).axes:
        return [dict(p) for p in points]
    out, seen = [], set()
    for p in points:
        q = {**p, "n_components": min(int(p["n_components"]), int(max_components))}
        key = tuple((k, str(v)) for k, v in q.items())
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out


def cross_validate(name: str, x: Any, y: Any, fold_of: Any, points: Sequence[Mapping[str, Any]],
                   seed: int = 0):
    """Score every grid point of candidate ``name`` by cross-validation over the folds ``fold_of``.

    Returns a DataFrame, one row per point in grid order: the point's axes, ``train_acc`` (mean accuracy
    on the training folds), ``cv_acc`` and ``cv_std`` (mean and standard deviation over the folds of the
    held-out fold's accuracy). PCA sizes are capped at the smallest training fold (and at the number of
    features), so that every fold fits the size its row names.
    """
    import pandas as pd
    from threadpoolctl import threadpool_limits

    xa, ya, fa = _check(x, y, fold_of)
    folds = np.unique(fa)
    cap = min(min(int((fa != k).sum()) for k in folds), xa.shape[1])
    pts = _capped(name, points, cap)
    if not pts:
        raise ValueError(f"{name}: empty grid")
    train_acc = np.zeros((len(pts), len(folds)))
    test_acc = np.zeros((len(pts), len(folds)))
    with threadpool_limits(1):  # small problems: BLAS threads only contend (lbfgs: 0.06 s alone, 9 s with 2)
        _score_folds(name, xa, ya, fa, folds, pts, seed, train_acc, test_acc)
    rows = [{**p, "train_acc": float(train_acc[i].mean()), "cv_acc": float(test_acc[i].mean()),
             "cv_std": float(test_acc[i].std())} for i, p in enumerate(pts)]
    return pd.DataFrame(rows)


def _score_folds(name, xa, ya, fa, folds, pts, seed, train_acc, test_acc) -> None:
    from sklearn.base import clone

    for j, k in enumerate(folds):
        tr, te = fa != k, fa == k
        fronts: dict[tuple, Any] = {}
        for i, p in enumerate(pts):
            model = make_model(name, p, seed)
            key = tuple(p[a] for a in _FRONT_AXES if a in p)
            if key not in fronts:
                front = clone(model[:-1]).fit(xa[tr])
                fronts[key] = (front.transform(xa[tr]), front.transform(xa[te]))
            zt, zs = fronts[key]
            head = clone(model[-1]).fit(zt, ya[tr])
            train_acc[i, j] = np.mean(_predict(head, zt) == ya[tr])
            test_acc[i, j] = np.mean(_predict(head, zs) == ya[te])


def _gamma_value(gamma: Any, n_inputs: int) -> float:
    return 1.0 / n_inputs if isinstance(gamma, str) else float(gamma)


def choose(name: str, grid: Any, n_features: int) -> dict[str, Any]:
    """The chosen row of :func:`cross_validate`'s ``grid`` (a dict): the best ``cv_acc``; ties (equal to
    1e-12) go to the smallest model: fewest PCA components, then smallest C, then smallest gamma
    (``"scale"`` counts as 1 / the number of SVM inputs, the PCA size or ``n_features`` without PCA: its value
    on unit-variance inputs)."""
    cand = _candidate(name)
    rows = grid.to_dict(orient="records")
    if not rows:
        raise ValueError("empty grid")
    best = max(r["cv_acc"] for r in rows)
    tied = [r for r in rows if r["cv_acc"] >= best - 1e-12]

    def size(r: Mapping[str, Any]) -> tuple:
        n_inputs = int(r.get("n_components", n_features))
        return tuple(_gamma_value(r[a], n_inputs) if a == "gamma" else float(r[a]) for a in cand.axes)

    return dict(min(tied, key=size))


@dataclass
class Selection:
    """:func:`select`'s outcome: candidate ``name``, the chosen ``point`` (its axes), the scored ``grid``
    (:func:`cross_validate`) and the chosen point's ``cv_acc`` / ``cv_std`` / ``train_acc``."""

    name: str
    point: dict[str, Any]
    grid: Any
    cv_acc: float
    cv_std: float
    train_acc: float

    def describe(self) -> str:
        """E.g. ``"n_components 20, C 1, gamma scale"``."""
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.point.items())


def select(name: str, x: Any, y: Any, fold_of: Any, points: Sequence[Mapping[str, Any]],
           seed: int = 0) -> Selection:
    """Cross-validate every point (:func:`cross_validate`) and choose one (:func:`choose`)."""
    grid = cross_validate(name, x, y, fold_of, points, seed)
    row = choose(name, grid, np.asarray(x).shape[1])
    return Selection(name, {a: row[a] for a in _candidate(name).axes}, grid, float(row["cv_acc"]),
                     float(row["cv_std"]), float(row["train_acc"]))


def fit_predict(name: str, point: Mapping[str, Any], x_train: Any, y_train: Any, x_test: Any,
                seed: int = 0) -> np.ndarray:
    """Fit candidate ``name`` at ``point`` on the training rows and predict ``x_test`` (argmax of the
    decision values). PCA sizes are capped at the number of training rows."""
    xt = np.asarray(x_train, dtype=np.float64)
    yt = np.asarray(y_train).astype(np.int64)
    from threadpoolctl import threadpool_limits

    p = _capped(name, [point], min(xt.shape))[0]
    with threadpool_limits(1):
        model = make_model(name, p, seed).fit(xt, yt)
        return _predict(model, np.asarray(x_test, dtype=np.float64))


def compare_on_folds(features: Mapping[str, Any], labels: Any, fold_of: Any, grids: Mapping[str, Sequence],
                     held_out: Mapping[str, Any] | None = None, held_out_labels: Any = None, seed: int = 0,
                     reuse: Mapping[str, Selection] | None = None):
    """Every candidate of ``grids`` (name -> points) selected on the same folds of the training rows,
    refitted on all of them and, when given, scored on the held-out rows.

    ``features``: feature set (``"is10"``, ``"egemaps"``) -> ``(n, d)`` training rows (the same clips, in the
    same order, for every set); ``held_out``: the same for the held-out clips. ``reuse``: selections already
    made on exactly these rows and folds (the stage's own search). Returns ``(table, selections)``: a
    DataFrame with one row per candidate (``model``, ``features``, ``chosen``, ``cv_acc``, ``cv_std``,
    ``train_acc`` of the refit, ``held_out_acc``, ``held_out_uar``) and name -> :class:`Selection`.
    """
    import pandas as pd

    y = np.asarray(labels).astype(np.int64)
    rows, chosen = [], {}
    for name, points in grids.items():
        cand = _candidate(name)
        if cand.features not in features:
            raise ValueError(f"{name} reads {cand.features} features, which were not given")
        x = features[cand.features]
        sel = (reuse or {}).get(name) or select(name, x, y, fold_of, points, seed)
        chosen[name] = sel
        row = {"model": cand.label, "features": cand.features, "chosen": sel.describe(),
               "cv_acc": sel.cv_acc, "cv_std": sel.cv_std}
        xs = [x] + ([held_out[cand.features]] if held_out is not None else [])
        pred = fit_predict(name, sel.point, x, y, np.concatenate(xs), seed)
        row["train_acc"] = float(np.mean(pred[: len(x)] == y))
        if held_out is not None:
            yh = np.asarray(held_out_labels).astype(np.int64)
            row["held_out_acc"] = metrics.accuracy(yh, pred[len(x):])
            row["held_out_uar"] = metrics.unweighted_average_recall(yh, pred[len(x):])
        rows.append(row)
    return pd.DataFrame(rows), chosen


@dataclass
class SpeakerResult:
    """One candidate's nested speaker-independent evaluation (:func:`speaker_independent`): per outer fold
    the test speakers, ``accuracy``, ``uar`` and chosen point; ``pred`` ``(n,)`` every clip's prediction
    (from the fold that left its speaker out)."""

    name: str
    test_groups: list[tuple] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    uar: list[float] = field(default_factory=list)
    chosen: list[dict[str, Any]] = field(default_factory=list)
    pred: np.ndarray | None = None

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation over the outer folds of accuracy and UAR."""
        return {"acc_mean": float(np.mean(self.accuracy)), "acc_std": float(np.std(self.accuracy)),
                "uar_mean": float(np.mean(self.uar)), "uar_std": float(np.std(self.uar))}


def speaker_independent(features: Mapping[str, Any], labels: Any, speakers: Any, test_groups: Sequence[Sequence],
                        grids: Mapping[str, Sequence], n_folds: int = 5, seed: int = 0,
                        progress: bool = False) -> dict[str, SpeakerResult]:
    """Nested leave-speakers-out evaluation of every candidate of ``grids`` (name -> points).

    For each entry of ``test_groups`` (the speakers of one outer fold; disjoint, together covering every
    speaker), the remaining speakers are split into ``n_folds`` :func:`grouped_folds` (the same for every
    candidate), each candidate is selected on them, refitted on all of them and scored on the left-out
    speakers. ``features``: feature set -> ``(n, d)`` (no missing rows).
    """
    y = np.asarray(labels).astype(np.int64)
    spk = np.asarray(speakers)
    outer = [tuple(t) for t in test_groups]
    covered = np.concatenate([np.isin(spk, list(t)).astype(int)[None] for t in outer]).sum(0)
    if (covered != 1).any():
        raise ValueError("the outer test groups must be disjoint and cover every speaker once "
                         f"({int((covered == 0).sum())} clips uncovered, {int((covered > 1).sum())} covered twice)")
    results = {name: SpeakerResult(name, pred=np.full(len(y), -1, dtype=np.int64)) for name in grids}
    it = outer
    if progress:
        from tqdm import tqdm

        it = tqdm(outer, desc="outer folds", unit="fold")
    for t in it:
        te = np.isin(spk, list(t))
        tr = ~te
        fold_of = grouped_folds(spk[tr], y[tr], n_folds, seed)
        for name, points in grids.items():
            x = np.asarray(features[_candidate(name).features], dtype=np.float64)
            sel = select(name, x[tr], y[tr], fold_of, points, seed)
            pred = fit_predict(name, sel.point, x[tr], y[tr], x[te], seed)
            r = results[name]
            r.pred[te] = pred
            r.test_groups.append(t)
            r.accuracy.append(metrics.accuracy(y[te], pred))
            r.uar.append(metrics.unweighted_average_recall(y[te], pred))
            r.chosen.append(sel.point)
    return results
