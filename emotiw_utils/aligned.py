"""The aligned face datasets of stage ``01_alignment``: keypoints -> mean shapes -> one transform per
dataset -> aligned, equalised 48x48 faces of FER2013 + TFD and of every AFEW frame (paper 2.1.2).

Keypoints come from a dataset's sidecar when it ships one (the synthetic data does: its renderer
knows them exactly) and from MTCNN (:mod:`emotiw_utils.detect`) otherwise. The geometry is in
:mod:`emotiw_utils.faces`; this module runs it over whole datasets (AFEW clips in parallel worker
processes), keeps the frame-level bookkeeping (which frames had no face, which clips had none at
all) and saves/loads the stage's artifacts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotiw_utils import faces
from emotiw_utils.artifacts import atomic_write_json, read_json, save_npz_atomic
from emotiw_utils.constants import AFEW_SPLITS, EMOTIONS, FER_USAGES, UNKNOWN_LABEL
from emotiw_utils.datasets.afew import ClipRecord, scan_afew
from emotiw_utils.datasets.keypoints import read_keypoints, read_static_keypoints
from emotiw_utils.datasets.video import DecodeReport, iter_frames, probe_clip
from emotiw_utils.detect_video import (
    FrameTracker,
    VideoPolicy,
    _FrameError,
    _OneThreadEach,
    borrowed_detector,
    choose_workers,
    detect_clips,
    in_process_threads,
    map_clips,
)
from emotiw_utils.errors import DataFormatError

__all__ = [
    "AfewAligner",
    "AfewFaces",
    "KeypointSource",
    "StaticFaces",
    "StreamAligner",
    "afew_keypoints",
    "align_afew",
    "align_clip",
    "align_clip_stream",
    "build_static_faces",
    "clip_noise",
    "detection_table",
    "fallback_keypoints",
    "fit_afew_alignment",
    "load_alignments",
    "save_alignments",
    "static_keypoints",
]

#: Where a dataset's keypoints came from (shown in the chapter).
KeypointSource = str
SIDECAR = "sidecar (shipped with the data)"
MTCNN = "MTCNN (detected)"
#: ``usage`` value of TFD images in :class:`StaticFaces`.
TFD_USAGE = "TFD"


# ---------------------------------------------------------------------------------------- static faces

@dataclass
class StaticFaces:
    """Aligned FER2013 + TFD faces, the CNN's training data (paper 2.1.1).

    Attributes:
        images: ``(N, 48, 48)`` uint8, aligned onto FER2013 and histogram-equalised.
        labels: ``(N,)`` int64 class ids.
        source: ``(N,)`` str ``'FER2013'`` or ``'TFD'``.
        usage: ``(N,)`` str FER2013 ``Usage`` (``Training``/``PublicTest``/``PrivateTest``) or ``'TFD'``.
    """

    images: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    usage: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, mask: np.ndarray) -> StaticFaces:
        mask = np.asarray(mask)
        return StaticFaces(self.images[mask], self.labels[mask], self.source[mask], self.usage[mask])

    def in_usage(self, usages: str | Sequence[str]) -> StaticFaces:
        """The images whose usage is one of ``usages`` (``'TFD'`` selects TFD)."""
        usages = [usages] if isinstance(usages, str) else list(usages)
        return self.select(np.isin(self.usage, usages))

    def save(self, path: str | Path) -> Path:
        return save_npz_atomic(path, images=self.images, labels=self.labels, source=self.source.astype(str),
                               usage=self.usage.astype(str))

    @classmethod
    def load(cls, path: str | Path) -> StaticFaces:
        with np.load(path) as z:
            return cls(z["images"], z["labels"].astype(np.int64), z["source"], z["usage"])

    def counts_table(self):
        """Images per class (rows) and source/usage (columns), pandas DataFrame."""
        import pandas as pd

        col = np.where(self.source == "TFD", "TFD", np.char.add("FER2013 ", self.usage.astype(str)))
        t = pd.crosstab(pd.Categorical([EMOTIONS[i] for i in self.labels], EMOTIONS), col, margins=True,
                        margins_name="total", dropna=False)
        t.index.name, t.columns.name = "class", None
        return t


def static_keypoints(data_path: str | Path, images: np.ndarray, device: str = "cpu",
                     progress: bool = False) -> tuple[np.ndarray, KeypointSource]:
    """Keypoints ``(N, 5, 2)`` (NaN rows: no face found) of a static dataset file and their source:
    the sidecar next to ``data_path`` if there is one, else MTCNN on the images."""
    kps = read_static_keypoints(data_path, len(images))
    if kps is not None:
        return kps, SIDECAR
    from emotiw_utils.detect import detect_static_faces

    return detect_static_faces(images, device=device, progress=progress).keypoints, MTCNN


def build_static_faces(fer_path: str | Path, tfd_path: str | Path | None, seed: int = 0, device: str = "cpu",
                       progress: bool = False) -> tuple[StaticFaces, dict[str, faces.DatasetAlignment], dict]:
    """Load FER2013 (+ labelled TFD), find keypoints, fit the per-dataset transforms and align.

    FER2013's mean shape (over its ``Training`` images) is the reference every dataset is mapped
    onto; FER2013 itself is only equalised. Returns (faces, alignments by dataset name, info dict
    with keypoint sources and detection counts).
    """
    from emotiw_utils.datasets.fer2013 import load_fer2013
    from emotiw_utils.datasets.tfd import load_tfd

    fer = load_fer2013(fer_path)
    fer_kps, fer_src = static_keypoints(fer_path, fer.images, device, progress)
    train = fer.usage == FER_USAGES[0]
    fer_al = faces.fit_dataset_alignment("FER2013", fer_kps[train], faces.mean_shape(fer_kps[train]),
                                         fer.images.shape[1])
    parts = [(faces.align_static(fer.images, fer_al, seed), fer.labels, "FER2013", fer.usage)]
    alignments = {"FER2013": fer_al}
    info = {"FER2013": {"keypoints": fer_src, "images": len(fer),
                        "no_face": int((~np.isfinite(fer_kps).all(axis=(1, 2))).sum())}}
    if tfd_path is not None:
        tfd = load_tfd(tfd_path)
        tfd_kps, tfd_src = static_keypoints(tfd_path, tfd.images, device, progress)
        # The mean shape uses every TFD image (labelled or not); only labelled ones are trained on.
        tfd_al = faces.fit_dataset_alignment("TFD", tfd_kps, fer_al.mean_shape, tfd.images.shape[1])
        lab = tfd.labels >= 0
        parts.append((faces.align_static(tfd.images[lab], tfd_al, seed + 1), tfd.labels[lab], "TFD",
                      np.full(int(lab.sum()), TFD_USAGE)))
        alignments["TFD"] = tfd_al
        info["TFD"] = {"keypoints": tfd_src, "images": len(tfd), "labelled": int(lab.sum()),
                       "no_face": int((~np.isfinite(tfd_kps).all(axis=(1, 2))).sum())}
    static = StaticFaces(
        images=np.concatenate([p[0] for p in parts]),
        labels=np.concatenate([p[1] for p in parts]).astype(np.int64),
        source=np.concatenate([np.full(len(p[1]), p[2]) for p in parts]),
        usage=np.concatenate([np.asarray(p[3]).astype(str) for p in parts]),
    )
    return static, alignments, info


# ------------------------------------------------------------------------------------------ AFEW faces

@dataclass
class AfewFaces:
    """Aligned faces of every frame of every clip of one AFEW split (the paper's "AFEW-faces").

    Attributes:
        split: ``Train``, ``Val`` or ``Test``.
        clip_ids: ``(n,)`` str.
        labels: ``(n,)`` int64 (-1 unknown).
        offsets: ``(n + 1,)`` int64: clip ``i``'s frames are ``faces[offsets[i]:offsets[i + 1]]``.
        faces: ``(F, 48, 48)`` uint8 aligned, equalised faces.
        has_face: ``(F,)`` bool: the frame had its own keypoints (False: filled from the nearest frame
            with a face, or the clip had no face at all).
        clip_no_face: ``(n,)`` bool: no frame of the clip had a face (kept, aligned with a default
            box, flagged).
    """

    split: str
    clip_ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    faces: np.ndarray
    has_face: np.ndarray
    clip_no_face: np.ndarray

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def clip(self, i: int) -> np.ndarray:
        """``(T_i, 48, 48)`` faces of clip ``i``."""
        return self.faces[self.offsets[i]:self.offsets[i + 1]]

    def frame_labels(self) -> np.ndarray:
        """``(F,)`` every frame labelled with its clip's label (for frame accuracy against clip labels)."""
        return np.repeat(self.labels, self.lengths)

    def frame_clip_index(self) -> np.ndarray:
        """``(F,)`` the clip index of every frame."""
        return np.repeat(np.arange(len(self)), self.lengths)

    def sample_frames(self, per_clip: int) -> np.ndarray:
        """Indices into ``faces`` of up to ``per_clip`` evenly spaced frames of every clip."""
        idx = []
        for a, b in zip(self.offsets[:-1], self.offsets[1:]):
            n = b - a
            idx.append(a + np.unique(np.linspace(0, n - 1, min(per_clip, n)).round().astype(np.int64)))
        return np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)

    def save(self, path: str | Path) -> Path:
        return save_npz_atomic(path, split=np.array(self.split), clip_ids=self.clip_ids.astype(str),
                               labels=self.labels, offsets=self.offsets, faces=self.faces, has_face=self.has_face,
                               clip_no_face=self.clip_no_face)

    @classmethod
    def load(cls, path: str | Path) -> AfewFaces:
        with np.load(path) as z:
            return cls(str(z["split"]), z["clip_ids"], z["labels"].astype(np.int64), z["offsets"].astype(np.int64),
                       z["faces"], z["has_face"].astype(bool), z["clip_no_face"].astype(bool))


