"""The activity model's unsupervised half, learned once and cached: clips -> SAE -> k-means -> histograms.

Chapter 06 (paper section 4) learns its features without labels: random 16 x 16 x 10 blocks of the
``sae_splits`` clips are whitened, a :class:`~emotiw_utils.activity.SynchronyAutoencoder` is trained on
them, k-means turns the hidden codes into a vocabulary, and every clip of every split becomes a
bag-of-words histogram. Only the SVM on top sees labels.

:meth:`ActivityFeatures.learn` does all of that and saves the result (the whitener, the filters, the
vocabulary, the SAE's training curve and every clip's histogram) to one ``.npz`` under a key made of the
settings, the seed, the device type, the torch version and the video files (path, size, modification
time). A later call with the same key loads the file instead of learning again. The submissions' re-run
chains (chapter 09) copy the main run's file: like the frame CNN, the unsupervised activity features
are not retrained per submission; each chain refits only its SVM on its own partition.

The file is also what a finished run needs to describe a new clip (plain arrays and JSON, read without
pickle): :meth:`ActivityFeatures.read_clip` and :meth:`ActivityFeatures.histograms_of` give a new clip's
histogram, :class:`ActivityModel` adds the chapter's SVM (its artifact ``svm``) and :func:`reapply`
recomputes a split's probabilities of a finished run.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotiw_utils import activity, stages
from emotiw_utils.artifacts import load_clip_probs, save_npz_atomic
from emotiw_utils.constants import AFEW_SPLITS
from emotiw_utils.device import resolve_device, torch_device

__all__ = ["STATUS_RULES", "ActivityFeatures", "ActivityModel", "ActivitySettings", "clip_status", "decode_clips",
           "features_key", "reapply", "split_paths"]


@dataclass(frozen=True)
class ActivitySettings:
    """Hyperparameters of the unsupervised activity features (chapter 06's parameters of the same names).

    ``frame_scale``: frames are resized by this factor before blocks are cut. ``n_train_blocks`` random
    blocks train the whitening (``n_components``), the SAE (``n_hidden`` units, ``threshold``,
    ``sae_epochs`` of Adam at ``sae_lr``, batches of ``batch_size``, input masking ``noise``) and k-means
    (``vocabulary_size`` words). ``stride``: ``(t, y, x)`` step of the dense blocks of every clip."""

    frame_scale: float = 0.5
    n_train_blocks: int = 20000
    n_components: int = 300
    n_hidden: int = 256
    threshold: float = 0.1
    sae_epochs: int = 15
    sae_lr: float = 0.001
    noise: float = 0.3
    batch_size: int = 256
    stride: tuple[int, int, int] = (5, 16, 16)
    vocabulary_size: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "stride", tuple(int(s) for s in self.stride))
        if len(self.stride) != 3 or min(self.stride) < 1:
            raise ValueError(f"stride must be three positive integers (t, y, x), got {self.stride}")
        if not 0 < float(self.frame_scale) <= 1:
            raise ValueError(f"frame_scale must be in (0, 1], got {self.frame_scale!r}")
        for name in ("n_train_blocks", "n_components", "n_hidden", "sae_epochs", "batch_size", "vocabulary_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


#: Version of the clip statuses a learning records (part of :func:`features_key`): 2 tells ``truncated`` clips
#: apart (version 1 called them ``ok``), so a features file of version 1 is learned again.
STATUS_RULES = 2


def features_key(paths: Mapping[str, Sequence[str | Path]], sae_splits: Sequence[str], settings: ActivitySettings,
                 seed: int, device: str) -> str:
    """SHA-256 naming one learning of the features: settings, seed, device type, torch version, the splits
    the SAE learns from and every video file (resolved path, size, modification time), split by split."""
    h = hashlib.sha256(json.dumps({"settings": asdict(settings), "seed": int(seed), "sae_splits": list(sae_splits),
                                   "device": torch_device(device).type, "torch": torch.__version__,
                                   "status_rules": STATUS_RULES}, sort_keys=True).encode())
    for split in sorted(paths):
        h.update(f"\n[{split}]".encode())
        for p in paths[split]:
            st = Path(p).stat()
            h.update(f"\n{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


@dataclass
class ActivityFeatures:
    """Per-split bag-of-words ``histograms`` (``(N_split, vocabulary_size)``, rows sum to 1) and
    ``clip_ids``, with what made them: the ``whitener``, the SAE ``weight`` ``(n_hidden, n_components)`` and
    ``threshold``, the k-means ``centres`` ``(vocabulary_size, n_hidden)``, the SAE's per-epoch ``history``,
    each unit's ``active_fraction`` on the training blocks, ``n_blocks`` training blocks, per-split
    ``n_frames`` and the ``frame_shape`` (of the first clip), wall ``seconds`` of decoding, learning and
    histograms, the cache ``key`` and the ``settings`` (their ``frame_scale`` and ``stride`` describe a new
    clip as the learned ones were). ``from_cache``: loaded rather than learned in this call. ``status``: per
    split, every clip's status under the clip policy (:mod:`emotiw_utils.clip_policy`): ``ok``, ``truncated``
    (cut off or a decode error part-way: the frames that decoded are used), ``too_short`` (no 16 x 16 x 10 block:
    the uniform histogram) or ``unreadable`` (no frame: the uniform histogram); :func:`clip_status`."""

    sae_splits: tuple[str, ...]
    histograms: dict[str, np.ndarray]
    clip_ids: dict[str, np.ndarray]
    whitener: activity.BlockWhitener
    weight: np.ndarray
    threshold: float
    centres: np.ndarray
    history: list[dict]
    active_fraction: np.ndarray
    n_blocks: int
    n_frames: dict[str, int]
    frame_shape: tuple[int, int]
    settings: ActivitySettings
    seconds: dict[str, float] = field(default_factory=dict)
    key: str = ""
    from_cache: bool = False
    status: dict[str, np.ndarray] | None = None

    @property
    def dead_units(self) -> int:
        """SAE units that fire on none of the training blocks."""
        return int((self.active_fraction == 0).sum())

    def sae(self) -> activity.SynchronyAutoencoder:
        """The trained autoencoder, rebuilt on the CPU from ``weight`` and ``threshold``."""
        model = activity.SynchronyAutoencoder(self.weight.shape[1], self.weight.shape[0], self.threshold, seed=0)
        with torch.no_grad():
            model.weight.copy_(torch.as_tensor(self.weight))
        return model.eval()

    def filters(self) -> np.ndarray:
        """The filters in block space, ``(n_hidden, 10, 16, 16)`` (:func:`emotiw_utils.activity.filters`)."""
        return activity.filters(self.sae(), self.whitener)

    def vocabulary(self) -> activity.Vocabulary:
        """The k-means vocabulary, rebuilt from ``centres`` (assigns the words the fitted k-means assigned)."""
        return activity.Vocabulary(self.centres)

    def read_clip(self, path: str | Path) -> np.ndarray:
        """A video's grayscale frames ``(T, H', W')``, resized by the settings' ``frame_scale``."""
        return activity.load_clip_frames([path], self.settings.frame_scale, workers=1)[0]

    def histograms_of(self, clips: Sequence[np.ndarray], device: str = "cpu") -> np.ndarray:
        """``(n, vocabulary_size)`` bag-of-words histograms of clips (e.g. :meth:`read_clip` of new videos), made
        as the learned ones were: dense blocks at the settings' ``stride``, whitening, SAE codes, nearest words."""
        return activity.clip_histograms(clips, self.sae(), self.whitener, self.vocabulary(),
                                        stride=self.settings.stride, device=device)

    def save(self, path: str | Path) -> Path:
        hist = {f"hist_{s}": h for s, h in self.histograms.items()}
        ids = {f"ids_{s}": np.asarray(c).astype(str) for s, c in self.clip_ids.items()}
        meta = {"sae_splits": list(self.sae_splits), "history": self.history, "n_blocks": int(self.n_blocks),
                "n_frames": {s: int(n) for s, n in self.n_frames.items()}, "frame_shape": list(self.frame_shape),
                "seconds": self.seconds, "key": self.key, "threshold": float(self.threshold),
                "settings": asdict(self.settings),
                "status": None if self.status is None else {s: list(map(str, v)) for s, v in self.status.items()}}
        return save_npz_atomic(path, weight=self.weight, centres=self.centres, active_fraction=self.active_fraction,
                               meta=np.array(json.dumps(meta)), **hist, **ids,
                               **{f"whitener_{k}": v for k, v in self.whitener.to_dict().items()})

    @classmethod
    def load(cls, path: str | Path) -> ActivityFeatures:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            splits = [k[len("hist_"):] for k in z.files if k.startswith("hist_")]
            whitener = activity.BlockWhitener.from_dict({k[len("whitener_"):]: z[k] for k in z.files
                                                         if k.startswith("whitener_")})
            return cls(tuple(meta["sae_splits"]), {s: z[f"hist_{s}"] for s in splits},
                       {s: z[f"ids_{s}"].astype(str) for s in splits}, whitener, z["weight"], meta["threshold"],
                       z["centres"], meta["history"], z["active_fraction"], meta["n_blocks"], meta["n_frames"],
                       tuple(meta["frame_shape"]), ActivitySettings(**meta["settings"]), meta["seconds"],
                       meta["key"], from_cache=True,
                       status=None if meta.get("status") is None
                       else {s: np.array(v, dtype=str) for s, v in meta["status"].items()})

    @classmethod
    def learn(cls, paths: Mapping[str, Sequence[str | Path]], clip_ids: Mapping[str, Sequence[str]],
              sae_splits: Sequence[str], settings: ActivitySettings, *, seed: int = 0, device: str = "cpu",
              workers: int = 0, cache: str | Path | None = None, progress: bool = False) -> ActivityFeatures:
        """Decode every clip of ``paths`` (split -> video files, same order as ``clip_ids``), learn the
        whitening, the SAE and the vocabulary on blocks of the ``sae_splits`` clips, and describe every clip
        by its histogram; or load ``cache`` if it holds this exact learning (:func:`features_key`). The
        result is saved to ``cache`` when given. No label is read."""
        sae_splits = tuple(sae_splits)
        unknown = [s for s in sae_splits if s not in paths]
        if not sae_splits or unknown:
            raise ValueError(f"sae_splits must name at least one of the splits {sorted(paths)}, got {list(sae_splits)}")
        for s in paths:
            if len(paths[s]) != len(clip_ids[s]):
                raise ValueError(f"{s}: {len(paths[s])} video files but {len(clip_ids[s])} clip ids")
        if not any(len(paths[s]) for s in sae_splits):
            raise ValueError(f"the splits {list(sae_splits)} hold no clips to learn the activity features from")
        device = resolve_device(device)
        key = features_key(paths, sae_splits, settings, seed, device)
        if cache is not None and Path(cache).is_file():
            try:
                cached = cls.load(cache)
            except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError):  # unreadable/older layout: relearn
                cached = None
            if cached is not None and cached.status is not None and cached.key == key and all(list(cached.clip_ids.get(s, [])) == [str(c) for c in clip_ids[s]]
                                         for s in paths):
                return cached

        t0 = time.perf_counter()
        clips, status = decode_clips(paths, settings, workers=workers, progress=progress)
        t_decode = time.perf_counter() - t0

        t0 = time.perf_counter()
        train_clips = [c for s in sae_splits for c in clips[s]]
        blocks = activity.sample_blocks(train_clips, settings.n_train_blocks, seed=seed)
        whitener = activity.BlockWhitener.fit(blocks, n_components=settings.n_components, seed=seed)
        x_blocks = whitener.transform(blocks)
        sae = activity.SynchronyAutoencoder(whitener.n_components, settings.n_hidden, settings.threshold, seed=seed)
        history = activity.train_sae(sae, x_blocks, epochs=settings.sae_epochs, batch_size=settings.batch_size,
                                     lr=settings.sae_lr, noise=settings.noise, seed=seed, device=device,
                                     progress=progress)
        codes = activity.encode_blocks(sae, x_blocks, device=device)
        vocabulary = activity.fit_vocabulary(codes, k=settings.vocabulary_size, seed=seed)
        t_learn = time.perf_counter() - t0

        t0 = time.perf_counter()
        hists = {s: activity.clip_histograms(clips[s], sae, whitener, vocabulary, stride=settings.stride,
                                             device=device, progress=progress) for s in paths}
        t_hist = time.perf_counter() - t0

        first = next((c for s in paths for c in clips[s] if len(c)), None)
        out = cls(sae_splits, hists, {s: np.asarray(clip_ids[s]).astype(str) for s in paths}, whitener,
                  sae.weight.detach().cpu().numpy().astype(np.float32), settings.threshold,
                  np.asarray(vocabulary.cluster_centers_, dtype=np.float32), history,
                  (codes > 0).mean(0), len(blocks), {s: int(sum(len(c) for c in clips[s])) for s in paths},
                  tuple(first.shape[1:]) if first is not None else (0, 0), settings,
                  {"decode": t_decode, "learn": t_learn, "histograms": t_hist}, key, status=status)
        if cache is not None:
            out.save(cache)
        return out


