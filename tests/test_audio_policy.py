"""The clip policy of the audio stage (emotiw_utils.audio): the clip policy's status names, the refusal of a
training split without audio, the bound on long tracks and the one extractor of both feature sets."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import audio, clip_policy, egemaps, stages
from emotiw_utils.constants import AUDIO_SR
from emotiw_utils.datasets.video import write_clip


def _voice(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * AUDIO_SR)) / AUDIO_SR
    ph = 2 * np.pi * np.cumsum(150 + 40 * np.sin(2 * np.pi * 0.7 * t)) / AUDIO_SR
    x = sum(np.sin(k * ph) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return (0.2 * x / np.abs(x).max() + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def _clips(split: str, statuses: list[str]) -> clip_policy.SplitClips:
    n = len(statuses)
    return clip_policy.SplitClips(split, np.array([f"{split[:2]}{i}" for i in range(n)]), np.arange(n) % 7,
                                  np.array(statuses))


def test_the_audio_statuses_are_clip_policy_statuses_with_their_meaning():
    for s in audio.STATUSES:
        assert s in clip_policy.STATUSES and clip_policy.STATUSES[s].meaning
    assert "audio" in clip_policy.STATUSES["silent"].disables
    assert "audio" in clip_policy.STATUSES["audio_failed"].disables
    assert clip_policy.STATUSES["audio_long"].disables == ()  # used, and counted
    # in the policy's order, so that the chapter's table and the record list them as the policy does
    order = list(clip_policy.STATUSES)
    assert [order.index(s) for s in audio.STATUSES] == sorted(order.index(s) for s in audio.STATUSES)
    assert audio.status_counts(["ok", "silent", "ok"]) == {s: {"ok": 2, "silent": 1}.get(s, 0)
                                                           for s in audio.STATUSES}


def test_a_training_split_without_audio_is_refused_by_name():
    clips = {"Train": _clips("Train", ["no_audio"] * 3 + ["silent"] * 2),
             "Val": _clips("Val", ["ok", "no_audio"]), "Test": _clips("Test", ["ok"])}
    with pytest.raises(ValueError) as e:
        audio.require_training_audio(clips, ["Train"])
    msg = str(e.value)
    assert msg.startswith(f"{stages.AUDIO.name}: training split Train has no clip with usable audio")
    assert "its 5 clips: 2 silent, 3 no_audio)" in msg
    assert "audio track" in msg and f"-p {stages.AUDIO.name}.train_splits" in msg
    # one training split with a single clip with audio is enough
    clips["Train"] = _clips("Train", ["no_audio"] * 4 + ["audio_long"])
    assert audio.require_training_audio(clips, ["Train"]) == []
    # Train and Val both train: Val without audio is refused too
    clips["Val"] = _clips("Val", ["unreadable", "audio_failed"])
    with pytest.raises(ValueError, match="training split Val has no clip .* 1 audio_failed, 1 unreadable"):
        audio.require_training_audio(clips, ["Train", "Val"])


def test_held_out_splits_without_audio_keep_the_prior_and_are_named():
    clips = {"Train": _clips("Train", ["ok", "silent"]), "Val": _clips("Val", ["no_audio", "no_audio"]),
             "Test": _clips("Test", ["ok", "no_audio"])}
    assert audio.require_training_audio(clips, ["Train"]) == ["Val"]
    table = clip_policy.status_table(clips, "audio")
    assert table.loc["Val", "fallback"] == 2 and table.loc["Val", "used (audio)"] == 0


def test_central_window():
    x = np.arange(10 * AUDIO_SR, dtype=np.float32)
    w, bounded = audio.central_window(x, AUDIO_SR, 4)
    assert bounded and len(w) == 4 * AUDIO_SR and w[0] == 3 * AUDIO_SR  # the central 4 s of 10 s
    w, bounded = audio.central_window(x, AUDIO_SR, 10)
    assert not bounded and np.array_equal(w, x)
    assert not audio.central_window(x, AUDIO_SR, None)[1] and not audio.central_window(x, AUDIO_SR, np.inf)[1]
    with pytest.raises(ValueError, match="positive"):
        audio.central_window(x, AUDIO_SR, 0)


def test_a_long_track_is_described_by_its_central_window_and_flagged(tmp_path):
    x = _voice(3.0)
    status, f = audio.signal_features(x, max_seconds=1.0)
    assert status == "audio_long"
    np.testing.assert_array_equal(f, audio.is10_functionals(x[AUDIO_SR:2 * AUDIO_SR]))
    assert audio.signal_features(x, max_seconds=None)[0] == "ok"
    assert audio.signal_features(x, max_seconds=3.0)[0] == "ok"
    # silence is judged on the window the features come from
    quiet = np.concatenate([x[:AUDIO_SR], np.zeros(2 * AUDIO_SR, np.float32), x[:AUDIO_SR]])
    assert audio.signal_features(quiet, max_seconds=1.0) == ("silent", None)
    # a video: the whole track is decoded and counted, the features are the window's
    path = write_clip(tmp_path / "long.avi", np.zeros((75, 16, 16, 3), np.uint8), audio=x)
    feats, st, sec = audio.extract_paths([path], workers=1, max_seconds=1.0)
    assert list(st) == ["audio_long"] and sec[0] == pytest.approx(3.0, abs=0.01) and np.isfinite(feats).all()
    row, st1 = audio.extract_clip(path, max_seconds=1.0)
    assert st1 == "audio_long"
    np.testing.assert_array_equal(row, feats[0])
    assert audio.extract_clip(path)[1] == "ok"  # the default bound (60 s) leaves a 3 s clip whole


def test_one_extractor_for_both_feature_sets(tmp_path):
    x = _voice(2.0, seed=1)
    np.testing.assert_array_equal(egemaps.egemaps_functionals(x), audio.functionals(x, feature_set="eGeMAPSv02"))
    path = write_clip(tmp_path / "clip.avi", np.zeros((50, 16, 16, 3), np.uint8), audio=x)
    feats, status = egemaps.extract_paths([path], workers=1, max_seconds=1.0)
    assert feats.shape == (1, egemaps.EGEMAPS_DIM) and list(status) == ["audio_long"]
    keys = {audio.features_key([path]), audio.features_key([path], 1.0), egemaps.features_key([path]),
            egemaps.features_key([path], 1.0), audio.features_key([path], None)}
    assert len(keys) == 5  # the feature set and the bound are in the cache key
    with pytest.raises(ValueError, match="unknown feature set"):
        audio.extract_paths([path], workers=1, feature_set="IS09")


def test_the_audio_model_keeps_the_runs_bound(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 20)), np.arange(40) % 4
    model = audio.AudioModel(audio.fit_audio_model(x, y, 5, 1.0, "scale"), audio.fusion_projection(x, 3),
                             audio.class_prior(y), max_seconds=12.5)
    model.save(tmp_path)
    assert audio.AudioModel.load(tmp_path).max_seconds == 12.5
    model.max_seconds = None
    model.save(tmp_path)
    assert audio.AudioModel.load(tmp_path).max_seconds is None
    # a run written before the bound existed reads the default
    from emotiw_utils.artifacts import save_npz_atomic

    save_npz_atomic(stages.AUDIO.path(tmp_path, "prior"), prior=model.prior)
    assert audio.AudioModel.load(tmp_path).max_seconds == audio.MAX_SECONDS
