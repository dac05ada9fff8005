"""Synthetic speech (emotiw_utils.synth.speech): shape, determinism and the prosodic cues."""

from __future__ import annotations


import numpy as np
import pytest

from emotiw_utils.constants import AUDIO_SR, EMOTION_TO_ID, NUM_CLASSES
from emotiw_utils.synth.speech import (
    PROSODY,
    Speaker,
    estimate_f0,
    sample_prosody,
    sample_speaker,
    synth_speech,
)

SPK = Speaker(f0=120.0, formant_scale=1.0, breathiness=0.08, rate=1.0, loudness_db=0.0)
SEEDS = range(6)


def onehot(name: str) -> np.ndarray:
    w = np.zeros(NUM_CLASSES)
    w[EMOTION_TO_ID[name]] = 1.0
    return w


def clip(name: str, seed: int, **kw) -> np.ndarray:
    kw.setdefault("intensity", 1.0)
    kw.setdefault("duration_s", 3.0)
    return synth_speech(np.random.default_rng(seed), onehot(name), speaker=SPK, **kw)


def mean_f0(name: str, **kw) -> float:
    return float(np.nanmean([estimate_f0(clip(name, s, **kw)) for s in SEEDS]))


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12))


@pytest.mark.parametrize("dur", [0.8, 1.0, 2.3456, 3.0, 5.0, 0.05, 0.0])
def test_exact_length_and_range(dur):
    x = clip("Angry", 0, duration_s=dur)
    assert x.shape == (round(dur * AUDIO_SR),)
    assert x.dtype == np.float32
    assert np.all(np.isfinite(x))
    if x.size:
        assert np.max(np.abs(x)) < 0.99


def test_every_class_blend_and_uninformative_is_valid():
    rng = np.random.default_rng(3)
    for c in range(NUM_CLASSES):
        w = np.zeros(NUM_CLASSES)
        w[c], w[(c + 2) % NUM_CLASSES] = 0.7, 0.3
        for informative in (True, False):
            spk = sample_speaker(rng)
            x = synth_speech(rng, w, float(rng.uniform(0, 1)), spk, 1.7, informative=informative)
            assert x.shape == (round(1.7 * AUDIO_SR),)
            assert np.all(np.isfinite(x)) and np.max(np.abs(x)) < 0.99
            assert rms_db(x) > -70  # not silent


def test_deterministic():
    a, b = clip("Happy", 11), clip("Happy", 11)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, clip("Happy", 12))


def test_speaker_sampling_ranges_and_determinism():
    spks = [sample_speaker(np.random.default_rng(s)) for s in range(200)]
    f0 = np.array([s.f0 for s in spks])
    assert f0.min() >= 85 and f0.max() <= 255
    assert np.any(f0 < 150) and np.any(f0 > 165)
    assert sample_speaker(np.random.default_rng(5)) == sample_speaker(np.random.default_rng(5))


def test_prosody_blend_and_intensity():
    # no variation: intensity 0 is Neutral, intensity 1 the class, a 50/50 blend in between
    rng = np.random.default_rng(0)
    assert sample_prosody(rng, onehot("Sad"), 0.0, variability=0.0) == PROSODY["Neutral"]
    assert sample_prosody(rng, onehot("Sad"), 1.0, variability=0.0) == PROSODY["Sad"]
    w = 0.5 * onehot("Angry") + 0.5 * onehot("Happy")
    p = sample_prosody(rng, w, 1.0, variability=0.0)
    assert p.energy_db == pytest.approx(0.5 * (PROSODY["Angry"].energy_db
                                                + PROSODY["Happy"].energy_db))
    with pytest.raises(ValueError):
        sample_prosody(rng, np.ones(NUM_CLASSES), 1.0)


def test_estimate_f0_on_a_pure_tone_and_silence():
    t = np.arange(AUDIO_SR) / AUDIO_SR
    assert estimate_f0(0.3 * np.sin(2 * np.pi * 150 * t)) == pytest.approx(150, rel=0.02)
    assert np.isnan(estimate_f0(np.zeros(AUDIO_SR)))


def test_estimate_f0_tracks_the_speaker():
    f0 = estimate_f0(clip("Neutral", 0, intensity=0.0))
    assert 95 < f0 < 160  # speaker at 120 Hz plus accents


def test_high_arousal_pitch_above_sad():
    sad = mean_f0("Sad")
    for name in ("Happy", "Fear", "Surprise"):
        assert mean_f0(name) > 1.2 * sad, name


def test_angry_louder_than_sad():
    angry = np.mean([rms_db(clip("Angry", s)) for s in SEEDS])
    sad = np.mean([rms_db(clip("Sad", s)) for s in SEEDS])
    assert angry > sad + 8


def test_uninformative_ignores_the_label():
    for s in SEEDS:
        a = clip("Angry", s, informative=False)
        b = clip("Sad", s, informative=False)
        assert np.array_equal(a, b)
    f_angry = mean_f0("Angry", informative=False)
    f_sad = mean_f0("Sad", informative=False)
    assert f_angry == pytest.approx(f_sad, rel=0.05)
