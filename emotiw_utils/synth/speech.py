"""Synthetic speech-like audio with emotion-dependent prosody (the synthetic clips' sound track).

Real AFEW audio is licensed, so the book's synthetic clips carry a sound track made here: a
voiced, syllabic, speech-like signal built with a classic source-filter model, whose prosody
follows the vocal-emotion literature (Banse & Scherer 1996, "Acoustic profiles in vocal emotion
expression"; Juslin & Laukka 2003, "Communication of emotions in vocal expression and music
performance"). The cues an audio model (openSMILE IS10 + PCA + SVM, paper section 3) can pick up:

* **pitch level** (F0 mean) and **pitch range** (F0 spread, per-syllable accents),
* **pitch contour** (phrase declination or rise, final rise/fall),
* **voice perturbation**: jitter (cycle-to-cycle F0 irregularity), shimmer (cycle-to-cycle
  amplitude irregularity), tremor (5-7 Hz F0/amplitude modulation), creak (period doubling),
* **tempo**: syllable rate and pause proportion,
* **energy** (loudness of active speech, in dB) and **attack** (how abrupt syllable onsets are),
* **voice quality**: spectral tilt of the glottal source (tense = flat, breathy = steep) and
  breathiness (aspiration noise), plus a small formant shift (smiling shortens the tract).

Every parameter is relative to a :class:`Speaker` (a speaker's own pitch, vocal-tract length,
breathiness, rate and loudness), and every utterance gets random variation on top of the
(intensity-scaled, blended) class profile, so the classes overlap as they do in real data.

Public API: :class:`Speaker`, :func:`sample_speaker`, :class:`Prosody`, :data:`PROSODY`,
:func:`sample_prosody`, :func:`synth_speech`, :func:`estimate_f0`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import signal

from ..constants import AUDIO_SR, EMOTIONS, NUM_CLASSES


# --------------------------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker's baseline voice (what an emotion is expressed *relative to*).

    f0: base (neutral, mid-utterance) fundamental frequency in Hz; male ~85-150, female ~165-255.
    formant_scale: vocal-tract-length factor applied to all formant frequencies (1.0 = adult
        male reference; ~1.15-1.2 for female voices, i.e. a shorter tract).
    breathiness: baseline aspiration-noise level in [0, 0.3]; the voice's harmonics-to-noise
        ratio is ``20 - 40 * (speaker.breathiness + prosody.breathiness)`` dB.
    rate: baseline speaking-rate factor (1.0 = about 4 syllables/s, pauses excluded).
    loudness_db: baseline speech level offset in dB (how loud this speaker/microphone is).
    """

    f0: float
    formant_scale: float
    breathiness: float
    rate: float
    loudness_db: float


def sample_speaker(rng: np.random.Generator) -> Speaker:
    """Draw a random speaker: male or female (50/50), log-uniform pitch in the sex's range."""
    female = rng.random() < 0.5
    lo, hi = (165.0, 255.0) if female else (85.0, 150.0)
    f0 = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    fs = float(rng.normal(1.17 if female else 1.0, 0.035))
    breath = float(np.clip(rng.uniform(0.02, 0.16) + (0.04 if female else 0.0), 0.0, 0.3))
    rate = float(rng.uniform(0.85, 1.15))
    loud = float(rng.normal(0.0, 2.5))
    return Speaker(f0=f0, formant_scale=fs, breathiness=breath, rate=rate, loudness_db=loud)


