"""The partition protocol of the clip-level stages (03-08): which AFEW splits train, which one selects.

The partition protocol is a parameter, not code: ``train_splits``, ``select_split`` (early stopping, grid
search, random search) and fixed hyperparameters taken from a reference run (``fixed_epochs``, ``svm_C``...).
The paper's Table 2 uses three kinds of run (section 6.3): train on Train and select on Val; the swap (train on Val, select on Train); and a retraining on Train+Val that keeps every
hyperparameter of a reference run, so nothing is selected. :func:`check_partition` validates one such
choice and says clearly what is wrong with a bad one; every clip-level notebook calls it first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotiw_utils.constants import AFEW_SPLITS, UNKNOWN_LABEL

__all__ = ["Partition", "check_partition", "require_labels"]


@dataclass(frozen=True)
class Partition:
    """A validated partition: ``train`` (split names, in the given order), ``select`` (a split name or
    ``None``) and ``fixed`` (hyperparameters come from a reference run; ``select`` is only monitored)."""

    train: tuple[str, ...]
    select: str | None
    fixed: bool

    @property
    def label(self) -> str:
        """Human-readable form, e.g. ``"train on Train, select on Val"``."""
        what = f"train on {'+'.join(self.train)}"
        if self.fixed:
            return what + ", hyperparameters fixed by a reference run"
        return what + f", select on {self.select}"

    @property
    def held_out(self) -> str | None:
        """The select split when it trained nothing (its accuracy is a validation figure), else ``None``."""
        return self.select if self.select is not None and self.select not in self.train else None

    def evaluated(self, splits: Iterable[str] = AFEW_SPLITS) -> list[str]:
        """Every split, training splits first, then the select split, then the rest (report order)."""
        order = list(self.train) + ([self.select] if self.select and self.select not in self.train else [])
        return order + [s for s in splits if s not in order]


def check_partition(train_splits: Any, select_split: str | None, *, fixed: bool = False,
                    splits: Iterable[str] = AFEW_SPLITS) -> Partition:
    """Validate ``train_splits`` / ``select_split`` and return a :class:`Partition`.

    * ``train_splits``: a split name or a non-empty list of distinct names from ``splits``;
    * ``select_split``: a name from ``splits`` or ``None``;
    * selecting on a split that also trains the model is an error (its accuracy would reward
      over-fitting: the paper, 6.3, "Searching on the same partition that the models were trained on was
      not an option") unless ``fixed`` is true: then nothing is selected and ``select_split`` is merely
      monitored;
    * without ``fixed`` a ``select_split`` is required (early stopping and grid searches need one).
    """
    known = tuple(splits)
    names = [train_splits] if isinstance(train_splits, str) else list(train_splits or [])
    if not names:
        raise ValueError("train_splits is empty: name at least one AFEW split to train on, e.g. ['Train']")
    bad = [s for s in names if s not in known]
    if bad:
        raise ValueError(f"train_splits contains unknown splits {bad}; known: {list(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"train_splits lists a split twice: {names}")
    if select_split is not None and select_split not in known:
        raise ValueError(f"select_split {select_split!r} is not a split; known: {list(known)} (or None)")
    if not fixed:
        if select_split is None:
            raise ValueError("select_split is None but nothing is fixed: early stopping and grid searches need a "
                             "split to select on, or fixed hyperparameters from a reference run")
        if select_split in names:
            raise ValueError(f"select_split {select_split!r} is also in train_splits {names}: selecting on data the "
                             f"model was trained on rewards over-fitting (paper 6.3); fix the hyperparameters "
                             f"from a reference run to retrain on it")
    return Partition(train=tuple(names), select=select_split, fixed=bool(fixed))


def require_labels(labels_by_split: Mapping[str, Any], splits: Iterable[str], what: str = "training") -> None:
    """Raise ValueError if a clip of ``splits`` has an unknown label (``-1``, e.g. the real AFEW Test)."""
    for s in splits:
        y = np.asarray(labels_by_split[s])
        n_unknown = int((y == UNKNOWN_LABEL).sum())
        if n_unknown:
            raise ValueError(f"split {s!r} has {n_unknown} of {len(y)} clips without a label; it cannot be used for "
                             f"{what} (the real AFEW Test split is unlabelled)")