def decode_clips(paths: Mapping[str, Sequence[str | Path]], settings: ActivitySettings, *, workers: int = 0,
                 progress: bool = False) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """``(frames, status)`` per split of the video files ``paths``: every clip's gray frames at the settings'
    ``frame_scale`` and its status (:func:`clip_status`). One bad clip never stops the stage: an unreadable clip
    gets no frame (so no block: the uniform histogram) and a warning, a truncated one the frames that decoded."""
    errors = {s: {} for s in paths}
    cut = {s: {} for s in paths}
    clips = {s: activity.load_clip_frames(paths[s], settings.frame_scale, workers=workers, progress=progress,
                                          desc=f"decode {s}", errors=errors[s], truncated=cut[s]) for s in paths}
    for s in paths:
        for i, message in errors[s].items():
            warnings.warn(f"unreadable clip (the uniform histogram): {message}", UserWarning, stacklevel=3)
    status = {s: np.array([clip_status(c, settings, unreadable=i in errors[s], truncated=i in cut[s])
                           for i, c in enumerate(clips[s])], dtype=str) for s in paths}
    return clips, status


def clip_status(clip: np.ndarray, settings: ActivitySettings, *, unreadable: bool = False,
                truncated: bool = False) -> str:
    """A clip's status in the activity stage (:mod:`emotiw_utils.clip_policy`): ``unreadable`` (no frame),
    ``too_short`` (no block: the uniform histogram, whether or not it was also cut off), ``truncated`` (fewer
    frames than its header states, or a decode error part-way: described by the frames that decoded), ``ok``."""
    if unreadable:
        return "unreadable"
    if not _has_block(clip, settings):
        return "too_short"
    return "truncated" if truncated else "ok"


