"""Figures shared by the notebooks. Each function returns the matplotlib Figure it drew."""

from __future__ import annotations

import numpy as np

from .constants import EMOTIONS, NUM_CLASSES


def _finish_epoch_axes(fig, ax, ylabel: str, title: str):
    """The common end of the per-epoch plots: labels, title, grid, legend, tight layout."""
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def _plt():
    import matplotlib.pyplot as plt

    return plt


def class_counts_bar(counts, title: str = "Clips per class and split"):
    """Grouped bar chart of a (splits x classes) pandas DataFrame of counts."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    counts = counts.reindex(columns=list(EMOTIONS), fill_value=0)
    width = 0.8 / max(1, len(counts.index))
    x = np.arange(NUM_CLASSES)
    for i, split in enumerate(counts.index):
        ax.bar(x + i * width, counts.loc[split].values, width, label=str(split))
    ax.set_xticks(x + width * (len(counts.index) - 1) / 2, EMOTIONS)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def length_histogram(lengths_by_split: dict, fps: float, title: str = "Clip length"):
    """Histogram of clip lengths in seconds, one series per split ({split: array of frame counts})."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    all_s = np.concatenate([np.asarray(v) for v in lengths_by_split.values()]) / fps
    bins = np.linspace(0, max(1.0, all_s.max()) + 0.25, 24)
    for split, v in lengths_by_split.items():
        ax.hist(np.asarray(v) / fps, bins=bins, alpha=0.55, label=str(split))
    ax.set_xlabel("seconds")
    ax.set_ylabel("clips")
    ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def face_grid(images, labels, per_class: int = 6, title: str = "", seed: int = 0):
    """Grid of grayscale faces: one row per class, ``per_class`` random examples per row.

    images: (N, H, W) uint8; labels: (N,) ints in 0..6.
    """
    plt = _plt()
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(NUM_CLASSES, per_class, figsize=(per_class * 0.95, NUM_CLASSES * 1.05),
                             squeeze=False)  # (7, 1) axes, not (7,), with one example per class
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(np.asarray(labels) == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(pick):
                ax.imshow(images[pick[j]], cmap="gray", vmin=0, vmax=255)
        axes[c, 0].text(-4, images.shape[1] / 2, EMOTIONS[c], ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.04, hspace=0.04, left=0.16)
    return fig


def face_window(kps: np.ndarray, frame_hw: tuple[int, int], margin: float = 2.4) -> tuple[int, int, int, int]:
    """A fixed square window (y0, y1, x0, x1) around a clip's face: centred on the median keypoint
    centre, side ``2 * margin`` times the median eye distance, clipped to the frame.

    kps: (T, 5, 2) keypoints (NaN where missing). Returns the whole frame if no keypoint is known.
    """
    h, w = frame_hw
    good = np.isfinite(kps).all(axis=(1, 2))
    if not good.any():
        return 0, h, 0, w
    k = kps[good]
    centre = np.median(k.mean(axis=1), axis=0)
    half = margin * np.median(np.linalg.norm(k[:, 1] - k[:, 0], axis=1))
    half = int(np.clip(np.ceil(half), 8, min(h, w) // 2))
    cx = int(np.clip(round(centre[0]), half, w - half))
    cy = int(np.clip(round(centre[1]), half, h - half))
    return cy - half, cy + half, cx - half, cx + half


def frame_strip(rows, n_frames: int = 8, title: str = "", zoom: bool = False):
    """Frame strips with keypoints: rows = [(label_text, frames (T,H,W,3) uint8, keypoints (T,5,2) or None)].

    Shows ``n_frames`` evenly spaced frames per row, keypoints as red dots (absent where NaN).
    ``zoom`` crops every frame of a row to the same window around the face (:func:`face_window`),
    so expressions are visible while head motion still shows.
    """
    plt = _plt()
    fig, axes = plt.subplots(len(rows), n_frames, figsize=(n_frames * 1.6, len(rows) * (1.7 if zoom else 1.4)),
                             squeeze=False)
    for r, (text, frames, kps) in enumerate(rows):
        y0, y1, x0, x1 = (face_window(kps, frames.shape[1:3]) if zoom and kps is not None
                          else (0, frames.shape[1], 0, frames.shape[2]))
        idx = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
        for j, i in enumerate(idx):
            ax = axes[r, j]
            ax.imshow(frames[i, y0:y1, x0:x1])
            ax.axis("off")
            if kps is not None and np.isfinite(kps[i]).all():
                ax.scatter(kps[i, :, 0] - x0, kps[i, :, 1] - y0, s=3 if zoom else 4, c="red")
            if r == 0:
                ax.set_title(f"frame {i}", fontsize=7)
        axes[r, 0].text(-0.08, 0.5, text, ha="right", va="center", fontsize=8, transform=axes[r, 0].transAxes)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.03, hspace=0.05, left=0.13)
    return fig


def spectrogram_grid(signals, sr: int, titles, title: str = ""):
    """Log-magnitude spectrograms (0-4 kHz) of several mono signals, one panel each."""
    plt = _plt()
    n = len(signals)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.0, rows * 2.2), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        x = np.asarray(signals[k], dtype=np.float32)
        with np.errstate(divide="ignore"):  # silent (zero-padded) segments have -inf dB
            ax.specgram(x if len(x) >= 1024 else np.pad(x, (0, 1024 - len(x))), NFFT=512, Fs=sr, noverlap=384,
                        cmap="magma", scale="dB", vmin=-120)
        ax.set_ylim(0, 4000)
        ax.set_title(titles[k], fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("Hz", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---- alignment (01) -----------------------------------------------------------------------------

_SHAPE_COLOURS = {"FER2013": "black", "TFD": "tab:orange", "AFEW": "tab:blue"}
_KP_MARKERS = ("o", "o", "^", "s", "s")


def mean_shapes(alignments, size: int = 48, title: str = "Mean shapes before and after mapping onto FER2013"):
    """Two panels over a ``size`` x ``size`` face: each dataset's mean keypoint shape in its own crop
    coordinates (left) and after its similarity transform (right), FER2013's as the reference.

    alignments: iterable of :class:`emotiw_utils.faces.DatasetAlignment`.
    """
    from .faces import apply_similarity

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.6), sharex=True, sharey=True)
    for ax, mapped, sub in ((axes[0], False, "before: each in its own crop"),
                            (axes[1], True, "after: one similarity per dataset")):
        for al in alignments:
            pts = apply_similarity(al.transform, al.mean_shape) if mapped else np.asarray(al.mean_shape)
            colour = _SHAPE_COLOURS.get(al.name, None)
            ax.plot(*pts[[0, 1, 4, 3, 0]].T, "-", color=colour, lw=1, alpha=0.7)
            for k, m in enumerate(_KP_MARKERS):
                ax.scatter(*pts[k], marker=m, s=28, color=colour, facecolors="none" if al.name != "FER2013" else colour,
                           label=al.name if k == 0 else None, zorder=3)
        ax.add_patch(plt.Rectangle((0, 0), size, size, fill=False, ls=":", color="grey"))
        ax.set_xlim(-2, size + 2)
        ax.set_ylim(size + 2, -2)
        ax.set_aspect("equal")
        ax.set_title(sub, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(frameon=False, fontsize=8, loc="lower center", ncol=3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_rows(rows, title: str = "", cmap: str = "gray"):
    """Rows of small grayscale images: rows = [(row_label, [(image (H,W) uint8, caption), ...]), ...]."""
    plt = _plt()
    n = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 1.05, len(rows) * 1.2), squeeze=False)
    for r, (text, items) in enumerate(rows):
        for j in range(n):
            ax = axes[r, j]
            ax.axis("off")
            if j < len(items):
                img, cap = items[j]
                ax.imshow(img, cmap=cmap, vmin=0, vmax=255)
                if cap:
                    ax.set_title(cap, fontsize=6.5)
        axes[r, 0].text(-0.08, 0.5, text, ha="right", va="center", fontsize=8, transform=axes[r, 0].transAxes)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.04, hspace=0.3, left=0.16)
    return fig


