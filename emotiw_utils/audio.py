"""The audio model of Kahou et al. 2015, section 3: openSMILE IS10 functionals + PCA + RBF SVM.

"It uses 1582 features extracted with the open-source Emotion and Affect Recognition (openEAR) toolkit
which uses openSMILE as backend [...]. In this work we used Principal Component Analysis (PCA) based
dimensionality reduction as preprocessing on the 1582 dimensional input features and an RBF-kernel SVM
for classification. The hyper-parameters for the SVM are set via grid search." The 1582 features are the
INTERSPEECH 2010 Paralinguistic Challenge set (``opensmile.FeatureSet.IS10``, functionals level).

* :func:`is10_functionals` / :func:`extract_paths`: 16 kHz mono audio (decoded with PyAV) -> ``(1582,)``
  per clip, in parallel over processes, each with one ``opensmile.Smile``.
* A clip without an audio stream, with a silent or too-short track, a track that ends well before the video
  (a file cut off: ``"truncated"``), or whose audio cannot be decoded is
  **missing**: its feature row is NaN and its status says why (:data:`STATUSES`). Missing clips are left out
  of every fit; the classifier gives them the training class prior (:func:`predict_with_prior`) and the
  fusion network zeros (the whitened mean), so nothing downstream sees a NaN.
* :func:`fit_audio_grid`: standardisation -> PCA (not whitened) -> RBF SVM, with the number of PCA
  components, C and gamma chosen together by cross-validation grouped by speaker (by clip where there are
  no speaker ids) over the training clips, ties to the smallest model (:mod:`emotiw_utils.audio_selection`).
* :func:`fusion_projection`: the first 10 PCA-whitened components, the audio input of the fusion network
  (paper 6.2).
* :class:`AudioModel`: what a finished run keeps to be applied to a new clip without retraining (the
  classifier, the fusion projection and the prior, in the stage's folder); :func:`extract_clip` gives a new
  clip's features and :func:`reapply` recomputes a split's probabilities of a finished run from them.

opensmile and scikit-learn are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotiw_utils import stages
from emotiw_utils.artifacts import load_clip_probs, save_npz_atomic
from emotiw_utils.audio_selection import paper_model
from emotiw_utils.capped_pca import CappedPCA  # noqa: F401 (re-exported: the PCA of the audio model)
from emotiw_utils.clip_policy import class_prior  # the fallback of the clip policy (re-exported)
from emotiw_utils.constants import AUDIO_SR, NUM_CLASSES, UNKNOWN_LABEL
from emotiw_utils.svm import calibrated_fit

__all__ = ["IS10_DIM", "MIN_SECONDS", "SILENCE_RMS", "STATUSES", "AudioFeatures", "AudioModel", "AudioSearchResult",
           "class_prior", "evaluate_speaker_split", "extract_clip", "extract_paths", "features_key", "fit_audio_grid",
           "fit_audio_model", "fusion_projection", "is10_functionals", "predict_with_prior", "project", "reapply",
           "signal_features", "signal_status"]

#: Size of the IS10 functionals vector (paper section 3).
IS10_DIM: int = 1582
#: A track whose RMS is below this (about -80 dBFS) counts as silent.
SILENCE_RMS: float = 1e-4
#: A track shorter than this (seconds) is too short for openSMILE's 60 ms analysis frames and deltas.
MIN_SECONDS: float = 0.1
#: Per-clip extraction outcomes; every one but ``"ok"`` marks the clip's features as missing.
STATUSES: tuple[str, ...] = ("ok", "no audio", "silent", "too short", "truncated", "unreadable", "failed")

_SMILE = None


def _smile():
    global _SMILE
    if _SMILE is None:
        import opensmile

        _SMILE = opensmile.Smile(feature_set=opensmile.FeatureSet.IS10,
                                 feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILE


def signal_status(signal: np.ndarray, sr: int = AUDIO_SR) -> str:
    """``"ok"``, ``"too short"`` (fewer than :data:`MIN_SECONDS`) or ``"silent"`` (RMS < :data:`SILENCE_RMS`)."""
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    if x.size < MIN_SECONDS * sr:
        return "too short"
    if not np.isfinite(x).all() or float(np.sqrt(np.mean(x * x))) < SILENCE_RMS:
        return "silent"
    return "ok"


def is10_functionals(signal: np.ndarray, sr: int = AUDIO_SR) -> np.ndarray:
    """openSMILE IS10 functionals of one mono signal ``(S,)`` float in [-1, 1] -> ``(1582,)`` float64."""
    x = np.asarray(signal, dtype=np.float32).reshape(1, -1)
    return _smile().process_signal(x, int(sr)).to_numpy(dtype=np.float64).reshape(-1)


def _extract_one(path: str) -> tuple[str, np.ndarray | None, float]:
    """Decode + extract one file: ``(status, features or None, seconds of audio)``."""
    from emotiw_utils.datasets.video import NoAudioError, read_audio
    from emotiw_utils.errors import DataFormatError

    try:
        x = read_audio(path, AUDIO_SR)
    except NoAudioError:
        return "no audio", None, 0.0
    except (DataFormatError, OSError):
        return "unreadable", None, 0.0
    if _audio_ends_early(path, len(x) / AUDIO_SR):
        return "truncated", None, len(x) / AUDIO_SR
    status, f = signal_features(x)
    return status, f, len(x) / AUDIO_SR


def signal_features(signal: np.ndarray, sr: int = AUDIO_SR) -> tuple[str, np.ndarray | None]:
    """``(status, (1582,) IS10 features or None)`` of one decoded mono signal: :func:`signal_status`, then
    :func:`is10_functionals` (``"failed"`` when openSMILE fails or gives a non-finite vector). What
    :func:`extract_clip` does after decoding, for a signal decoded elsewhere (a window of a long video)."""
    status = signal_status(signal, sr)
    if status != "ok":
        return status, None
    try:
        f = is10_functionals(signal, sr)
    except Exception:  # openSMILE errors on pathological input
        return "failed", None
    if f.shape != (IS10_DIM,) or not np.isfinite(f).all():
        return "failed", None
    return "ok", f


def _audio_ends_early(path: str, seconds: float) -> bool:
    """Whether a video's audio track (``seconds`` long, decoded) ends well before its video does (a file cut
    off, :func:`emotiw_utils.datasets.video.audio_short`): its status is ``"truncated"``, never ``"ok"``.
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


