"""Tests of emotiw_utils.audio (paper section 3): IS10 extraction, missing audio, PCA + SVM, fusion components."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import audio, clip_policy, stages
from emotiw_utils.artifacts import load_clip_probs, save_clip_probs
from emotiw_utils.constants import AUDIO_SR
from emotiw_utils.datasets.ravdess import RAVDESS_TO_EMOTIW, scan_ravdess
from emotiw_utils.datasets.video import write_clip
from emotiw_utils.errors import DataFormatError


def _tone(seconds: float, f0: float = 180.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * AUDIO_SR)) / AUDIO_SR
    vib = 1 + 0.05 * np.sin(2 * np.pi * 5 * t)
    x = sum(np.sin(2 * np.pi * k * f0 * vib * t) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return (0.2 * x / np.abs(x).max() + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def test_signal_status():
    assert audio.signal_status(_tone(1.0)) == "ok"
    assert audio.signal_status(np.zeros(AUDIO_SR)) == "silent"
    assert audio.signal_status(_tone(0.05)) == "audio_short"
    # one vocabulary: every status the audio stage gives is a clip-policy status
    assert set(audio.STATUSES) <= set(clip_policy.STATUSES) and audio.STATUSES[0] == "ok"
    assert [s for s in audio.STATUSES if audio.missing([s])[0]] == [
        "silent", "no_audio", "audio_short", "audio_failed", "unreadable"]
    assert not audio.missing(["ok", "audio_long"]).any() and audio.missing(["no audio"]).all()  # unknown: missing


def test_is10_functionals_shape_and_sensitivity():
    a, b = audio.is10_functionals(_tone(1.5, 150)), audio.is10_functionals(_tone(1.5, 300))
    assert a.shape == (audio.IS10_DIM,) == (1582,) and np.isfinite(a).all()
    assert not np.allclose(a, b)  # pitch changes the features


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    paths = {
        "ok": write_clip(d / "ok.avi", frames, audio=_tone(1.2)),
        "silent": write_clip(d / "silent.avi", frames, audio=np.zeros(AUDIO_SR, np.float32)),
        "no_audio": write_clip(d / "mute.avi", frames),
        "audio_short": write_clip(d / "short.avi", frames, audio=_tone(0.04)),
    }
    (d / "broken.avi").write_bytes(b"not a video at all")
    paths["unreadable"] = d / "broken.avi"
    return paths


def test_extract_paths_marks_missing_clips(clips):
    feats, status, seconds = audio.extract_paths(list(clips.values()), workers=1)
    assert list(status) == list(clips)  # each clip's status is its name
    assert np.isfinite(feats[0]).all() and np.isnan(feats[1:]).all()
    assert seconds[0] == pytest.approx(1.2, abs=0.01)
    feats2, status2, _ = audio.extract_paths(list(clips.values()), workers=2)  # the process pool agrees
    np.testing.assert_array_equal(status2, status)
    np.testing.assert_allclose(feats2[0], feats[0], rtol=1e-6)


def test_audio_features_cache(clips, tmp_path, monkeypatch):
    paths = [clips["ok"], clips["no_audio"]]
    first = audio.AudioFeatures.extract("Val", ["a", "b"], [3, -1], paths, cache=tmp_path / "is10.npz", workers=1)
    assert list(first.missing) == [False, True] and first.key
    monkeypatch.setattr(audio, "extract_paths", lambda *a, **k: pytest.fail("the cache was not used"))
    again = audio.AudioFeatures.extract("Val", ["a", "b"], [3, -1], paths, cache=tmp_path / "is10.npz")
    np.testing.assert_array_equal(again.features, first.features)
    assert list(again.labels) == [3, -1] and list(again.status) == ["ok", "no_audio"]
    monkeypatch.undo()
    bounded = audio.AudioFeatures.extract("Val", ["a", "b"], [3, -1], paths, cache=tmp_path / "is10.npz",
                                          max_seconds=0.5, workers=1)  # another bound: another key, extracted
    assert bounded.key != first.key and list(bounded.status) == ["audio_long", "no_audio"]
    assert list(bounded.missing) == [False, True]


def _blobs(n_per: int, seed: int, d: int = 40):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(7, d))
    x = np.concatenate([centres[c] + rng.normal(size=(n_per, d)) for c in range(7)])
    return x, np.repeat(np.arange(7), n_per)


def test_grid_search_prior_for_missing_and_fusion_components():
    xt, yt = _blobs(12, 0, d=100)
    xs, ys = _blobs(6, 0, d=100)  # same centres
    xt[:3] = np.nan  # three training clips without audio: left out of the folds
    res = audio.fit_audio_grid(xt, yt, pca_dims=(5, 20, 500), Cs=(1, 10), gammas=("scale",), n_folds=3, seed=0)
    # 500 capped at the smallest training fold: 2 of 3 folds of the 81 clips with audio = 54
    assert set(res.grid["n_components"]) == {5, 20, 54} and len(res.grid) == 6
    assert res.cv_acc > 0.9 and res.cv_acc == res.grid["cv_acc"].max()
    assert not hasattr(res, "model")  # nothing fitted and thrown away
    model = audio.fit_audio_model(xt, yt, res.n_components, res.C, res.gamma)
    prior = audio.class_prior(yt)
    xs[0] = np.nan
    p = audio.predict_with_prior(model, xs, prior)
    np.testing.assert_allclose(p.sum(1), 1)
    np.testing.assert_allclose(p[0], prior)
    assert np.mean(p[1:].argmax(1) == ys[1:]) > 0.9
    proj = audio.fusion_projection(xt, 10)
    z = audio.project(proj, xt)
    assert z.shape == (len(xt), 10) and np.all(z[:3] == 0)
    np.testing.assert_allclose(z[3:].std(0), 1, rtol=0.05)  # whitened


def test_grid_search_ties_go_to_the_smallest_model():
    xt, yt = _blobs(10, 3, d=30)  # well separated: many points score 100 %
    res = audio.fit_audio_grid(xt, yt, pca_dims=(20, 5, 10), Cs=(10, 1), gammas=(0.1, "scale"), n_folds=5)
    assert (res.grid.loc[res.grid["n_components"] == 5, "cv_acc"] == 1).all()
    assert res.grid.loc[1, "cv_acc"] == 1 and res.grid.loc[1, "n_components"] == 20  # the first tied point
    # fewest components, then smallest C, then smallest gamma: "scale" on 5 whitened inputs is 1/5 > 0.1
    assert (res.n_components, res.C, res.gamma) == (5, 1, 0.1)


def test_evaluate_speaker_split_returns_predictions():
    x, y = _blobs(12, 4, d=40)
    speakers = np.tile(np.arange(6), 14)  # 6 speakers, each with every class
    x[0] = np.nan  # a test clip without audio gets the prior's most frequent class
    r = audio.evaluate_speaker_split(x, y, speakers, train=(1, 2, 3, 4, 5), test=(0,), pca_dims=(5, 10),
                                     Cs=(1,), gammas=("scale",), n_folds=5)
    te = np.flatnonzero(speakers == 0)
    np.testing.assert_array_equal(r["test_index"], te)
    np.testing.assert_array_equal(r["y_true"], y[te])
    assert r["y_pred"].shape == te.shape and r["n_test"] == len(te) and r["n_train"] == len(y) - len(te)
    assert r["accuracy"] == np.mean(r["y_pred"] == r["y_true"]) > 0.8
    assert r["y_pred"][0] == audio.class_prior(y[speakers != 0]).argmax()


def test_bad_input():
    with pytest.raises(ValueError, match="no labelled"):
        audio.class_prior([-1, -1])
    x, y = _blobs(5, 1)
    with pytest.raises(ValueError, match="two classes"):
        audio.fit_audio_model(x, np.zeros_like(y), 5, 1.0, "scale")
    with pytest.raises(ValueError, match="disjoint"):
        audio.evaluate_speaker_split(x, y, np.arange(len(y)) % 3, (0, 1), (1, 2), (5,), (1,), ("scale",))
    with pytest.raises(ValueError, match="sum to 1"):
        audio.predict_with_prior(None, x, np.ones(7))


def test_scan_ravdess(tmp_path):
    for actor, name in ((1, "03-01-02-01-01-01-01.flac"), (2, "03-01-08-02-02-01-02.flac")):
        (tmp_path / f"Actor_{actor:02d}").mkdir()
        (tmp_path / f"Actor_{actor:02d}" / name).write_bytes(b"")
    files = scan_ravdess(tmp_path)
    assert [(f.label, f.actor, f.intensity) for f in files] == [(RAVDESS_TO_EMOTIW[2], 1, 1), (RAVDESS_TO_EMOTIW[8], 2, 2)]
    (tmp_path / "Actor_01" / "bad-name.flac").write_bytes(b"")
    with pytest.raises(DataFormatError, match="not a RAVDESS file name"):
        scan_ravdess(tmp_path)
    with pytest.raises(DataFormatError, match="no such"):
        scan_ravdess(tmp_path / "missing")


def test_pca_size_is_capped_by_the_calibration_folds_of_a_small_split():
    # 12 clips: a chosen size of 20 does not fit the 6-clip calibration folds; it is capped, not an error.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 50)), np.array([0, 1] * 6)
    model = audio.fit_audio_model(x, y, 20, 1.0, "scale", seed=0)
    assert model.predict_proba(x).shape == (12, 2)


def test_extract_clip_matches_extract_paths(clips):
    row, status = audio.extract_clip(clips["ok"])
    feats, _, _ = audio.extract_paths([clips["ok"]], workers=1)
    assert status == "ok" and row.dtype == np.float32
    np.testing.assert_array_equal(row, feats[0])
    row, status = audio.extract_clip(clips["no_audio"])
    assert status == "no_audio" and row.shape == (audio.IS10_DIM,) and np.isnan(row).all()


def _finished_run(run_dir, seed: int = 0):
    """A tiny audio stage in ``run_dir``: its persisted models, its IS10 cache and clip probabilities of Val."""
    xt, yt = _blobs(8, seed, d=30)
    xv, yv = _blobs(3, seed + 1, d=30)
    xt[0] = xv[1] = np.nan  # clips without audio
    model = audio.AudioModel(audio.fit_audio_model(xt, yt, 6, 1.0, "scale", seed=seed), audio.fusion_projection(xt, 4),
                             audio.class_prior(yt))
    model.save(run_dir)
    ids = np.array([f"v{i}" for i in range(len(xv))])
    status = np.where(np.isfinite(xv).all(1), "ok", "no_audio")
    audio.AudioFeatures("Val", ids, yv, xv.astype(np.float32), status, np.ones(len(xv)), "k").save(
        stages.AUDIO.path(run_dir, "is10", split="Val"))
    probs = model.probs(xv.astype(np.float32))
    save_clip_probs(stages.AUDIO.path(run_dir, "clip_probs", split="Val"), ids, probs, yv)
    return model, xv.astype(np.float32), probs


def test_audio_model_round_trip_is_exact(tmp_path):
    model, xv, probs = _finished_run(tmp_path)
    for key in stages.AUDIO.models:
        assert stages.AUDIO.path(tmp_path, key).is_file()
    back = audio.AudioModel.load(tmp_path)
    np.testing.assert_array_equal(back.prior, model.prior)
    np.testing.assert_array_equal(back.probs(xv), probs)
    np.testing.assert_array_equal(back.probs(xv)[1], model.prior)  # the clip without audio
    np.testing.assert_array_equal(back.fusion_inputs(xv), model.fusion_inputs(xv))
    assert type(back.model.named_steps["pca"]) is audio.CappedPCA
    assert not back.model.named_steps["pca"].whiten  # the SVM's PCA reduces, it does not whiten
    # fitted components are C-ordered like the loaded ones: the same BLAS path, bit-identical projections
    assert model.model.named_steps["pca"].components_.flags["C_CONTIGUOUS"]
    ok = np.isfinite(xv).all(1)
    np.testing.assert_array_equal(back.model.model[:-1].transform(xv[ok]), model.model.model[:-1].transform(xv[ok]))


def test_reapply_recomputes_a_finished_split(tmp_path):
    _, _, probs = _finished_run(tmp_path)
    np.testing.assert_array_equal(audio.reapply(tmp_path, "Val"), probs)
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.AUDIO.name}"):
        audio.reapply(tmp_path, "Test")
    ids, p, y = load_clip_probs(stages.AUDIO.path(tmp_path, "clip_probs", split="Val"))
    save_clip_probs(stages.AUDIO.path(tmp_path, "clip_probs", split="Val"), ids[::-1], p, y)
    with pytest.raises(ValueError, match="other clips"):
        audio.reapply(tmp_path, "Val")
    stages.AUDIO.path(tmp_path, "prior").unlink()
    with pytest.raises(FileNotFoundError, match="class prior"):
        audio.AudioModel.load(tmp_path)


def test_predict_clip_of_a_new_video(tmp_path, clips):
    x = audio.extract_paths([clips["ok"], clips["ok"], clips["silent"]], workers=1)[0]
    y = np.array([0, 1, 2])
    x = np.concatenate([x[:2], x[:2] + 1.0])  # four clips with audio, two classes
    model = audio.AudioModel(audio.fit_audio_model(x, np.array([0, 0, 1, 1]), 2, 1.0, "scale"),
                             audio.fusion_projection(x, 2), audio.class_prior(y))
    model.save(tmp_path)
    back = audio.AudioModel.load(tmp_path)
    np.testing.assert_array_equal(back.predict_clip(clips["ok"]), model.probs(x[:1])[0])
    np.testing.assert_array_equal(back.predict_clip(clips["no_audio"]), model.prior)
