"""The audio model of Kahou et al. 2015, section 3: openSMILE IS10 functionals + PCA + RBF SVM.

"It uses 1582 features extracted with the open-source Emotion and Affect Recognition (openEAR) toolkit
which uses openSMILE as backend [...]. In this work we used Principal Component Analysis (PCA) based
dimensionality reduction as preprocessing on the 1582 dimensional input features and an RBF-kernel SVM
for classification. The hyper-parameters for the SVM are set via grid search." The 1582 features are the
INTERSPEECH 2010 Paralinguistic Challenge set (``opensmile.FeatureSet.IS10``, functionals level).

* :func:`functionals` / :func:`extract_paths`: 16 kHz mono audio (decoded with PyAV) -> one vector per clip of
  a feature set of :data:`FEATURE_SETS` (``IS10``: ``(1582,)``, the paper's; ``eGeMAPSv02``: ``(88,)``, the
  comparison of chapter 05, :mod:`emotiw_utils.egemaps`), in parallel over processes, each with one
  ``opensmile.Smile`` per feature set. One extractor, one cache key (:func:`features_key`), one status vocabulary.
* Statuses are the clip policy's (:data:`emotiw_utils.clip_policy.STATUSES`; the ones this stage gives:
  :data:`STATUSES`). A clip without an audio stream (``no_audio``), with a silent track (``silent``), a track
  under 0.1 s or one that ends well before the video (a file cut off: ``audio_short``), audio that cannot be
  decoded (``unreadable``) or on which openSMILE fails (``audio_failed``) is **missing**: its feature row is
  NaN. Missing clips are left out of every fit; the classifier gives them the training class prior
  (:func:`predict_with_prior`) and the fusion network zeros (the whitened mean), so nothing downstream sees a
  NaN. A training split without a single clip with audio is refused (:func:`require_training_audio`).
* Long tracks: openSMILE's memory grows with the track (IS10: about 5 MB per second of audio, 3.2 GB for a
  10-minute clip; ``bench/RESULTS.md``). A track longer than ``max_seconds`` (:data:`MAX_SECONDS` unless the
  stage's ``max_audio_seconds`` says otherwise) is described by its **central** ``max_seconds`` window
  (:func:`central_window`) and its status is ``audio_long``: used, and counted, never silently ``ok``.
* :func:`fit_audio_grid`: standardisation -> PCA (not whitened) -> RBF SVM, with the number of PCA
  components, C and gamma chosen together by cross-validation grouped by speaker (by clip where there are
  no speaker ids) over the training clips, ties to the smallest model (:mod:`emotiw_utils.audio_selection`).
* :func:`fusion_projection`: the first 10 PCA-whitened components, the audio input of the fusion network
  (paper 6.2).
* :class:`AudioModel`: what a finished run keeps to be applied to a new clip without retraining (the
  classifier, the fusion projection, the prior and the window bound, in the stage's folder);
  :func:`extract_clip` gives a new clip's features and :func:`reapply` recomputes a split's probabilities of a
  finished run from them.

opensmile and scikit-learn are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotiw_utils import clip_policy, stages
from emotiw_utils.artifacts import load_clip_probs, save_npz_atomic
from emotiw_utils.audio_selection import paper_model
from emotiw_utils.capped_pca import CappedPCA  # noqa: F401 (re-exported: the PCA of the audio model)
from emotiw_utils.clip_policy import class_prior  # the fallback of the clip policy (re-exported)
from emotiw_utils.constants import AUDIO_SR, NUM_CLASSES, UNKNOWN_LABEL
from emotiw_utils.svm import calibrated_fit

__all__ = ["FEATURE_SETS", "IS10_DIM", "MAX_SECONDS", "MIN_SECONDS", "SILENCE_RMS", "STATUSES", "AudioFeatures",
           "AudioModel", "AudioSearchResult", "central_window", "class_prior", "evaluate_speaker_split",
           "extract_clip", "extract_paths", "features_key", "fit_audio_grid", "fit_audio_model", "functionals",
           "fusion_projection", "is10_functionals", "load_cached", "missing", "predict_with_prior", "project",
           "reapply", "require_training_audio", "signal_features", "signal_status", "status_counts"]

#: openSMILE functionals sets the extractor computes: name (an ``opensmile.FeatureSet`` member) -> vector size.
FEATURE_SETS: dict[str, int] = {"IS10": 1582, "eGeMAPSv02": 88}
#: Size of the IS10 functionals vector (paper section 3).
IS10_DIM: int = FEATURE_SETS["IS10"]
#: A track whose RMS is below this (about -80 dBFS) counts as silent.
SILENCE_RMS: float = 1e-4
#: A track shorter than this (seconds) is too short for openSMILE's 60 ms analysis frames and deltas.
MIN_SECONDS: float = 0.1
#: Default bound on the audio openSMILE reads per clip (seconds): a longer track is described by its central
#: window of this length (status ``audio_long``). IS10 needs 3-5 MB per second of audio: with 60 s one
#: extraction process peaks at about 0.5 GB whatever the clip's length (``bench/RESULTS.md``). The stage's
#: ``max_audio_seconds`` sets it; None: no bound.
MAX_SECONDS: float = 60.0
#: The clip-policy statuses (:data:`emotiw_utils.clip_policy.STATUSES`, in its order) the audio stage gives;
#: every one that disables audio marks the clip's features as missing.
STATUSES: tuple[str, ...] = tuple(s for s in clip_policy.STATUSES if s in (
    "ok", "audio_long", "silent", "no_audio", "audio_short", "audio_failed", "unreadable"))

_SMILES: dict[str, Any] = {}


def _smile(feature_set: str = "IS10"):
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r} (expected one of {', '.join(FEATURE_SETS)})")
    if feature_set not in _SMILES:
        import opensmile

        _SMILES[feature_set] = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                                               feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILES[feature_set]


def missing(status: Any) -> np.ndarray:
    """``(N,)`` bool: the clips whose (clip-policy) audio status leaves them without usable features; a name
    the policy does not know counts as missing."""
    st = np.asarray(status).astype(str).reshape(-1)
    return np.array([s not in clip_policy.STATUSES or "audio" in clip_policy.STATUSES[s].disables for s in st],
                    dtype=bool)


def status_counts(status: Any) -> dict[str, int]:
    """Clips per status of :data:`STATUSES` (every one, zeros included, in its order; then any other name)."""
    st = np.asarray(status).astype(str).reshape(-1)
    counts = {s: int((st == s).sum()) for s in STATUSES}
    counts.update({s: int((st == s).sum()) for s in sorted(set(st) - set(STATUSES))})
    return counts


def central_window(signal: np.ndarray, sr: int = AUDIO_SR,
                   max_seconds: float | None = MAX_SECONDS) -> tuple[np.ndarray, bool]:
    """``(window, bounded)``: the central ``max_seconds`` of ``signal`` and True when it is longer (else the
    signal itself and False; None or inf: no bound)."""
    x = np.asarray(signal).reshape(-1)
    if max_seconds is None or not np.isfinite(max_seconds):
        return x, False
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive (None: no bound), got {max_seconds!r}")
    n = round(float(max_seconds) * sr)
    if x.size <= n:
        return x, False
    start = (x.size - n) // 2
    return x[start:start + n], True


def signal_status(signal: np.ndarray, sr: int = AUDIO_SR) -> str:
    """``"ok"``, ``"audio_short"`` (fewer than :data:`MIN_SECONDS`) or ``"silent"`` (RMS < :data:`SILENCE_RMS`,
    or non-finite samples)."""
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    if x.size < MIN_SECONDS * sr:
        return "audio_short"
    if not np.isfinite(x).all() or float(np.sqrt(np.mean(x * x))) < SILENCE_RMS:
        return "silent"
    return "ok"


def functionals(signal: np.ndarray, sr: int = AUDIO_SR, feature_set: str = "IS10") -> np.ndarray:
    """openSMILE functionals (``feature_set`` of :data:`FEATURE_SETS`) of one mono signal ``(S,)`` float in
    [-1, 1] -> ``(d,)`` float64. The whole signal is read: bound it first (:func:`central_window`)."""
    x = np.asarray(signal, dtype=np.float32).reshape(1, -1)
    return _smile(feature_set).process_signal(x, int(sr)).to_numpy(dtype=np.float64).reshape(-1)


def is10_functionals(signal: np.ndarray, sr: int = AUDIO_SR) -> np.ndarray:
    """openSMILE IS10 functionals of one mono signal ``(S,)`` float in [-1, 1] -> ``(1582,)`` float64."""
    return functionals(signal, sr, "IS10")


def signal_features(signal: np.ndarray, sr: int = AUDIO_SR, max_seconds: float | None = MAX_SECONDS,
                    feature_set: str = "IS10") -> tuple[str, np.ndarray | None]:
    """``(status, (d,) features or None)`` of one decoded mono signal: its central ``max_seconds``
    (:func:`central_window`), :func:`signal_status` of that window, then :func:`functionals`
    (``"audio_failed"`` when openSMILE fails or gives a non-finite vector); ``"audio_long"`` when the features
    are those of a window of a longer signal. What :func:`extract_clip` does after decoding, for a signal
    decoded elsewhere (a window of a long video)."""
    x, bounded = central_window(signal, sr, max_seconds)
    status = signal_status(x, sr)
    if status != "ok":
        return status, None
    try:
        f = functionals(x, sr, feature_set)
    except Exception:  # openSMILE errors on pathological input
        return "audio_failed", None
    if f.shape != (FEATURE_SETS[feature_set],) or not np.isfinite(f).all():
        return "audio_failed", None
    return ("audio_long" if bounded else "ok"), f


def _extract_one(path: str, feature_set: str = "IS10",
                 max_seconds: float | None = MAX_SECONDS) -> tuple[str, np.ndarray | None, float]:
    """Decode + extract one file: ``(status, features or None, seconds of audio decoded)``."""
    from emotiw_utils.datasets.video import NoAudioError, read_audio
    from emotiw_utils.errors import DataFormatError

    try:
        x = read_audio(path, AUDIO_SR)
    except NoAudioError:
        return "no_audio", None, 0.0
    except (DataFormatError, OSError):
        return "unreadable", None, 0.0
    seconds = len(x) / AUDIO_SR
    if _audio_ends_early(path, seconds):
        return "audio_short", None, seconds
    status, f = signal_features(x, AUDIO_SR, max_seconds, feature_set)
    return status, f, seconds


def _audio_ends_early(path: str, seconds: float) -> bool:
    """Whether a video's audio track (``seconds`` long, decoded) ends well before its video does (a file cut
    off, :func:`emotiw_utils.datasets.video.audio_short`): its status is ``"audio_short"``, never ``"ok"``.
    False for a file without video (an audio file)."""
    from emotiw_utils.datasets.video import audio_short, probe_clip
    from emotiw_utils.errors import DataFormatError

    try:
        info = probe_clip(path)
    except DataFormatError:
        return False
    return audio_short(seconds, info.duration_s)


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def extract_clip(path: str | Path, max_seconds: float | None = MAX_SECONDS,
                 feature_set: str = "IS10") -> tuple[np.ndarray, str]:
    """Features of one clip (a new one, e.g.), as :func:`extract_paths` gives them: ``(d,)`` float32 (all NaN
    when the clip is missing) and its status (one of :data:`STATUSES`)."""
    status, f, _ = _extract_one(str(path), feature_set, max_seconds)
    row = np.full(FEATURE_SETS[feature_set], np.nan, dtype=np.float32)
    if f is not None:
        row[:] = f
    return row, status


def extract_paths(paths: Sequence[str | Path], workers: int = 0, progress: bool = False, desc: str | None = None,
                  max_seconds: float | None = MAX_SECONDS,
                  feature_set: str = "IS10") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """openSMILE functionals (``feature_set``, default the paper's IS10) of every file in ``paths`` (videos or
    audio files), in parallel.

    Returns ``features`` ``(N, d)`` float32 (NaN rows for missing clips), ``status`` ``(N,)`` str (one of
    :data:`STATUSES`) and ``seconds`` ``(N,)`` (decoded audio length, the whole track even when the features
    are those of its central ``max_seconds``). ``workers``: processes (0: all cores; 1: in this process).
    ``progress``: a tqdm bar.
    """
    from emotiw_utils.workers import process_map

    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r} (expected one of {', '.join(FEATURE_SETS)})")
    paths = [str(p) for p in paths]
    n = len(paths)
    feats = np.full((n, FEATURE_SETS[feature_set]), np.nan, dtype=np.float32)
    status = np.empty(n, dtype=object)
    seconds = np.zeros(n, dtype=np.float64)
    fn = functools.partial(_extract_one, feature_set=feature_set, max_seconds=max_seconds)
    it = process_map(fn, paths, workers, names=paths, initializer=_init_worker if workers != 1 else None,
                     progress=progress, desc=desc or feature_set)
    for i, (st, f, sec) in enumerate(it):
        status[i], seconds[i] = st, sec
        if f is not None:
            feats[i] = f
    return feats, status.astype(str), seconds


def features_key(paths: Sequence[str | Path], max_seconds: float | None = MAX_SECONDS,
                 feature_set: str = "IS10") -> str:
    """Cache key of an extraction: the feature set, the files (path, size, mtime), the sample rate, the window
    bound, the status vocabulary (the clip policy's) and the opensmile version."""
    from importlib.metadata import version

    bound = "none" if max_seconds is None or not np.isfinite(max_seconds) else f"{float(max_seconds):g}"
    h = hashlib.sha256(f"{feature_set} functionals sr={AUDIO_SR} max_seconds={bound} statuses=clip_policy "
                       f"opensmile={version('opensmile')}".encode())
    for p in paths:
        st = Path(p).stat()
        h.update(f"\n{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def load_cached(cls, cache: str | Path | None, key: str, clip_ids: Sequence[str]):
    """The features of class ``cls`` (with ``load``, ``key`` and ``clip_ids``) in the file ``cache`` when it
    exists with the same ``key`` and clips, else None: the cache rule of :class:`AudioFeatures` and
    :class:`emotiw_utils.egemaps.EgemapsFeatures`."""
    if cache is None or not Path(cache).is_file():
        return None
    found = cls.load(cache)
    return found if found.key == key and list(found.clip_ids) == [str(c) for c in clip_ids] else None


@dataclass
class AudioFeatures:
    """IS10 features of the clips of one split: ``features`` ``(N, 1582)`` float32 (NaN rows missing),
    ``status`` ``(N,)`` (clip-policy names, :data:`STATUSES`), ``seconds`` ``(N,)`` (decoded audio),
    ``clip_ids``/``labels`` ``(N,)``; ``key`` identifies the extraction (:func:`features_key`)."""

    split: str
    clip_ids: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    status: np.ndarray
    seconds: np.ndarray
    key: str = ""

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def missing(self) -> np.ndarray:
        """``(N,)`` bool: no usable audio features (a status that disables audio, :func:`missing`)."""
        return missing(self.status)

    def clips(self) -> clip_policy.SplitClips:
        """The split's clips with their audio statuses, as the clip policy counts them."""
        return clip_policy.SplitClips(self.split, self.clip_ids.astype(str), self.labels.astype(np.int64),
                                      self.status.astype(str))

    def save(self, path: str | Path) -> Path:
        return save_npz_atomic(path, split=np.array(self.split), clip_ids=self.clip_ids.astype(str), labels=self.labels,
                               features=self.features, status=self.status.astype(str), seconds=self.seconds,
                               key=np.array(self.key))

    @classmethod
    def load(cls, path: str | Path) -> AudioFeatures:
        with np.load(path, allow_pickle=False) as z:
            return cls(str(z["split"]), z["clip_ids"].astype(str), z["labels"].astype(np.int64), z["features"],
                       z["status"].astype(str), z["seconds"], str(z["key"]))

    @classmethod
    def extract(cls, split: str, clip_ids: Sequence[str], labels: Any, paths: Sequence[str | Path],
                cache: str | Path | None = None, workers: int = 0, progress: bool = False,
                max_seconds: float | None = MAX_SECONDS) -> AudioFeatures:
        """Extract (or reuse the cache file ``cache`` when its key matches the files) and save to ``cache``."""
        if len(clip_ids) != len(paths):
            raise ValueError(f"{len(clip_ids)} clip ids for {len(paths)} files")
        key = features_key(paths, max_seconds)
        found = load_cached(cls, cache, key, clip_ids)
        if found is not None:
            return found
        feats, status, seconds = extract_paths(paths, workers=workers, progress=progress, desc=f"IS10 {split}",
                                               max_seconds=max_seconds)
        out = cls(split, np.asarray(clip_ids).astype(str), np.asarray(labels, dtype=np.int64), feats, status,
                  seconds, key)
        if cache is not None:
            out.save(cache)
        return out


def require_training_audio(clips: Mapping[str, clip_policy.SplitClips], train_splits: Sequence[str],
                           stage: str = stages.AUDIO.name) -> list[str]:
    """The clip policy for the audio model: refuse (ValueError) a training split in which no clip has usable
    audio, naming the split, its number of clips, their status counts and what to do; return the other
    splits without a clip with audio, whose every clip gets the class prior (the stage says so).

    ``clips``: split -> its clips with their audio statuses (:meth:`AudioFeatures.clips`)."""
    for s in train_splits:
        c = clips[s]
        if not c.usable("audio").any():
            counts = ", ".join(f"{n} {st}" for st, n in status_counts(c.status).items() if n)
            raise ValueError(
                f"{stage}: training split {s} has no clip with usable audio (its {len(c)} clips: "
                f"{counts or 'none'}), so the audio model cannot be trained. Give its videos an audio track "
                f"(each status is explained in emotiw_utils.clip_policy.STATUSES), or train the audio model on "
                f"other splits (-p {stage}.train_splits=[...]).")
    return [s for s, c in clips.items() if s not in train_splits and len(c) and not c.usable("audio").any()]


# ----------------------------------------------------------------------------- classifier


def _present(x: Any, y: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y).astype(np.int64)
    if xa.ndim != 2 or ya.shape != (len(xa),):
        raise ValueError(f"x_{name} must be (n, d) and y_{name} (n,); got {xa.shape} and {ya.shape}")
    keep = np.isfinite(xa).all(axis=1) & (ya != UNKNOWN_LABEL)
    return xa[keep], ya[keep]


@dataclass
class AudioSearchResult:
    """:func:`fit_audio_grid`'s outcome: the chosen ``n_components``, ``C``, ``gamma``, the ``grid`` (DataFrame
    with ``n_components``, ``C``, ``gamma``, ``train_acc``, ``cv_acc``, ``cv_std``:
    :func:`emotiw_utils.audio_selection.cross_validate`) and the chosen point's ``cv_acc`` / ``cv_std`` (mean
    and standard deviation over the folds of the held-out fold's accuracy, clips with audio only). No model
    is fitted: the caller fits the one it keeps (:func:`fit_audio_model`)."""

    n_components: int
    C: float
    gamma: Any
    grid: Any
    cv_acc: float
    cv_std: float
    #: the same choice as an :class:`emotiw_utils.audio_selection.Selection` (to reuse in a comparison)
    selection: Any = None


def fit_audio_model(x_train: Any, y_train: Any, n_components: int, C: float, gamma: Any, seed: int = 0):
    """Scaler -> PCA(``n_components``, not whitened) -> RBF SVC (probabilities: :func:`emotiw_utils.svm.calibrated_fit`),
    fitted on the rows of
    ``x_train`` ``(n, 1582)`` that have features (NaN rows and label -1 are left out)."""
    xt, yt = _present(x_train, y_train, "train")
    if np.unique(yt).size < 2:
        raise ValueError("the training clips with audio must cover at least two classes")
    n = min(int(n_components), xt.shape[0], xt.shape[1])
    return calibrated_fit(lambda: paper_model(n, C, gamma, seed), xt, yt, seed)


def fit_audio_grid(x_train: Any, y_train: Any, pca_dims: Sequence[int], Cs: Sequence[float],
                   gammas: Sequence[Any], groups: Any = None, n_folds: int = 5, seed: int = 0) -> AudioSearchResult:
    """Choose the PCA size, C and gamma together by cross-validation over the training clips (paper section
    3: "set via grid search").

    The training clips that have audio and a label are split into ``n_folds`` folds grouped by ``groups``
    (``(n,)`` speaker ids, aligned with ``x_train``; None: each clip its own group, as on AFEW, which has no
    speaker ids), class-balanced and dealt with ``seed`` (:func:`emotiw_utils.audio_selection.grouped_folds`);
    every grid point (standardisation -> PCA -> RBF SVM, :func:`fit_audio_model`'s pipeline) is
    scored by its mean held-out accuracy over the folds. Ties go to the smallest model: fewest components,
    then smallest C, then smallest gamma (:func:`emotiw_utils.audio_selection.choose`). PCA sizes larger
    than the smallest training fold are capped.
    """
    from emotiw_utils import audio_selection

    xa = np.asarray(x_train, dtype=np.float64)
    ya = np.asarray(y_train).astype(np.int64)
    ga = np.arange(len(xa)) if groups is None else np.asarray(groups)
    if xa.ndim != 2 or ya.shape != (len(xa),) or ga.shape != (len(xa),):
        raise ValueError(f"x_train must be (n, d), y_train and groups (n,); got {xa.shape}, {ya.shape}, {ga.shape}")
    keep = np.isfinite(xa).all(axis=1) & (ya != UNKNOWN_LABEL)
    xt, yt, gt = xa[keep], ya[keep], ga[keep]
    if np.unique(yt).size < 2:
        raise ValueError("the training clips with audio must cover at least two classes")
    points = audio_selection.grid_points(audio_selection.PAPER, pca_dims=pca_dims, Cs=Cs, gammas=gammas)
    fold_of = audio_selection.grouped_folds(gt, yt, n_folds, seed)
    sel = audio_selection.select(audio_selection.PAPER, xt, yt, fold_of, points, seed)
    return AudioSearchResult(n_components=int(sel.point["n_components"]), C=sel.point["C"], gamma=sel.point["gamma"],
                             grid=sel.grid, cv_acc=sel.cv_acc, cv_std=sel.cv_std, selection=sel)


def predict_with_prior(model: Any, x: Any, prior: Any) -> np.ndarray:
    """``(n, 7)`` probabilities: the model's for rows with features, ``prior`` for missing (NaN) rows."""
    from emotiw_utils.svm import predict_proba_full

    xa = np.asarray(x, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (NUM_CLASSES,) or abs(prior.sum() - 1) > 1e-6:
        raise ValueError(f"prior must be ({NUM_CLASSES},) and sum to 1")
    out = np.tile(prior, (len(xa), 1))
    ok = np.isfinite(xa).all(axis=1)
    if ok.any():
        out[ok] = predict_proba_full(model, xa[ok])
    return out


def fusion_projection(x_train: Any, n_components: int = 10, seed: int = 0):
    """Scaler -> PCA(``n_components``, whitened) fitted on the training rows with features (paper 6.2: "the
    first ten components of the PCA whitened audio features"). Apply with :func:`project`."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    xa = np.asarray(x_train, dtype=np.float64)
    xa = xa[np.isfinite(xa).all(axis=1)]
    if len(xa) <= n_components:
        raise ValueError(f"need more than {n_components} training clips with audio, got {len(xa)}")
    return Pipeline([("scaler", StandardScaler()),
                     ("pca", PCA(n_components=int(n_components), whiten=True, random_state=seed))]).fit(xa)


def project(projection: Any, x: Any) -> np.ndarray:
    """``(n, k)`` float32 whitened components; missing (NaN) rows get zeros, the training mean."""
    xa = np.asarray(x, dtype=np.float64)
    k = projection.named_steps["pca"].n_components_
    out = np.zeros((len(xa), k), dtype=np.float32)
    ok = np.isfinite(xa).all(axis=1)
    if ok.any():
        out[ok] = projection.transform(xa[ok])
    return out


@dataclass
class AudioModel:
    """What a finished ``05_audio`` run keeps to be applied to new clips without retraining (its artifacts
    ``model``, ``projection`` and ``prior``): the classifier ``model`` (:func:`fit_audio_model`'s
    :class:`~emotiw_utils.svm.SoftmaxSvm` around scaler -> :class:`CappedPCA` -> SVC, the first seed's), the
    fusion ``projection`` (:func:`fusion_projection`), the class ``prior`` ``(7,)`` given to clips without
    audio and ``max_seconds``, the run's bound on the audio read per clip (its ``max_audio_seconds``; None: no
    bound), so that a new clip is described as the run's clips were. The two fitted objects are written with
    :mod:`emotiw_utils.model_store` (skops, trusted types only), the prior and the bound as plain arrays (a
    run written before the bound existed reads :data:`MAX_SECONDS`)."""

    model: Any
    projection: Any
    prior: np.ndarray
    max_seconds: float | None = MAX_SECONDS

    def save(self, run_dir: str | Path) -> None:
        """Write the three artifacts into the stage's folder of ``run_dir``."""
        from emotiw_utils.model_store import save_model

        save_model(stages.AUDIO.path(run_dir, "model"), self.model)
        save_model(stages.AUDIO.path(run_dir, "projection"), self.projection)
        bound = np.inf if self.max_seconds is None else float(self.max_seconds)
        save_npz_atomic(stages.AUDIO.path(run_dir, "prior"), prior=np.asarray(self.prior, dtype=np.float64),
                        max_seconds=np.array(bound, dtype=np.float64))

    @classmethod
    def load(cls, run_dir: str | Path) -> AudioModel:
        """Read them back (FileNotFoundError naming the stage to run when one is missing; nothing is unpickled)."""
        from emotiw_utils.model_store import load_model

        model = load_model(stages.AUDIO.require(run_dir, "model"), "audio model")
        projection = load_model(stages.AUDIO.require(run_dir, "projection"), "audio fusion projection")
        with np.load(stages.AUDIO.require(run_dir, "prior"), allow_pickle=False) as z:
            prior = z["prior"]
            bound = float(z["max_seconds"]) if "max_seconds" in z.files else MAX_SECONDS
        return cls(model, projection, prior, None if not np.isfinite(bound) else bound)

    def probs(self, features: Any) -> np.ndarray:
        """``(n, 7)`` class probabilities of ``(n, 1582)`` IS10 features (NaN rows: the prior)."""
        return predict_with_prior(self.model, features, self.prior)

    def fusion_inputs(self, features: Any) -> np.ndarray:
        """``(n, 10)`` whitened components, the audio input of the fusion network (NaN rows: zeros)."""
        return project(self.projection, features)

    def predict_clip(self, path: str | Path) -> np.ndarray:
        """``(7,)`` class probabilities of one video (or audio) file, extracted now (within the run's bound)."""
        return self.probs(extract_clip(path, self.max_seconds)[0][None])[0]


def reapply(run_dir: str | Path, split: str) -> np.ndarray:
    """``(N, 7)`` probabilities of ``split``'s clips in a finished run, recomputed from its persisted
    :class:`AudioModel` and its cached IS10 features, in the clip order of its clip-probabilities file
    (equal to that file's probabilities: nothing is refitted)."""
    ids = load_clip_probs(stages.AUDIO.require(run_dir, "clip_probs", split=split))[0]
    feats = AudioFeatures.load(stages.AUDIO.require(run_dir, "is10", split=split))
    if list(feats.clip_ids) != list(ids):
        raise ValueError(f"{stages.AUDIO.dir(run_dir)}: the {split} IS10 cache holds other clips than its "
                         f"clip probabilities; run stage {stages.AUDIO.name} again")
    return AudioModel.load(run_dir).probs(feats.features)


def evaluate_speaker_split(features: Any, labels: Any, speakers: Any, train: Sequence[Any], test: Sequence[Any],
                           pca_dims: Sequence[int], Cs: Sequence[float], gammas: Sequence[Any], n_folds: int = 5,
                           seed: int = 0) -> dict[str, Any]:
    """Speaker-independent check of the audio recipe (used on RAVDESS): the PCA size, C and gamma chosen by
    cross-validation grouped by speaker over the ``train`` speakers (:func:`fit_audio_grid`, ``n_folds``
    folds), the model refitted on all of them (:func:`fit_audio_model`) and scored on the unseen ``test``
    speakers.

    ``features`` ``(n, 1582)`` (NaN rows missing: they get the training prior), ``labels`` ``(n,)``,
    ``speakers`` ``(n,)`` ids. Returns the test ``accuracy``, ``uar`` (unweighted average recall),
    ``majority`` (the accuracy of always predicting the test set's most frequent class), the chosen
    hyperparameters with their ``cv_acc``/``cv_std``, the clip counts, and the predictions: ``test_index``
    (row indices of the test clips), ``y_true`` and ``y_pred`` (their labels and predicted classes).
    """
    from emotiw_utils import metrics

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    spk = np.asarray(speakers)
    tr, te = np.isin(spk, list(train)), np.isin(spk, list(test))
    if (tr & te).any():
        raise ValueError("train and test speakers must be disjoint")
    if not (tr.any() and te.any()):
        raise ValueError("train and test both need at least one clip")
    search = fit_audio_grid(x[tr], y[tr], pca_dims, Cs, gammas, groups=spk[tr], n_folds=n_folds, seed=seed)
    model = fit_audio_model(x[tr], y[tr], search.n_components, search.C, search.gamma, seed=seed)
    pred = predict_with_prior(model, x[te], class_prior(y[tr])).argmax(1)
    return {"accuracy": metrics.accuracy(y[te], pred), "uar": metrics.unweighted_average_recall(y[te], pred),
            "majority": float(np.bincount(y[te], minlength=NUM_CLASSES).max() / te.sum()),
            "n_components": search.n_components, "C": search.C, "gamma": search.gamma,
            "cv_acc": search.cv_acc, "cv_std": search.cv_std, "n_train": int(tr.sum()), "n_test": int(te.sum()),
            "test_index": np.flatnonzero(te), "y_true": y[te], "y_pred": pred}
