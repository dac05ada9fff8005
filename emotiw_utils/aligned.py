"""The aligned face datasets of stage ``01_alignment``: keypoints -> mean shapes -> one transform per
dataset -> aligned, equalised 48x48 faces of FER2013 + TFD and of every AFEW frame (paper 2.1.2).

Keypoints come from a dataset's sidecar when it ships one (the synthetic data does: its renderer
knows them exactly) and from MTCNN (:mod:`emotiw_utils.detect`) otherwise. The geometry is in
:mod:`emotiw_utils.faces`; this module runs it over whole datasets (AFEW clips in parallel worker
processes), keeps the frame-level bookkeeping (which frames had no face, which clips had none at
all) and saves/loads the stage's artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emotiw_utils import faces
from emotiw_utils.artifacts import atomic_write_json, read_json, save_npz_atomic
from emotiw_utils.constants import AFEW_SPLITS, EMOTIONS, FER_USAGES, UNKNOWN_LABEL
from emotiw_utils.datasets.afew import ClipRecord, load_clip, scan_afew
from emotiw_utils.datasets.keypoints import read_keypoints, read_static_keypoints
from emotiw_utils.datasets.video import probe_clip
from emotiw_utils.detect_video import VideoPolicy, detect_clips
from emotiw_utils.errors import DataFormatError
from emotiw_utils.workers import process_map

__all__ = [
    "AfewAligner",
    "AfewFaces",
    "KeypointSource",
    "StaticFaces",
    "afew_keypoints",
    "align_afew",
    "align_clip",
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
    out: list[np.ndarray | None] = [None] * len(records)
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
            out[i] = res.keypoints
            counts["detected"] += 1
            counts["frames_detected"] += int(res.detected.sum())
            counts["frames_interpolated"] += int(res.interpolated.sum())
    return out, counts


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


def align_clip(record: ClipRecord, aligner: AfewAligner, rng: np.random.Generator,
               device: str = "cpu", policy: VideoPolicy | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Aligned faces of one clip (a new video: ``ClipRecord(clip_id, split, label, path, keypoints_path)``)
    with a finished run's ``aligner`` (:func:`load_alignments`): keypoints from the clip's sidecar or MTCNN
    (:func:`afew_keypoints` under ``policy``, default :class:`~emotiw_utils.detect_video.VideoPolicy`), then :meth:`AfewAligner.align`. Returns (faces ``(T, 48, 48)`` uint8, ``(T,)``
    frames with their own face, no face in the whole clip); DataFormatError if the clip cannot be read."""
    (kps,), _ = afew_keypoints([record], device, policy=policy, workers=1)
    frames = load_clip(record, gray=True, audio=False).frames
    return aligner.align(frames, kps, rng)


_WORKER_STATE: dict = {}


def _init_worker(aligner: AfewAligner) -> None:
    import cv2

    cv2.setNumThreads(1)
    _WORKER_STATE.update(aligner=aligner)


def _align_task(args):
    rec, kps, seed, index = args
    try:
        clip = load_clip(rec, gray=True, audio=False)
    except DataFormatError as e:
        return None, str(e), []
    return _WORKER_STATE["aligner"].align(clip.frames, kps, clip_noise(seed, rec.split, index)), None, clip.problems


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
    :class:`~emotiw_utils.detect_video.VideoPolicy`). Clips are processed in ``workers`` processes
    (default: all cores); every clip's noise stream is
    :func:`clip_noise` ``(seed, split, index)``, so the result does not depend on ``workers``.

    Returns (faces per split, the AFEW aligner: AFEW's alignment and fallback box, info: keypoint sources,
    unreadable clips). Unreadable clips are skipped and listed in ``info["unreadable"]`` (with the error);
    ``info["statuses"]`` gives every clip of every split its status under the clip policy
    (:mod:`emotiw_utils.clip_policy`: ``ok``, ``unreadable``, ``truncated`` or ``no_face``), in dataset order.
    """
    records = scan_afew(afew_dir, splits)
    if not any(r.split == "Train" for r in records):
        raise DataFormatError(Path(afew_dir), "no Train clips: AFEW's transform is inferred on Train")
    kps, kp_counts = afew_keypoints(records, device, progress, policy=detect_policy, workers=workers)
    train = [(r, k) for r, k in zip(records, kps) if r.split == "Train"]
    sized = [(k, size) for (r, k), size in zip(train, (_frame_size(r) for r, _ in train)) if size is not None]
    aligner = AfewAligner(fit_afew_alignment([k for _, k in train], fer_mean, box_scale),
                          fallback_keypoints([k for k, _ in sized], [size for _, size in sized]), float(box_scale))

    per_split_index: dict[str, int] = {}
    tasks = []
    for r, k in zip(records, kps):
        i = per_split_index.get(r.split, 0)
        per_split_index[r.split] = i + 1
        tasks.append((r, k, seed, i))
    results = list(process_map(_align_task, tasks, workers, names=[str(t[0].path) for t in tasks],
                               initializer=_init_worker, initargs=(aligner,), progress=progress,
                               desc="aligning AFEW", start_method="spawn"))  # forked after torch: can hang

    out: dict[str, AfewFaces] = {}
    unreadable, statuses = [], {}
    for split in splits:
        ids, labels, fs, has, nofa = [], [], [], [], []
        status = statuses.setdefault(split, {})
        for r, (res, err, problems) in zip(records, results):
            if r.split != split:
                continue
            if res is None:
                unreadable.append({"split": split, "clip": r.clip_id, "error": err})
                status[r.clip_id] = "unreadable"
                continue
            video_problems = [kind for kind, _ in problems if kind == "truncated"]
            status[r.clip_id] = video_problems[0] if video_problems else "no_face" if res[2] else "ok"
            ids.append(r.clip_id)
            labels.append(r.label if r.label is not None else UNKNOWN_LABEL)
            fs.append(res[0])
            has.append(res[1])
            nofa.append(res[2])
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