def afew_keypoints(records: Sequence[ClipRecord], device: str = "cpu", progress: bool = False, *,
                   policy: VideoPolicy | None = None, workers: int | None = 0,
                   ) -> tuple[list[np.ndarray | None], dict[str, int]]:
    """Per-frame keypoints ``(T, 5, 2)`` of every clip: its sidecar, or MTCNN on its frames when it has
    none (:func:`emotiw_utils.detect_video.detect_clips` under ``policy``, default
    :class:`~emotiw_utils.detect_video.VideoPolicy`, in ``workers`` processes; 0: all cores). An
    unreadable clip gives None (it is then aligned from its frames later, or reported).

    Returns (keypoints per record, counts ``{"sidecar", "detected", "unreadable"}`` (clips) and
    ``{"frames_detected", "frames_interpolated"}`` (frames of the detected clips)).
    """
    kps, counts, _ = _afew_keypoints(records, device, progress, policy, workers)
    return kps, counts


def _afew_keypoints(records: Sequence[ClipRecord], device: str, progress: bool, policy: VideoPolicy | None,
                    workers: int | None,
                    ) -> tuple[list[np.ndarray | None], dict[str, int], list[tuple[int, int] | None]]:
    """:func:`afew_keypoints` plus the frame size ``(height, width)`` of every detected clip (None for the
    others)."""
    out: list[np.ndarray | None] = [None] * len(records)
    sizes: list[tuple[int, int] | None] = [None] * len(records)
    counts = {"sidecar": 0, "detected": 0, "unreadable": 0, "frames_detected": 0, "frames_interpolated": 0}
    to_detect = []
    for i, rec in enumerate(records):
        if rec.keypoints_path is not None:
            out[i] = read_keypoints(rec.keypoints_path)
            counts["sidecar"] += 1
        else:
            to_detect.append(i)
    if to_detect:
        found = detect_clips([records[i].path for i in to_detect], policy or VideoPolicy(), workers=workers,
                             device=device, progress=progress)
        for i, res in zip(to_detect, found):
            if isinstance(res, DataFormatError):
                counts["unreadable"] += 1
                continue
            out[i], sizes[i] = res.keypoints, tuple(res.frame_size)
            counts["detected"] += 1
            counts["frames_detected"] += int(res.detected.sum())
            counts["frames_interpolated"] += int(res.interpolated.sum())
    return out, counts, sizes