# --------------------------------------------------------------------------------------------
# Prosody
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prosody:
    """Prosody of one utterance, relative to the speaker's baseline.

    pitch_shift_st: F0 level shift in semitones (+ higher than the speaker's neutral pitch).
    pitch_range_st: spread of the per-syllable pitch accents in semitones (wide = lively).
    declination_st: pitch change across each phrase in semitones; < 0 falling contour,
        0 flat, > 0 rising.
    final_rise_st: pitch movement over the last syllable of each phrase (+ question-like /
        surprised final rise, - final fall).
    jitter: relative cycle-to-cycle F0 perturbation (0.005 = 0.5 %, modal voice).
    shimmer: relative cycle-to-cycle amplitude perturbation (0.04 = 4 %).
    tremor: depth of a 5-7 Hz F0 (in semitones) and amplitude modulation (fearful tremor).
    creak: period doubling / vocal-fry amount in [0, 1] (alternating cycle amplitudes).
    rate: syllable-rate factor (> 1 faster, shorter syllables and pauses).
    energy_db: loudness of active speech relative to the speaker's baseline, dB.
    tilt_db_oct: spectral slope of the glottal source in dB per octave of harmonic number
        (-12 modal; -6 tense/pressed, strong high harmonics; -17 lax/breathy).
    breathiness: added to the speaker's baseline breathiness (lowers the harmonics-to-noise
        ratio by 4 dB per 0.1).
    pause_prop: expected fraction of the utterance spent in phrase pauses.
    attack_ms: syllable onset ramp length in ms (short = abrupt, hard attack).
    formant_shift: relative formant frequency shift (+ lip spreading/smile, - lip rounding).
    """

    pitch_shift_st: float
    pitch_range_st: float
    declination_st: float
    final_rise_st: float
    jitter: float
    shimmer: float
    tremor: float
    creak: float
    rate: float
    energy_db: float
    tilt_db_oct: float
    breathiness: float
    pause_prop: float
    attack_ms: float
    formant_shift: float


PROSODY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Prosody))

#: Class prosody profiles at full intensity (FER2013 class order), relative to the speaker.
#: Directions follow the cue patterns reviewed by Banse & Scherer (1996) and Juslin & Laukka
#: (2003); magnitudes are chosen so that the IS10 + PCA + SVM recipe lands at ~45 % accuracy
#: (bench/calibrate_audio.py), i.e. above the paper's 35.7 % on real AFEW, far from perfect.
#:
#: ========  =====  ======  =====  ====  =====  ======  ========  ===========================
#: class     F0 st  range   rate   dB    tilt   pauses  contour   voice quality
#: ========  =====  ======  =====  ====  =====  ======  ========  ===========================
#: Angry     +4     wide 9  1.20   +10   -5     0.10    falling   tense, abrupt, jitter
#: Disgust   -2     5       0.78   +1    -13    0.32    falling   creaky (period doubling)
#: Fear      +7     narr 2  1.30   +1    -10    0.24    flat      jitter, 6 Hz tremor, breathy
#: Happy     +5     wide 11 1.12   +4    -9     0.14    rising    smiling (formants +8 %)
#: Sad       -3     narr 1  0.66   -8    -18    0.38    falling   breathy, soft onsets
#: Surprise  +7     13      1.05   +5    -8     0.32    final +9  abrupt onsets
#: Neutral   0      4       1.00   0     -12    0.18    mild fall modal
#: ========  =====  ======  =====  ====  =====  ======  ========  ===========================
PROSODY: dict[str, Prosody] = {
    "Angry": Prosody(pitch_shift_st=4.0, pitch_range_st=9.0, declination_st=-4.0,
                     final_rise_st=-3.0, jitter=0.013, shimmer=0.075, tremor=0.0, creak=0.0,
                     rate=1.20, energy_db=10.0, tilt_db_oct=-5.0, breathiness=-0.06,
                     pause_prop=0.10, attack_ms=4.0, formant_shift=0.05),
    "Disgust": Prosody(pitch_shift_st=-2.0, pitch_range_st=5.0, declination_st=-5.5,
                       final_rise_st=-3.5, jitter=0.011, shimmer=0.070, tremor=0.0, creak=0.70,
                       rate=0.78, energy_db=1.0, tilt_db_oct=-13.0, breathiness=0.05,
                       pause_prop=0.32, attack_ms=35.0, formant_shift=-0.04),
    "Fear": Prosody(pitch_shift_st=7.0, pitch_range_st=2.2, declination_st=0.0,
                    final_rise_st=1.0, jitter=0.024, shimmer=0.080, tremor=1.0, creak=0.0,
                    rate=1.30, energy_db=1.0, tilt_db_oct=-10.0, breathiness=0.18,
                    pause_prop=0.24, attack_ms=12.0, formant_shift=0.02),
    "Happy": Prosody(pitch_shift_st=5.0, pitch_range_st=11.0, declination_st=2.0,
                     final_rise_st=3.0, jitter=0.006, shimmer=0.040, tremor=0.0, creak=0.0,
                     rate=1.12, energy_db=4.0, tilt_db_oct=-9.0, breathiness=0.0,
                     pause_prop=0.14, attack_ms=15.0, formant_shift=0.08),
    "Sad": Prosody(pitch_shift_st=-3.0, pitch_range_st=1.5, declination_st=-3.5,
                   final_rise_st=-2.5, jitter=0.012, shimmer=0.055, tremor=0.25, creak=0.20,
                   rate=0.66, energy_db=-8.0, tilt_db_oct=-18.0, breathiness=0.28,
                   pause_prop=0.38, attack_ms=50.0, formant_shift=-0.04),
    "Surprise": Prosody(pitch_shift_st=7.0, pitch_range_st=13.0, declination_st=2.5,
                        final_rise_st=9.0, jitter=0.007, shimmer=0.045, tremor=0.0, creak=0.0,
                        rate=1.05, energy_db=5.0, tilt_db_oct=-8.0, breathiness=0.03,
                        pause_prop=0.32, attack_ms=8.0, formant_shift=0.04),
    "Neutral": Prosody(pitch_shift_st=0.0, pitch_range_st=4.0, declination_st=-2.0,
                       final_rise_st=-1.0, jitter=0.005, shimmer=0.035, tremor=0.0, creak=0.05,
                       rate=1.0, energy_db=0.0, tilt_db_oct=-12.0, breathiness=0.0,
                       pause_prop=0.18, attack_ms=25.0, formant_shift=0.0),
}
assert tuple(PROSODY) == EMOTIONS

