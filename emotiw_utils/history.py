"""Per-epoch learning curves shared by the trainers (:mod:`emotiw_utils.cnn`, :mod:`emotiw_utils.irnn`,
:mod:`emotiw_utils.fusion`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class EpochCurves:
    """Mixin for history dataclasses with ``epochs`` (one dict per epoch, key ``epoch`` 1-based) and ``best_epoch``."""

    epochs: list[dict[str, Any]]
    best_epoch: int

    @property
    def best(self) -> dict[str, Any]:
        """The record of ``best_epoch``."""
        return self.epochs[self.best_epoch - 1]

    def metric(self, key: str) -> list[float]:
        """One column of the curves, e.g. ``metric("val_acc")``."""
        return [e[key] for e in self.epochs]

    def to_frame(self):  # -> pandas.DataFrame
        """The curves as a pandas DataFrame indexed by ``epoch``."""
        import pandas as pd

        return pd.DataFrame(self.epochs).set_index("epoch")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form: ``epochs``, ``best_epoch`` and ``config`` (python scalars only)."""
        return {"epochs": [dict(e) for e in self.epochs], "best_epoch": int(self.best_epoch),
                "config": dict(getattr(self, "config", {}))}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """Inverse of :meth:`to_dict` (for dataclasses with ``epochs``, ``best_epoch`` and ``config`` fields)."""
        return cls(epochs=[dict(e) for e in d.get("epochs", [])], best_epoch=int(d.get("best_epoch", 0)),
                   config=dict(d.get("config", {})))


class BestWeights:
    """Early stopping on a selection score: remembers the weights of the best-scoring epoch (ties ->
    earliest) and puts them back at the end. ``enabled=False`` (no selection split, or a fixed number of
    epochs): nothing is kept and the last weights stay. ``on_cpu``: keep the copy in CPU memory (a large
    model trained on a GPU; one keeper per criterion judges several criteria on one training run).

    ``epoch`` and ``state`` are the kept epoch and weights (None before the first improvement)."""

    def __init__(self, enabled: bool = True, *, on_cpu: bool = False) -> None:
        self.enabled = bool(enabled)
        self.on_cpu = bool(on_cpu)
        self.score = float("-inf")
        self.epoch: int | None = None
        self._state: dict | None = None

    @property
    def state(self) -> dict | None:
        """The kept weights (a state dict of copies), or None."""
        return self._state

    def update(self, model, epoch: int, score: float) -> bool:
        """Record ``model``'s weights if ``score`` beats every earlier epoch's (NaN never does); True if it did."""
        if not (self.enabled and score > self.score):
            return False
        self.score, self.epoch = float(score), int(epoch)
        self._state = {k: v.detach().to("cpu", copy=True) if self.on_cpu else v.detach().clone()
                       for k, v in model.state_dict().items()}
        return True

    def finish(self, model, n_epochs: int) -> int:
        """Restore the best weights into ``model``; return the epoch whose weights it now has."""
        if self.enabled and self._state is not None:
            model.load_state_dict(self._state)
            return int(self.epoch)
        return int(n_epochs)


def report_epoch(line: str, progress: bool, log: Callable[[str], None] | None) -> None:
    """Print an epoch's summary ``line`` (``progress``) and/or pass it to ``log``."""
    if progress:
        print(line, flush=True)
    if log is not None:
        log(line)