def _has_block(clip: np.ndarray, settings: ActivitySettings) -> bool:
    """Whether a clip's frames hold one block of the activity model (depth frames, size x size pixels)."""
    return (clip.shape[0] >= activity.BLOCK_DEPTH and clip.shape[1] >= activity.BLOCK_SIZE
            and clip.shape[2] >= activity.BLOCK_SIZE)


@dataclass
class ActivityModel:
    """What a finished ``06_activity_sae`` run keeps to be applied to new clips without retraining: its
    :class:`ActivityFeatures` (artifact ``features``: whitening, SAE, vocabulary, settings) and the first
    seed's SVM on the histograms (artifact ``svm``, a :class:`~emotiw_utils.svm.SoftmaxSvm` written with
    :mod:`emotiw_utils.model_store`: skops, trusted types only)."""

    features: ActivityFeatures
    svm: Any

    def save(self, run_dir: str | Path) -> Path:
        """Write the SVM into the stage's folder of ``run_dir`` (the features are the stage's cache, written
        by :meth:`ActivityFeatures.learn`)."""
        from emotiw_utils.model_store import save_model

        return save_model(stages.ACTIVITY.path(run_dir, "svm"), self.svm)

    @classmethod
    def load(cls, run_dir: str | Path) -> ActivityModel:
        """Read both back (FileNotFoundError naming the stage to run when one is missing; nothing is unpickled)."""
        from emotiw_utils.model_store import load_model

        return cls(ActivityFeatures.load(stages.ACTIVITY.require(run_dir, "features")),
                   load_model(stages.ACTIVITY.require(run_dir, "svm"), "activity SVM"))

    def probs(self, histograms: Any) -> np.ndarray:
        """``(n, 7)`` class probabilities of ``(n, vocabulary_size)`` histograms."""
        from emotiw_utils.svm import predict_proba_full

        return predict_proba_full(self.svm, histograms)

    def predict_clip(self, path: str | Path) -> np.ndarray:
        """``(7,)`` class probabilities of one video, described now (:meth:`ActivityFeatures.histograms_of`)."""
        return self.probs(self.features.histograms_of([self.features.read_clip(path)]))[0]


def reapply(run_dir: str | Path, split: str) -> np.ndarray:
    """``(N, 7)`` probabilities of ``split``'s clips in a finished run, recomputed from its persisted
    :class:`ActivityModel` and the histograms in its features file, in the clip order of its
    clip-probabilities file (equal to that file's probabilities: nothing is refitted)."""
    ids = load_clip_probs(stages.ACTIVITY.require(run_dir, "clip_probs", split=split))[0]
    model = ActivityModel.load(run_dir)
    if list(model.features.clip_ids.get(split, [])) != list(ids):
        raise ValueError(f"{stages.ACTIVITY.dir(run_dir)}: the features file holds other {split} clips than its "
                         f"clip probabilities; run stage {stages.ACTIVITY.name} again")
    return model.probs(model.features.histograms[split])


def split_paths(records: Sequence[Any], splits: Sequence[str] = AFEW_SPLITS) -> tuple[dict, dict]:
    """``(paths, clip_ids)`` per split from :func:`emotiw_utils.datasets.afew.scan_afew` records."""
    return ({s: [r.path for r in records if r.split == s] for s in splits},
            {s: [r.clip_id for r in records if r.split == s] for s in splits})
