"""Figure helpers: they draw what they are given and the face window logic is right."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from emotiw_utils import plots
from emotiw_utils.constants import EMOTIONS


def test_face_window_centres_on_the_face_and_stays_inside():
    kps = np.tile(np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], dtype=np.float32), (5, 1, 1))
    kps[2] = np.nan
    y0, y1, x0, x1 = plots.face_window(kps, (144, 176), margin=2.0)
    assert (y1 - y0) == (x1 - x0) == 80 and x0 <= 40 and x1 >= 60 and y0 <= 50 and y1 >= 70
    assert 0 <= y0 and y1 <= 144 and 0 <= x0 and x1 <= 176
    assert plots.face_window(np.full((3, 5, 2), np.nan), (144, 176)) == (0, 144, 0, 176)
    near_edge = kps + np.array([-38, -48], dtype=np.float32)
    y0, y1, x0, x1 = plots.face_window(near_edge, (144, 176), margin=2.0)
    assert x0 == 0 and y0 == 0


def test_figures_draw_one_panel_per_item():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (10, 144, 176, 3), dtype=np.uint8)
    kps = np.tile(np.array([[80, 60], [96, 60], [88, 70], [82, 80], [94, 80]], dtype=np.float32), (10, 1, 1))
    fig = plots.frame_strip([("Happy", frames, kps), ("Sad", frames, None)], n_frames=4, zoom=True)
    assert len(fig.axes) == 8
    assert fig.axes[0].images[0].get_array().shape[:2] != (144, 176)  # zoomed
    faces = rng.integers(0, 255, (70, 48, 48), dtype=np.uint8)
    fig = plots.face_grid(faces, np.repeat(np.arange(7), 10), per_class=3)
    assert len(fig.axes) == 21 and sum(len(a.images) for a in fig.axes) == 21
    counts = pd.DataFrame([[1] * 7, [2] * 7], index=["Train", "Val"], columns=list(EMOTIONS))
    assert len(plots.class_counts_bar(counts).axes[0].patches) == 14
    fig = plots.spectrogram_grid([rng.normal(size=8000), rng.normal(size=300)], 16000, ["a", "b"])
    assert sum(1 for a in fig.axes if a.get_title() in ("a", "b")) == 2


def test_alignment_and_classifier_figures():
    import matplotlib.pyplot as plt

    from emotiw_utils import faces

    shape = np.array([[16.8, 21.1], [31.1, 21.0], [24.0, 30.0], [17.7, 37.2], [30.4, 37.2]])
    als = [faces.fit_dataset_alignment("FER2013", shape[None], shape),
           faces.fit_dataset_alignment("TFD", (shape * 1.2 - 4.8)[None], shape)]
    fig = plots.mean_shapes(als)
    # after mapping, the TFD markers sit on FER2013's (right panel)
    right = fig.axes[1].collections
    np.testing.assert_allclose(right[0].get_offsets(), right[5].get_offsets(), atol=1e-6)
    img = np.zeros((48, 48), np.uint8)
    fig = plots.image_rows([("a", [(img, "x"), (img, "")]), ("b", [(img, "")])])
    assert len(fig.axes) == 4
    fig = plots.face_box(np.zeros((90, 120), np.uint8), shape * 2, (50, 50, 40), img)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 1
    hist = pd.DataFrame({"epoch": [1, 2, 3], "train_acc": [0.3, 0.5, 0.6], "val_acc": [0.3, 0.4, 0.35]})
    fig = plots.learning_curves(hist, {"train_acc": "train", "val_acc": "val", "absent": "skipped"}, {"best": 2})
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["train", "val", "best keeps epoch 2"]
    cm = np.eye(7) * 0.5 + 0.5 / 7
    fig = plots.confusion_matrix(cm)
    assert len(fig.axes[0].texts) == 49
    fig = plots.per_class_bars({"a": np.full(7, 0.5), "b": np.r_[np.full(6, 0.2), np.nan]})
    assert len(fig.axes[0].patches) == 14
    plt.close("all")


def test_regime_curves_one_panel_per_regime():
    h = pd.DataFrame({"epoch": [1, 2, 3], "train_acc": [0.2, 0.4, 0.5], "val_acc": [0.2, 0.3, 0.25]})
    fig = plots.regime_curves({"original": (h, 2), "stable": (h, 3)}, "Val", title="Figure 5")
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == ["original", "stable"]
    assert len(fig.axes[0].lines) == 3  # train, Val, kept epoch
    assert len(plots.regime_curves({"fixed": (h, 3)}, None).axes[0].lines) == 1