def fit_afew_alignment(train_keypoints: Sequence[np.ndarray | None], fer_mean: np.ndarray,
                       box_scale: float = faces.AFEW_BOX_SCALE) -> faces.DatasetAlignment:
    """AFEW's one transform, inferred on the Train clips' face-box keypoints (paper 2.1.2 step 4:
    Val and Test are mapped with it too)."""
    crops = [faces.crop_keypoints(k, box_scale) for k in train_keypoints if k is not None and len(k)]
    if not crops:
        raise ValueError("no AFEW Train clip has keypoints: cannot compute AFEW's mean shape")
    return faces.fit_dataset_alignment("AFEW", np.concatenate(crops), fer_mean, faces.FACE_SIZE)


def fallback_keypoints(train_keypoints: Sequence[np.ndarray | None], frame_sizes: Sequence[tuple[int, int]]
                       ) -> np.ndarray:
    """Mean keypoints of all Train frames with a face, as fractions of the frame's width and height
    (``(5, 2)``): where a clip without any face gets its face box."""
    rel = []
    for k, (h, w) in zip(train_keypoints, frame_sizes):
        if k is None:
            continue
        ok = np.isfinite(k).all(axis=(1, 2))
        if ok.any():
            rel.append(k[ok] / np.array([w, h], dtype=np.float64))
    if not rel:
        raise ValueError("no AFEW Train frame has keypoints")
    return np.concatenate(rel).mean(0)


