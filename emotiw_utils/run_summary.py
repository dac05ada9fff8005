"""What the terminal's summary of a run repeats from the stages' metrics: damaged clips and dataset warnings.

The clip statuses (:mod:`emotiw_utils.clip_policy`) and the dataset's warnings are shown in full in the executed
chapters; ``emotiw run`` ends with a table of the stages (:func:`emotiw_utils.pipeline.format_summary`) that
counts, per stage, the clips that were not ``ok`` (:func:`clip_status_counts`, :func:`describe_not_ok`) and
repeats the dataset's warnings below it (:func:`dataset_warnings`), so neither goes unseen.

Where the stages record them (each stage's ``metrics.json``):

* a clip-level stage: split -> status -> number of clips under :data:`clip_policy.STATUS_COUNTS_KEY`; stage 01
  also keeps every clip's status (:data:`clip_policy.ALIGNMENT_STATUS_KEY`, read when the counts are absent),
  stage 05 its counts under ``audio_status``;
* chapter 00 (``00_datasets``): the AFEW loader's warnings about the dataset's layout under
  :data:`DATASET_WARNINGS_KEY` (:func:`emotiw_utils.datasets.afew.layout_warnings`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from . import artifacts, clip_policy, stages

__all__ = ["AUDIO_STATUS_KEY", "DATASET_WARNINGS_KEY", "clip_status_counts", "dataset_warnings", "describe_not_ok"]

#: Where chapter 00 records the dataset's warnings (its metrics file): a list of one-line messages.
DATASET_WARNINGS_KEY = "dataset_warnings"
#: Where stage 05 records its clips per split and status (split -> status -> n).
AUDIO_STATUS_KEY = "audio_status"


def _metrics(stage_dir: Path) -> dict:
    try:
        m = artifacts.read_metrics(stage_dir)
    except (FileNotFoundError, ValueError, OSError):  # not run, or a half-written file: nothing to report
        return {}
    return m if isinstance(m, dict) else {}


def clip_status_counts(stage_dir: str | Path) -> dict[str, int]:
    """Clips per status (every split together, ``ok`` included, in :data:`clip_policy.STATUSES` order) that the
    stage in ``stage_dir`` recorded in its metrics; ``{}`` for a stage that records none (or has not run)."""
    m = _metrics(Path(stage_dir))
    per_split = m.get(clip_policy.STATUS_COUNTS_KEY) or m.get(AUDIO_STATUS_KEY)
    total: Counter[str] = Counter()
    if isinstance(per_split, Mapping):
        for counts in per_split.values():
            total.update({str(s): int(n) for s, n in (counts or {}).items()})
    else:
        by_clip = m.get(clip_policy.ALIGNMENT_STATUS_KEY)
        if isinstance(by_clip, Mapping):
            for statuses in by_clip.values():
                total.update(str(s) for s in (statuses or {}).values())
    order = list(clip_policy.STATUSES)
    return {s: total[s] for s in sorted(total, key=lambda s: (order.index(s) if s in order else len(order), s))
            if total[s]}


def describe_not_ok(counts: Mapping[str, int]) -> str:
    """``2 (1 truncated, 1 no_face)`` for the clips of ``counts`` that are not ``ok``; ``0`` when every clip is,
    ``""`` when ``counts`` is empty (a stage without clip statuses)."""
    if not counts:
        return ""
    bad = {s: n for s, n in counts.items() if s != "ok" and n}
    if not bad:
        return "0"
    return f"{sum(bad.values())} (" + ", ".join(f"{n} {s}" for s, n in bad.items()) + ")"


def dataset_warnings(run_dir: str | Path) -> list[str]:
    """The dataset's warnings chapter 00 recorded in ``run_dir`` (e.g. a folder beside ``Train|Val|Test`` that is
    not a split); ``[]`` when it recorded none or has not run there."""
    found = _metrics(stages.DATASETS.dir(Path(run_dir))).get(DATASET_WARNINGS_KEY) or []
    return [str(w) for w in found] if isinstance(found, list) else [str(found)]