def face_box(frame, keypoints, box, aligned_face=None, title: str = ""):
    """A frame with its keypoints and square face box (centre x, centre y, side), and the aligned face."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if aligned_face is not None else 1, figsize=(6.4, 2.8), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1] if aligned_face is not None else [1]})
    ax = axes[0, 0]
    ax.imshow(frame, cmap="gray" if frame.ndim == 2 else None, vmin=0, vmax=255)
    if keypoints is not None and np.isfinite(keypoints).all():
        ax.scatter(keypoints[:, 0], keypoints[:, 1], s=10, c="red")
    cx, cy, side = box
    ax.add_patch(plt.Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, color="yellow", lw=1.2))
    ax.set_title("frame, keypoints and face box", fontsize=9)
    ax.axis("off")
    if aligned_face is not None:
        axes[0, 1].imshow(aligned_face, cmap="gray", vmin=0, vmax=255)
        axes[0, 1].set_title("aligned face (48x48)", fontsize=9)
        axes[0, 1].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---- classifiers (02-09) ------------------------------------------------------------------------

def learning_curves(history, series, best_epochs=None, title: str = "Learning curves", ylabel: str = "accuracy"):
    """Accuracy (or loss) per epoch.

    history: pandas DataFrame with an ``epoch`` column; series: {column: legend label} (or a list of
    columns); best_epochs: {legend label: epoch} marked with a vertical line and a dot.
    """
    plt = _plt()
    if not isinstance(series, dict):
        series = {c: c for c in series}
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (col, label) in enumerate(series.items()):
        if col not in history:
            continue
        ax.plot(history["epoch"], history[col], "-o", ms=3, color=colours[i % len(colours)], label=label)
    for i, (label, ep) in enumerate((best_epochs or {}).items()):
        # One dashed line per criterion, offset slightly when several keep the same epoch; named in the legend.
        ax.axvline(ep + 0.04 * i, ls=("--", ":", "-.")[i % 3], lw=1.1, color="grey",
                   label=f"{label} keeps epoch {ep}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish_epoch_axes(fig, ax, ylabel, title)


def confusion_matrix(cm, title: str = "Confusion matrix (%)", classes=EMOTIONS, ax=None):
    """Heat map of a row-normalised confusion matrix (true class rows, predicted class columns), in percent."""
    plt = _plt()
    cm = np.asarray(cm, dtype=np.float64)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.0))
    else:
        fig = ax.figure
    pct = 100.0 * cm if np.nanmax(cm) <= 1.0 + 1e-9 else cm
    ax.imshow(np.nan_to_num(pct), cmap="Blues", vmin=0, vmax=100)
    for i in range(pct.shape[0]):
        for j in range(pct.shape[1]):
            v = pct[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v > 55 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def per_class_bars(values, title: str = "Per-class accuracy (%)", classes=EMOTIONS):
    """Grouped bars of per-class accuracies: values = {series label: (7,) array in [0, 1] or NaN}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.8 / max(1, len(values))
    x = np.arange(len(classes))
    for i, (label, v) in enumerate(values.items()):
        ax.bar(x + i * width, 100 * np.nan_to_num(np.asarray(v, dtype=float)), width, label=label)
    ax.set_xticks(x + width * (len(values) - 1) / 2, classes, fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def seed_curves(histories, column: str = "val_acc", title: str = "Validation accuracy per seed", ylabel: str = "accuracy"):
    """One line per seed: histories = {label: DataFrame with ``epoch`` and ``column``}; a dot on each best."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 3.2))
    for label, h in histories.items():
        if column not in h or h[column].isna().all():
            continue
        line, = ax.plot(h["epoch"], h[column], "-", lw=1.2, label=label)
        best = h[column].idxmax()
        ax.plot(h.loc[best, "epoch"], h.loc[best, column], "o", color=line.get_color(), ms=5)
    return _finish_epoch_axes(fig, ax, ylabel, title)


def k_average_bins(frames, pooled, k: int, title: str = "k-average pooling of one clip", classes=EMOTIONS):
    """Left: a clip's per-frame CNN outputs (T x 7, time on x); right: its k bins (k x 7), same colour scale."""
    plt = _plt()
    frames = np.asarray(frames, dtype=np.float64)
    bins = np.asarray(pooled, dtype=np.float64).reshape(int(k), -1)
    lo, hi = float(min(frames.min(), bins.min())), float(max(frames.max(), bins.max()))
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 2.6), gridspec_kw={"width_ratios": [max(len(frames), k), k * 2]})
    for ax, data, name in ((axes[0], frames, f"{len(frames)} frames"), (axes[1], bins, f"{k} bins")):
        im = ax.imshow(data.T, aspect="auto", cmap="RdBu_r", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel(name, fontsize=8)
    axes[1].set_yticklabels([])
    fig.colorbar(im, ax=axes, fraction=0.03, pad=0.02, label="pre-softmax output")
    fig.suptitle(title, fontsize=10)
    return fig


def svm_grid(grid, value: str = "select_acc", title: str = "SVM grid search"):
    """Heat map of a grid-search table (columns ``C``, ``gamma``, ``value``) in percent; the best cell is boxed."""
    plt = _plt()
    table = grid.assign(gamma=grid["gamma"].astype(str)).pivot(index="C", columns="gamma", values=value)
    table = table[[g for g in grid["gamma"].astype(str).unique()]]  # keep the search order of gamma
    pct = 100 * table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * pct.shape[1], 0.6 + 0.42 * pct.shape[0]))
    ax.imshow(pct, cmap="viridis", aspect="auto")
    for i in range(pct.shape[0]):
        for j in range(pct.shape[1]):
            ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="black" if pct[i, j] > np.nanmean(pct) else "white")
    i, j = np.unravel_index(np.nanargmax(pct), pct.shape)
    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, color="red"))
    ax.set_xticks(range(pct.shape[1]), table.columns, fontsize=7)
    ax.set_yticks(range(pct.shape[0]), [f"{c:g}" for c in table.index], fontsize=7)
    ax.set_xlabel("gamma", fontsize=8)
    ax.set_ylabel("C", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def accuracy_bars(ours, paper=None, title: str = "Validation accuracy", ours_label: str = "ours", chance: float | None = None):
    """Bars per model: ours = {model: (mean, std)} fractions (std drawn as an error bar), paper = {model: value
    or None}; an optional dashed line at the majority-class rate (``chance``)."""
    plt = _plt()
    models = list(ours)
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(models), 3.0))
    w = 0.38 if paper else 0.6
    if paper:
        vals = [paper.get(m) for m in models]
        ax.bar(x - w / 2, [100 * v if v is not None else 0 for v in vals], w, color="#bbbbbb", label="paper (real AFEW)")
        for xi, v in zip(x, vals):
            if v is None:
                ax.text(xi - w / 2, 1, "n/a", ha="center", fontsize=7)
    means = [100 * ours[m][0] for m in models]
    stds = [100 * ours[m][1] for m in models]
    ax.bar(x + (w / 2 if paper else 0), means, w, yerr=stds, capsize=3, color="#1f77b4", label=ours_label)
    if chance is not None:
        ax.axhline(100 * chance, ls="--", lw=1, color="grey", label="majority class")
    ax.set_xticks(x, models, fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def sae_filters(filters, frames=(0, 2, 4, 6, 8), n_filters: int = 16,
                title: str = "Synchrony autoencoder filters (frames 1, 3, 5, 7, 9)"):
    """Spatio-temporal filters like the paper's Figure 2: one row per filter, one column per frame.

    filters: (K, depth, size, size) array (e.g. ``emotiw_utils.activity.filters(model, whitener)``);
    frames: 0-based frame indices to show (default: frames 1, 3, 5, 7, 9); the first ``n_filters``
    filters are drawn (all of them if there are fewer). Grayscale, each filter scaled symmetrically
    around 0 over all its shown frames (mid-grey = 0).
    """
    f = np.asarray(filters, dtype=np.float64)
    if f.ndim != 4:
        raise ValueError(f"filters must be a (K, depth, size, size) array, got shape {f.shape}")
    frames = [int(t) for t in frames]
    if not frames or any(t < 0 or t >= f.shape[1] for t in frames):
        raise ValueError(f"frames must be non-empty indices in 0..{f.shape[1] - 1}, got {frames}")
    if n_filters < 1 or f.shape[0] == 0:
        raise ValueError(f"nothing to draw: n_filters={n_filters}, {f.shape[0]} filters given")
    rows = min(int(n_filters), f.shape[0])
    plt = _plt()
    fig, axes = plt.subplots(rows, len(frames), figsize=(len(frames) * 0.8 + 0.4, rows * 0.8 + 0.5), squeeze=False)
    for r in range(rows):
        sel = f[r][frames]
        vmax = float(np.abs(sel).max()) or 1.0
        for j, t in enumerate(frames):
            ax = axes[r, j]
            ax.imshow(sel[j], cmap="gray", vmin=-vmax, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t + 1}", fontsize=7)
    fig.suptitle(title, fontsize=9, y=0.995)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, top=1 - 0.75 / (rows * 0.8 + 0.5))
    return fig


