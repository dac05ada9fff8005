"""The inputs of decision-level fusion (paper 5.2): every classifier's ``clip_probs``, aligned by clip.

Each modality of the random search is one earlier stage's ``clip_probs_{split}.npz`` (the stage contract of
DESIGN.md); the fusion network's file depends on its training regime (chapter 07 writes one per regime).
:func:`load_decision_inputs` reads them for one or more splits, checks that every file lists the same clips
in the same order with the same labels, and reports which splits trained each model (from the stage's
``metrics.json``), which :func:`emotiw_utils.random_search.random_search` needs to refuse a search on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import artifacts, paths

__all__ = ["DecisionInputs", "MODALITIES", "MODALITY_LABELS", "load_decision_inputs"]

#: Modality -> (stage, variant of its clip_probs file); ``"{regime}"`` is the fusion network's regime.
MODALITIES: dict[str, tuple[str, str | None]] = {
    "rnn": ("03_irnn", None),
    "kavg": ("04_kavg_svm", None),
    "audio": ("05_audio", None),
    "activity": ("06_activity_sae", None),
    "fusion": ("07_fusion", "{regime}"),
}
#: How the book names them (the paper's Table 1 names, and its "fusion network").
MODALITY_LABELS: dict[str, str] = {"rnn": "RNN", "kavg": "Aggregated CNN", "audio": "Audio", "activity": "Activity",
                                   "fusion": "Fusion network"}


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
    """Read the ``clip_probs`` of ``modalities`` (keys of :data:`MODALITIES`) for ``splits`` from ``run_dir``.

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
        stage, variant = MODALITIES[m]
        sdir = artifacts.stage_dir(run_dir, stage)
        variant = variant.format(regime=fusion_regime) if variant else None
        parts_ids, parts_p, parts_y, parts_s = [], [], [], []
        for split in splits:
            f = sdir / paths.clip_probs_name(split, variant)
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing; run stage {stage} first")
            cid, p, y = artifacts.load_clip_probs(f)
            parts_ids.append(cid)
            parts_p.append(p)
            parts_y.append(y)
            parts_s.append(np.full(len(cid), split))
        cid, y = np.concatenate(parts_ids), np.concatenate(parts_y)
        if ids is None:
            ids, labels, split_of = cid, y, np.concatenate(parts_s)
        elif not np.array_equal(cid, ids) or not np.array_equal(y, labels):
            raise ValueError(f"{sdir}: its clips or labels differ from those of {modalities[0]!r}; "
                             "were the stages run on the same data?")
        probs[m] = np.concatenate(parts_p)
        trained_on[m] = list(artifacts.read_metrics(sdir)["partition"]["train_splits"])
    return DecisionInputs(ids, labels, split_of, probs, trained_on)
