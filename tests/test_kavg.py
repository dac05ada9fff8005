"""Tests of emotiw_utils.kavg: k-average pooling and frame averaging (paper section 2.3)."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils.kavg import frame_average_probs, k_average, k_average_clips


def _frames(t: int, d: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, d))


# ---------------------------------------------------------------- k_average


def test_k_average_pairs_when_t_is_2k():
    x = _frames(30)
    v = k_average(x, 15)
    expected = x.reshape(15, 2, 7).mean(axis=1).reshape(-1)
    np.testing.assert_allclose(v, expected)


def test_k_average_shape_105_for_7_logits():
    for t in (1, 5, 14, 15, 16, 37, 200):
        assert k_average(_frames(t), 15).shape == (105,)
    assert k_average(_frames(40)).shape == (105,)  # default k = 15


def test_k_average_short_clip_repeats_frames_locally():
    x = _frames(5)
    v = k_average(x, 15).reshape(15, 7)
    np.testing.assert_array_equal(v, np.repeat(x, 3, axis=0))


def test_k_average_short_clip_uneven_repeat():
    x = np.arange(4, dtype=float)[:, None]  # T=4, k=10: index floor(j*4/10)
    v = k_average(x, 10)
    np.testing.assert_array_equal(v, [0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    assert k_average(np.array([[2.0, 3.0]]), 4).tolist() == [2, 3] * 4


def test_k_average_array_split_bins():
    x = _frames(16)
    v = k_average(x, 15).reshape(15, 7)
    parts = np.array_split(x, 15)
    assert [len(p) for p in parts] == [2] + [1] * 14
    np.testing.assert_allclose(v, np.stack([p.mean(axis=0) for p in parts]))
    x = _frames(47, seed=3)
    np.testing.assert_allclose(
        k_average(x, 15), np.concatenate([p.mean(axis=0) for p in np.array_split(x, 15)])
    )


def test_k_average_bin_major_layout():
    x = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    np.testing.assert_allclose(k_average(x, 2), [1.5, 15.0, 3.5, 35.0])


def test_k_average_order_matters():
    x = _frames(30)
    assert not np.allclose(k_average(x), k_average(x[::-1]))
    sym = np.concatenate([x[:15], x[:15][::-1]])
    np.testing.assert_allclose(k_average(sym, 2), k_average(sym[::-1], 2)[[*range(7, 14), *range(7)]])


def test_k_average_bad_input():
    with pytest.raises(ValueError):
        k_average(np.zeros((0, 7)))
    with pytest.raises(ValueError):
        k_average(_frames(5), 0)
    with pytest.raises(ValueError):
        k_average(np.zeros((2, 3, 4)))


def test_k_average_clips_matches_per_clip():
    x = _frames(3 + 30 + 16, seed=1)
    offsets = np.array([0, 3, 33, 49])
    out = k_average_clips(x, offsets, 15)
    assert out.shape == (3, 105)
    for i in range(3):
        np.testing.assert_allclose(out[i], k_average(x[offsets[i] : offsets[i + 1]], 15))


def test_k_average_clips_bad_offsets():
    x = _frames(10)
    with pytest.raises(ValueError):
        k_average_clips(x, [0, 5, 5, 10])  # empty clip
    with pytest.raises(ValueError):
        k_average_clips(x, [0, 5, 9])  # does not cover all frames
    with pytest.raises(ValueError):
        k_average_clips(x, [1, 10])
    with pytest.raises(ValueError):
        k_average_clips(x, [0, 6, 4, 10])


# ---------------------------------------------------------------- frame_average_probs


def test_frame_average_probs_hand_computation():
    logits = np.array([[0.0, 0, 0, 0, 0, 0, np.log(2)], [1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 0, 0]])
    out = frame_average_probs(logits, [0, 2, 3])
    e = np.exp(np.arange(1, 8))
    p0 = np.array([1, 1, 1, 1, 1, 1, 2]) / 8
    p1 = e / e.sum()
    np.testing.assert_allclose(out[0], (p0 + p1) / 2)
    np.testing.assert_allclose(out[1], np.full(7, 1 / 7))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_frame_average_probs_rows_sum_to_one_large_logits():
    logits = _frames(50) * 500
    out = frame_average_probs(logits, [0, 10, 11, 50])
    assert out.shape == (3, 7) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_frame_average_probs_bad_input():
    with pytest.raises(ValueError):
        frame_average_probs(_frames(4), [0, 0, 4])
    with pytest.raises(ValueError):
        frame_average_probs(np.zeros(7), [0, 1])


def test_import_has_no_sklearn_side_effect():
    import subprocess
    import sys

    code = "import sys, emotiw_utils.kavg, emotiw_utils.svm; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- the persisted SVM of stage 04


def _clips(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` clips of 3-40 frames of 7 'logits' whose class shows in the mean of one output."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    lengths = rng.integers(3, 41, n)
    feats = [rng.normal(0.0, 1.0, (t, 7)) + 2.0 * np.eye(7)[c] for t, c in zip(lengths, y)]
    return np.concatenate(feats).astype(np.float32), np.concatenate([[0], np.cumsum(lengths)]), y


def test_svm_save_load_round_trip_is_exact(tmp_path):
    from emotiw_utils import model_store, svm
    from emotiw_utils.kavg import predict_clips

    f, off, y = _clips(30, 0)
    model = svm.fit_svm(k_average_clips(f, off, 5), y, C=1.0, gamma="scale", seed=0)
    path = model_store.save_model(tmp_path / "m.skops", model)
    back = model_store.load_model(path)
    ft, offt, _ = _clips(9, 1)
    p = predict_clips(back, ft, offt, 5)
    assert p.shape == (9, 7) and np.all(p[:, 3:] == 0)  # classes 0-2 only
    np.testing.assert_array_equal(p, predict_clips(model, ft, offt, 5))
    np.testing.assert_array_equal(p, svm.predict_proba_full(model, k_average_clips(ft, offt, 5)))


def test_reapply_reads_the_run_and_gives_back_the_stage_probabilities(tmp_path):
    from emotiw_utils import artifacts, model_store, records, stages, svm
    from emotiw_utils.kavg import reapply
    from emotiw_utils.protocol import check_partition

    f, off, y = _clips(30, 0)
    ft, offt, _ = _clips(12, 2)
    for split, (a, o, lab) in (("Train", (f, off, y)), ("Test", (ft, offt, np.full(12, -1)))):
        artifacts.save_npz_atomic(stages.CNN.path(tmp_path, "frame_logits", split=split), logits=a, offsets=o,
                                  labels=lab, clip_ids=np.array([f"{split}{i}" for i in range(len(lab))]))
    with pytest.raises(FileNotFoundError, match="run stage 04_kavg_svm first"):
        reapply(tmp_path, "Test")
    model = svm.fit_svm(k_average_clips(f, off, 4), y, C=3.0, gamma="scale", seed=1)
    records.KavgRecord(partition=records.PartitionRecord.of(check_partition(["Train"], "Val")), C=3.0,
                       gamma="scale", k=4).write(stages.KAVG.dir(tmp_path))
    model_store.save_model(stages.KAVG.path(tmp_path, "svm"), model)
    stored = svm.predict_proba_full(model, k_average_clips(ft, offt, 4))  # what chapter 04 writes
    # chapter 04 writes every clip of a split: here Test also holds a clip stage 01 could not read (no frames),
    # given the class prior of the training split (the clip policy)
    prior = np.bincount(y, minlength=7) / len(y)
    artifacts.save_clip_probs(stages.KAVG.path(tmp_path, "clip_probs", split="Train"),
                              [f"Train{i}" for i in range(30)], svm.predict_proba_full(model, k_average_clips(f, off, 4)), y)
    artifacts.save_clip_probs(stages.KAVG.path(tmp_path, "clip_probs", split="Test"),
                              ["Test_unreadable"] + [f"Test{i}" for i in range(12)], np.vstack([prior, stored]),
                              np.full(13, -1))
    again = reapply(tmp_path, "Test")
    np.testing.assert_array_equal(again, np.vstack([prior, stored]))
    assert again.shape == (13, 7) and again.dtype == np.float64
