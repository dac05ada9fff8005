"""Tests of emotiw_utils.audio_selection: grouped folds, the tie rule, standardisation before PCA, the
comparison of audio classifiers and the nested speaker-independent evaluation (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emotiw_utils import audio
from emotiw_utils import audio_selection as sel


def _speakers(n_speakers: int = 6, per_class: int = 3, d: int = 30, seed: int = 0, shift: float = 1.0):
    """Every speaker says every class ``per_class`` times; classes are blobs, each speaker adds an offset."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(7, d))
    x, y, g = [], [], []
    for s in range(n_speakers):
        offset = rng.normal(scale=shift, size=d)
        for c in range(7):
            x.append(centres[c] + offset + rng.normal(size=(per_class, d)))
            y += [c] * per_class
            g += [s] * per_class
    return np.concatenate(x), np.array(y), np.array(g)


def test_grouped_folds_never_split_a_speaker():
    _, y, g = _speakers(n_speakers=7)
    for seed in range(3):
        fold_of = sel.grouped_folds(g, y, 3, seed)
        for s in np.unique(g):
            assert np.unique(fold_of[g == s]).size == 1  # a speaker lies in one fold
        counts = np.bincount(np.array([fold_of[g == s][0] for s in np.unique(g)]))
        assert sorted(counts) == [2, 2, 3]  # speakers dealt evenly
    assert not np.array_equal(sel.grouped_folds(g, y, 3, 0), sel.grouped_folds(g, y, 3, 1))  # seeded


def test_grouped_folds_by_clip_are_stratified():
    y = np.repeat(np.arange(7), 10)
    fold_of = sel.grouped_folds(np.arange(len(y)), y, 5, seed=2)
    for k in range(5):
        np.testing.assert_array_equal(np.bincount(y[fold_of == k], minlength=7), 2)


def test_grouped_folds_bad_input():
    with pytest.raises(ValueError, match="at least 4 groups"):
        sel.grouped_folds([0, 0, 1, 2], [0, 1, 0, 1], 4)
    with pytest.raises(ValueError, match="at least 2 folds"):
        sel.grouped_folds([0, 1], [0, 1], 1)


def test_tie_rule_smallest_model():
    grid = pd.DataFrame([
        {"n_components": 50, "C": 1.0, "gamma": 0.001, "cv_acc": 0.6},
        {"n_components": 20, "C": 10.0, "gamma": 0.001, "cv_acc": 0.6},
        {"n_components": 20, "C": 3.0, "gamma": 0.01, "cv_acc": 0.6},
        {"n_components": 20, "C": 3.0, "gamma": "scale", "cv_acc": 0.6},  # 1/20 = 0.05 > 0.01
        {"n_components": 10, "C": 1.0, "gamma": 0.001, "cv_acc": 0.55},  # smaller but worse
    ])
    assert sel.choose("pca_rbf", grid, 1582)["gamma"] == 0.01
    assert sel.choose("pca_rbf", grid, 1582)["n_components"] == 20
    grid.loc[4, "cv_acc"] = 0.7
    assert sel.choose("pca_rbf", grid, 1582)["n_components"] == 10  # the best accuracy comes first
    rbf = pd.DataFrame([{"C": 1.0, "gamma": 0.01, "cv_acc": 0.5}, {"C": 1.0, "gamma": "scale", "cv_acc": 0.5}])
    assert sel.choose("rbf", rbf, 1582)["gamma"] == "scale"  # 1/1582 < 0.01 without PCA


def test_features_are_standardised_before_pca():
    from sklearn.base import clone

    x, y, g = _speakers(n_speakers=4, d=40, seed=1)
    model = sel.make_model("pca_rbf", {"n_components": 5, "C": 1.0, "gamma": "scale"})
    assert [name for name, _ in model.steps] == ["scaler", "pca", "svc"]
    # ten uninformative features on scales up to 1e6: unstandardised, they would be PCA's first components
    loud = x.copy()
    loud[:, :10] = np.random.default_rng(0).normal(size=(len(x), 10)) * np.logspace(3, 6, 10)
    fold_of = sel.grouped_folds(g, y, 4)
    points = sel.grid_points("pca_rbf", (5,), (1,), ("scale",))
    assert sel.select("pca_rbf", loud, y, fold_of, points).cv_acc > 0.8
    unscaled = np.mean([np.mean(clone(model[1:]).fit(loud[fold_of != k], y[fold_of != k]).predict(loud[fold_of == k])
                                == y[fold_of == k]) for k in range(4)])
    assert unscaled < 0.5  # PCA on the raw features keeps only the loud noise


