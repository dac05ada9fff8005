"""AFEW 5.0 clips: folder scanning, keypoint sidecars, clip loading and decode reports.

Layout (split and emotion folder names case-insensitive)::

    root/Train/<Emotion>/<clip>.avi
    root/Val/<Emotion>/<clip>.avi
    root/Test/<Emotion>/<clip>.avi        or flat: root/Test/<clip>.avi (unlabelled)
    root/test_labels.csv                  optional ground truth for a flat Test (columns clip,emotion)
    .../<clip>.keypoints.csv              optional per-frame facial keypoints next to a clip

``<Emotion>`` is one of ``constants.EMOTIONS``. A clip's id is its file stem and must be unique
within its split. Keypoint sidecars have the header
``frame,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y,mouth_left_x,mouth_left_y,
mouth_right_x,mouth_right_y``, one row per frame (``frame`` = 0, 1, ...), pixel coordinates in the
frame, empty fields (NaN) for frames without a detected face.

Going through many clips never stops at a bad one: :func:`probe_split` (containers only),
:func:`iter_clips` and :func:`decode_report` (full decode) record every unreadable clip (with its
error), every clip without audio and every keypoint problem in a :class:`DecodeReport`.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emotiw_utils.constants import (
    AFEW_SPLITS,
    AUDIO_SR,
    EMOTIONS,
    KEYPOINTS,
    KEYPOINTS_SUFFIX,
    TEST_LABELS_FILENAME,
    UNKNOWN_LABEL,
    emotion_id,
)
from emotiw_utils.atomic import atomic_path
from emotiw_utils.datasets.keypoints import (  # noqa: F401  (re-exported)
    KEYPOINT_COLUMNS,
    keypoints_path_for,
    read_keypoints,
    write_keypoints,
)
from emotiw_utils.datasets.video import ClipInfo, NoAudioError, audio_short, probe_clip, read_audio, read_video
from emotiw_utils.errors import DataFormatError

__all__ = [
    "KEYPOINT_COLUMNS",
    "VIDEO_SUFFIXES",
    "Clip",
    "ClipProblem",
    "ClipRecord",
    "DecodeReport",
    "afew_clip_path",
    "afew_summary",
    "decode_report",
    "example_clips",
    "iter_clips",
    "keypoints_path_for",
    "layout_warnings",
    "load_clip",
    "probe_split",
    "read_keypoints",
    "read_test_labels",
    "scan_afew",
    "write_keypoints",
    "write_test_labels",
]

#: Clip file suffixes recognised inside the split folders (case-insensitive). AFEW's clips are AVI (the
#: first suffix, that of :func:`afew_clip_path`); any container PyAV reads works the same way.
VIDEO_SUFFIXES: tuple[str, ...] = (".avi", ".mp4", ".mkv", ".mov", ".flv", ".webm", ".mpg", ".mpeg", ".m4v",
                                   ".wmv", ".ogv", ".3gp", ".ts", ".gif")
_TEST_SPLIT = "Test"
_EXPECTED_EMOTIONS = ", ".join(EMOTIONS)


@dataclass(frozen=True)
class ClipRecord:
    """One AFEW clip on disk.

    Attributes:
        clip_id: file stem, unique within the split.
        split: split name as passed to :func:`scan_afew` (``'Train'``, ``'Val'``, ``'Test'``).
        label: class id 0..6 (``constants.EMOTIONS``) or ``constants.UNKNOWN_LABEL`` (-1).
        path: the video file.
        keypoints_path: the ``<clip>.keypoints.csv`` sidecar if it exists, else None.
    """

    clip_id: str
    split: str
    label: int
    path: Path
    keypoints_path: Path | None

    @property
    def emotion(self) -> str | None:
        """Class name, or None when unlabelled."""
        return EMOTIONS[self.label] if self.label >= 0 else None


@dataclass
class Clip:
    """A decoded clip.

    Attributes:
        record: where it came from.
        frames: ``(T, H, W, 3)`` uint8 RGB, or ``(T, H, W)`` uint8 when loaded with ``gray=True``.
        audio: ``(S,)`` float32 mono in [-1, 1] at the requested rate, or None (no audio stream).
        keypoints: ``(T', 5, 2)`` float32 pixel (x, y) per keypoint (``constants.KEYPOINTS`` order),
            NaN where no face was found, or None without a sidecar. ``T'`` should equal ``T``;
            see :attr:`keypoints_match`.
        fps: video frame rate.
        problems: ``(status, message)`` of what went wrong decoding it: ``truncated`` (fewer frames than
            the header states, or a decode error part-way: ``frames`` holds what decoded) and
            ``audio_short`` (the audio ends well before the video). Empty for a clean clip.
    """

    record: ClipRecord
    frames: np.ndarray
    audio: np.ndarray | None
    keypoints: np.ndarray | None
    fps: float
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def keypoints_match(self) -> bool | None:
        """Whether there is one keypoint row per frame (None without keypoints)."""
        return None if self.keypoints is None else len(self.keypoints) == self.n_frames


# ----------------------------------------------------------------------------------------------- paths


def afew_clip_path(root: str | Path, split: str, clip_id: str, label: int = UNKNOWN_LABEL) -> Path:
    """Where a clip lives in the AFEW layout: ``root/split/<Emotion>/<clip_id>.avi``.

    With ``label == UNKNOWN_LABEL`` the flat Test layout ``root/split/<clip_id>.avi`` is used.
    """
    base = Path(root) / split
    if label == UNKNOWN_LABEL:
        return base / f"{clip_id}{VIDEO_SUFFIXES[0]}"
    if not 0 <= label < len(EMOTIONS):
        raise ValueError(f"label must be 0..{len(EMOTIONS) - 1} or {UNKNOWN_LABEL}, got {label}")
    return base / EMOTIONS[label] / f"{clip_id}{VIDEO_SUFFIXES[0]}"


# ---------------------------------------------------------------------------------------------- scan


def _is_video(p: Path) -> bool:
    return p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".") and p.is_file()


def _find_dir(parent: Path, name: str) -> Path | None:
    exact = parent / name
    if exact.is_dir():
        return exact
    matches = [c for c in parent.iterdir() if c.is_dir() and c.name.lower() == name.lower()]
    return matches[0] if matches else None


def scan_afew(root: str | Path, splits: Sequence[str] = AFEW_SPLITS) -> list[ClipRecord]:
    """List the clips of an AFEW tree without decoding them.

    Args:
        root: folder holding the split folders.
        splits: which splits to scan, in this order.

    Returns:
        Records sorted by split (in ``splits`` order), then label (-1 first), then clip id.

    Raises:
        DataFormatError: missing root or split folder (named), an unknown emotion folder (named,
            with the expected names), a clip outside an emotion folder in Train/Val, a Test split
            mixing flat clips and emotion folders, a split without clips, a clip id present twice in
            a split, or a ``test_labels.csv`` naming an unknown clip or emotion (or contradicting an
            emotion folder).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataFormatError(root, "AFEW root folder not found")
    records: list[ClipRecord] = []
    for split in splits:
        split_dir = _find_dir(root, split)
        if split_dir is None:
            found = sorted(c.name for c in root.iterdir() if c.is_dir() and not c.name.startswith("."))
            raise DataFormatError(root, f"missing split folder {split!r} (found: {', '.join(found) or 'none'})")
        records.extend(_scan_split(root, split, split_dir))
    _warn_unknown_folders(root)
    order = {s: i for i, s in enumerate(splits)}
    records.sort(key=lambda r: (order[r.split], r.label, r.clip_id))
    return records


def layout_warnings(root: str | Path) -> list[str]:
    """What :func:`scan_afew` warns about the AFEW tree at ``root`` (chapter 00 records it for the run's summary):
    a folder beside the splits that is not one (a misspelt ``Vall`` is never read silently)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    known = {s.lower() for s in AFEW_SPLITS}
    extra = sorted(c.name for c in root.iterdir() if c.is_dir() and not c.name.startswith(".")
                   and c.name.lower() not in known)
    if not extra:
        return []
    return [f"{root}: folder(s) {', '.join(map(repr, extra))} are not AFEW splits ({', '.join(AFEW_SPLITS)}) "
            "and are not read"]


def _warn_unknown_folders(root: Path) -> None:
    """Warn about a folder beside the splits that is not one (:func:`layout_warnings`)."""
    for message in layout_warnings(root):
        warnings.warn(message, UserWarning, stacklevel=3)


def _scan_split(root: Path, split: str, split_dir: Path) -> list[ClipRecord]:
    entries: list[tuple[int, Path]] = []
    flat: list[Path] = []
    for child in sorted(split_dir.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            try:
                label = emotion_id(child.name)
            except ValueError:
                raise DataFormatError(
                    child, f"unknown emotion folder {child.name!r} (expected {_EXPECTED_EMOTIONS})"
                ) from None
            entries.extend((label, f) for f in sorted(child.iterdir()) if _is_video(f))
        elif _is_video(child):
            flat.append(child)
    if flat and split.lower() != _TEST_SPLIT.lower():
        raise DataFormatError(
            flat[0], f"clip outside an emotion folder: {split} clips must be in {split}/<Emotion>/"
        )
    if flat and entries:
        raise DataFormatError(
            split_dir, "mixes clips directly in the folder with emotion folders; use one layout"
        )
    entries.extend((UNKNOWN_LABEL, f) for f in flat)
    if not entries:
        raise DataFormatError(
            split_dir, f"no clips found (expected {split}/<Emotion>/<clip>{VIDEO_SUFFIXES[0]})"
        )
    seen: dict[str, Path] = {}
    for _, f in entries:
        if f.stem in seen:
            raise DataFormatError(f, f"duplicate clip id {f.stem!r} in split {split} (also {seen[f.stem]})")
        seen[f.stem] = f

    labels_file = root / TEST_LABELS_FILENAME
    if split.lower() == _TEST_SPLIT.lower() and labels_file.is_file():
        truth = read_test_labels(labels_file)
        for clip_id in truth:
            if clip_id not in seen:
                raise DataFormatError(labels_file, f"unknown clip {clip_id!r} (not in {split_dir})")
        fixed = []
        for label, f in entries:
            given = truth.get(f.stem, UNKNOWN_LABEL)
            if label != UNKNOWN_LABEL and given != UNKNOWN_LABEL and given != label:
                raise DataFormatError(
                    labels_file,
                    f"clip {f.stem!r} is labelled {EMOTIONS[given]} but lies in folder {EMOTIONS[label]}",
                )
            fixed.append((label if label != UNKNOWN_LABEL else given, f))
        entries = fixed

    records = []
    for label, f in entries:
        kp = keypoints_path_for(f)
        records.append(ClipRecord(f.stem, split, int(label), f, kp if kp.is_file() else None))
    return records


def read_test_labels(path: str | Path) -> dict[str, int]:
    """Read ``test_labels.csv`` (columns ``clip,emotion``; emotion names, any case) -> {clip_id: label}.

    A clip may be written with or without its ``.avi`` suffix. Row numbers in errors are 1-based
    data rows (after the header).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(path, f"cannot read file: {e}") from e
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise DataFormatError(path, "file is empty")
    names = [h.strip().lower() for h in header]
    for col in ("clip", "emotion"):
        if col not in names:
            raise DataFormatError(path, f"missing column {col!r} (found: {', '.join(header)})")
    i_clip, i_emo = names.index("clip"), names.index("emotion")
    labels: dict[str, int] = {}
    for row, fields in enumerate(reader, start=1):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(names):
            raise DataFormatError(path, f"row {row}: expected {len(names)} fields, found {len(fields)}")
        clip = fields[i_clip].strip()
        if Path(clip).suffix.lower() in VIDEO_SUFFIXES:
            clip = Path(clip).stem
        try:
            label = emotion_id(fields[i_emo])
        except ValueError:
            raise DataFormatError(
                path, f"row {row}: unknown emotion {fields[i_emo].strip()!r} (expected {_EXPECTED_EMOTIONS})"
            ) from None
        if clip in labels:
            raise DataFormatError(path, f"row {row}: clip {clip!r} listed twice")
        labels[clip] = label
    return labels


def write_test_labels(path: str | Path, labels: Mapping[str, int]) -> Path:
    """Write ``test_labels.csv`` (``clip,emotion`` with emotion names), sorted by clip id, atomically.

    ``path`` is the file, or the AFEW root (then ``root/test_labels.csv``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / TEST_LABELS_FILENAME
    lines = ["clip,emotion"]
    for clip_id in sorted(labels):
        label = int(labels[clip_id])
        if not 0 <= label < len(EMOTIONS):
            raise ValueError(f"label of clip {clip_id!r} must be 0..{len(EMOTIONS) - 1}, got {label}")
        if "," in clip_id or "\n" in clip_id:
            raise ValueError(f"clip id {clip_id!r} must not contain commas or newlines")
        lines.append(f"{clip_id},{EMOTIONS[label]}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------- clip loading


def load_clip(record: ClipRecord, gray: bool = False, sr: int = AUDIO_SR, *, audio: bool = True) -> Clip:
    """Decode one clip: frames, audio (resampled to ``sr``; None without an audio stream) and keypoints.

    Args:
        record: from :func:`scan_afew`.
        gray: frames as ``(T, H, W)`` luminance instead of ``(T, H, W, 3)`` RGB.
        sr: audio sample rate.
        audio: set False to skip decoding the audio (``Clip.audio`` is then None).

    Raises:
        DataFormatError: unreadable video or audio, or an unreadable keypoint sidecar. A missing
            audio stream is not an error (``audio`` is None); neither is a keypoint count that
            differs from the frame count (see :attr:`Clip.keypoints_match`), nor a truncated clip
            (what decoded is returned, :attr:`Clip.problems` says what is missing).
    """
    video = read_video(record.path, gray=gray)
    problems = [] if video.problem is None else [("truncated", f"{record.path}: {video.problem}")]
    samples = None
    if audio:
        try:
            samples = read_audio(record.path, sr=sr)
        except NoAudioError:
            samples = None
        if samples is not None and audio_short(len(samples) / sr, video.header_duration_s):
            problems.append(("audio_short", f"{record.path}: {len(samples) / sr:.2f} s of audio for "
                                            f"{video.header_duration_s:.2f} s of video"))
    kps = read_keypoints(record.keypoints_path) if record.keypoints_path is not None else None
    return Clip(record=record, frames=video.frames, audio=samples, keypoints=kps, fps=video.fps, problems=problems)


def example_clips(records: Iterable[ClipRecord], split: str = "Train") -> tuple[list[Clip], list[str]]:
    """One clip per class of ``split`` for a chapter's figures: the first of each class (in ``records`` order)
    that decodes in full. Returns (the clips, in class order; a message for every clip passed over because it
    is unreadable or truncated). A class without such a clip is left out."""
    chosen: dict[int, Clip] = {}
    passed_over: list[str] = []
    for r in records:
        if r.split != split or r.label < 0 or r.label in chosen:
            continue
        try:
            clip = load_clip(r)
        except DataFormatError as e:
            passed_over.append(f"{r.clip_id}: {e}")
            continue
        if any(kind == "truncated" for kind, _ in clip.problems):
            passed_over.append(f"{r.clip_id}: " + "; ".join(m for k, m in clip.problems if k == "truncated"))
            continue
        chosen[r.label] = clip
    return [chosen[c] for c in sorted(chosen)], passed_over


#: Counters of a :class:`DecodeReport`, per split.
REPORT_FIELDS: tuple[str, ...] = (
    "total",
    "ok",
    "readable",
    "unreadable",
    "truncated",
    "no_audio",
    "audio_short",
    "keypoints_missing",
    "keypoints_mismatch",
)


@dataclass(frozen=True)
class ClipProblem:
    """One problem found while decoding: ``kind`` is a :data:`REPORT_FIELDS` problem name."""

    split: str
    clip_id: str
    kind: str
    message: str


@dataclass
class DecodeReport:
    """What happened when clips were decoded (:func:`decode_report`) or probed (:func:`probe_split`).

    Counters per split (see :data:`REPORT_FIELDS`): ``total`` clips seen; ``readable`` (frames
    decoded, or container probed) and ``unreadable`` (``readable + unreadable == total``); among
    readable clips ``truncated`` (fewer frames than the header states, or a decode error part-way),
    ``no_audio`` (no audio stream), ``audio_short`` (the audio ends well before the video),
    ``keypoints_missing`` (no sidecar; informational, real AFEW ships none) and
    ``keypoints_mismatch`` (sidecar rows != frames); ``ok`` = readable, not truncated, with audio
    that is not short, and without a keypoint mismatch. ``problems`` lists each unreadable,
    truncated, no-audio, short-audio and mismatching clip with its message; ``infos`` holds
    ``(record, ClipInfo)`` for every readable clip of a probe (empty for a decode).
    """

    counts_by_split: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[ClipProblem] = field(default_factory=list)
    infos: list[tuple[ClipRecord, ClipInfo]] = field(default_factory=list)

    def _bump(self, split: str, name: str) -> None:
        c = self.counts_by_split.setdefault(split, dict.fromkeys(REPORT_FIELDS, 0))
        c[name] += 1

    def add_readable(
        self,
        record: ClipRecord,
        has_audio: bool | None,
        n_frames: int,
        n_keypoints: int | None,
        problems: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Count a readable clip; ``has_audio=None`` means audio was not checked; ``problems``:
        ``(status, message)`` pairs, status ``truncated`` or ``audio_short``."""
        r = record
        self._bump(r.split, "total")
        self._bump(r.split, "readable")
        fine = True
        for kind, message in problems:
            self._bump(r.split, kind)
            self.problems.append(ClipProblem(r.split, r.clip_id, kind, message))
            fine = False
        if has_audio is False:
            self._bump(r.split, "no_audio")
            self.problems.append(ClipProblem(r.split, r.clip_id, "no_audio", f"{r.path}: no audio stream"))
            fine = False
        if n_keypoints is None:
            self._bump(r.split, "keypoints_missing")
        elif n_keypoints != n_frames:
            self._bump(r.split, "keypoints_mismatch")
            message = f"{r.keypoints_path}: {n_keypoints} keypoint rows for {n_frames} frames"
            self.problems.append(ClipProblem(r.split, r.clip_id, "keypoints_mismatch", message))
            fine = False
        if fine:
            self._bump(r.split, "ok")

    def add_clip(self, clip: Clip, want_audio: bool = True) -> None:
        """Count a decoded clip and its audio / keypoint problems."""
        n_kps = None if clip.keypoints is None else len(clip.keypoints)
        self.add_readable(clip.record, (clip.audio is not None) if want_audio else None, clip.n_frames, n_kps,
                          clip.problems)

    def add_unreadable(self, record: ClipRecord, error: BaseException) -> None:
        """Count a clip that could not be decoded, keeping the error message."""
        self._bump(record.split, "total")
        self._bump(record.split, "unreadable")
        if isinstance(error, DataFormatError):
            message = str(error)
        else:
            message = f"{record.path}: {type(error).__name__}: {error}"
        self.problems.append(ClipProblem(record.split, record.clip_id, "unreadable", message))

    def unreadable(self, split: str | None = None) -> list[ClipProblem]:
        """The unreadable clips (of one split, or all)."""
        return [p for p in self.problems if p.kind == "unreadable" and (split is None or p.split == split)]

    def counts(self) -> dict[str, dict[str, int]]:
        """JSON-ready ``{split: {counter: n}}`` (a copy)."""
        return {s: dict(c) for s, c in self.counts_by_split.items()}

    def table(self):
        """``pandas.DataFrame``: one row per split (in the order seen), one column per counter."""
        import pandas as pd

        return pd.DataFrame(
            [[c[f] for f in REPORT_FIELDS] for c in self.counts_by_split.values()],
            index=pd.Index(list(self.counts_by_split), name="split"),
            columns=list(REPORT_FIELDS),
            dtype=np.int64,
        )

    def to_dict(self) -> dict:
        """JSON-ready ``{"counts": {split: {counter: n}}, "problems": [{split, clip_id, kind, message}]}``."""
        return {"counts": self.counts(), "problems": [asdict(p) for p in self.problems]}

    def __str__(self) -> str:
        lines = [
            f"{s}: " + ", ".join(f"{f}={c[f]}" for f in REPORT_FIELDS) for s, c in self.counts_by_split.items()
        ] or ["no clips"]
        lines += [f"  {p.kind}: {p.message}" for p in self.problems]
        return "\n".join(lines)


def iter_clips(
    records: Iterable[ClipRecord],
    gray: bool = False,
    sr: int = AUDIO_SR,
    *,
    audio: bool = True,
    report: DecodeReport | None = None,
    progress: bool = True,
    desc: str = "decoding clips",
) -> Iterator[Clip]:
    """Decode clips one at a time, yielding each readable one (see :func:`load_clip`).

    A clip that fails to decode is not yielded; it is counted, with its error message, in
    ``report`` (pass a :class:`DecodeReport` to get it back), or, without a report, announced with
    a ``UserWarning``. Clips without audio or with keypoint problems are yielded and counted. The
    run never stops on a bad clip (``KeyboardInterrupt`` still stops it).
    """
    from tqdm import tqdm

    records = list(records)
    for record in tqdm(records, desc=desc, unit="clip", disable=not progress):
        try:
            clip = load_clip(record, gray=gray, sr=sr, audio=audio)
        except Exception as e:  # noqa: BLE001 - any failure of one clip is reported, never fatal
            if report is not None:
                report.add_unreadable(record, e)
            else:
                warnings.warn(f"skipping unreadable clip: {e}", UserWarning, stacklevel=2)
            continue
        if report is not None:
            report.add_clip(clip, want_audio=audio)
        yield clip


def decode_report(
    records: Iterable[ClipRecord],
    gray: bool = False,
    sr: int = AUDIO_SR,
    *,
    audio: bool = True,
    progress: bool = True,
) -> DecodeReport:
    """Decode every clip once (discarding the data) and return the :class:`DecodeReport`."""
    report = DecodeReport()
    for _ in iter_clips(records, gray=gray, sr=sr, audio=audio, report=report, progress=progress):
        pass
    return report


def probe_split(
    records: Iterable[ClipRecord], *, progress: bool = True, desc: str = "probing clips"
) -> DecodeReport:
    """Probe every clip's container (frame count, rate, size, audio) without decoding frames.

    Cheap enough for a whole dataset. Each sidecar is read and its row count compared with the
    container's frame count. Returns a :class:`DecodeReport` whose ``infos`` lists
    ``(record, ClipInfo)`` for every readable clip; unreadable clips (or unreadable sidecars) are
    counted with their message, never raised.
    """
    from tqdm import tqdm

    report = DecodeReport()
    for record in tqdm(list(records), desc=desc, unit="clip", disable=not progress):
        try:
            info = probe_clip(record.path)
            n_kps = len(read_keypoints(record.keypoints_path)) if record.keypoints_path is not None else None
        except Exception as e:  # noqa: BLE001 - reported, never fatal
            report.add_unreadable(record, e)
            continue
        report.infos.append((record, info))
        report.add_readable(record, info.has_audio, info.n_frames, n_kps,
                            [(kind, f"{record.path}: {message}") for kind, message in info.problems()])
    return report


def afew_summary(records: Iterable[ClipRecord]):
    """Clip counts as a ``pandas.DataFrame``: one row per split (in order of appearance), one column
    per class (``constants.EMOTIONS``), an ``unknown`` column when some clips are unlabelled, and
    ``total``."""
    import pandas as pd

    records = list(records)
    splits = list(dict.fromkeys(r.split for r in records))
    columns = list(EMOTIONS) + (["unknown"] if any(r.label == UNKNOWN_LABEL for r in records) else [])
    counts = Counter((r.split, EMOTIONS[r.label] if r.label >= 0 else "unknown") for r in records)
    table = pd.DataFrame(
        [[counts.get((s, c), 0) for c in columns] for s in splits],
        index=pd.Index(splits, name="split"),
        columns=columns,
        dtype=np.int64,
    )
    table["total"] = table.sum(axis=1)
    return table
