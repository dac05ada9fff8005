"""Tests of emotiw_utils.egemaps: the 88 eGeMAPSv02 functionals, missing audio and the cache."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import egemaps
from emotiw_utils.constants import AUDIO_SR
from emotiw_utils.datasets.video import write_clip


def _tone(seconds: float, f0: float) -> np.ndarray:
    t = np.arange(int(seconds * AUDIO_SR)) / AUDIO_SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def test_functionals_shape_and_sensitivity():
    a, b = egemaps.egemaps_functionals(_tone(1.5, 140)), egemaps.egemaps_functionals(_tone(1.5, 280))
    assert a.shape == (egemaps.EGEMAPS_DIM,) == (88,) and np.isfinite(a).all()
    assert not np.allclose(a, b)


def test_extract_marks_missing_clips_and_caches(tmp_path, monkeypatch):
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    paths = [write_clip(tmp_path / "ok.avi", frames, audio=_tone(1.2, 180)),
             write_clip(tmp_path / "mute.avi", frames),
             write_clip(tmp_path / "silent.avi", frames, audio=np.zeros(AUDIO_SR, np.float32))]
    (tmp_path / "broken.avi").write_bytes(b"not a video")
    paths.append(tmp_path / "broken.avi")
    feats, status = egemaps.extract_paths(paths, workers=1)
    assert list(status) == ["ok", "no_audio", "silent", "unreadable"]
    assert np.isfinite(feats[0]).all() and np.isnan(feats[1:]).all()
    first = egemaps.EgemapsFeatures.extract("Val", ["a", "b", "c", "d"], paths, cache=tmp_path / "eg.npz", workers=2)
    np.testing.assert_allclose(first.features[0], feats[0], rtol=1e-6)
    assert list(first.missing) == [False, True, True, True]
    monkeypatch.setattr(egemaps, "extract_paths", lambda *a, **k: pytest.fail("the cache was not used"))
    again = egemaps.EgemapsFeatures.extract("Val", ["a", "b", "c", "d"], paths, cache=tmp_path / "eg.npz")
    np.testing.assert_array_equal(again.features, first.features)
    with pytest.raises(ValueError, match="4 clip ids for 3 files"):
        egemaps.EgemapsFeatures.extract("Val", ["a", "b", "c", "d"], paths[:3])
