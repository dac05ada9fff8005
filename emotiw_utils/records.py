"""Typed metrics records: what one stage decides and a later stage (or ``emotiw predict``) reads.

Each classifier stage writes its record into its ``metrics.json`` (:meth:`Record.write`), beside whatever
else its chapter reports; later stages read it back with :func:`read` instead of digging in dicts shaped
by a notebook. ``metrics.json`` stays plain JSON, readable by people: a record's fields are top-level keys.

Which record a stage writes is declared in :mod:`emotiw_utils.stages` (``Stage.record``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import artifacts, stages
from .protocol import Partition

__all__ = ["Accuracies", "AudioRecord", "FusionRecord", "IrnnRecord", "KavgRecord", "PartitionRecord", "Record",
           "SearchRecord", "SubmissionsRecord", "SvmRecord", "read"]


@dataclass(frozen=True)
class PartitionRecord:
    """The partition a stage ran with (:class:`emotiw_utils.protocol.Partition` as JSON)."""

    train_splits: tuple[str, ...]
    select_split: str | None
    fixed: bool = False

    @classmethod
    def of(cls, partition: Partition) -> PartitionRecord:
        return cls(tuple(partition.train), partition.select, bool(partition.fixed))

    @property
    def partition(self) -> Partition:
        return Partition(tuple(self.train_splits), self.select_split, bool(self.fixed))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartitionRecord:
        return cls(tuple(d["train_splits"]), d.get("select_split"), bool(d.get("fixed", False)))


@dataclass(frozen=True)
class Accuracies:
    """One row of Table 1: accuracy on the training split(s) and on the held-out select split, one value per
    seed (``val`` empty when nothing was held out)."""

    train: tuple[float, ...] = ()
    val: tuple[float, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Accuracies:
        return cls(tuple(float(v) for v in d.get("train", ())), tuple(float(v) for v in d.get("val", ())))

    @classmethod
    def of_seeds(cls, accuracies: Iterable[Mapping[str, float]], held_out: str | None) -> Accuracies:
        """The row from each seed's split accuracies (:func:`emotiw_utils.metrics.split_accuracies`): their
        ``"train"`` and their ``held_out`` split (``val`` empty when nothing is held out)."""
        accs = list(accuracies)
        return cls(tuple(float(a["train"]) for a in accs), tuple(float(a[held_out]) for a in accs) if held_out else ())

    def to_dict(self) -> dict[str, list[float]]:
        """``{"train": [...], "val": [...]}``, as :func:`emotiw_utils.paper.table1_frame` takes a row."""
        return {"train": list(self.train), "val": list(self.val)}


@dataclass(frozen=True)
class Record:
    """Base of the records: ``partition`` and the stage's Table 1 rows (row name -> :class:`Accuracies`)."""

    partition: PartitionRecord
    table1: Mapping[str, Accuracies] = field(default_factory=dict)

    #: Fields holding nested records: name -> converter from JSON.
    _nested: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return artifacts.to_jsonable(dataclasses.asdict(self))

    def write(self, stage_dir: str | Path, **extra: Any) -> Path:
        """Write ``metrics.json``: this record's fields, then ``extra`` (what the chapter reports besides)."""
        out = self.to_dict()
        clash = sorted(set(out) & set(extra))
        if clash:
            raise ValueError(f"{type(self).__name__}: extra metrics {clash} clash with the record's own fields")
        return artifacts.write_metrics(stage_dir, {**out, **extra})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Record:
        # Strict: Record.write writes every field, so a missing one means the file was written by an older
        # notebook; silently taking a default (C = 1, say) would retrain with a value nobody chose.
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d]
        if missing:
            raise ValueError(f"{cls.__name__}: {stages.METRICS} lacks {missing}; it was written before this "
                             "record existed: run the stage again")
        return cls(**{f.name: _convert(cls, f.name, d[f.name]) for f in dataclasses.fields(cls)})


def _convert(cls: type, name: str, value: Any) -> Any:
    if name == "partition":
        return PartitionRecord.from_dict(value)
    if name == "table1":
        return {row: Accuracies.from_dict(v) for row, v in value.items()}
    conv = cls._nested.get(name)
    return conv(value) if conv is not None else value


@dataclass(frozen=True)
class IrnnRecord(Record):
    """03_irnn: the CNN layer the IRNN reads and the epoch kept (the retraining protocols reuse it)."""

    feature_layer: str = "conv2"
    best_epoch: int = 0


@dataclass(frozen=True)
class SvmRecord(Record):
    """04_kavg_svm, 06_activity_sae: the SVM's chosen (or fixed) C and gamma."""

    C: float = 1.0
    gamma: float | str = "scale"


@dataclass(frozen=True)
class KavgRecord(SvmRecord):
    """04_kavg_svm: the SVM's C and gamma, and the number of bins ``k`` of the pooling that made its inputs."""

    k: int = 15


@dataclass(frozen=True)
class AudioRecord(Record):
    """05_audio: PCA size, C and gamma of the audio model."""

    n_components: int = 0
    C: float = 1.0
    gamma: float | str = "scale"


@dataclass(frozen=True)
class FusionRecord(Record):
    """07_fusion: the epoch kept in each training regime (``{"original": N, "stable": M}``)."""

    best_epochs: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchRecord(Record):
    """08_random_search: the fusion network's regime fed to the search, the modalities combined and their
    ``(n_modalities, 7)`` per-class weights."""

    fusion_regime: str = "stable"
    modalities: tuple[str, ...] = ()
    weights: tuple[tuple[float, ...], ...] = ()

    _nested: ClassVar[dict[str, Any]] = {"modalities": tuple,
                                         "weights": lambda w: tuple(tuple(float(v) for v in row) for row in w)}


@dataclass(frozen=True)
class SubmissionsRecord(Record):
    """09_submissions: Table 2, submission number (as a string) -> ``{train, val, test, test_uar}``."""

    table2: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)


_RECORDS: dict[str, type[Record]] = {c.__name__: c for c in (IrnnRecord, SvmRecord, KavgRecord, AudioRecord,
                                                             FusionRecord, SearchRecord, SubmissionsRecord)}


def record_class(stage: stages.Stage | str) -> type[Record]:
    """The record class a stage writes (declared in the registry)."""
    st = stage if isinstance(stage, stages.Stage) else stages.get(stage)
    if st.record is None:
        raise ValueError(f"stage {st.name} writes no metrics record")
    return _RECORDS[st.record]


def read(run_dir: str | Path, stage: stages.Stage | str) -> Record:
    """The record of ``stage`` in ``run_dir`` (FileNotFoundError naming the stage to run when missing)."""
    st = stage if isinstance(stage, stages.Stage) else stages.get(stage)
    cls = record_class(st)
    try:
        d = artifacts.read_metrics(st.dir(run_dir))
    except FileNotFoundError:
        raise FileNotFoundError(f"{st.dir(run_dir)}: no {stages.METRICS}; run stage {st.name} first "
                                f"(emotiw run --stages {st.name})") from None
    return cls.from_dict(d)