@dataclass(frozen=True)
class AfewAligner:
    """Everything that aligns a clip's frames the way stage 01 aligned AFEW (persisted in its alignments file,
    so that a finished run aligns a new clip exactly as it aligned Val and Test; paper 2.1.2 step 4).

    Attributes:
        alignment: AFEW's :class:`~emotiw_utils.faces.DatasetAlignment`, fitted on the Train clips.
        fallback: ``(5, 2)`` mean keypoints of the Train frames with a face, as fractions of the frame's
            width and height: where a clip without any face gets its face box (:func:`fallback_keypoints`).
        box_scale: side of the face box in eye-to-mouth distances (:func:`emotiw_utils.faces.face_boxes`).
    """

    alignment: faces.DatasetAlignment
    fallback: np.ndarray
    box_scale: float = faces.AFEW_BOX_SCALE

    def align(self, frames: np.ndarray, keypoints: np.ndarray | None,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
        """:func:`emotiw_utils.faces.align_frames` of one clip's ``(T, H, W)`` uint8 gray frames and their
        ``(T, 5, 2)`` keypoints (NaN rows: no face; None: none at all); ``rng``: the noise of the border."""
        h, w = frames.shape[1:3]
        fb = self.fallback * np.array([w, h], dtype=np.float64)
        return faces.align_frames(frames, keypoints, self.alignment, fb, rng, self.box_scale)

    def to_dict(self) -> dict:
        """JSON form of what :attr:`alignment` does not hold (it is stored with the other datasets')."""
        return {"box_scale": float(self.box_scale), "fallback_keypoints": np.asarray(self.fallback).tolist()}

    @classmethod
    def from_dict(cls, alignment: faces.DatasetAlignment, d: dict) -> AfewAligner:
        return cls(alignment, np.asarray(d["fallback_keypoints"], dtype=np.float64), float(d["box_scale"]))


def save_alignments(path: str | Path, alignments: dict[str, faces.DatasetAlignment], afew: AfewAligner) -> Path:
    """Write stage 01's alignment model as JSON: every dataset's alignment (``alignments``, FER2013's mean
    shape the reference) and what else aligns an AFEW clip (``afew``; its alignment is ``alignments["AFEW"]``)."""
    datasets = {**alignments, "AFEW": afew.alignment}
    return atomic_write_json(path, {"datasets": {k: v.to_dict() for k, v in datasets.items()},
                                    "afew": afew.to_dict()})


def load_alignments(path: str | Path) -> tuple[dict[str, faces.DatasetAlignment], AfewAligner]:
    """Read a :func:`save_alignments` file: (alignments by dataset name, the AFEW aligner).
    FileNotFoundError if missing; DataFormatError if it is not such a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no alignments file")
    d = read_json(path)
    try:
        datasets = {k: faces.DatasetAlignment.from_dict(v) for k, v in d["datasets"].items()}
        return datasets, AfewAligner.from_dict(datasets["AFEW"], d["afew"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataFormatError(path, f"not an alignments file of stage 01 ({type(e).__name__}: {e})") from e


def clip_noise(seed: int, split: str, index: int) -> np.random.Generator:
    """The noise stream of clip ``index`` (0-based, in :func:`~emotiw_utils.datasets.afew.scan_afew` order)
    of ``split`` under ``seed`` (:func:`align_afew`; a split outside ``AFEW_SPLITS`` counts as 9)."""
    split_idx = AFEW_SPLITS.index(split) if split in AFEW_SPLITS else 9
    return np.random.default_rng([seed, 7, split_idx, index])


# ------------------------------------------------------------------------------------ streamed alignment

#: Frames aligned together by :class:`StreamAligner` (one vectorised face-box computation per batch).
_ALIGN_BATCH = 32


class _DecodedOtherwise(ValueError):
    """A clip decoded to another number of frames than the first time."""


class StreamAligner:
    """Aligns one clip's gray frames in frame order as their keypoints become known, holding only the frames
    that wait: the faces of :meth:`AfewAligner.align` on the whole clip, its border noise drawn in the same order.

    A frame with a face is aligned on its own keypoints. A frame without one takes those of the nearest frame
    with a face, the earlier on ties (:func:`emotiw_utils.faces.fill_missing_keypoints`), so it waits until that
    is settled: until the next frame with a face arrives, or until the next face is known to be at least as far
    as the previous one (from ``hint``, the keypoints the clip is expected to have, else from the frames pushed
    so far). A clip without any face gets the aligner's fallback box, at its end (at once when ``hint`` shows no
    face). When more than ``max_pending`` frames wait, they are dropped and :attr:`overflow` says from which
    frame on the clip must be aligned from a second decode, every keypoint known (:meth:`align_known`).

    Args:
        aligner: the AFEW aligner.
        rng: the clip's border noise (:func:`clip_noise`).
        max_pending: most frames held while they wait for a face.
        hint: ``(N, 5, 2)`` keypoints the pushed ones will be (a sidecar), or None.
    """

    def __init__(self, aligner: AfewAligner, rng: np.random.Generator, max_pending: int,
                 hint: np.ndarray | None = None) -> None:
        self.aligner, self.rng, self.max_pending = aligner, rng, int(max_pending)
        self._hint_faces = (None if hint is None
                            else np.flatnonzero(np.isfinite(np.asarray(hint, np.float64)).all(axis=(1, 2))))
        self.n = 0  # frames pushed
        self.has: list[bool] = []
        self.faces: list[np.ndarray] = []
        self.overflow: int | None = None
        self._prev: tuple[int, np.ndarray] | None = None  # the last frame with a face: (index, keypoints)
        self._pending: deque[tuple[int, np.ndarray]] = deque()  # (index, gray frame) waiting for a face
        self._ready: list[tuple[np.ndarray, np.ndarray]] = []  # (gray frame, keypoints) to align, in order
        self._fallback: np.ndarray | None = None

    def _next_face_bound(self) -> float:
        """A lower bound of the index of the next frame with a face (the frames pushed so far have none after
        the previous face); inf when there is none."""
        if self._hint_faces is None:
            return float(self.n)
        k = np.searchsorted(self._hint_faces, self.n)
        return float(self._hint_faces[k]) if k < len(self._hint_faces) else np.inf

    def push(self, frames: Sequence[np.ndarray], keypoints: np.ndarray) -> None:
        """The next ``len(frames)`` ``(H, W)`` uint8 gray frames and their ``(n, 5, 2)`` keypoints (NaN: no face)."""
        kps = np.asarray(keypoints)
        for g, k in zip(frames, kps, strict=True):
            i = self.n
            self.n += 1
            face = bool(np.isfinite(k).all())
            self.has.append(face)
            if self._fallback is None:
                h, w = g.shape[:2]
                self._fallback = self.aligner.fallback * np.array([w, h], dtype=np.float64)
            if self.overflow is not None:
                continue
            if face:
                while self._pending:
                    j, gj = self._pending.popleft()
                    p = self._prev
                    self._ready.append((gj, p[1] if p is not None and j - p[0] <= i - j else k))
                self._ready.append((g, k))
                self._prev = (i, k)
            else:
                self._pending.append((i, g))
                self._release()
                if len(self._pending) > self.max_pending:
                    self.overflow = self._pending[0][0]
                    self._pending.clear()
            if len(self._ready) >= _ALIGN_BATCH:
                self._align_ready()

    def _release(self) -> None:
        """Align the waiting frames whose nearest face is settled to be the previous one (or none at all)."""
        bound = self._next_face_bound()
        while self._pending:
            j, gj = self._pending[0]
            if self._prev is not None and j - self._prev[0] <= bound - j:
                self._ready.append((gj, self._prev[1]))
            elif self._prev is None and bound == np.inf:
                self._ready.append((gj, self._fallback))
            else:
                return
            self._pending.popleft()

    def _align_ready(self) -> None:
        if not self._ready:
            return
        frames = np.stack([g for g, _ in self._ready])
        kps = np.stack([np.asarray(k, dtype=np.float64) for _, k in self._ready])
        self._ready = []
        out, _, _ = faces.align_frames(frames, kps, self.aligner.alignment, self._fallback, self.rng,
                                       self.aligner.box_scale)
        self.faces.append(out)

    def finish(self) -> None:
        """The clip has ended: the frames still waiting take the previous face, or the fallback box."""
        if self.overflow is None:
            fill = self._prev[1] if self._prev is not None else self._fallback
            self._ready.extend((g, fill) for _, g in self._pending)
            self._pending.clear()
        self._align_ready()

    def align_known(self, frames: Iterable[np.ndarray], keypoints: np.ndarray) -> None:
        """Align frames :attr:`overflow` onwards (or every frame when nothing was pushed) from ``frames``, a new
        decode of the clip from its first frame, with ``keypoints`` ``(T, 5, 2)``: those of all ``T`` frames.
        Raises ``_DecodedOtherwise`` when that decode gives other than ``T`` frames."""
        kps = np.asarray(keypoints, dtype=np.float64)
        start = self.overflow if self.overflow is not None else self.n
        filled, has = faces.fill_missing_keypoints(kps) if len(kps) else (None, np.zeros(0, bool))
        if self.n == 0:
            self.has = [bool(h) for h in has]
            self.n = len(kps)
        n = 0
        for i, g in enumerate(frames):
            n += 1
            if i >= len(kps):
                break
            if i < start:
                continue
            if self._fallback is None:
                h, w = g.shape[:2]
                self._fallback = self.aligner.fallback * np.array([w, h], dtype=np.float64)
            self._ready.append((g, filled[i] if filled is not None else self._fallback))
            if len(self._ready) >= _ALIGN_BATCH:
                self._align_ready()
        self._align_ready()
        if n != len(kps):
            more = "+" if n > len(kps) else ""
            raise _DecodedOtherwise(f"the clip decoded to {n}{more} frames, {len(kps)} the first time")
        self.overflow = None

    def result(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(faces ``(T, 48, 48)`` uint8, ``(T,)`` frames with their own face, no face in the whole clip): as
        :meth:`AfewAligner.align` has them."""
        out = (np.concatenate(self.faces) if self.faces
               else np.zeros((0, faces.FACE_SIZE, faces.FACE_SIZE), np.uint8))
        if len(out) != self.n:
            raise RuntimeError(f"{self.n} frames pushed, {len(out)} aligned")
        has = np.array(self.has, dtype=bool)
        return out, has, not has.any()


