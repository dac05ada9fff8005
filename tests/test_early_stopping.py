"""The two early-stopping regimes of the frame CNN (paper 2.1.3)."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import early_stopping as es
from emotiw_utils.aligned import AfewFaces, StaticFaces
from emotiw_utils.cnn import CnnConfig


def _afew(split: str, lengths, seed: int) -> AfewFaces:
    rng = np.random.default_rng(seed)
    n = len(lengths)
    f = int(sum(lengths))
    return AfewFaces(split, np.array([f"c{i}" for i in range(n)]), rng.integers(0, 7, n),
                     np.concatenate([[0], np.cumsum(lengths)]), rng.integers(0, 255, (f, 48, 48), dtype=np.uint8),
                     np.ones(f, bool), np.zeros(n, bool))


def _regime_inputs(seed: int):
    """A 60-image random pool (10 held out), 12 AFEW monitor frames, flat mean/std images."""
    rng = np.random.default_rng(seed)
    n = 60
    pool = StaticFaces(rng.integers(0, 255, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n),
                       np.full(n, "FER2013"), np.full(n, "Training"))
    afew_frames = (rng.integers(0, 255, (12, 48, 48), dtype=np.uint8), rng.integers(0, 7, 12))
    mean, std = np.full((48, 48), 128, np.float32), np.full((48, 48), 64, np.float32)
    return pool, es.holdout_mask(n, 10, seed=0), afew_frames, mean, std


def test_holdout_mask_is_seeded_and_bounded():
    m = es.holdout_mask(10_000, 1000, seed=3)
    assert m.sum() == 1000 and np.array_equal(m, es.holdout_mask(10_000, 1000, seed=3))
    assert not np.array_equal(m, es.holdout_mask(10_000, 1000, seed=4))
    assert es.holdout_mask(100, 1000, seed=0).sum() == 20  # never more than a fifth of a small pool


def test_afew_monitor_labels_frames_with_their_clip_label():
    afew = {"Train": _afew("Train", [3, 20], 0), "Val": _afew("Val", [10], 1), "Test": _afew("Test", [5], 2)}
    x, y = es.afew_monitor(afew, ("Train", "Val"), frames_per_clip=4)
    assert x.shape == (3 + 4 + 4, 48, 48)
    assert y.tolist() == [afew["Train"].labels[0]] * 3 + [afew["Train"].labels[1]] * 4 + [afew["Val"].labels[0]] * 4


def test_train_regime_selects_on_its_own_monitor():
    pool, hold, afew_frames, mean, std = _regime_inputs(0)
    cfg = CnnConfig()
    model, hist, n_train = es.train_regime("holdout", cfg, pool, hold, afew_frames, mean, std, epochs=1,
                                           batch_size=32, progress=False)
    assert n_train == 50 and hist.select_on == es.HOLDOUT_MONITOR
    assert {f"{es.HOLDOUT_MONITOR}_acc", f"{es.AFEW_MONITOR}_acc"} <= set(hist.epochs[0])
    _, hist, n_train = es.train_regime("afew", cfg, pool, hold, afew_frames, mean, std, epochs=1, batch_size=32,
                                       progress=False)
    assert n_train == 60 and hist.select_on == es.AFEW_MONITOR and f"{es.HOLDOUT_MONITOR}_acc" not in hist.epochs[0]
    with pytest.raises(ValueError, match="unknown early-stopping regime"):
        es.train_regime("val", cfg, pool, hold, afew_frames, mean, std)


def test_train_regimes_one_run_keeps_each_criterions_best_epoch():
    pool, hold, afew_frames, mean, std = _regime_inputs(1)
    runs = es.train_regimes("afew", "one_run", CnnConfig(), pool, hold, afew_frames, mean, std, epochs=3,
                            batch_size=32, progress=False)
    assert list(runs) == ["afew", "holdout"]
    (m_a, h_a, n_a, _), (m_h, h_h, n_h, _) = runs["afew"], runs["holdout"]
    assert n_a == n_h == 50 and h_a.epochs is h_h.epochs  # one training run, two criteria
    accs = {k: [e[f"{mon}_acc"] for e in h_a.epochs] for k, mon in (("afew", es.AFEW_MONITOR),
                                                                        ("holdout", es.HOLDOUT_MONITOR))}
    assert h_a.best_epoch == 1 + int(np.argmax(accs["afew"])) and h_h.best_epoch == 1 + int(np.argmax(accs["holdout"]))
    assert h_h.select_on == es.HOLDOUT_MONITOR
    # the holdout twin holds the weights of its own best epoch: it reproduces that epoch's holdout accuracy
    from emotiw_utils.cnn import predict_logits

    acc = (predict_logits(m_h, pool.images[hold]).argmax(1) == pool.labels[hold]).mean()
    assert acc == pytest.approx(accs["holdout"][h_h.best_epoch - 1])
    assert list(es.train_regimes("holdout", "none", CnnConfig(), pool, hold, afew_frames, mean, std, epochs=1,
                                 batch_size=32, progress=False)) == ["holdout"]
    with pytest.raises(ValueError, match="unknown comparison"):
        es.train_regimes("afew", "both", CnnConfig(), pool, hold, afew_frames, mean, std)