def test_cross_validate_scores_every_point_on_every_fold():
    x, y, g = _speakers(n_speakers=4)
    fold_of = sel.grouped_folds(g, y, 4)
    points = sel.grid_points("pca_rbf", pca_dims=(5, 500), Cs=(1, 10), gammas=("scale",))
    grid = sel.cross_validate("pca_rbf", x, y, fold_of, points)
    assert list(grid.columns) == ["n_components", "C", "gamma", "train_acc", "cv_acc", "cv_std"]
    assert sorted(set(grid["n_components"])) == [5, 30]  # capped at the 30 features
    # the score of a point is the mean over the folds of a model fitted without the fold
    k_acc = []
    for k in range(4):
        m = sel.make_model("pca_rbf", {"n_components": 5, "C": 1.0, "gamma": "scale"}).fit(x[fold_of != k],
                                                                                            y[fold_of != k])
        k_acc.append(np.mean(m.predict(x[fold_of == k]) == y[fold_of == k]))
    assert grid.loc[0, "cv_acc"] == pytest.approx(np.mean(k_acc)) and grid.loc[0, "cv_std"] == pytest.approx(
        np.std(k_acc))
    with pytest.raises(ValueError, match="missing"):
        sel.cross_validate("pca_rbf", np.where(np.arange(len(x))[:, None] == 0, np.nan, x), y, fold_of, points)
    with pytest.raises(ValueError, match="unknown audio classifier"):
        sel.grid_points("gmm", Cs=(1,))


def test_compare_on_folds_every_candidate():
    x, y, g = _speakers(n_speakers=5, d=40)
    egemaps = x[:, :12] + 0.1  # stands for the 88 eGeMAPS features
    train, test = g < 4, g == 4
    fold_of = sel.grouped_folds(g[train], y[train], 4)
    grids = {"pca_rbf": sel.grid_points("pca_rbf", (5, 10), (1, 10), ("scale",)),
             "rbf": sel.grid_points("rbf", Cs=(1,), gammas=("scale",)),
             "linear_svm": sel.grid_points("linear_svm", linear_Cs=(0.01, 1)),
             "logreg": sel.grid_points("logreg", linear_Cs=(0.01, 1)),
             "egemaps_rbf": sel.grid_points("egemaps_rbf", Cs=(1,), gammas=("scale",))}
    table, chosen = sel.compare_on_folds({"is10": x[train], "egemaps": egemaps[train]}, y[train], fold_of, grids,
                                         held_out={"is10": x[test], "egemaps": egemaps[test]},
                                         held_out_labels=y[test])
    assert list(table["model"]) == [sel.CANDIDATES[n].label for n in grids]
    assert (table["held_out_acc"] > 0.7).all() and (table["cv_acc"] > 0.7).all()
    # the paper's model of the comparison is the one fit_audio_grid chooses on the same folds
    res = audio.fit_audio_grid(x[train], y[train], (5, 10), (1, 10), ("scale",), groups=g[train], n_folds=4)
    assert chosen["pca_rbf"].point == {"n_components": res.n_components, "C": res.C, "gamma": res.gamma}
    again, _ = sel.compare_on_folds({"is10": x[train]}, y[train], fold_of, {"pca_rbf": grids["pca_rbf"]},
                                    reuse={"pca_rbf": chosen["pca_rbf"]})
    assert again.loc[0, "cv_acc"] == table.loc[0, "cv_acc"] and "held_out_acc" not in again
    with pytest.raises(ValueError, match="egemaps features"):
        sel.compare_on_folds({"is10": x[train]}, y[train], fold_of, {"egemaps_rbf": grids["egemaps_rbf"]})


def test_speaker_independent_tests_each_clip_once_on_unseen_speakers():
    x, y, g = _speakers(n_speakers=6, d=30, seed=3)
    grids = {"pca_rbf": sel.grid_points("pca_rbf", (5,), (1,), ("scale",)),
             "linear_svm": sel.grid_points("linear_svm", linear_Cs=(0.1,))}
    res = sel.speaker_independent({"is10": x}, y, g, [(0, 1), (2, 3), (4, 5)], grids, n_folds=2)
    for r in res.values():
        assert (r.pred >= 0).all() and len(r.accuracy) == 3 and r.test_groups == [(0, 1), (2, 3), (4, 5)]
        for t, acc in zip(r.test_groups, r.accuracy):
            te = np.isin(g, t)
            assert acc == pytest.approx(np.mean(r.pred[te] == y[te]))
        s = r.summary()
        assert s["acc_mean"] == pytest.approx(np.mean(r.accuracy)) and s["acc_mean"] > 0.7
    # the paper's model per outer fold is evaluate_speaker_split's
    one = audio.evaluate_speaker_split(x, y, g, train=(2, 3, 4, 5), test=(0, 1), pca_dims=(5,), Cs=(1,),
                                       gammas=("scale",), n_folds=2)
    np.testing.assert_array_equal(res["pca_rbf"].pred[one["test_index"]], one["y_pred"])
    with pytest.raises(ValueError, match="cover every speaker"):
        sel.speaker_independent({"is10": x}, y, g, [(0, 1), (1, 2)], grids)