def _video_error(path: Path, report: DecodeReport) -> None:
    """The errors :func:`emotiw_utils.datasets.video.read_video` raises after decoding."""
    if not report.frames:
        raise DataFormatError(path, "no video frame could be decoded")
    if not report.fps:
        raise DataFormatError(path, "video stream has no frame rate")


def _problems(path: Path, report: DecodeReport) -> list[tuple[str, str]]:
    return [] if report.problem is None else [("truncated", f"{path}: {report.problem}")]


def align_clip_stream(path: str | Path, aligner: AfewAligner, rng: np.random.Generator, *,
                      keypoints: np.ndarray | None = None, exact: bool = False, detector=None,
                      policy: VideoPolicy | None = None) -> dict:
    """Align one clip's frames streamed from its file, decoding it once (stage 01's single pass).

    Keypoints come from ``detector`` under ``policy`` (MTCNN on the RGB frames as they are decoded,
    :class:`~emotiw_utils.detect_video.FrameTracker`) when it is given, else from ``keypoints``: a sidecar
    (``exact`` False: the clip may decode to more or fewer frames; frames beyond it have no face) or a previous
    detection on this clip (``exact`` True: one row per frame), or none at all (None: the fallback box). Frames
    are aligned as their keypoints become known (:class:`StreamAligner`): at most ``policy.span + 1`` frames wait
    for MTCNN and ``policy.window`` for a face, whatever the clip's length. A clip where more wait for a face
    is decoded a second time for the frames that waited.

    Returns:
        ``{"faces", "has_face", "no_face"}`` (as :meth:`AfewAligner.align`), ``"problems"`` (``truncated``, as
        :func:`emotiw_utils.datasets.afew.load_clip` has it), ``"decodes"`` (1 or 2) and, with ``detector``,
        ``"keypoints"``: the :class:`~emotiw_utils.detect_video.VideoKeypoints`.

    Raises:
        DataFormatError: the clip cannot be opened, holds no video stream or no decodable frame, has no frame
            rate, or frames of different sizes.
    """
    import cv2

    p = Path(path)
    policy = policy or VideoPolicy()
    report = DecodeReport()
    hint = None if detector is not None or exact else (np.zeros((0, 5, 2)) if keypoints is None else keypoints)
    stream = StreamAligner(aligner, rng, policy.window, hint=hint)
    out = {"decodes": 1}
    if exact:
        try:
            stream.align_known(_checked(iter_frames(p, gray=True, report=report), p, report), keypoints)
        except _DecodedOtherwise as e:
            raise DataFormatError(p, str(e)) from e
    elif detector is None:
        known = np.zeros((0, 5, 2)) if keypoints is None else np.asarray(keypoints)
        nan = np.full((5, 2), np.nan)
        for i, g in enumerate(_checked(iter_frames(p, gray=True, report=report), p, report)):
            stream.push([g], (known[i] if i < len(known) else nan)[None])
        _video_error(p, report)
        stream.finish()
        if stream.overflow is not None:
            full = np.full((stream.n, 5, 2), np.nan)
            full[:min(len(known), stream.n)] = known[:stream.n]
            out["decodes"] = 2
            _align_again(stream, p, full)
    else:
        tracker = FrameTracker(detector, policy)
        grays: deque[np.ndarray] = deque()
        chunks: list = []

        def take(new: list) -> None:
            for k, det, interp in new:
                chunks.append((k, det, interp))
                stream.push([grays.popleft() for _ in range(len(k))], k)

        try:
            for frame in _checked(iter_frames(p, report=report), p, report):
                grays.append(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
                take(tracker.push(frame))
            _video_error(p, report)
            take(tracker.finish())
        except _FrameError as e:  # frames of different sizes
            raise DataFormatError(p, str(e)) from e
        stream.finish()
        out["keypoints"] = tracker.result(chunks)
        if stream.overflow is not None:
            out["decodes"] = 2
            _align_again(stream, p, out["keypoints"].keypoints)
    if exact:
        _video_error(p, report)
    out["faces"], out["has_face"], out["no_face"] = stream.result()
    out["problems"] = _problems(p, report)
    return out


def _align_again(stream: StreamAligner, path: Path, keypoints: np.ndarray) -> None:
    """The second decode of a clip whose frames waited too long for a face (:attr:`StreamAligner.overflow`)."""
    try:
        stream.align_known(iter_frames(path, gray=True, report=DecodeReport()), keypoints)
    except _DecodedOtherwise as e:
        raise DataFormatError(path, str(e)) from e


def _checked(frames: Iterator[np.ndarray], path: Path, report: DecodeReport) -> Iterator[np.ndarray]:
    """``frames``, refusing a stream without a frame rate at its first frame (as read_video does after decoding)."""
    for i, f in enumerate(frames):
        if i == 0 and not report.fps:
            raise DataFormatError(path, "video stream has no frame rate")
        yield f


def align_clip(record: ClipRecord, aligner: AfewAligner, rng: np.random.Generator,
               device: str = "cpu", policy: VideoPolicy | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Aligned faces of one clip (a new video: ``ClipRecord(clip_id, split, label, path, keypoints_path)``)
    with a finished run's ``aligner`` (:func:`load_alignments`): keypoints from the clip's sidecar or MTCNN
    under ``policy`` (default :class:`~emotiw_utils.detect_video.VideoPolicy`) in the same single decode that
    aligns it (:func:`align_clip_stream`). Returns (faces ``(T, 48, 48)`` uint8, ``(T,)`` frames with their own
    face, no face in the whole clip); DataFormatError if the clip cannot be read."""
    policy = policy or VideoPolicy()
    if record.keypoints_path is not None:
        res = align_clip_stream(record.path, aligner, rng, keypoints=read_keypoints(record.keypoints_path),
                                policy=policy)
    else:
        with borrowed_detector(device, policy) as det, _OneThreadEach():
            res = align_clip_stream(record.path, aligner, rng, detector=det, policy=policy)
    return res["faces"], res["has_face"], res["no_face"]


_WORKER_STATE: dict = {}


def _init_worker(aligner: AfewAligner, device: str, policy: VideoPolicy) -> None:
    """Once per process of the alignment pool: torch and OpenCV on one thread (the processes are the
    parallelism); MTCNN loaded on the first clip that needs it."""
    import cv2

    cv2.setNumThreads(1)
    _WORKER_STATE.update(aligner=aligner, device=device, policy=policy, process=True)


def _init_here(aligner: AfewAligner, device: str, policy: VideoPolicy) -> None:
    """The variant of :func:`_init_worker` for threads of this process (:func:`~emotiw_utils.detect_video.map_clips`
    sets the thread counts)."""
    _WORKER_STATE.update(aligner=aligner, device=device, policy=policy, process=False)


def _align_task(args):
    """One clip of :func:`align_afew`'s alignment pass: (result of :func:`align_clip_stream` or None, the error
    when unreadable)."""
    rec, kps, mode, seed, index = args
    st = _WORKER_STATE
    rng = clip_noise(seed, rec.split, index)
    try:
        if mode == "detect":
            if st["process"]:
                import torch

                torch.set_num_threads(1)
            with borrowed_detector(st["device"], st["policy"]) as det:
                return align_clip_stream(rec.path, st["aligner"], rng, detector=det, policy=st["policy"]), None
        return align_clip_stream(rec.path, st["aligner"], rng, keypoints=kps, exact=mode == "exact",
                                 policy=st["policy"]), None
    except DataFormatError as e:
        return None, str(e)


def _frame_size(record: ClipRecord) -> tuple[int, int] | None:
    """``(height, width)`` of a clip's frames from its container, None when it cannot be read."""
    try:
        info = probe_clip(record.path)
    except DataFormatError:
        return None
    return info.height, info.width


def align_afew(afew_dir: str | Path, fer_mean: np.ndarray, seed: int = 0, workers: int | None = None,
               device: str = "cpu", splits: Sequence[str] = AFEW_SPLITS, box_scale: float = faces.AFEW_BOX_SCALE,
               progress: bool = False, detect_policy: VideoPolicy | None = None,
               ) -> tuple[dict[str, AfewFaces], AfewAligner, dict]:
    """Align every frame of every AFEW clip onto FER2013 (paper 2.1.2; AFEW's transform from Train).

    Clips without a keypoint sidecar get MTCNN keypoints under ``detect_policy`` (default
    :class:`~emotiw_utils.detect_video.VideoPolicy`). AFEW's transform is fitted on the keypoints of every
    Train clip, so the Train clips MTCNN runs on are decoded twice: once to detect, once to align; every other
    clip (Val and Test, and clips with a sidecar) is decoded once, its faces found and aligned as its frames
    stream in (:func:`align_clip_stream`; a clip with more than ``detect_policy.window`` frames in a row
    waiting for a face is decoded again for those). Clips are processed in ``workers`` processes (default:
    all cores; threads of this process when the job is too small to pay for starting them,
    :func:`emotiw_utils.detect_video.choose_workers`); every clip's noise stream is
    :func:`clip_noise` ``(seed, split, index)``, so the result does not depend on ``workers``.

    Returns (faces per split, the AFEW aligner: AFEW's alignment and fallback box, info: keypoint sources and
    how many clips were decoded twice (``info["keypoints"]``), unreadable clips). Unreadable clips are skipped
    and listed in ``info["unreadable"]`` (with the error); ``info["statuses"]`` gives every clip of every split
    its status under the clip policy (:mod:`emotiw_utils.clip_policy`: ``ok``, ``unreadable``, ``truncated``
    or ``no_face``), in dataset order.
    """
    policy = detect_policy or VideoPolicy()
    records = scan_afew(afew_dir, splits)
    if not any(r.split == "Train" for r in records):
        raise DataFormatError(Path(afew_dir), "no Train clips: AFEW's transform is inferred on Train")
    # 1. Train's keypoints (sidecars; MTCNN: the first decode of those clips), then AFEW's transform
    train = [r for r in records if r.split == "Train"]
    train_kps, kp_counts, train_sizes = _afew_keypoints(train, device, progress, policy, workers)
    sizes = [s if s is not None else _frame_size(r) if k is not None else None
             for r, k, s in zip(train, train_kps, train_sizes)]
    sized = [(k, size) for k, size in zip(train_kps, sizes) if size is not None]
    aligner = AfewAligner(fit_afew_alignment(train_kps, fer_mean, box_scale),
                          fallback_keypoints([k for k, _ in sized], [size for _, size in sized]), float(box_scale))

    # 2. every clip aligned, streamed: Train from its known keypoints, the others detected in the same decode
    known = {id(r): (k, r.keypoints_path is None) for r, k in zip(train, train_kps)}
    per_split_index: dict[str, int] = {}
    tasks = []
    for r in records:
        i = per_split_index.get(r.split, 0)
        per_split_index[r.split] = i + 1
        if id(r) in known:
            k, detected = known[id(r)]
            mode = "exact" if detected and k is not None else "sidecar"
        elif r.keypoints_path is not None:
            k, mode = read_keypoints(r.keypoints_path), "sidecar"
            kp_counts["sidecar"] += 1
        else:
            k, mode = None, "detect"
        tasks.append((r, k, mode, seed, i))
    detect = [str(t[0].path) for t in tasks if t[2] == "detect"]
    n = choose_workers(workers, detect, [str(t[0].path) for t in tasks if t[2] != "detect"], device)
    results = map_clips(_align_task, tasks, n, in_process_threads(workers, len(tasks), device if detect else "cpu"),
                        names=[str(t[0].path) for t in tasks], initializer=_init_worker,
                        initargs=(aligner, device, policy), init_here=_init_here, progress=progress,
                        desc="aligning AFEW")  # spawned workers: forked after torch, they can hang

    kp_counts["decoded_twice"] = 0
    for (r, _, mode, _, _), (res, _) in zip(tasks, results):
        if mode == "detect":
            if res is None:
                kp_counts["unreadable"] += 1
                continue
            vk = res["keypoints"]
            kp_counts["detected"] += 1
            kp_counts["frames_detected"] += int(vk.detected.sum())
            kp_counts["frames_interpolated"] += int(vk.interpolated.sum())
        if res is not None:
            kp_counts["decoded_twice"] += int(res["decodes"] > 1 or mode == "exact")

    out: dict[str, AfewFaces] = {}
    unreadable, statuses = [], {}
    for split in splits:
        ids, labels, fs, has, nofa = [], [], [], [], []
        status = statuses.setdefault(split, {})
        for r, (res, err) in zip(records, results):
            if r.split != split:
                continue
            if res is None:
                unreadable.append({"split": split, "clip": r.clip_id, "error": err})
                status[r.clip_id] = "unreadable"
                continue
            video_problems = [kind for kind, _ in res["problems"] if kind == "truncated"]
            status[r.clip_id] = video_problems[0] if video_problems else "no_face" if res["no_face"] else "ok"
            ids.append(r.clip_id)
            labels.append(r.label if r.label is not None else UNKNOWN_LABEL)
            fs.append(res["faces"])
            has.append(res["has_face"])
            nofa.append(res["no_face"])
        lengths = [len(f) for f in fs]
        out[split] = AfewFaces(
            split=split, clip_ids=np.array(ids, dtype=str), labels=np.array(labels, dtype=np.int64),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            faces=np.concatenate(fs) if fs else np.zeros((0, faces.FACE_SIZE, faces.FACE_SIZE), np.uint8),
            has_face=np.concatenate(has) if has else np.zeros(0, bool), clip_no_face=np.array(nofa, dtype=bool))
    for split in splits:  # one bad clip never stops the stage; a split without a single readable clip does
        if statuses[split] and not len(out[split]):
            first = next(u["error"] for u in unreadable if u["split"] == split)
            raise DataFormatError(Path(afew_dir) / split, f"no clip of split {split} can be read (all "
                                                          f"{len(statuses[split])} unreadable; the first: {first})")
    return out, aligner, {"keypoints": kp_counts, "unreadable": unreadable, "statuses": statuses}


def detection_table(afew: dict[str, AfewFaces]):
    """Frames without a face and clips without any face, per split (pandas DataFrame)."""
    import pandas as pd

    rows = {}
    for split, a in afew.items():
        missing = ~a.has_face
        per_clip_missing = np.add.reduceat(missing, a.offsets[:-1]) if len(a) else np.zeros(0)
        rows[split] = {
            "clips": len(a),
            "frames": int(len(a.faces)),
            "frames without a face": int(missing.sum()),
            "% frames without a face": 100.0 * missing.mean() if len(a.faces) else 0.0,
            "clips with some frames without a face": int(((per_clip_missing > 0) & ~a.clip_no_face).sum()),
            "clips without any face (kept, flagged)": int(a.clip_no_face.sum()),
        }
    t = pd.DataFrame.from_dict(rows, orient="index")
    t.index.name = "split"
    return t.round({"% frames without a face": 2})
