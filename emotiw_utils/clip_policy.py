"""The clip policy: every clip of the dataset keeps its row in every stage, with a status and a stated fallback.

One bad clip never stops a run and never disappears. Each clip of each split gets, per stage, one status of
:data:`STATUSES` (what the stage could do with it); a status may disable a modality (:attr:`Status.disables`),
and a clip a modality cannot use gets that modality's fallback (:data:`FALLBACKS`): the class prior of the
training splits for the face models (03, 04) and the audio model (05), the uniform bag-of-words histogram for
the activity model (06, a clip without a single 16 x 16 x 10 block). So every ``clip_probs_{split}.npz`` of
every stage holds the same clips, in dataset order (:func:`emotiw_utils.datasets.afew.scan_afew`), and the
fusion stages can put them side by side. Only a split without a single usable clip is refused, by name
(:func:`require_usable`).

Each chapter shows the counts per split and status (:func:`status_table`) and says which clips its accuracies
are computed on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotiw_utils.constants import AFEW_SPLITS, NUM_CLASSES, UNKNOWN_LABEL

__all__ = ["ALIGNMENT_STATUS_KEY", "FALLBACKS", "MODALITIES", "STATUSES", "STATUS_COUNTS_KEY", "SplitClips", "Status",
           "class_prior", "dataset_clips", "face_clips", "fill_missing", "from_records", "probe_statuses", "refill",
           "require_usable", "status_counts", "status_table", "training_prior", "worst"]

#: The modalities a clip feeds: its faces (stages 01-04), its audio track (05), its motion (06).
MODALITIES: tuple[str, ...] = ("faces", "audio", "activity")


@dataclass(frozen=True)
class Status:
    """One clip status: its name, what it means and the modalities it leaves without input."""

    name: str
    meaning: str
    disables: tuple[str, ...] = ()


#: Every status a clip can have, mildest first; a clip with several problems shows the worst (:func:`worst`).
STATUSES: dict[str, Status] = {s.name: s for s in (
    Status("ok", "decoded in full, every modality usable"),
    Status("audio_long", "the audio track is longer than the audio stage's max_audio_seconds: its features are those "
                         "of the central max_audio_seconds (openSMILE's memory grows with the track), used and "
                         "flagged"),
    Status("no_face", "no frame has a face: cropped at the Train frames' mean face position, used and flagged"),
    Status("silent", "the audio track is silent (RMS under about -80 dBFS) or holds non-finite samples", ("audio",)),
    Status("no_audio", "no audio stream", ("audio",)),
    Status("audio_short", "the audio track ends well before the video, or lasts under 0.1 s (too short for "
                          "openSMILE's analysis frames)", ("audio",)),
    Status("audio_failed", "openSMILE gives no finite features for the audio track", ("audio",)),
    Status("too_short", "fewer frames than one 16 x 16 x 10 activity block", ("activity",)),
    Status("truncated", "fewer frames than the container header states, or a decode error part-way: the "
                        "decoded frames are used"),
    Status("unreadable", "the file cannot be opened or no frame decodes", MODALITIES),
)}

#: What a modality gives a clip it cannot use.
FALLBACKS: dict[str, str] = {
    "faces": "the class prior of the training splits (clip_probs); zeros as fusion features",
    "audio": "the class prior of the training splits (clip_probs); zeros (the whitened mean) as fusion features",
    "activity": "the uniform bag-of-words histogram (a clip without a block), classified by the SVM",
}


def worst(statuses: Sequence[str]) -> str:
    """The most severe of ``statuses`` (``ok`` when empty)."""
    order = list(STATUSES)
    return max(statuses, key=order.index) if statuses else "ok"


def class_prior(labels: Any, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """``(n_classes,)`` class frequencies of the labelled (``!= -1``) entries of ``labels``."""
    y = np.asarray(labels).astype(np.int64)
    y = y[y != UNKNOWN_LABEL]
    if y.size == 0:
        raise ValueError("no labelled clip to take a class prior from")
    return np.bincount(y, minlength=n_classes).astype(np.float64) / y.size


@dataclass
class SplitClips:
    """Every clip of one split, in dataset order, with one stage's status per clip.

    Attributes:
        split: the split's name.
        clip_ids: ``(N,)`` str.
        labels: ``(N,)`` int64 (``-1``: unlabelled).
        status: ``(N,)`` str, names of :data:`STATUSES`.
    """

    split: str
    clip_ids: np.ndarray
    labels: np.ndarray
    status: np.ndarray

    def __len__(self) -> int:
        return len(self.clip_ids)

    def usable(self, modality: str) -> np.ndarray:
        """``(N,)`` bool: the clips whose status leaves ``modality`` an input."""
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r} (expected one of {', '.join(MODALITIES)})")
        return np.array([modality not in STATUSES[s].disables for s in self.status], dtype=bool)

    def with_status(self, status: Mapping[str, str]) -> SplitClips:
        """A copy whose clips take the statuses of ``status`` (clip id -> status) where it names them."""
        return SplitClips(self.split, self.clip_ids, self.labels,
                          np.array([status.get(c, s) for c, s in zip(self.clip_ids, self.status)], dtype=object)
                          .astype(str))


def dataset_clips(afew_dir: str | Path, splits: Sequence[str] = AFEW_SPLITS,
                  status: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, SplitClips]:
    """Every clip of every split of the AFEW tree (:func:`~emotiw_utils.datasets.afew.scan_afew` order), each
    with its status in ``status`` (split -> clip id -> status), ``ok`` where it names none."""
    from emotiw_utils.datasets.afew import scan_afew

    return from_records(scan_afew(afew_dir, splits), splits, status)


def from_records(records: Sequence[Any], splits: Sequence[str] = AFEW_SPLITS,
                 status: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, SplitClips]:
    """:func:`dataset_clips` of records already scanned."""
    status = status or {}
    out = {}
    for s in splits:
        recs = [r for r in records if r.split == s]
        given = status.get(s, {})
        out[s] = SplitClips(s, np.array([r.clip_id for r in recs], dtype=str),
                            np.array([r.label for r in recs], dtype=np.int64),
                            np.array([given.get(r.clip_id, "ok") for r in recs], dtype=object).astype(str))
    return out


#: Where stage 01 records every clip's status (its metrics file): split -> clip id -> status.
ALIGNMENT_STATUS_KEY = "afew_clip_status"
#: Where a clip-level stage records its clips per split and status (its metrics file): split -> status -> n
#: (:func:`status_counts`); the run's summary counts the clips that are not ``ok`` from it
#: (:func:`emotiw_utils.run_summary.clip_status_counts`).
STATUS_COUNTS_KEY = "clip_status_counts"


def status_counts(clips: Mapping[str, SplitClips]) -> dict[str, dict[str, int]]:
    """JSON-ready split -> status -> number of clips (the statuses that occur, in :data:`STATUSES` order): what a
    stage writes under :data:`STATUS_COUNTS_KEY`."""
    order = list(STATUSES)
    out = {}
    for split, c in clips.items():
        names, n = np.unique(np.asarray(c.status).astype(str), return_counts=True)
        found = dict(zip(names.tolist(), n.tolist()))
        out[split] = {s: int(found[s]) for s in sorted(found, key=lambda s: (s not in order, order.index(s)
                                                                               if s in order else 0, s))}
    return out


def face_clips(afew_dir: str | Path, run_dir: str | Path, present: Mapping[str, Any],
               splits: Sequence[str] = AFEW_SPLITS) -> dict[str, SplitClips]:
    """Every clip of the dataset as the face models (03, 04) see it: the status stage 01 (alignment) recorded
    for it in ``run_dir`` (its metrics), and ``unreadable`` for a clip that is not among the clips with aligned
    faces, ``present`` (split -> clip ids, e.g. the frame features' ``clip_ids``), whatever was recorded."""
    from emotiw_utils import artifacts, stages

    try:
        recorded = artifacts.read_metrics(stages.ALIGNMENT.dir(run_dir)).get(ALIGNMENT_STATUS_KEY) or {}
    except FileNotFoundError:
        recorded = {}
    out = {}
    for s, c in dataset_clips(afew_dir, splits).items():
        have = {str(i) for i in np.asarray(present.get(s, [])).reshape(-1)}
        rec = recorded.get(s, {})
        status = []
        for cid in c.clip_ids:
            r = rec.get(cid, "ok")
            blind = r in STATUSES and "faces" in STATUSES[r].disables
            status.append(("ok" if blind else r) if cid in have else (r if blind else "unreadable"))
        out[s] = SplitClips(s, c.clip_ids, c.labels, np.array(status, dtype=str))
    return out


def probe_statuses(report) -> dict[str, dict[str, str]]:
    """Split -> clip id -> status of a :class:`~emotiw_utils.datasets.afew.DecodeReport` (a probe or a decode):
    the worst of its problems (``unreadable``, ``truncated``, ``audio_short``, ``no_audio``; a keypoint
    mismatch is not a clip status), ``ok`` for the clips it names no problem of."""
    found: dict[str, dict[str, list[str]]] = {}
    for p in report.problems:
        kind = p.kind if p.kind in STATUSES else None
        if kind is not None:
            found.setdefault(p.split, {}).setdefault(p.clip_id, []).append(kind)
    out: dict[str, dict[str, str]] = {}
    for split in report.counts_by_split:
        out[split] = {c: worst(kinds) for c, kinds in found.get(split, {}).items()}
    return out


def fill_missing(clips: SplitClips, clip_ids: Any, probs: Any, prior: Any,
                 features: Mapping[str, Any] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A stage's outputs for the clips it used, put in the rows of every clip of the split.

    Args:
        clips: the split's clips (:func:`dataset_clips`).
        clip_ids: ``(n,)`` the clips the stage has outputs for (any order, each one of ``clips``).
        probs: ``(n, 7)`` their class probabilities.
        prior: ``(7,)`` what every other clip gets (:func:`class_prior` of the training splits).
        features: name -> ``(n, d)`` fusion features; every other clip gets zeros.

    Returns:
        ``(probs (N, 7), {name: (N, d)})`` in the order of ``clips``.

    Raises:
        ValueError: a clip id that is not one of the split's clips, or mismatched lengths.
    """
    ids = [str(c) for c in np.asarray(clip_ids).reshape(-1)]
    probs = np.asarray(probs, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if probs.shape != (len(ids), NUM_CLASSES):
        raise ValueError(f"{clips.split}: probs must be ({len(ids)}, {NUM_CLASSES}), got {probs.shape}")
    if prior.shape != (NUM_CLASSES,) or abs(prior.sum() - 1) > 1e-6:
        raise ValueError(f"prior must be ({NUM_CLASSES},) and sum to 1")
    row = {c: i for i, c in enumerate(clips.clip_ids)}
    unknown = [c for c in ids if c not in row]
    if unknown:
        raise ValueError(f"{clips.split}: clips {unknown[:5]} are not clips of the split (were the stages run on "
                         f"the same data?)")
    where = np.array([row[c] for c in ids], dtype=np.int64)
    full = np.tile(prior, (len(clips), 1))
    full[where] = probs
    feats = {}
    for name, f in (features or {}).items():
        f = np.asarray(f)
        if f.ndim != 2 or len(f) != len(ids):
            raise ValueError(f"{clips.split}: feature {name!r} must have {len(ids)} rows, got shape {f.shape}")
        out = np.zeros((len(clips), f.shape[1]), dtype=f.dtype)
        out[where] = f
        feats[name] = out
    return full, feats


def refill(run_dir: str | Path, stage, split: str, clip_ids: Any, probs: Any) -> np.ndarray:
    """The policy's half of a stage's ``reapply``: probabilities recomputed for the clips the stage used, put in
    the rows of its ``clip_probs_{split}.npz``; every other clip gets the class prior of the stage's training
    splits (their labels in its clip-probabilities files, every clip of the split counted), as the stage gave."""
    from emotiw_utils import artifacts, records

    all_ids = artifacts.load_clip_probs(stage.require(run_dir, "clip_probs", split=split))[0]
    train = records.read(run_dir, stage).partition.train_splits
    labels = np.concatenate([artifacts.load_clip_probs(stage.require(run_dir, "clip_probs", split=s))[2]
                             for s in train])
    clips = SplitClips(split, all_ids, np.full(len(all_ids), UNKNOWN_LABEL), np.full(len(all_ids), "ok"))
    return fill_missing(clips, clip_ids, probs, class_prior(labels))[0]


def training_prior(clips: Mapping[str, SplitClips], train_splits: Sequence[str]) -> np.ndarray:
    """The fallback of the face and audio models: :func:`class_prior` of every clip of the training splits
    (unusable ones included: their labels come from the folders)."""
    return class_prior(np.concatenate([clips[s].labels for s in train_splits]))


def require_usable(clips: SplitClips, modality: str, stage: str) -> None:
    """Refuse (ValueError naming the split and the stage) a split of clips none of which ``modality`` can use."""
    if len(clips) and not clips.usable(modality).any():
        raise ValueError(f"{stage}: split {clips.split} has no clip usable for {modality} (its {len(clips)} clips: "
                         f"{', '.join(f'{n} {s}' for s, n in zip(*np.unique(clips.status, return_counts=True)))})")


def status_table(clips: Mapping[str, SplitClips], modality: str | None = None):
    """Clips per split (rows) and status (columns, :data:`STATUSES` order, those that occur; ``ok`` always),
    with ``total`` and, given a ``modality``, how many clips it uses and how many get its fallback
    (pandas DataFrame)."""
    import pandas as pd

    seen = {s for c in clips.values() for s in c.status}
    cols = [s for s in STATUSES if s == "ok" or s in seen]
    rows = {}
    for split, c in clips.items():
        row = {s: int((c.status == s).sum()) for s in cols}
        row["total"] = len(c)
        if modality is not None:
            used = c.usable(modality)
            row[f"used ({modality})"] = int(used.sum())
            row["fallback"] = int((~used).sum())
        rows[split] = row
    t = pd.DataFrame.from_dict(rows, orient="index")
    t.index.name = "split"
    return t
