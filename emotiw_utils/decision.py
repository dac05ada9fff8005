"""Decision-level fusion (paper 5.2) of a run: its inputs, and the fused probabilities from the search's weights.

Each modality of the random search is one earlier stage's per-clip probabilities; the stage declares the
modality in the registry (:attr:`emotiw_utils.stages.Stage.modality`), and the fusion network's file depends on
its training regime (chapter 07 writes one per regime). :func:`load_decision_inputs` reads them for one or more
splits, checks that every file lists the same clips in the same order with the same labels, and reports which
splits trained each model (from the stage's record), which :func:`emotiw_utils.random_search.random_search`
needs to refuse a search on them.

Chapter 08 keeps its weights in its record (:class:`emotiw_utils.records.SearchRecord`). :func:`fuse_probs`
combines given per-modality probabilities with weights (one clip or many, e.g. a brand-new video's), and
:func:`reapply` reproduces chapter 08's ``clip_probs`` of a split from the record and the inputs' files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts, records, stages
from .random_search import fuse

__all__ = ["MODALITIES", "MODALITY_LABELS", "DecisionInputs", "Modality", "fuse_probs", "fuse_with_record",
           "load_decision_inputs", "modality_label", "reapply"]


@dataclass(frozen=True)
class Modality:
    """One input of decision fusion: ``stage``'s artifact ``key`` holds its per-clip probabilities. An artifact
    with a ``regime`` field (the fusion network's ``regime_probs``) has one file per training regime."""

    stage: stages.Stage
    key: str

    @property
    def by_regime(self) -> bool:
        return "regime" in self.stage.artifact(self.key).fields

    def path(self, run_dir: str | Path, split: str, regime: str) -> Path:
        """The file of ``split`` (and ``regime`` where the artifact has one); FileNotFoundError naming the stage
        to run when it is missing."""
        fields: dict[str, Any] = {"split": split, **({"regime": regime} if self.by_regime else {})}
        return self.stage.require(run_dir, self.key, **fields)


def _modality(stage: stages.Stage) -> Modality:
    # A stage with probabilities per training regime (07) offers them to the search, so that the search can
    # take either regime's network; the others offer their clip_probs.
    return Modality(stage, "regime_probs" if "regime_probs" in stage.artifacts else "clip_probs")


#: Modality name -> where its probabilities live, in stage order (from the registry's ``Stage.modality``).
MODALITIES: dict[str, Modality] = {m: _modality(st) for m, st in stages.modality_stages().items()}
#: How the book names them (the paper's Table 1 names, and its "fusion network").
MODALITY_LABELS: dict[str, str] = {"rnn": "RNN", "kavg": "Aggregated CNN", "audio": "Audio", "activity": "Activity",
                                   "fusion": "Fusion network"}


def modality_label(name: str) -> str:
    """The book's name of a modality (its own name for one the paper does not have)."""
    return MODALITY_LABELS.get(name, name)


@dataclass
class DecisionInputs:
    """``probs``: modality -> ``(N, 7)`` of the N clips ``clip_ids`` (the splits concatenated in order),
    ``labels`` ``(N,)``, ``split_of`` ``(N,)`` the split of each clip, ``trained_on``: modality -> its training
    splits."""

    clip_ids: np.ndarray
    labels: np.ndarray
    split_of: np.ndarray
    probs: dict[str, np.ndarray]
    trained_on: dict[str, list[str]]

    def subset(self, split: str) -> DecisionInputs:
        """The clips of one split."""
        keep = self.split_of == split
        return DecisionInputs(self.clip_ids[keep], self.labels[keep], self.split_of[keep],
                              {m: p[keep] for m, p in self.probs.items()}, self.trained_on)


def load_decision_inputs(run_dir: str | Path, splits: str | Sequence[str], modalities: Sequence[str],
                         fusion_regime: str = "stable") -> DecisionInputs:
    """Read the probabilities of ``modalities`` (keys of :data:`MODALITIES`) for ``splits`` from ``run_dir``.

    ValueError for an unknown modality or clip files that disagree on clips or labels; FileNotFoundError
    naming the missing file (and the stage to run).
    """
    splits = [splits] if isinstance(splits, str) else list(splits)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"unknown modalities {unknown}; choose from {list(MODALITIES)}" if unknown
                         else "need at least one modality")
    ids, labels, split_of = None, None, None
    probs: dict[str, np.ndarray] = {}
    trained_on: dict[str, list[str]] = {}
    for m in modalities:
        source = MODALITIES[m]
        parts_ids, parts_p, parts_y, parts_s = [], [], [], []
        for split in splits:
            cid, p, y = artifacts.load_clip_probs(source.path(run_dir, split, fusion_regime))
            parts_ids.append(cid)
            parts_p.append(p)
            parts_y.append(y)
            parts_s.append(np.full(len(cid), split))
        cid, y = np.concatenate(parts_ids), np.concatenate(parts_y)
        if ids is None:
            ids, labels, split_of = cid, y, np.concatenate(parts_s)
        elif not np.array_equal(cid, ids) or not np.array_equal(y, labels):
            raise ValueError(f"{source.stage.dir(run_dir)}: its clips or labels differ from those of "
                             f"{modalities[0]!r}; were the stages run on the same data?")
        probs[m] = np.concatenate(parts_p)
        trained_on[m] = list(records.read(run_dir, source.stage).partition.train_splits)
    return DecisionInputs(ids, labels, split_of, probs, trained_on)


def fuse_probs(probs: Mapping[str, Any], modalities: Sequence[str], weights: Any) -> np.ndarray:
    """Decision fusion of one or more clips: ``probs`` modality -> ``(N, 7)``, ``weights`` ``(M, 7)`` in the
    order of ``modalities`` -> ``(N, 7)`` fused scores rescaled to sum to 1 per clip (chapter 08's
    ``clip_probs``). KeyError naming a modality missing from ``probs``."""
    missing = [m for m in modalities if m not in probs]
    if missing:
        raise KeyError(f"no probabilities for modalities {missing}; the weights combine {list(modalities)}")
    scores = fuse([probs[m] for m in modalities], np.asarray(weights, dtype=np.float64))
    return scores / scores.sum(axis=1, keepdims=True)


def fuse_with_record(probs: Mapping[str, Any], record: records.SearchRecord) -> np.ndarray:
    """:func:`fuse_probs` with the modalities and weights chapter 08 chose (its record)."""
    return fuse_probs(probs, record.modalities, record.weights)


def reapply(run_dir: str | Path, split: str) -> np.ndarray:
    """Chapter 08's ``clip_probs`` of ``split`` ``(N, 7)``, recomputed from its record (modalities, weights, the
    fusion network's regime) and the input stages' probabilities of that split."""
    record = records.read(run_dir, stages.SEARCH)
    inputs = load_decision_inputs(run_dir, split, record.modalities, record.fusion_regime)
    return fuse_with_record(inputs.probs, record)
