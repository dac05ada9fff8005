"""Tests of emotiw_utils.protocol: partition validation (paper 6.3) and the labelled-split check."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils.protocol import Partition, check_partition, require_labels


def test_standard_and_swapped_partitions():
    p = check_partition(["Train"], "Val")
    assert p == Partition(train=("Train",), select="Val", fixed=False)
    assert p.label == "train on Train, select on Val"
    assert p.evaluated() == ["Train", "Val", "Test"]
    q = check_partition("Val", "Train")  # a bare name is one split
    assert q.train == ("Val",) and q.evaluated() == ["Val", "Train", "Test"]
    assert p.held_out == "Val" and q.held_out == "Train"


def test_retraining_on_train_plus_val_needs_fixed_hyperparameters():
    with pytest.raises(ValueError, match="over-fitting"):
        check_partition(["Train", "Val"], "Val")
    p = check_partition(["Train", "Val"], "Val", fixed=True)  # Val only monitored
    assert p.fixed and "fixed" in p.label
    assert p.held_out is None  # Val trained the model: its accuracy is no validation figure
    assert check_partition(["Train", "Val"], None, fixed=True).select is None
    with pytest.raises(ValueError, match="select_split is None"):
        check_partition(["Train"], None)


@pytest.mark.parametrize("train, select, match", [
    ([], "Val", "empty"),
    (["Train", "Dev"], "Val", "unknown splits"),
    (["Train", "Train"], "Val", "twice"),
    (["Train"], "Validation", "not a split"),
])
def test_bad_partitions(train, select, match):
    with pytest.raises(ValueError, match=match):
        check_partition(train, select)


def test_require_labels_names_the_unlabelled_split():
    labels = {"Train": np.array([0, 1, 2]), "Test": np.array([-1, 3, -1])}
    require_labels(labels, ["Train"])
    with pytest.raises(ValueError, match=r"'Test' has 2 of 3 clips without a label"):
        require_labels(labels, ["Train", "Test"])
