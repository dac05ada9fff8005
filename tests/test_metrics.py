"""Classification metrics: accuracy, confusion matrix, per-class recall, UAR; label -1 ignored."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotiw_utils.metrics import (accuracy, confusion_matrix, per_class_accuracy, seed_table, split_accuracies,
                                  unweighted_average_recall)

# 3 classes: class 0 has 4 samples (3 right), class 1 has 2 (1 right), class 2 has none; two unknown (-1).
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, -1, -1])
Y_PRED = np.array([0, 0, 0, 1, 1, 2, 2, 0])


def test_confusion_matrix_counts_and_normalisations():
    cm = confusion_matrix(Y_TRUE, Y_PRED, n_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[3, 1, 0], [0, 1, 1], [0, 0, 0]])
    rows = confusion_matrix(Y_TRUE, Y_PRED, n_classes=3, normalise="true")
    np.testing.assert_allclose(rows[:2], [[0.75, 0.25, 0], [0, 0.5, 0.5]])
    assert np.all(np.isnan(rows[2]))
    cols = confusion_matrix(Y_TRUE, Y_PRED, n_classes=3, normalise="pred")
    np.testing.assert_allclose(cols[:, 0], [1, 0, 0])
    np.testing.assert_allclose(confusion_matrix(Y_TRUE, Y_PRED, n_classes=3, normalise="all").sum(), 1.0)
    assert confusion_matrix([0, 6], [6, 6]).shape == (7, 7)  # default: the seven emotions
    with pytest.raises(ValueError, match="normalise"):
        confusion_matrix(Y_TRUE, Y_PRED, normalise="rows")


def test_accuracy_per_class_and_uar_ignore_unknown_labels():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    r = per_class_accuracy(Y_TRUE, Y_PRED, n_classes=3)
    np.testing.assert_allclose(r[:2], [0.75, 0.5])
    assert math.isnan(r[2])
    assert unweighted_average_recall(Y_TRUE, Y_PRED, n_classes=3) == pytest.approx(0.625)
    r7 = per_class_accuracy(Y_TRUE, Y_PRED)
    assert r7.shape == (7,) and np.isnan(r7[2:]).all()
    # a hand example for UAR vs accuracy on an imbalanced set: 9/10 of class 0 right, 0/2 of class 1
    t = [0] * 10 + [1] * 2
    p = [0] * 9 + [1] + [0, 0]
    assert accuracy(t, p) == pytest.approx(9 / 12)
    assert unweighted_average_recall(t, p) == pytest.approx((0.9 + 0.0) / 2)


def test_scores_tensors_and_edge_cases():
    scores = np.eye(7)[[0, 1, 2, 3]] * 5.0  # 2-D scores -> argmax
    assert accuracy(torch.tensor([0, 1, 2, 4]), torch.from_numpy(scores)) == pytest.approx(0.75)
    assert math.isnan(accuracy([-1, -1], [0, 1]))
    assert math.isnan(unweighted_average_recall([-1], [3]))
    assert confusion_matrix([-1], [3]).sum() == 0
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="true labels must be in 0..6"):
        per_class_accuracy([7], [0])
    with pytest.raises(ValueError, match="predicted labels"):
        confusion_matrix([0], [-1])


def test_split_accuracies_pool_the_training_splits_and_seed_table_formats():
    eye = np.eye(3)
    probs = {"Train": eye[[0, 1, 2, 0]], "Val": eye[[1, 1]], "Test": eye[[2, 2]]}
    labels = {"Train": np.array([0, 1, 1, 1]), "Val": np.array([1, 0]), "Test": np.array([-1, -1])}
    acc = split_accuracies(probs, labels, ["Train", "Val"])
    assert acc["Train"] == 0.5 and acc["Val"] == 0.5 and math.isnan(acc["Test"])
    assert acc["train"] == pytest.approx(3 / 6)  # Train and Val clips pooled, not the mean of the two
    table = seed_table({0: acc, 1: {**acc, "Val": 2 / 3}}, skip=["Train"])
    assert list(table.index) == ["seed 0", "seed 1"]
    assert list(table.columns) == ["Val (%)", "train (%)"]  # NaN Test and skipped Train left out
    assert table.loc["seed 1", "Val (%)"] == 66.7
