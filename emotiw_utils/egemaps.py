"""openSMILE eGeMAPSv02 functionals: the 88 features of the Geneva Minimalistic Acoustic Parameter Set.

Not in the paper: chapter 05 and ``bench/bench_audio.py`` compare an SVM on these 88 expert-chosen
features (Eyben et al. 2016: pitch, jitter, shimmer, loudness, formants, spectral slope, MFCCs 1-4, rates of
voiced segments, ...) with the paper's SVM on the 1582 IS10 functionals (:mod:`emotiw_utils.audio`).

The extraction is the IS10 one with another feature set (:func:`emotiw_utils.audio.extract_paths` with
``feature_set="eGeMAPSv02"``): the same decoding (PyAV, 16 kHz mono), the same bound on long tracks (their
central ``max_seconds``, status ``audio_long``), the same statuses (the clip policy's,
:data:`emotiw_utils.audio.STATUSES`: a clip with no audio stream, a silent or too-short track, undecodable
audio or an openSMILE failure gets a NaN row) and the same cache rule.

* :func:`egemaps_functionals`: one mono signal -> ``(88,)``.
* :func:`extract_paths`: every file, in parallel over processes.
* :class:`EgemapsFeatures`: one split's features with a cache file keyed by the files (the stage's
  ``egemaps`` artifact).

opensmile is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotiw_utils import audio
from emotiw_utils.artifacts import save_npz_atomic
from emotiw_utils.constants import AUDIO_SR

__all__ = ["EGEMAPS_DIM", "FEATURE_SET", "EgemapsFeatures", "egemaps_functionals", "extract_paths", "features_key"]

#: The openSMILE feature set (a name of :data:`emotiw_utils.audio.FEATURE_SETS`).
FEATURE_SET: str = "eGeMAPSv02"
#: Size of the eGeMAPSv02 functionals vector.
EGEMAPS_DIM: int = audio.FEATURE_SETS[FEATURE_SET]


def egemaps_functionals(signal: np.ndarray, sr: int = AUDIO_SR) -> np.ndarray:
    """eGeMAPSv02 functionals of one mono signal ``(S,)`` float in [-1, 1] -> ``(88,)`` float64."""
    return audio.functionals(signal, sr, FEATURE_SET)


def extract_paths(paths: Sequence[str | Path], workers: int = 0, progress: bool = False, desc: str = "eGeMAPS",
                  max_seconds: float | None = audio.MAX_SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """eGeMAPSv02 functionals of every file: ``features`` ``(N, 88)`` float32 (NaN rows for missing clips)
    and ``status`` ``(N,)`` str (:data:`emotiw_utils.audio.STATUSES`). ``workers``: processes (0: all cores;
    1: in this process)."""
    feats, status, _ = audio.extract_paths(paths, workers=workers, progress=progress, desc=desc,
                                           max_seconds=max_seconds, feature_set=FEATURE_SET)
    return feats, status


def features_key(paths: Sequence[str | Path], max_seconds: float | None = audio.MAX_SECONDS) -> str:
    """Cache key (:func:`emotiw_utils.audio.features_key` of the eGeMAPSv02 set)."""
    return audio.features_key(paths, max_seconds, FEATURE_SET)


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
        """``(N,)`` bool: no usable features (:func:`emotiw_utils.audio.missing`)."""
        return audio.missing(self.status)

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
                cache: str | Path | None = None, workers: int = 0, progress: bool = False,
                max_seconds: float | None = audio.MAX_SECONDS) -> EgemapsFeatures:
        """Extract (or reuse the cache file ``cache`` when its key and clips match) and save to ``cache``."""
        if len(clip_ids) != len(paths):
            raise ValueError(f"{len(clip_ids)} clip ids for {len(paths)} files")
        key = features_key(paths, max_seconds)
        found = audio.load_cached(cls, cache, key, clip_ids)
        if found is not None:
            return found
        feats, status = extract_paths(paths, workers=workers, progress=progress, desc=f"eGeMAPS {split}",
                                      max_seconds=max_seconds)
        out = cls(split, np.asarray(clip_ids).astype(str), feats, status, key)
        if cache is not None:
            out.save(cache)
        return out