_TABLE = np.array([[getattr(PROSODY[e], f) for f in PROSODY_FIELDS] for e in EMOTIONS])
_NEUTRAL = _TABLE[EMOTIONS.index("Neutral")]

#: Per-utterance random variation at ``variability=1``: (kind, scale) per field. "add" adds
#: N(0, scale); "mul" multiplies by exp(N(0, scale)). This is what makes classes overlap.
VARIATION: dict[str, tuple[str, float]] = {
    "pitch_shift_st": ("add", 2.0),
    "pitch_range_st": ("mul", 0.35),
    "declination_st": ("add", 1.5),
    "final_rise_st": ("add", 2.0),
    "jitter": ("mul", 0.35),
    "shimmer": ("mul", 0.30),
    "tremor": ("add", 0.15),
    "creak": ("add", 0.12),
    "rate": ("mul", 0.12),
    "energy_db": ("add", 2.5),
    "tilt_db_oct": ("add", 2.5),
    "breathiness": ("add", 0.05),
    "pause_prop": ("add", 0.07),
    "attack_ms": ("mul", 0.35),
    "formant_shift": ("add", 0.025),
}
_LIMITS: dict[str, tuple[float, float]] = {
    "pitch_range_st": (0.5, 16.0), "jitter": (0.001, 0.05), "shimmer": (0.005, 0.2),
    "tremor": (0.0, 1.5), "creak": (0.0, 1.0), "rate": (0.45, 1.8), "tilt_db_oct": (-22.0, -3.0),
    "pause_prop": (0.0, 0.6), "attack_ms": (3.0, 80.0), "formant_shift": (-0.1, 0.12),
}


