"""openSMILE eGeMAPSv02 functionals: the 88 features of the Geneva Minimalistic Acoustic Parameter Set.

Not in the paper: chapter 05 and ``bench/bench_audio.py`` compare an SVM on these 88 expert-chosen
features (Eyben et al. 2016: pitch, jitter, shimmer, loudness, formants, spectral slope, MFCCs 1-4, rates of
voiced segments, ...) with the paper's SVM on the 1582 IS10 functionals (:mod:`emotiw_utils.audio`).

* :func:`egemaps_functionals`: one mono signal -> ``(88,)``.
* :func:`extract_paths`: every file, in parallel over processes (:func:`emotiw_utils.workers.process_map`), decoded as the IS10 extraction decodes
  (PyAV, 16 kHz mono); a clip with no audio stream, a silent or too-short track (the thresholds of
  :func:`emotiw_utils.audio.signal_status`), undecodable audio or an openSMILE failure gets a NaN row and a
  status (:data:`emotiw_utils.audio.STATUSES`) saying why.
* :class:`EgemapsFeatures`: one split's features with a cache file keyed by the files (the stage's
  ``egemaps`` artifact).

opensmile is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotiw_utils.artifacts import save_npz_atomic
from emotiw_utils.constants import AUDIO_SR

__all__ = ["EGEMAPS_DIM", "EgemapsFeatures", "egemaps_functionals", "extract_paths", "features_key"]

#: Size of the eGeMAPSv02 functionals vector.
EGEMAPS_DIM: int = 88

_SMILE = None


def _smile():
    global _SMILE
    if _SMILE is None:
        import opensmile

        _SMILE = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                 feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILE


def egemaps_functionals(signal: np.ndarray, sr: int = AUDIO_SR) -> np.ndarray:
    """eGeMAPSv02 functionals of one mono signal ``(S,)`` float in [-1, 1] -> ``(88,)`` float64."""
    x = np.asarray(signal, dtype=np.float32).reshape(1, -1)
    return _smile().process_signal(x, int(sr)).to_numpy(dtype=np.float64).reshape(-1)


def _extract_one(path: str) -> tuple[str, np.ndarray | None]:
    """Decode + extract one file: ``(status, features or None)``."""
    from emotiw_utils.audio import signal_status
    from emotiw_utils.datasets.video import NoAudioError, read_audio
    from emotiw_utils.errors import DataFormatError

    try:
        x = read_audio(path, AUDIO_SR)
    except NoAudioError:
        return "no audio", None
    except (DataFormatError, OSError):
        return "unreadable", None
    status = signal_status(x)
    if status != "ok":
        return status, None
    try:
        f = egemaps_functionals(x)
    except Exception:  # openSMILE errors on pathological input
        return "failed", None
    if f.shape != (EGEMAPS_DIM,) or not np.isfinite(f).all():
        return "failed", None
    return "ok", f


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def extract_paths(paths: Sequence[str | Path], workers: int = 0, progress: bool = False,
                  desc: str = "eGeMAPS") -> tuple[np.ndarray, np.ndarray]:
    """eGeMAPSv02 functionals of every file: ``features`` ``(N, 88)`` float32 (NaN rows for missing clips)
    and ``status`` ``(N,)`` str. ``workers``: processes (0: all cores; 1: in this process)."""
    from emotiw_utils.workers import process_map

    paths = [str(p) for p in paths]
    feats = np.full((len(paths), EGEMAPS_DIM), np.nan, dtype=np.float32)
    status = np.empty(len(paths), dtype=object)
    it = process_map(_extract_one, paths, workers, names=paths, initializer=_init_worker if workers != 1 else None,
                     progress=progress, desc=desc)
    for i, (st, f) in enumerate(it):
        status[i] = st
        if f is not None:
            feats[i] = f
    return feats, status.astype(str)


def features_key(paths: Sequence[str | Path]) -> str:
    """Cache key: the files (path, size, mtime), the sample rate and the opensmile version."""
    from importlib.metadata import version

    h = hashlib.sha256(f"eGeMAPSv02 functionals sr={AUDIO_SR} opensmile={version('opensmile')}".encode())
    for p in paths:
        st = Path(p).stat()
        h.update(f"\n{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


@dataclass
class EgemapsFeatures:
    """eGeMAPSv02 features of the clips of one split: ``features`` ``(N, 88)`` float32 (NaN rows missing),
    ``status`` ``(N,)``, ``clip_ids`` ``(N,)``; ``key`` identifies the extraction (:func:`features_key`)."""

    split: str
    clip_ids: np.ndarray
    features: np.ndarray
    status: np.ndarray
    key: str = ""

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def missing(self) -> np.ndarray:
        """``(N,)`` bool: no usable features."""
        return self.status != "ok"

    def save(self, path: str | Path) -> Path:
        return save_npz_atomic(path, split=np.array(self.split), clip_ids=self.clip_ids.astype(str),
                               features=self.features, status=self.status.astype(str), key=np.array(self.key))

    @classmethod
    def load(cls, path: str | Path) -> EgemapsFeatures:
        with np.load(path, allow_pickle=False) as z:
            return cls(str(z["split"]), z["clip_ids"].astype(str), z["features"], z["status"].astype(str),
                       str(z["key"]))

    @classmethod
    def extract(cls, split: str, clip_ids: Sequence[str], paths: Sequence[str | Path],
                cache: str | Path | None = None, workers: int = 0, progress: bool = False) -> EgemapsFeatures:
        """Extract (or reuse the cache file ``cache`` when its key and clips match) and save to ``cache``."""
        if len(clip_ids) != len(paths):
            raise ValueError(f"{len(clip_ids)} clip ids for {len(paths)} files")
        key = features_key(paths)
        if cache is not None and Path(cache).is_file():
            cached = cls.load(cache)
            if cached.key == key and list(cached.clip_ids) == [str(c) for c in clip_ids]:
                return cached
        feats, status = extract_paths(paths, workers=workers, progress=progress, desc=f"eGeMAPS {split}")
        out = cls(split, np.asarray(clip_ids).astype(str), feats, status, key)
        if cache is not None:
            out.save(cache)
        return out
