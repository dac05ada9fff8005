"""The two early-stopping regimes the paper tried for its frame CNN (section 2.1.3).

* ``holdout``: train on FER+TFD minus 1000 held-out samples, keep the epoch that is best on them;
* ``afew`` (the paper's final choice): train on all of FER+TFD, keep the epoch whose frame accuracy on
  AFEW-faces Train+Val (every frame labelled with its clip's label) is best.

"We observed that the RNN yields slightly better performance when CNN early stopping was done on the
challenge data as this avoids overfitting to FER+TFD." The price: AFEW validation labels pick the CNN's
epoch, so they shape the features that later stages are validated on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from emotiw_utils.aligned import AfewFaces, StaticFaces
from emotiw_utils.cnn import CnnConfig, CnnHistory, FrameCNN, train_cnn

__all__ = ["AFEW_MONITOR", "COMPARISONS", "HOLDOUT_MONITOR", "REGIMES", "afew_monitor", "holdout_mask",
           "train_regime", "train_regimes"]

REGIMES: tuple[str, ...] = ("afew", "holdout")
#: How :func:`train_regimes` compares the two regimes: ``two_runs`` trains one CNN per regime (the
#: paper's setting: ``afew`` on all of FER+TFD); ``one_run`` trains once on FER+TFD minus the holdout and
#: keeps the best epoch of each criterion (half the cost: the ``afew`` model then lacks the 1000 held-out
#: samples); ``none`` trains the selected regime only.
COMPARISONS: tuple[str, ...] = ("two_runs", "one_run", "none")
#: Monitor names (columns ``{name}_acc`` of the learning curves).
HOLDOUT_MONITOR = "FER+TFD holdout"
AFEW_MONITOR = "AFEW Train+Val frames"


def holdout_mask(n: int, size: int, seed: int) -> np.ndarray:
    """``(n,)`` bool: ``size`` samples drawn without replacement (at most a fifth of ``n``), seeded."""
    size = int(min(size, n // 5))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng([seed, 2]).choice(n, size, replace=False)] = True
    return mask


def afew_monitor(afew: Mapping[str, AfewFaces], splits: Sequence[str] = ("Train", "Val"),
                 frames_per_clip: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Early-stopping data on AFEW faces: up to ``frames_per_clip`` evenly spaced frames of every clip
    of ``splits``, each labelled with its clip's label. Returns (``(M, 48, 48)`` uint8, ``(M,)`` int64)."""
    xs, ys = [], []
    for s in splits:
        idx = afew[s].sample_frames(frames_per_clip)
        xs.append(afew[s].faces[idx])
        ys.append(afew[s].frame_labels()[idx])
    return np.concatenate(xs), np.concatenate(ys)


def train_regime(regime: str, config: CnnConfig, pool: StaticFaces, hold: np.ndarray,
                 afew_frames: tuple[np.ndarray, np.ndarray], mean_image: np.ndarray, std_image: np.ndarray,
                 extra_monitors: Mapping[str, tuple[Any, Any]] | None = None, seed: int = 0,
                 **train_kwargs: Any) -> tuple[FrameCNN, CnnHistory, int]:
    """Train one CNN under one regime and return (model at its selected epoch, history, training-set size).

    Args:
        regime: ``"holdout"`` or ``"afew"``.
        pool: the FER+TFD training pool; ``hold``: its ``(N,)`` bool held-out mask (used by ``holdout``).
        afew_frames: from :func:`afew_monitor` (monitored by both regimes, selects under ``afew``).
        extra_monitors: more curves to record (e.g. FER2013 PublicTest); they never select.
        train_kwargs: passed to :func:`emotiw_utils.cnn.train_cnn` (epochs, lr, device, ...).
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown early-stopping regime {regime!r}; choose one of {', '.join(REGIMES)}")
    model = FrameCNN(config, mean_image, std_image, seed=seed)
    monitors: dict[str, tuple[Any, Any]] = {}
    if regime == "holdout":
        train = pool.select(~hold)
        monitors[HOLDOUT_MONITOR] = (pool.images[hold], pool.labels[hold])
        select_on = HOLDOUT_MONITOR
    else:
        train = pool
        select_on = AFEW_MONITOR
    monitors[AFEW_MONITOR] = afew_frames
    monitors.update(extra_monitors or {})
    history = train_cnn(model, train.images, train.labels, monitors=monitors, select_on=select_on, seed=seed,
                        **train_kwargs)
    return model, history, len(train)


def train_regimes(early_stopping: str, comparison: str, config: CnnConfig, pool: StaticFaces, hold: np.ndarray,
                  afew_frames: tuple[np.ndarray, np.ndarray], mean_image: np.ndarray, std_image: np.ndarray,
                  extra_monitors: Mapping[str, tuple[Any, Any]] | None = None, seed: int = 0,
                  **train_kwargs: Any) -> dict[str, tuple[FrameCNN, CnnHistory, int, float]]:
    """The CNN(s) of both early-stopping regimes, per ``comparison`` (:data:`COMPARISONS`).

    Returns ``{regime: (model at its selected epoch, history, training-set size, seconds)}``, the
    ``early_stopping`` regime first. Under ``one_run`` both regimes share one history (with their own
    ``best_epoch``/``select_on``) and one training-time figure.
    """
    if early_stopping not in REGIMES:
        raise ValueError(f"unknown early-stopping regime {early_stopping!r}; choose one of {', '.join(REGIMES)}")
    if comparison not in COMPARISONS:
        raise ValueError(f"unknown comparison {comparison!r}; choose one of {', '.join(COMPARISONS)}")
    other = next(r for r in REGIMES if r != early_stopping)
    out: dict[str, tuple[FrameCNN, CnnHistory, int, float]] = {}
    if comparison == "one_run":
        monitor = {"holdout": HOLDOUT_MONITOR, "afew": AFEW_MONITOR}
        t0 = time.perf_counter()
        model = FrameCNN(config, mean_image, std_image, seed=seed)
        train = pool.select(~hold)
        monitors = {HOLDOUT_MONITOR: (pool.images[hold], pool.labels[hold]), AFEW_MONITOR: afew_frames,
                    **(extra_monitors or {})}
        hist = train_cnn(model, train.images, train.labels, monitors=monitors, select_on=monitor[early_stopping],
                         snapshots=[monitor[other]], seed=seed, **train_kwargs)
        secs = time.perf_counter() - t0
        out[early_stopping] = (model, hist, len(train), secs)
        epoch, state = hist.snapshots[monitor[other]]
        twin = FrameCNN(config, mean_image, std_image).to(model.device)
        twin.load_state_dict(state)
        twin.eval()
        out[other] = (twin, dataclasses.replace(hist, best_epoch=epoch, select_on=monitor[other], snapshots={}),
                      len(train), secs)
        return out
    for regime in [early_stopping] + ([other] if comparison == "two_runs" else []):
        t0 = time.perf_counter()
        model, hist, n = train_regime(regime, config, pool, hold, afew_frames, mean_image, std_image,
                                      extra_monitors=extra_monitors, seed=seed, **train_kwargs)
        out[regime] = (model, hist, n, time.perf_counter() - t0)
    return out