def sample_prosody(rng: np.random.Generator, emotion_weights: np.ndarray, intensity: float,
                   variability: float = 1.0) -> Prosody:
    """Prosody of one utterance: blended class profile, scaled by intensity, plus noise.

    emotion_weights: (7,) non-negative weights summing to 1 (e.g. 0.7 Fear + 0.3 Surprise).
    intensity: in [0, 1]; 0 gives the Neutral profile, 1 the full blended profile.
    variability: multiplies every :data:`VARIATION` scale (0 = no per-utterance variation).
    """
    w = np.asarray(emotion_weights, dtype=np.float64)
    if w.shape != (NUM_CLASSES,) or np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-3):
        raise ValueError(f"emotion_weights must be {NUM_CLASSES} non-negative values summing to 1")
    inten = float(np.clip(intensity, 0.0, 1.0))
    base = _NEUTRAL + inten * (w @ _TABLE - _NEUTRAL)
    z = rng.standard_normal(len(PROSODY_FIELDS))
    vals = {}
    for i, name in enumerate(PROSODY_FIELDS):
        kind, scale = VARIATION[name]
        v = base[i] + variability * scale * z[i] if kind == "add" \
            else base[i] * np.exp(variability * scale * z[i])
        lo, hi = _LIMITS.get(name, (-np.inf, np.inf))
        vals[name] = float(np.clip(v, lo, hi))
    return Prosody(**vals)


# --------------------------------------------------------------------------------------------
# Synthesis helpers
# --------------------------------------------------------------------------------------------
#: Vowel formants F1, F2, F3 (Hz, adult male; Peterson & Barney 1952, rounded).
VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240),
    "e": (530, 1840, 2480), "o": (570, 840, 2410), "ae": (660, 1720, 2410),
    "uh": (640, 1190, 2390), "schwa": (500, 1500, 2500),
}
_VOWEL_F = np.array(list(VOWELS.values()), dtype=np.float64)
_HOP = 80  # control-rate hop in samples (5 ms at 16 kHz)


def _resonator_sos(freqs: np.ndarray, bws: np.ndarray, sr: int) -> np.ndarray:
    """Cascade of 2-pole resonators (one per formant), each with unit gain at DC."""
    sos = np.zeros((len(freqs), 6))
    for j, (f, bw) in enumerate(zip(freqs, bws)):
        r = np.exp(-np.pi * bw / sr)
        a1, a2 = -2.0 * r * np.cos(2.0 * np.pi * f / sr), r * r
        sos[j] = (1.0 + a1 + a2, 0.0, 0.0, 1.0, a1, a2)
    return sos