def extract_clip(path: str | Path) -> tuple[np.ndarray, str]:
    """IS10 features of one clip (a new one, e.g.), as :func:`extract_paths` gives them: ``(1582,)`` float32
    (all NaN when the clip is missing) and its status (one of :data:`STATUSES`)."""
    status, f, _ = _extract_one(str(path))
    row = np.full(IS10_DIM, np.nan, dtype=np.float32)
    if f is not None:
        row[:] = f
    return row, status


def extract_paths(paths: Sequence[str | Path], workers: int = 0, progress: bool = False,
                  desc: str = "IS10") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IS10 functionals of every file in ``paths`` (videos or audio files), in parallel.

    Returns ``features`` ``(N, 1582)`` float32 (NaN rows for missing clips), ``status`` ``(N,)`` str (one of
    :data:`STATUSES`) and ``seconds`` ``(N,)`` (decoded audio length). ``workers``: processes (0: all cores;
    1: in this process). ``progress``: a tqdm bar.
    """
    paths = [str(p) for p in paths]
    n = len(paths)
    feats = np.full((n, IS10_DIM), np.nan, dtype=np.float32)
    status = np.empty(n, dtype=object)
    seconds = np.zeros(n, dtype=np.float64)
    from emotiw_utils.workers import process_map

    it = process_map(_extract_one, paths, workers, names=paths, initializer=_init_worker if workers != 1 else None,
                     progress=progress, desc=desc)
    for i, (st, f, sec) in enumerate(it):
        status[i], seconds[i] = st, sec
        if f is not None:
            feats[i] = f
    return feats, status.astype(str), seconds


def features_key(paths: Sequence[str | Path]) -> str:
    """Cache key of an extraction: the files (path, size, mtime), the sample rate and the opensmile version."""
    from importlib.metadata import version

    h = hashlib.sha256(f"IS10 functionals sr={AUDIO_SR} opensmile={version('opensmile')}".encode())
    for p in paths:
        st = Path(p).stat()
        h.update(f"\n{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


@dataclass
class AudioFeatures:
    """IS10 features of the clips of one split: ``features`` ``(N, 1582)`` float32 (NaN rows missing),
    ``status`` ``(N,)``, ``seconds`` ``(N,)``, ``clip_ids``/``labels`` ``(N,)``; ``key`` identifies the
    extraction (:func:`features_key`)."""

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
        """``(N,)`` bool: no usable audio features."""
        return self.status != "ok"

    def save(self, path: str | Path) -> Path:
        return save_npz_atomic(path, split=np.array(self.split), clip_ids=self.clip_ids.astype(str), labels=self.labels,
                               features=self.features, status=self.status.astype(str), seconds=self.seconds,
                               key=np.array(self.key))

    @classmethod
    def load(cls, path: str | Path) -> AudioFeatures:
        with np.load(path) as z:
            return cls(str(z["split"]), z["clip_ids"].astype(str), z["labels"].astype(np.int64), z["features"],
                       z["status"].astype(str), z["seconds"], str(z["key"]))

    @classmethod
    def extract(cls, split: str, clip_ids: Sequence[str], labels: Any, paths: Sequence[str | Path],
                cache: str | Path | None = None, workers: int = 0, progress: bool = False) -> AudioFeatures:
        """Extract (or reuse the cache file ``cache`` when its key matches the files) and save to ``cache``."""
        key = features_key(paths)
        if cache is not None and Path(cache).is_file():
            cached = cls.load(cache)
            if cached.key == key and list(cached.clip_ids) == [str(c) for c in clip_ids]:
                return cached
        feats, status, seconds = extract_paths(paths, workers=workers, progress=progress, desc=f"IS10 {split}")
        out = cls(split, np.asarray(clip_ids).astype(str), np.asarray(labels, dtype=np.int64), feats, status,
                  seconds, key)
        if cache is not None:
            out.save(cache)
        return out


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
    fusion ``projection`` (:func:`fusion_projection`) and the class ``prior`` ``(7,)`` given to clips without
    audio. The two fitted objects are written with :mod:`emotiw_utils.model_store` (skops, trusted types
    only), the prior as a plain array."""

    model: Any
    projection: Any
    prior: np.ndarray

    def save(self, run_dir: str | Path) -> None:
        """Write the three artifacts into the stage's folder of ``run_dir``."""
        from emotiw_utils.model_store import save_model

        save_model(stages.AUDIO.path(run_dir, "model"), self.model)
        save_model(stages.AUDIO.path(run_dir, "projection"), self.projection)
        save_npz_atomic(stages.AUDIO.path(run_dir, "prior"), prior=np.asarray(self.prior, dtype=np.float64))

    @classmethod
    def load(cls, run_dir: str | Path) -> AudioModel:
        """Read them back (FileNotFoundError naming the stage to run when one is missing; nothing is unpickled)."""
        from emotiw_utils.model_store import load_model

        model = load_model(stages.AUDIO.require(run_dir, "model"), "audio model")
        projection = load_model(stages.AUDIO.require(run_dir, "projection"), "audio fusion projection")
        with np.load(stages.AUDIO.require(run_dir, "prior"), allow_pickle=False) as z:
            prior = z["prior"]
        return cls(model, projection, prior)

    def probs(self, features: Any) -> np.ndarray:
        """``(n, 7)`` class probabilities of ``(n, 1582)`` IS10 features (NaN rows: the prior)."""
        return predict_with_prior(self.model, features, self.prior)

    def fusion_inputs(self, features: Any) -> np.ndarray:
        """``(n, 10)`` whitened components, the audio input of the fusion network (NaN rows: zeros)."""
        return project(self.projection, features)

    def predict_clip(self, path: str | Path) -> np.ndarray:
        """``(7,)`` class probabilities of one video (or audio) file, extracted now."""
        return self.probs(extract_clip(path)[0][None])[0]


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