def explained_variance(ratios, chosen: int | None = None, title: str = "Explained variance"):
    """Cumulative explained-variance ratio of a PCA (``ratios``: per component, descending); a marker at ``chosen``."""
    plt = _plt()
    cum = 100 * np.cumsum(np.asarray(ratios, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    ax.plot(np.arange(1, len(cum) + 1), cum, "-", lw=1.5)
    if chosen is not None and 1 <= chosen <= len(cum):
        ax.axvline(chosen, ls="--", color="grey", lw=1)
        ax.plot(chosen, cum[chosen - 1], "o", color="C3", label=f"chosen: {chosen} components, {cum[chosen - 1]:.0f} %")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("components")
    ax.set_ylabel("cumulative variance (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def accuracy_by_size(grid, size: str, value: str = "select_acc", title: str = "", xlabel: str | None = None,
                     value_label: str = "select split"):
    """Best ``value`` (over the other grid columns) for each value of ``size``, with the training accuracy of
    that same grid point: grid is a DataFrame with ``size``, ``train_acc`` and ``value`` columns; ``value_label``
    names the ``value`` curve."""
    plt = _plt()
    best = grid.loc[grid.groupby(size)[value].idxmax()].sort_values(size)
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    ax.plot(best[size], 100 * best[value], "-o", label=value_label)
    ax.plot(best[size], 100 * best["train_acc"], "--s", label="training clips", alpha=0.7)
    ax.set_xscale("log")
    ax.set_xticks(list(best[size]), [str(v) for v in best[size]])
    ax.set_xlabel(xlabel or size)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def regime_curves(regimes, select_name: str | None = "Val", title: str = ""):
    """Figure 5 of the paper: one panel per training regime of the fusion network.

    ``regimes``: {panel title: (history DataFrame with ``epoch``, ``train_acc``, ``val_acc``; kept epoch)};
    the select-split curve and the kept epoch are drawn when ``select_name`` is given.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(regimes), figsize=(5.25 * len(regimes), 3.5), squeeze=False)
    for ax, (name, (h, kept)) in zip(axes[0], regimes.items()):
        ax.plot(h["epoch"], 100 * h["train_acc"], label="train (running)")
        if select_name is not None:
            ax.plot(h["epoch"], 100 * h["val_acc"], label=select_name)
            ax.axvline(kept, ls="--", color="grey", lw=1, label="epoch kept")
        ax.set(xlabel="epoch", ylabel="accuracy (%)", title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def prediction_timeline(times, frame_probs, faces, face_times, wave_t, wave, clip_probs, windows=(),
                        title: str = "", classes=EMOTIONS):
    """The timeline of one predicted video (``emotiw predict``): a strip of aligned faces, the CNN's class
    probabilities of every frame over time, the audio waveform, and each modality's clip-level probabilities.

    ``times`` ``(T,)`` seconds and ``frame_probs`` ``(T, 7)``; ``faces`` ``(n, 48, 48)`` uint8 aligned faces taken
    at ``face_times`` ``(n,)``; ``wave_t``/``wave`` the waveform's peak envelope (empty: no audio);
    ``clip_probs`` {name: ``(7,)``} the bars; ``windows`` ``[(start_s, end_s, emotion)]`` of a windowed video
    (a band in the colour of each window's fused emotion, named while there are at most 24).
    """
    plt = _plt()
    times, frame_probs = np.asarray(times, dtype=np.float64), np.asarray(frame_probs, dtype=np.float64)
    end = float(times[-1]) if len(times) else 1.0
    fig = plt.figure(figsize=(11, 7.5))
    grid = fig.add_gridspec(4, 1, height_ratios=[1.0, 2.2, 0.9, 2.0], hspace=0.75, left=0.07, right=0.83,
                            top=0.9, bottom=0.06)
    ax_faces = fig.add_subplot(grid[0])
    if len(faces):
        ax_faces.imshow(np.concatenate(list(faces), axis=1), cmap="gray", vmin=0, vmax=255, aspect="equal")
        w = np.asarray(faces).shape[2]
        ax_faces.set_xticks(w * np.arange(len(faces)) + w / 2, [f"{t:.1f}s" for t in face_times], fontsize=7)
    ax_faces.set_yticks([])
    ax_faces.set_title("aligned faces (the CNN's input)", fontsize=9)

    ax = fig.add_subplot(grid[1])
    colours = plt.get_cmap("tab10")(np.arange(len(classes)))
    for c, name in enumerate(classes):
        ax.plot(times, frame_probs[:, c], lw=1.1, color=colours[c], label=name)
    for i, (a, b, label) in enumerate(windows):
        # every window: a band in its fused emotion's colour on top; its name too while they are few enough
        ax.axvspan(a, b, ymin=0.97, ymax=1.0, color=colours[list(classes).index(label)], lw=0)
        ax.axvline(a, color="grey", lw=0.5, alpha=0.5)
        if len(windows) <= 24:
            ax.text((a + b) / 2, 1.02, label, ha="center", va="bottom", fontsize=6,
                    transform=ax.get_xaxis_transform())
    ax.set(xlim=(0, end), ylim=(0, 1), ylabel="CNN p(class)")
    ax.set_title("per-frame class probabilities of the frame CNN" + (" (each window's fused emotion on top)"
                                                                      if len(windows) else ""), fontsize=9,
                 pad=12 if 0 < len(windows) <= 24 else 6)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    ax.tick_params(labelbottom=False)

    ax_w = fig.add_subplot(grid[2], sharex=ax)
    if len(wave):
        ax_w.fill_between(wave_t, -np.asarray(wave), np.asarray(wave), color="tab:grey", lw=0)
        ax_w.set_ylim(-1.05 * max(float(np.max(wave)), 1e-3), 1.05 * max(float(np.max(wave)), 1e-3))
    else:
        ax_w.text(0.5, 0.5, "no audio", ha="center", va="center", transform=ax_w.transAxes, fontsize=9)
    ax_w.set_yticks([])
    ax_w.set_xlabel("seconds")
    ax_w.set_title("audio waveform", fontsize=9)

    ax_b = fig.add_subplot(grid[3])
    x = np.arange(len(classes))
    width = 0.8 / max(1, len(clip_probs))
    for i, (name, p) in enumerate(clip_probs.items()):
        ax_b.bar(x + (i - (len(clip_probs) - 1) / 2) * width, np.asarray(p), width, label=name)
    ax_b.set_xticks(x, classes, fontsize=8)
    ax_b.set(ylim=(0, 1), ylabel="p(class)")
    ax_b.set_title("clip-level probabilities of each modality and the fused decision", fontsize=9)
    ax_b.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_b.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