def _ramp_env(n: int, attack: int, decay: int) -> np.ndarray:
    """Syllable envelope: raised-cosine attack, slow sag, raised-cosine decay."""
    env = np.ones(n)
    a, d = min(attack, n // 2), min(decay, n // 2)
    if a > 0:
        env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    if d > 0:
        env[n - d:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(1, d + 1) / d)
    env *= np.linspace(1.0, 0.75, n)
    return env


def _harmonics(phase: np.ndarray, amps: np.ndarray, cos_phase: np.ndarray) -> np.ndarray:
    """sum_k amps[k-1] * sin(k*phase), via the Chebyshev recurrence (no per-harmonic sin)."""
    s_prev = np.zeros_like(phase)
    s_cur = np.sin(phase)
    c2 = 2.0 * cos_phase
    out = amps[0] * s_cur
    tmp = np.empty_like(phase)
    for a in amps[1:]:
        np.multiply(c2, s_cur, out=tmp)
        tmp -= s_prev
        s_prev, s_cur, tmp = s_cur, tmp, s_prev
        out += a * s_cur
    return out


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS pink-ish (1/f) noise via a 3-pole filter on white noise."""
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    x = signal.lfilter(b, a, rng.standard_normal(n + 2000))[2000:]
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def _layout(rng: np.random.Generator, n: int, sr: int, pro: Prosody, spk_rate: float):
    """Syllables as (onset_start, nucleus_start, nucleus_end, phrase_id, consonant_kind).

    Nuclei last 80-300 ms divided by the rate; an onset consonant (fricative or plosive burst)
    precedes 60 % of them; phrase pauses are inserted so that they take about ``pause_prop``
    of the time.
    """
    rate = pro.rate * spk_rate
    t = int(rng.uniform(0.02, 0.2) * sr)
    end = n - int(rng.uniform(0.04, 0.15) * sr)
    unit = 0.25 / rate                       # mean syllable unit (nucleus + gap), seconds
    mean_pause = 0.35 / np.sqrt(rate)
    p = float(np.clip(pro.pause_prop * unit / (mean_pause * max(1e-3, 1.0 - pro.pause_prop)),
                      0.0, 0.9))
    syl, phrase = [], 0
    while True:
        kind = 0
        onset = t
        if rng.random() < 0.6:
            kind = 1 if rng.random() < 0.6 else 2          # 1 fricative, 2 plosive burst
            t += int((rng.uniform(0.04, 0.10) if kind == 1 else rng.uniform(0.012, 0.03))
                     * sr / rate)
        dur = int(rng.uniform(0.08, 0.30) * sr / rate)
        if t + dur > end:                                   # last syllable: clipped to fit
            dur = end - t
            if dur < int(0.06 * sr):
                break
        syl.append((onset, t, t + dur, phrase, kind))
        t += dur + int(rng.uniform(0.01, 0.05) * sr / rate)
        if rng.random() < p:
            t += int(mean_pause * rng.uniform(0.4, 1.6) * sr)
            phrase += 1
    if not syl and end > t + int(0.03 * sr):                # very short clip: one syllable
        syl.append((t, t, end, 0, 0))
    return syl


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Uninformative track: room/street noise plus music-like sustained tones and chords."""
    t = np.arange(n) / sr
    out = _pink(rng, n) * 10 ** (rng.uniform(-34, -22) / 20)
    if rng.random() < 0.8:                                  # music-like chord sequence
        pos, root = 0, rng.uniform(48, 60)                  # MIDI root note
        music = np.zeros(n)
        while pos < n:
            seg = int(rng.uniform(0.3, 1.2) * sr)
            sl = slice(pos, min(n, pos + seg))
            tt = t[sl] - t[pos]
            chord = root + np.array([0, 4 if rng.random() < 0.5 else 3, 7]) \
                + 12 * rng.integers(0, 2)
            decay = np.exp(-tt * rng.uniform(0.5, 3.0))
            for note in chord:
                f = 440.0 * 2 ** ((note - 69) / 12)
                for h in range(1, 5):
                    if h * f < sr / 2 - 500:
                        music[sl] += np.sin(2 * np.pi * h * f * tt + rng.uniform(0, 6.3)) / h ** 1.5
            music[sl] *= decay * np.minimum(1.0, tt / 0.01)
            root += rng.choice([-5, -3, 0, 2, 5, 7])
            root = float(np.clip(root, 43, 67))
            pos += seg
        music /= np.sqrt(np.mean(music ** 2)) + 1e-12
        out += music * 10 ** (rng.uniform(-30, -18) / 20)
    return out


# --------------------------------------------------------------------------------------------
# The synthesiser
# --------------------------------------------------------------------------------------------
def _voice(rng: np.random.Generator, n: int, sr: int, speaker: Speaker, pro: Prosody):
    """Speech for prosody ``pro``: returns (signal, active-speech mask)."""
    syl = _layout(rng, n, sr, pro, speaker.rate)
    active = np.zeros(n, dtype=bool)
    if not syl:
        return np.zeros(n), active
    out2 = np.zeros((2, n))
    n_ctl = n // _HOP + 2
    tc = np.arange(n_ctl) * _HOP / sr
    # ---- pitch contour (semitones re speaker f0) at control rate --------------------------
    st = np.full(n_ctl, pro.pitch_shift_st)
    phr = np.array([s[3] for s in syl])
    for ph in np.unique(phr):
        idx = np.nonzero(phr == ph)[0]
        a, b = syl[idx[0]][0] // _HOP, syl[idx[-1]][2] // _HOP + 1
        st[a:b] += pro.declination_st * (np.linspace(0.0, 1.0, b - a) - 0.5)
        la, lb = syl[idx[-1]][1] // _HOP, syl[idx[-1]][2] // _HOP + 1
        if lb > la:                                         # final rise / fall
            st[la:lb] += pro.final_rise_st * np.linspace(0.0, 1.0, lb - la) ** 2
    accent = rng.uniform(-0.5, 0.5, len(syl)) * pro.pitch_range_st
    accent[rng.random(len(syl)) < 0.3] += 0.4 * pro.pitch_range_st  # a few stressed syllables
    slope = rng.uniform(-0.3, 0.3, len(syl)) * pro.pitch_range_st
    for k, (on, a, b, _, _) in enumerate(syl):
        ca, cb = on // _HOP, b // _HOP + 1
        st[ca:cb] += accent[k] + slope[k] * (np.linspace(0.0, 1.0, cb - ca) - 0.5)
    st = np.convolve(np.pad(st, 4, mode="edge"), np.hanning(9) / np.hanning(9).sum(), "valid")
    if pro.tremor > 0:
        ftr = rng.uniform(5.0, 7.0)
        st += pro.tremor * np.sin(2 * np.pi * ftr * tc + rng.uniform(0, 6.3))
    st += 0.15 * np.cumsum(rng.standard_normal(n_ctl)) / np.sqrt(n_ctl)  # slow drift
    f0 = np.interp(np.arange(n) / _HOP, np.arange(n_ctl), speaker.f0 * 2.0 ** (st / 12.0))
    f0 = np.clip(f0, 50.0, 700.0)
    # ---- per-cycle jitter, shimmer, creak --------------------------------------------------
    cyc = (np.cumsum(f0) / sr).astype(np.int64)
    n_cyc = int(cyc[-1]) + 2
    jit = 1.0 + (pro.jitter + 0.02 * pro.creak) * rng.standard_normal(n_cyc)
    f0 = f0 * jit[cyc]
    phase = 2.0 * np.pi * np.cumsum(f0) / sr
    cyc = (phase / (2.0 * np.pi)).astype(np.int64)
    amp = 1.0 + (pro.shimmer + 0.1 * pro.creak) * rng.standard_normal(n_cyc + 2)
    amp = np.clip(amp, 0.2, 2.0)
    amp[1::2] *= 1.0 - 0.6 * pro.creak                        # period doubling
    cyc_amp = amp[cyc]
    if pro.tremor > 0:
        cyc_amp *= 1.0 + 0.15 * pro.tremor * np.sin(2 * np.pi * 6.0 * np.arange(n) / sr)
    # ---- glottal source: harmonics with spectral tilt + aspiration -----------------------
    fmax_f0 = float(np.max(f0))
    k_max = max(4, min(int(5000.0 / float(np.median(f0))), int(7600.0 / fmax_f0)))
    ks = np.arange(1, k_max + 1)
    amps = ks ** (pro.tilt_db_oct / 6.0206)
    cos_phase = np.cos(phase)
    src = _harmonics(phase, amps, cos_phase) * cyc_amp
    breath = float(np.clip(speaker.breathiness + pro.breathiness, 0.0, 0.6))
    asp = rng.standard_normal(n) * (0.7 + 0.3 * cos_phase)  # aspiration, glottal-pulsed
    src = np.stack([src, asp])            # filtered separately, mixed at a set HNR below
    # ---- syllables: envelope + vowel formant filter (source-filter model) ---------------
    n_v = int(rng.integers(3, 6))
    vowels = _VOWEL_F[rng.choice(len(_VOWEL_F), n_v, replace=False)]
    fscale = speaker.formant_scale * (1.0 + pro.formant_shift)
    bw_base = np.array([70.0, 100.0, 140.0, 220.0]) * rng.uniform(0.8, 1.3)
    attack = max(1, int(pro.attack_ms * sr / 1000.0))
    tail = int(0.02 * sr)
    for on, a, b, _, _ in syl:
        v = vowels[rng.integers(n_v)] * rng.uniform(0.94, 1.06, 3)
        freqs = np.append(v, 3500.0) * fscale
        sos = _resonator_sos(np.minimum(freqs, 0.45 * sr), bw_base, sr)
        env = _ramp_env(b - a, attack, int(rng.uniform(0.03, 0.07) * sr))
        env *= rng.uniform(0.6, 1.0)
        seg = np.concatenate([src[:, a:b] * env, np.zeros((2, tail))], axis=1)
        y = signal.sosfilt(sos, seg, axis=1)
        stop = min(n, b + tail)
        out2[:, a:stop] += y[:, : stop - a]
        active[a:b] = True
    out2 = np.diff(out2, axis=1, prepend=0.0)                 # lip radiation (+6 dB/oct)
    # harmonics-to-noise ratio: ~20 dB for a clear voice, ~5 dB when breathy
    rms2 = np.sqrt(np.mean(out2[:, active] ** 2, axis=1)) + 1e-12
    hnr_db = 20.0 - 40.0 * breath
    out = out2[0] / rms2[0] + out2[1] / rms2[1] * 10 ** (-hnr_db / 20)
    # ---- unvoiced consonants between syllables -------------------------------------------
    v_rms = np.sqrt(np.mean(out[active] ** 2)) + 1e-12
    cons = np.zeros(n)
    kinds = [s[4] for s in syl]
    if any(kinds):
        wn = rng.standard_normal(n)
        fric = signal.sosfilt(signal.butter(4, rng.uniform(2500, 4500) / (sr / 2), "high",
                                            output="sos"), wn)
        burst = signal.sosfilt(signal.butter(2, [800 / (sr / 2), 6000 / (sr / 2)], "band",
                                             output="sos"), wn)
        for on, a, _, _, kind in syl:
            if kind == 0 or a - on < 8:
                continue
            m = a - on
            e = np.hanning(m) * 10 ** (rng.uniform(-16, -6) / 20) * v_rms
            cons[on:a] += e * (fric[on:a] if kind == 1 else 2.0 * burst[on:a])
            active[on:a] = True
    return out + cons, active


def synth_speech(rng: np.random.Generator, emotion_weights: np.ndarray, intensity: float,
                 speaker: Speaker, duration_s: float, sr: int = AUDIO_SR,
                 informative: bool = True, variability: float = 1.0,
                 p_background: float = 0.5) -> np.ndarray:
    """One clip's audio track: speech-like sound whose prosody carries the emotion.

    rng: the only source of randomness (same state -> identical output).
    emotion_weights: (7,) non-negative class weights summing to 1, FER2013 order (a blend:
        e.g. 0.7 Angry + 0.3 Disgust). Ignored when ``informative`` is False.
    intensity: in [0, 1]; how far the prosody moves from Neutral towards the class profile.
    speaker: the speaker's baseline voice (:func:`sample_speaker`).
    duration_s: clip length in seconds; the result has exactly ``round(duration_s * sr)``
        samples.
    sr: sample rate (16 kHz, :data:`~emotiw_utils.constants.AUDIO_SR`).
    informative: False models movie audio unrelated to the label: with probability
        ``p_background`` the track is background noise with music-like chords, otherwise the
        speaker talks with Neutral prosody plus label-independent variation.
    variability: scales the per-utterance prosody variation (:data:`VARIATION`).
    p_background: see ``informative``.

    Returns a float32 (S,) array in [-1, 1] (peak < 0.99) whose active-speech level follows
    ``speaker.loudness_db + prosody.energy_db`` (so energy is a real cue) over a fixed room
    noise floor.
    """
    n = int(round(duration_s * sr))
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    if informative:
        pro = sample_prosody(rng, emotion_weights, intensity, variability)
    else:
        if rng.random() < p_background:
            x = _background(rng, n, sr)
            return _finish(rng, x, n)
        neutral = np.zeros(NUM_CLASSES)
        neutral[EMOTIONS.index("Neutral")] = 1.0
        pro = sample_prosody(rng, neutral, 0.0, 1.5 * variability)
    x, active = _voice(rng, n, sr, speaker, pro)
    if active.any():
        level_db = -26.0 + speaker.loudness_db + pro.energy_db + rng.normal(0.0, 1.0)
        x *= 10 ** (level_db / 20) / (np.sqrt(np.mean(x[active] ** 2)) + 1e-12)
    return _finish(rng, x, n)


def _finish(rng: np.random.Generator, x: np.ndarray, n: int) -> np.ndarray:
    """Add the room noise floor (about -55 dBFS), limit the peak below 0.99, cast to float32."""
    x = x + _pink(rng, n) * 10 ** (rng.uniform(-60, -50) / 20)
    peak = float(np.max(np.abs(x)))
    if peak > 0.98:
        x *= 0.98 / peak
    return x.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------
def estimate_f0(x: np.ndarray, sr: int = AUDIO_SR, fmin: float = 60.0, fmax: float = 500.0,
                frame_s: float = 0.04, hop_s: float = 0.01, voicing: float = 0.6,
                floor_db: float = -20.0) -> float:
    """Mean F0 (Hz) over voiced frames by normalised autocorrelation; NaN if none is voiced.

    A frame is voiced when its normalised autocorrelation peak in [sr/fmax, sr/fmin] exceeds
    ``voicing`` and its RMS is within ``-floor_db`` dB of the loudest frames. The first local
    autocorrelation peak reaching 90 % of the maximum is taken (refined by parabolic
    interpolation), which avoids octave-down (period-doubling) errors.
    """
    x = np.asarray(x, dtype=np.float64)
    L, H = int(frame_s * sr), int(hop_s * sr)
    if len(x) < L:
        return float("nan")
    idx = np.arange(0, len(x) - L + 1, H)[:, None] + np.arange(L)[None, :]
    fr = x[idx]
    fr = fr - fr.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.mean(fr ** 2, axis=1))
    win = np.hanning(L)
    spec = np.fft.rfft(fr * win, n=2 * L, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :L]
    wac = np.fft.irfft(np.abs(np.fft.rfft(win, n=2 * L)) ** 2)[:L]
    ac = ac / (ac[:, :1] + 1e-12) / (wac / wac[0] + 1e-3)
    lo, hi = int(sr / fmax), int(sr / fmin)
    seg = ac[:, lo:hi]
    peak = seg.max(axis=1)
    loud = rms > np.percentile(rms, 95) * 10 ** (floor_db / 20)
    voiced = (peak > voicing) & loud
    if not voiced.any():
        return float("nan")
    seg = seg[voiced]
    mid = seg[:, 1:-1]
    cand = (mid > seg[:, :-2]) & (mid >= seg[:, 2:]) & (mid >= 0.9 * mid.max(axis=1, keepdims=True))
    ok = cand.any(axis=1)
    if not ok.any():
        return float("nan")
    seg, cand = seg[ok], cand[ok]
    k = 1 + np.argmax(cand, axis=1)                       # first local peak near the maximum
    rows = np.arange(len(k))
    y0, y1, y2 = seg[rows, k - 1], seg[rows, k], seg[rows, k + 1]
    den = y0 - 2 * y1 + y2
    frac = np.where(np.abs(den) > 1e-12, 0.5 * (y0 - y2) / np.where(den == 0, 1, den), 0.0)
    lag = lo + k + np.clip(frac, -0.5, 0.5)               # parabolic interpolation
    return float(np.mean(sr / lag))


__all__ = ["Speaker", "sample_speaker", "Prosody", "PROSODY", "PROSODY_FIELDS", "VARIATION",
           "VOWELS", "sample_prosody", "synth_speech", "estimate_f0"]
