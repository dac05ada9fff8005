"""Training recipes of the frame CNN compared side by side (chapter 02; the paper gives no optimiser).

A recipe is what :func:`emotiw_utils.cnn.train_cnn` is told beyond the data: optimiser, schedule, peak
learning rate, weight decay, batch size, bfloat16 autocast, and the augmentation and loss beyond the
paper's (random rotation and zoom, label smoothing). Chapter 02 trains its CNN with the recipe of
the profile and, for each entry of ``compare_recipes``, a twin under the ``holdout`` regime with that
recipe changed: same initialisation, data, holdout, monitors and epochs, so the learning curves show what
the recipe does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotiw_utils.aligned import StaticFaces
from emotiw_utils.cnn import CnnConfig, CnnHistory
from emotiw_utils.device import resolve_amp
from emotiw_utils.early_stopping import train_regime

__all__ = ["RECIPE_KEYS", "RecipeRun", "check_recipe", "comparison_curves", "comparison_table", "recipe_label",
           "train_recipes"]

#: Parameters of chapter 02 a recipe may change (the 02_cnn keys of params/base.yaml).
RECIPE_KEYS: tuple[str, ...] = ("optimizer", "schedule", "lr", "weight_decay", "batch_size", "amp", "rotate",
                                 "scale", "label_smoothing")


def check_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """``recipe`` as a dict; ValueError naming any key that is not one of :data:`RECIPE_KEYS`, or an empty one."""
    if not isinstance(recipe, Mapping) or not recipe:
        raise ValueError(f"a recipe is a non-empty mapping of some of {', '.join(RECIPE_KEYS)}; got {recipe!r}")
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise ValueError(f"unknown recipe keys {unknown}; a recipe may set {', '.join(RECIPE_KEYS)}")
    return dict(recipe)


def recipe_label(recipe: Mapping[str, Any], device: Any = "cpu") -> str:
    """Short legend label: ``"sgd, onecycle, lr 0.05, wd 0.0005, batch 128, bf16, rotation 10°, zoom 0.1,
    smoothing 0.1"`` (rotation, zoom and smoothing of 0 read ``no rotation``, ...)."""
    r = dict(recipe)
    parts = [str(r[k]) for k in ("optimizer", "schedule") if k in r]
    parts += [f"{name} {r[k]:g}" for k, name in (("lr", "lr"), ("weight_decay", "wd")) if k in r]
    if "batch_size" in r:
        parts.append(f"batch {r['batch_size']}")
    if "amp" in r:
        parts.append("bf16" if resolve_amp(r["amp"], device) else "float32")
    for key, name, unit in (("rotate", "rotation", "°"), ("scale", "zoom", ""),
                            ("label_smoothing", "smoothing", "")):
        if key in r:
            parts.append(f"{name} {r[key]:g}{unit}" if r[key] else f"no {name}")
    return ", ".join(parts)


@dataclass
class RecipeRun:
    """One training of :func:`train_recipes`: its ``label``, full ``recipe`` (every :data:`RECIPE_KEYS`),
    ``history`` (:class:`~emotiw_utils.cnn.CnnHistory`) and ``seconds`` of wall time."""

    label: str
    recipe: dict[str, Any]
    history: CnnHistory
    seconds: float


def train_recipes(base: Mapping[str, Any], variants: Sequence[Mapping[str, Any]], config: CnnConfig,
                  pool: StaticFaces, hold: np.ndarray, afew_frames: tuple[np.ndarray, np.ndarray],
                  mean_image: Any, std_image: Any, *, extra_monitors: Mapping[str, tuple[Any, Any]] | None = None,
                  seed: int = 0, device: Any = "cpu", **train_kwargs: Any) -> list[RecipeRun]:
    """Train one CNN per recipe in ``variants`` under the ``holdout`` regime of chapter 02
    (:func:`emotiw_utils.early_stopping.train_regime`: FER+TFD minus the holdout, the same monitors, the
    same initialisation ``seed``), each recipe being ``base`` (every :data:`RECIPE_KEYS`) with the
    variant's keys replaced. ``train_kwargs`` (epochs, ...) go to :func:`~emotiw_utils.cnn.train_cnn`.
    Returns one :class:`RecipeRun` per variant, in order; its label names what the variant changes."""
    missing = sorted(set(RECIPE_KEYS) - set(base))
    if missing:
        raise ValueError(f"the base recipe lacks {missing}")
    checked = [check_recipe(v) for v in variants]  # every variant checked before any training
    runs = []
    for variant in checked:
        recipe = {**{k: base[k] for k in RECIPE_KEYS}, **variant}
        kwargs = {k: v for k, v in recipe.items() if k != "amp"}
        t0 = time.perf_counter()
        _, hist, _ = train_regime("holdout", config, pool, hold, afew_frames, mean_image, std_image,
                                  extra_monitors=extra_monitors, seed=seed, device=device,
                                  amp=resolve_amp(recipe["amp"], device), **kwargs, **train_kwargs)
        runs.append(RecipeRun(recipe_label(variant, device), recipe, hist, time.perf_counter() - t0))
    return runs


def comparison_curves(runs: Sequence[RecipeRun], test_column: str):  # -> (pandas.DataFrame, dict)
    """Chapter 02's recipe figure: a frame with ``epoch`` and, per run, its ``test_column`` accuracy and its
    training accuracy (on the augmented batches) each epoch, and the legend label of each column (for
    :func:`emotiw_utils.plots.learning_curves`). The runs share their epochs (the same ``epochs``)."""
    import pandas as pd

    frame = pd.DataFrame({"epoch": runs[0].history.to_frame().index})
    series = {}
    for r in runs:
        h = r.history.to_frame()
        frame[f"{r.label} test"] = h[test_column].to_numpy()
        frame[f"{r.label} train"] = h["train_acc"].to_numpy()
        series[f"{r.label} test"] = f"{r.label}: {test_column.removesuffix('_acc')}"
        series[f"{r.label} train"] = f"{r.label}: train (augmented)"
    return frame, series


def comparison_table(runs: Sequence[RecipeRun]):  # -> pandas.DataFrame
    """One row per run, indexed by its label: the epoch the holdout selected, the training accuracy of the
    last epoch, every monitor's accuracy at the selected epoch (%) and the training throughput."""
    import pandas as pd

    rows = []
    for r in runs:
        h = r.history.to_frame()
        best = h.loc[r.history.best_epoch]
        row = {"recipe": r.label, "selected epoch (holdout)": r.history.best_epoch,
               "train, last epoch (%)": round(100 * float(h["train_acc"].iloc[-1]), 1)}
        row.update({c.removesuffix("_acc") + " (%)": round(100 * float(best[c]), 1) for c in h.columns
                    if c.endswith("_acc") and c != "train_acc"})
        row["train images/s"] = f"{r.history.images_per_second:,.0f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("recipe")
