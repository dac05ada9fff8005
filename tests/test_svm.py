"""Tests of emotiw_utils.svm: RBF SVM grid search on the select split, fixed refits, 7-column probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils.metrics import split_accuracies
from emotiw_utils.svm import (
    SeedFit,
    SvmSearchResult,
    fit_seeds,
    fit_svm,
    fit_svm_grid,
    predict_proba_full,
    softmax_scale,
)

# ---------------------------------------------------------------- SVM


def _blobs(n_per: int, classes, seed: int, d: int = 6):
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[: max(classes) + 1] * 4
    x = np.concatenate([centres[c] + rng.normal(scale=0.7, size=(n_per, d)) for c in classes])
    y = np.repeat(np.asarray(classes), n_per)
    return x, y


def test_fit_svm_grid_separates_synthetic_problem():
    xt, yt = _blobs(20, [0, 3, 5], seed=0)
    xs, ys = _blobs(15, [0, 3, 5], seed=1)
    Cs, gammas = (0.1, 1, 10), ("scale", 0.01, 0.1)
    res = fit_svm_grid(xt, yt, xs, ys, Cs=Cs, gammas=gammas)
    assert isinstance(res, SvmSearchResult)
    assert len(res.grid) == len(Cs) * len(gammas)
    assert list(res.grid.columns) == ["C", "gamma", "train_acc", "select_acc"]
    assert res.select_acc > 0.9
    assert res.select_acc == res.grid["select_acc"].max()
    # ties -> earliest grid point with the best accuracy
    first = res.grid.index[res.grid["select_acc"] == res.grid["select_acc"].max()][0]
    assert (res.C, res.gamma) == (res.grid.loc[first, "C"], res.grid.loc[first, "gamma"])
    assert res.model.named_steps["svc"].C == res.C
    assert np.mean(res.model.predict(xs) == ys) > 0.9

    p = predict_proba_full(res.model, xs)
    assert p.shape == (len(xs), 7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(p[:, [1, 2, 4, 6]] == 0)
    assert np.mean(p.argmax(axis=1) == ys) > 0.9


def test_fit_svm_grid_ignores_unknown_select_labels():
    xt, yt = _blobs(15, [1, 2], seed=2)
    xs, ys = _blobs(10, [1, 2], seed=3)
    ys = ys.copy()
    ys[:5] = -1
    res = fit_svm_grid(xt, yt, xs, ys, Cs=(1,), gammas=("scale",))
    assert len(res.grid) == 1 and res.select_acc > 0.9


def test_fit_svm_grid_bad_input():
    xt, yt = _blobs(10, [0, 1], seed=4)
    bad = yt.copy()
    bad[0] = -1
    kw = dict(Cs=(1,), gammas=("scale",))
    with pytest.raises(ValueError, match="unknown"):
        fit_svm_grid(xt, bad, xt, yt, **kw)
    bad[0] = 7
    with pytest.raises(ValueError):
        fit_svm_grid(xt, bad, xt, yt, **kw)
    with pytest.raises(ValueError):
        fit_svm_grid(xt, np.zeros_like(yt), xt, yt, **kw)  # one class
    with pytest.raises(ValueError):
        fit_svm_grid(xt, yt, xt, np.full_like(yt, -1), **kw)  # nothing to score
    with pytest.raises(ValueError):
        fit_svm_grid(xt, yt, xt[:, :3], yt, **kw)  # feature mismatch
    with pytest.raises(ValueError):
        fit_svm_grid(xt, yt[:-1], xt, yt, **kw)
    with pytest.raises(ValueError):
        fit_svm_grid(xt, yt, xt, yt, Cs=(), gammas=("scale",))


def test_fit_svm_reproduces_the_grid_choice():
    xt, yt = _blobs(20, [0, 3, 5], seed=5)
    xs, ys = _blobs(15, [0, 3, 5], seed=6)
    res = fit_svm_grid(xt, yt, xs, ys, Cs=(0.1, 1, 10), gammas=("scale", 0.1), seed=3)
    refit = fit_svm(xt, yt, res.C, res.gamma, seed=3)
    np.testing.assert_allclose(predict_proba_full(refit, xs), predict_proba_full(res.model, xs))
    with pytest.raises(ValueError, match="C > 0"):
        fit_svm(xt, yt, 0.0, "scale")
    with pytest.raises(ValueError, match="unknown"):
        fit_svm(xt, np.where(np.arange(len(yt)) == 0, -1, yt), 1.0, "scale")


def test_probabilities_agree_with_predictions_even_when_the_svm_overfits():
    """Platt scaling can invert on an overfitting SVM; the softmax calibration cannot (argmax == predict)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 30)), np.repeat(np.arange(6), 20)  # pure noise: memorised, not learned
    m = fit_svm(x, y, 10.0, "scale", seed=0)
    p = predict_proba_full(m, x)
    np.testing.assert_array_equal(p.argmax(1), m.predict(x))
    assert np.mean(m.predict(x) == y) > 0.95  # memorised
    xv, yv = rng.normal(size=(60, 30)), np.repeat(np.arange(6), 10)
    assert predict_proba_full(m, xv).max(1).mean() < 0.5  # held-out folds carried no information: near uniform
    x2, y2 = _blobs(20, [0, 3, 5], seed=7)
    sure = predict_proba_full(fit_svm(x2, y2, 1.0, "scale"), x2)
    assert sure.max(1).mean() > 0.8  # informative decision values: confident


def test_softmax_scale_fits_a_positive_temperature():
    d = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    assert softmax_scale(d, np.array([0, 1, 0, 1])) > 10  # always right: as sharp as the bounds allow
    assert softmax_scale(d, np.array([1, 0, 1, 0])) < 1e-2  # always wrong: never inverted, just flat


def test_fit_seeds_is_the_chapters_per_seed_loop():
    xt, yt = _blobs(10, [0, 2, 4], seed=0)
    xs, ys = _blobs(6, [0, 2, 4], seed=1)
    feats, labels = {"Train": xt, "Val": xs}, {"Train": yt, "Val": ys}
    runs = fit_seeds(lambda s: fit_svm(xt, yt, 1.0, "scale", seed=s), feats, labels, ["Train"], [5, 3])
    assert list(runs) == [5, 3] and all(isinstance(r, SeedFit) and r.seed == s for s, r in runs.items())
    for s, r in runs.items():
        by_hand = fit_svm(xt, yt, 1.0, "scale", seed=s)
        for split, x in feats.items():
            np.testing.assert_array_equal(r.probs[split], predict_proba_full(by_hand, x))
        assert r.accuracy == split_accuracies(r.probs, labels, ["Train"])
    assert runs[5].accuracy["train"] == runs[5].accuracy["Train"] > 0.9
    custom = fit_seeds(lambda s: fit_svm(xt, yt, 1.0, "scale", seed=s), feats, labels, ["Train"], [0],
                       predict=lambda m, x: np.full((len(x), 7), 1 / 7))
    assert custom[0].probs["Val"].shape == (len(xs), 7) and custom[0].accuracy["Val"] == np.mean(ys == 0)
    with pytest.raises(ValueError, match="at least one seed"):
        fit_seeds(lambda s: None, feats, labels, ["Train"], [])
