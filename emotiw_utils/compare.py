"""Runs side by side: the parameters that differ, then per stage the figures that changed (issue 22).

``emotiw compare`` (and the book's *Variants* page) call :func:`compare_runs` on two or more run folders,
each a run (``runs/demo``) or a variant of one (``runs/demo/variants/lstm``, :mod:`emotiw_utils.variants`)::

    from emotiw_utils import compare
    c = compare.compare_runs([Path("runs/demo"), Path("runs/demo/variants/lstm")], names=["base", "lstm"])
    print(c.format_text())
    c.write("compare_out")     # compare.csv, compare.json and the PNG figures

What is implemented
-------------------
* **Parameters that differ**: per stage, every key of the stage manifests' resolved ``parameters`` whose value
  differs between two of the runs. The locations the runner injects never count (``stage``, ``run_dir``,
  ``executed``), nor do the dataset paths (``afew_dir``, ``fer2013_path``, ``tfd_path``) when they name the
  same file once resolved. A variant's ``overrides`` (its ``variant.json``) are listed beside them.
* **Figures per stage** (:func:`stage_figures`), read from the stage's ``metrics.json`` (its typed record of
  :mod:`emotiw_utils.records` and what the chapter writes besides), its manifest and its ``clip_probs``:
  the accuracies of the record's Table 1 rows, one per seed (train and the held-out select split); Val and
  Test accuracy, per seed where the chapter records seeds (03's ``seeds``, 07's regimes), else of the kept
  seed; UAR (from the metrics, else computed from ``clip_probs``); the epochs kept (per seed where recorded);
  the chosen hyperparameters (the record's other fields: SVM C and gamma, k, the PCA size, the CNN layer, the
  search's regime, modalities and weights); Table 2 of 09; the wall time (the manifest's ``wall_time_s``).
* A figure *changed* when two runs have different values for it. A stage a variant reuses through a link to
  its base shows the base's figures and is marked ``reused``.
* **The seeds' spread**: each changed score of a run is set against the first run: "within the seeds'
  spread" when the difference of the means is at most the larger of the two standard deviations, "beyond
  the seeds' spread" otherwise, "one seed: spread unknown" when either side has a single value.
* **Output**: :meth:`Comparison.to_frame` (pandas, one row per parameter, override and figure per run),
  :meth:`~Comparison.to_csv`, :meth:`~Comparison.to_json`, :meth:`~Comparison.format_text` (the terminal
  table) and the figures: learning curves overlaid (:func:`plot_learning_curves`: 02 and 03 from their
  checkpoint's history, 07 from its metrics), the difference of the confusion matrices
  (:func:`plot_confusion_delta`) and the per-class accuracy deltas (:func:`plot_per_class_delta`) of a
  stage's ``clip_probs``, on Test when it is labelled in every run, else Val.
* :func:`resolve_arguments`: ``emotiw compare``'s arguments (folders, variant names, ``base``) to folders.
* :func:`write_variants_page`: the book's *Variants* page (``book/executed/variants.md`` and its figures),
  written by :func:`emotiw_utils.book_pages.prepare_book`.

Deviations
----------
* Test accuracy is per seed only where a chapter records it per seed (03, 07); elsewhere it is the kept
  seed's, one value, so its spread is unknown.
* The confusion matrices, per-class accuracies and UAR computed here are of ``clip_probs``: the kept seed's
  model only.
* Standard deviations are population ones (:func:`emotiw_utils.paper.mean_std`), as the chapters report them.
* The generated page lives with the other generated pages under ``book/executed/`` (git-ignored), not in
  ``book/``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts, records, stages, variants
from .constants import AFEW_SPLITS, EMOTIONS
from .paper import mean_std

__all__ = [
    "BASE", "BEYOND", "CompareArgumentError", "Comparison", "Figure", "FigureRow", "ONE_SEED", "ParameterRow",
    "RunView", "VARIANTS_PAGE", "WITHIN", "book_run_dir", "compare_runs", "is_run", "learning_curves",
    "plot_confusion_delta", "plot_learning_curves", "plot_per_class_delta", "read_run", "resolve_arguments",
    "stage_figures", "write_variants_page",
]

#: Parameters the runner injects that say where a run is, not how it ran: never a difference.
LOCATION_KEYS: tuple[str, ...] = ("stage", "run_dir", "executed")
#: Dataset paths: a difference only when they name other files once resolved.
DATA_PATH_KEYS: tuple[str, ...] = ("afew_dir", "fer2013_path", "tfd_path")
#: Files :meth:`Comparison.write` writes (besides the figures).
CSV_FILE = "compare.csv"
JSON_FILE = "compare.json"
#: The book's generated page (in the executed-notebooks folder) and the folder of its figures beside it.
VARIANTS_PAGE = "variants.md"
VARIANTS_FIGURES = "variants"
#: The splits whose accuracy and UAR are compared.
COMPARED_SPLITS: tuple[str, ...] = tuple(s for s in AFEW_SPLITS if s != AFEW_SPLITS[0])

WITHIN = "within the seeds' spread"
BEYOND = "beyond the seeds' spread"
ONE_SEED = "one seed: spread unknown"

#: The record fields shown as scores or not at all (the others are the stage's chosen hyperparameters).
_NOT_CHOICES = ("partition", "table1", "best_epoch", "best_epochs", "table2")
#: Stages whose checkpoint holds learning curves: stage name -> artifact key.
_CURVES = {stages.CNN.name: "cnn", stages.IRNN.name: "irnn"}


# ---- figures of one stage -----------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    """One figure of one stage in one run: ``values`` (one per seed; fractions when ``unit`` is ``%``) or
    ``text`` (a non-numeric choice). ``kind``: ``score`` (compared with the seeds' spread), ``choice`` (a
    hyperparameter) or ``time``."""

    values: tuple[float, ...] = ()
    text: str | None = None
    unit: str = ""
    kind: str = "score"

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return mean_std(self.values)[0]

    @property
    def std(self) -> float:
        return mean_std(self.values)[1]

    @property
    def key(self) -> tuple:
        """What two runs must share for the figure to be unchanged."""
        return (tuple(round(v, 12) for v in self.values), self.text)

    def _num(self, v: float) -> str:
        if self.unit == "%":
            return f"{100 * v:.1f}"
        if self.unit == "s":
            return f"{v:.1f}"
        return f"{v:g}" if float(v).is_integer() else f"{v:.3g}" if self.kind == "choice" else f"{v:.1f}"

    def show(self) -> str:
        """The figure as text: ``45.0 ± 1.0`` (mean ± std over seeds, in % for accuracies), ``12.3 s``."""
        if self.text is not None:
            return self.text
        if not self.values:
            return "–"
        m = self._num(self.mean)
        if self.n > 1:
            m = f"{m} ± {self._num(self.std)}"
        return f"{m} s" if self.unit == "s" else m

    def delta(self, ref: Figure) -> float | None:
        """Difference of the means against ``ref`` (None when either is not numeric)."""
        if not self.values or not ref.values:
            return None
        return self.mean - ref.mean

    def show_delta(self, ref: Figure) -> str:
        d = self.delta(ref)
        if d is None:
            return ""
        if self.unit == "%":
            return f"{100 * d:+.1f}"
        return f"{d:+.1f}" + (" s" if self.unit == "s" else "")

    def spread(self, ref: Figure) -> str:
        """Whether the difference against ``ref`` is within the seeds' spread (scores only; "" otherwise)."""
        if self.kind != "score" or self.delta(ref) is None or self.key == ref.key:
            return ""
        if self.n < 2 or ref.n < 2:
            return ONE_SEED
        return WITHIN if abs(self.delta(ref)) <= max(self.std, ref.std) + 1e-12 else BEYOND

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.show(), "kind": self.kind, "unit": self.unit}
        if self.values:
            out.update(values=list(self.values), mean=self.mean, std=self.std, n=self.n)
        return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _score(values: Sequence[Any], unit: str = "%") -> Figure | None:
    vals = tuple(float(v) for v in values if _finite(v))
    return Figure(vals, unit=unit) if vals else None


def _choice(value: Any) -> Figure:
    if _finite(value):
        return Figure((float(value),), kind="choice")
    if isinstance(value, (list, tuple)) and value and all(isinstance(r, (list, tuple)) for r in value):
        text = "; ".join(" ".join(f"{float(v):.2f}" for v in row) for row in value)  # the search's weights
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return Figure(text=text, kind="choice")


def _read(fn, *args) -> Any:
    try:
        return fn(*args)
    except (OSError, ValueError):
        return None


def _per_split(d: Any) -> dict[str, Any] | None:
    """``{split: value}`` when ``d`` is a flat mapping of split names to numbers, else None."""
    if isinstance(d, Mapping) and d and any(k in AFEW_SPLITS for k in d) \
            and all(not isinstance(v, Mapping) for v in d.values()):
        return dict(d)
    return None


def _groups(d: Any, label: str) -> dict[str, dict[str, Any]]:
    """``{model: {split: value}}`` from a flat ``{split: value}`` (one model, ``label``) or a nested mapping."""
    flat = _per_split(d)
    if flat is not None:
        return {label: flat}
    if isinstance(d, Mapping):
        return {str(k): v for k, v in d.items() if _per_split(v) is not None}
    return {}


def _clip_probs_paths(stage: stages.Stage, run_dir: Path) -> dict[str, Path]:
    if "clip_probs" not in stage.artifacts:
        return {}
    out = {s: stage.path(run_dir, "clip_probs", split=s) for s in AFEW_SPLITS}
    return {s: p for s, p in out.items() if p.is_file()}


def stage_figures(run_dir: str | Path, stage: stages.Stage | str) -> dict[str, Figure]:
    """The figures of ``stage`` in ``run_dir`` (a run or a variant folder), by name (see the module docstring).

    Empty when the stage has no folder. A metrics file that no longer matches its record still gives what can
    be read without the record.
    """
    st = stage if isinstance(stage, stages.Stage) else stages.get(stage)
    run_dir = Path(run_dir)
    sdir = st.dir(run_dir)
    if not sdir.is_dir():
        return {}
    out: dict[str, Figure] = {}
    metrics = _read(artifacts.read_metrics, sdir) or {}
    manifest = _read(artifacts.read_manifest, sdir) or {}
    rec = None
    if st.record is not None and metrics:
        try:
            rec = records.record_class(st).from_dict(metrics)
        except (ValueError, KeyError, TypeError):
            rec = None
    held = rec.partition.partition.held_out if rec is not None else None
    table1 = dict(rec.table1) if rec is not None else {}
    label = next(iter(table1)) if len(table1) == 1 else (st.modality or st.name.split("_", 1)[-1])

    for row, acc in table1.items():  # Table 1: one value per seed
        for what, vals in (("train", acc.train), (held, acc.val)):
            f = _score(vals) if what else None
            if f is not None:
                out[f"{row} · {what} acc"] = f

    # Val and Test accuracy: per seed where the chapter records seeds, else the kept seed's
    accs: dict[str, dict[str, list[Any]]] = {}
    seeds = metrics.get("seeds")
    if isinstance(seeds, Mapping) and seeds and all(isinstance(v, Mapping) for v in seeds.values()):
        for v in seeds.values():
            for split, a in (_per_split(v.get("accuracy")) or {}).items():
                accs.setdefault(label, {}).setdefault(split, []).append(a)
    regimes = metrics.get("regimes") if isinstance(metrics.get("regimes"), Mapping) else {}
    regime_seeds = {r: d["seeds"] for r, d in regimes.items()
                    if isinstance(d, Mapping) and isinstance(d.get("seeds"), Mapping) and d["seeds"]}
    for r, sd in regime_seeds.items():
        for v in sd.values():
            for split, a in (_per_split(v.get("accuracy") if isinstance(v, Mapping) else None) or {}).items():
                accs.setdefault(f"{label} ({r})", {}).setdefault(split, []).append(a)
    if not accs:
        for model, d in _groups(metrics.get("accuracy"), label).items():
            accs[model] = {s: [a] for s, a in d.items()}
    probs = _clip_probs_paths(st, run_dir)
    if not accs and probs:
        accs[label] = {}
        for s, p in probs.items():
            _, pr, lab = artifacts.load_clip_probs(p)
            accs[label][s] = [_accuracy(lab, pr)]
    for model, d in accs.items():
        for split in COMPARED_SPLITS:
            if split == held and table1:
                continue  # Table 1 has it per seed
            f = _score(d.get(split, []))
            if f is not None:
                out[f"{model} · {split} acc"] = f
    frame_acc = _per_split(metrics.get("afew_frame_accuracy"))  # 02: the CNN on AFEW frames
    for split in COMPARED_SPLITS:
        f = _score([(frame_acc or {}).get(split)])
        if f is not None:
            out[f"frames · {split} acc"] = f

    # UAR: from the metrics, else from clip_probs
    uar = _groups(metrics.get("unweighted_average_recall"), label)
    if not uar and probs:
        from .metrics import unweighted_average_recall

        uar = {label: {}}
        for s, p in probs.items():
            _, pr, lab = artifacts.load_clip_probs(p)
            uar[label][s] = unweighted_average_recall(lab, pr) if (lab >= 0).any() else None
    for model, d in uar.items():
        for split in COMPARED_SPLITS:
            f = _score([d.get(split)])
            if f is not None:
                out[f"{model} · {split} UAR"] = f

    # Table 2 of the submissions
    t2 = getattr(rec, "table2", None) or {}
    for n, row in sorted(t2.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 0):
        for k, name in (("val", "Val acc"), ("test", "Test acc"), ("test_uar", "Test UAR")):
            f = _score([(row or {}).get(k)])
            if f is not None:
                out[f"submission {n} · {name}"] = f

    # epochs kept: per seed where recorded
    if isinstance(seeds, Mapping) and seeds:
        f = _score([v.get("best_epoch") for v in seeds.values() if isinstance(v, Mapping)], unit="")
        if f is not None:
            out["epoch kept"] = f
    if "epoch kept" not in out:
        best = getattr(rec, "best_epoch", None) if rec is not None else metrics.get("best_epoch")
        f = _score([best], unit="") if best else None
        if f is not None:
            out["epoch kept"] = f
    best_epochs = getattr(rec, "best_epochs", None) or {}
    for r in sorted(set(best_epochs) | set(regime_seeds)):
        sd = regime_seeds.get(r) or {}
        f = _score([v.get("best_epoch") for v in sd.values() if isinstance(v, Mapping)], unit="") \
            or _score([best_epochs.get(r)], unit="")
        if f is not None:
            out[f"epoch kept ({r})"] = f

    # the chosen hyperparameters
    if rec is not None:
        for fld in dataclasses.fields(rec):
            if fld.name not in _NOT_CHOICES:
                out[fld.name] = _choice(getattr(rec, fld.name))

    wall = manifest.get("wall_time_s")
    if _finite(wall):
        out["wall time"] = Figure((float(wall),), unit="s", kind="time")
    return out


def _accuracy(labels: np.ndarray, probs: np.ndarray) -> float | None:
    from .metrics import accuracy

    return accuracy(labels, probs) if (labels >= 0).any() else None


# ---- runs ----------------------------------------------------------------------------------------

@dataclass
class RunView:
    """One run (or variant) of a comparison: its ``name``, folder, ``variant`` record (None for a run), and
    per stage its ``status`` (``ran``, ``reused`` (a link to the base run), ``failed``), manifest and figures."""

    name: str
    path: Path
    variant: dict | None = None
    status: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, dict] = field(default_factory=dict)
    figures: dict[str, dict[str, Figure]] = field(default_factory=dict)
    data: str = "unknown"

    @property
    def overrides(self) -> dict[str, Any]:
        return dict((self.variant or {}).get("overrides") or {})

    @property
    def command(self) -> str | None:
        return (self.variant or {}).get("command")


def _stage_status(run_dir: Path, st: stages.Stage, manifest: dict | None) -> str:
    if variants.is_variant(run_dir) and variants.reused(run_dir, st.name):
        return "reused"
    if manifest is None:
        return "no manifest"
    return "ran" if manifest.get("status") == "ok" else str(manifest.get("status"))


def _data_label(metrics_data: list[str], params: list[Mapping[str, Any]]) -> str:
    for d in metrics_data:
        if isinstance(d, str) and d:
            return d
    for p in params:
        if "synthetic" in p:
            return "synthetic" if p.get("synthetic") else "real"
    return "unknown"


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a run or variant folder: a ``variant.json``, or a stage folder with a manifest."""
    path = Path(path)
    return path.is_dir() and (variants.is_variant(path)
                              or any((st.dir(path) / stages.MANIFEST).is_file() for st in stages.STAGES))


def read_run(path: str | Path, name: str | None = None) -> RunView:
    """Everything a comparison needs of one run or variant folder (ValueError when it is neither)."""
    path = Path(path).expanduser()
    if not is_run(path):
        raise ValueError(f"{path}: not a run or variant folder (no stage folder with a {stages.MANIFEST})")
    view = RunView(name=name or path.name, path=path.resolve(), variant=variants.read_variant(path))
    data, params = [], []
    for st in stages.STAGES:
        sdir = st.dir(path)
        if not sdir.is_dir():
            continue
        m = _read(artifacts.read_manifest, sdir)
        view.status[st.name] = _stage_status(path, st, m)
        view.manifests[st.name] = m or {}
        view.figures[st.name] = stage_figures(path, st)
        params.append((m or {}).get("parameters") or {})
        met = _read(artifacts.read_metrics, sdir)
        if isinstance(met, Mapping):
            data.append(met.get("data"))
    view.data = _data_label(data, params)
    return view


# ---- the comparison --------------------------------------------------------------------------------

@dataclass
class ParameterRow:
    """One parameter of one stage whose value differs between the runs (``values``: one per run; None where
    the run has no manifest of the stage)."""

    stage: str
    key: str
    values: list[Any]


@dataclass
class FigureRow:
    """One figure of one stage in every run (None where the run lacks it) and whether it changed."""

    stage: str
    name: str
    figures: list[Figure | None]

    @property
    def changed(self) -> bool:
        return len({f.key if f is not None else None for f in self.figures}) > 1

    def delta(self, i: int) -> str:
        """Run ``i`` against the first run: the difference of the means, as text ("" when not numeric)."""
        a, ref = self.figures[i], self.figures[0]
        return a.show_delta(ref) if a is not None and ref is not None and self.changed else ""

    def note(self, i: int) -> str:
        a, ref = self.figures[i], self.figures[0]
        return a.spread(ref) if a is not None and ref is not None else ""


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _norm(x) for k, x in v.items()}
    return v


def _same_param(key: str, a: Any, b: Any) -> bool:
    if key in DATA_PATH_KEYS and isinstance(a, str) and isinstance(b, str):
        try:
            return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
        except OSError:
            return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return _norm(a) == _norm(b)


@dataclass
class Comparison:
    """What :func:`compare_runs` found: the ``runs`` (the first is the reference of every difference), the
    ``parameters`` that differ and every figure of every stage (``figures``; :attr:`changed` those that
    changed)."""

    runs: list[RunView]
    parameters: list[ParameterRow]
    figures: list[FigureRow]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.runs]

    @property
    def stage_names(self) -> list[str]:
        """The stages any run has, in execution order."""
        have = {s for r in self.runs for s in r.status}
        return [s.name for s in stages.STAGES if s.name in have]

    @property
    def changed(self) -> list[FigureRow]:
        return [f for f in self.figures if f.changed]

    @property
    def data(self) -> str:
        labels = sorted({r.data for r in self.runs})
        return labels[0] if len(labels) == 1 else ", ".join(labels)

    @property
    def synthetic(self) -> bool:
        return any("synthetic" in r.data for r in self.runs)

    def statuses(self, stage: str) -> list[str]:
        return [r.status.get(stage, "missing") for r in self.runs]

    def reused_everywhere(self, stage: str) -> bool:
        """Every run but the first reuses the first's ``stage`` (nothing of it can differ)."""
        return len(self.runs) > 1 and all(s == "reused" for s in self.statuses(stage)[1:])

    # -- tables --

    def to_frame(self, all_figures: bool = False):  # -> pandas.DataFrame
        """One row per differing parameter, override and (changed, or every with ``all_figures``) figure per run:
        ``section`` (parameter | override | figure), ``stage``, ``item``, ``run``, ``status``, ``value`` (text),
        ``mean``, ``std``, ``n`` (seeds), ``delta`` (against the first run) and ``note`` (the seeds' spread)."""
        import pandas as pd

        rows = []
        for p in self.parameters:
            for run, v in zip(self.runs, p.values):
                rows.append(dict(section="parameter", stage=p.stage, item=p.key, run=run.name,
                                 status=run.status.get(p.stage, "missing"), value=_text(v)))
        for run in self.runs:
            for k, v in run.overrides.items():
                rows.append(dict(section="override", stage=_override_stage(k), item=k, run=run.name, value=_text(v)))
        for f in (self.figures if all_figures else self.changed):
            for i, (run, fig) in enumerate(zip(self.runs, f.figures)):
                rows.append(dict(section="figure", stage=f.stage, item=f.name, run=run.name,
                                 status=run.status.get(f.stage, "missing"),
                                 value=fig.show() if fig is not None else None,
                                 mean=fig.mean if fig is not None and fig.values else None,
                                 std=fig.std if fig is not None and fig.values else None,
                                 n=fig.n if fig is not None and fig.values else None,
                                 delta=f.delta(i) if i else "", note=f.note(i) if i else "",
                                 changed=f.changed))
        cols = ["section", "stage", "item", "run", "status", "value", "mean", "std", "n", "delta", "note", "changed"]
        return pd.DataFrame(rows, columns=cols)

    def to_csv(self, path: str | Path) -> Path:
        """:meth:`to_frame` as CSV (every figure, ``changed`` says which changed)."""
        path = Path(path)
        artifacts.atomic_write_text(path, self.to_frame(all_figures=True).to_csv(index=False))
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": [{"name": r.name, "path": str(r.path), "data": r.data, "variant": r.variant is not None,
                      "base_run": (r.variant or {}).get("base_run"), "overrides": r.overrides, "command": r.command,
                      "stages": dict(r.status)} for r in self.runs],
            "parameters": [{"stage": p.stage, "key": p.key, "values": dict(zip(self.names, p.values))}
                           for p in self.parameters],
            "figures": [{"stage": f.stage, "figure": f.name, "changed": f.changed,
                         "runs": {n: (fig.to_dict() if fig is not None else None) | (
                             {"delta": f.delta(i), "note": f.note(i)} if i and fig is not None else {})
                                  for i, (n, fig) in enumerate(zip(self.names, f.figures))}}
                        for f in self.figures],
        }

    def to_json(self, path: str | Path) -> Path:
        return artifacts.atomic_write_json(path, self.to_dict())

    def format_text(self, width: int = 44) -> str:
        """The terminal table: the runs, the parameters that differ, the overrides, then per stage the figures
        that changed (reused stages said so in one line)."""
        names = self.names
        lines = [f"Comparing {len(self.runs)} runs ({self.data} data):"]
        w = max(len(n) for n in names)
        for r in self.runs:
            what = f"variant of {_rel(Path(r.variant['base_run']))}" if r.variant and r.variant.get("base_run") \
                else "run"
            lines.append(f"  {r.name:<{w}}  {_rel(r.path)}  ({what})")
        lines += ["", "Parameters that differ"]
        if self.parameters:
            grouped: dict[tuple, list[str]] = {}
            for p in self.parameters:
                grouped.setdefault((p.key, tuple(_text(v) for v in p.values)), []).append(p.stage)
            rows = [[_stage_list(st), key, *vals] for (key, vals), st in grouped.items()]
            lines += _table(["stage", "parameter", *names], rows, width)
        else:
            lines.append("  (none)")
        overrides = [(r.name, k, v) for r in self.runs for k, v in r.overrides.items()]
        if overrides:
            lines += ["", "Overrides (variant.json)"]
            lines += _table(["run", "override", "value"], [[n, k, _text(v)] for n, k, v in overrides], width)
        lines += ["", f"Figures that changed (accuracies in %: mean ± std over seeds; Δ: against {names[0]})"]
        for stage in self.stage_names:
            sts = self.statuses(stage)
            head = f"{stage}  [" + ", ".join(f"{n}: {s}" for n, s in zip(names, sts)) + "]"
            changed = [f for f in self.changed if f.stage == stage]
            if self.reused_everywhere(stage):
                lines.append(f"  {stage}: reused from {names[0]} (same figures)")
                continue
            if not changed:
                lines.append(f"  {stage}: no figure changed")
                continue
            lines += ["", "  " + head]
            header = ["figure", names[0]]
            for n in names[1:]:
                two = len(names) == 2
                header += [n, "Δ" if two else f"Δ {n}", "seeds' spread" if two else f"spread {n}"]
            rows = []
            for f in changed:
                row = [f.name, _cell(f.figures[0])]
                for i in range(1, len(names)):
                    row += [_cell(f.figures[i]), f.delta(i), f.note(i)]
                rows.append(row)
            lines += ["  " + ln for ln in _table(header, rows, width)]
        return "\n".join(lines).rstrip() + "\n"

    # -- figures --

    def figure_stages(self) -> list[str]:
        """The stages whose figures are drawn: some figure other than the wall time changed."""
        return [s for s in self.stage_names if not self.reused_everywhere(s)
                and any(f.changed and f.name != "wall time" for f in self.figures if f.stage == s)]

    def save_figures(self, out_dir: str | Path, dpi: int = 110) -> list[Path]:
        """Draw, for every stage of :meth:`figure_stages`, the overlaid learning curves (where the stage has
        curves), the difference of the confusion matrices and the per-class accuracy deltas (where every run
        has its ``clip_probs``) into ``out_dir`` as PNG files; return their paths."""
        import matplotlib.pyplot as plt

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for stage in self.figure_stages():
            for suffix, fn in (("curves", plot_learning_curves), ("confusion_delta", plot_confusion_delta),
                               ("per_class_delta", plot_per_class_delta)):
                fig = fn(self, stage)
                if fig is None:
                    continue
                path = out_dir / f"{stage}_{suffix}.png"
                fig.savefig(path, dpi=dpi, bbox_inches="tight")
                plt.close(fig)
                written.append(path)
        return written

    def write(self, out_dir: str | Path) -> list[Path]:
        """``compare.csv``, ``compare.json`` and the figures (:meth:`save_figures`) into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return [self.to_csv(out_dir / CSV_FILE), self.to_json(out_dir / JSON_FILE), *self.save_figures(out_dir)]


def _override_stage(key: str) -> str:
    head = str(key).split(".", 1)[0] if "." in str(key) else ""
    try:
        return stages.resolve_stage_name(head) if head else ""
    except ValueError:
        return ""


def _text(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return repr(_norm(v)) if not isinstance(v, (list, dict)) else str(v)


def _cell(f: Figure | None) -> str:
    return f.show() if f is not None else "–"


def _rel(p: Path) -> str:
    from . import paths

    try:
        return str(Path(p).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        try:
            return str(Path(p).resolve().relative_to(paths.REPO_ROOT))
        except ValueError:
            return str(p)


def _stage_list(names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    return "stages " + ", ".join(stages.get(n).number for n in names)


def _table(header: list[str], rows: list[list[str]], width: int) -> list[str]:
    cut = [[c if len(c) <= width else c[:width - 1] + "…" for c in map(str, r)] for r in [header, *rows]]
    keep = [j for j in range(len(header)) if any(r[j] for r in cut)]
    cut = [[r[j] for j in keep] for r in cut]
    ws = [max(len(r[j]) for r in cut) for j in range(len(keep))]
    out = ["  " + "  ".join(c.ljust(ws[j]) for j, c in enumerate(r)).rstrip() for r in cut]
    out.insert(1, "  " + "  ".join("-" * w for w in ws))
    return out


def compare_runs(folders: Sequence[str | Path], names: Sequence[str] | None = None) -> Comparison:
    """Compare the runs or variants in ``folders`` (two or more; the first is the reference of every Δ).

    ``names``: one per folder (default: a variant's name, else the folder's name). ValueError naming a folder
    that is no run or variant.
    """
    folders = [Path(f) for f in folders]
    if names is not None and len(names) != len(folders):
        raise ValueError(f"{len(names)} names for {len(folders)} runs")
    names = list(names) if names is not None else [_default_name(f) for f in folders]
    names = _unique(names)
    runs = [read_run(f, n) for f, n in zip(folders, names)]
    params: list[ParameterRow] = []
    figures: list[FigureRow] = []
    for st in stages.STAGES:
        if not any(st.name in r.status for r in runs):
            continue
        ps = [((r.manifests.get(st.name) or {}).get("parameters") or {}) if st.name in r.status else None
              for r in runs]
        keys = []
        for p in ps:
            keys += [k for k in (p or {}) if k not in keys and k not in LOCATION_KEYS]
        for k in keys:
            vals = [p.get(k) if p is not None else None for p in ps]
            present = [v for v, p in zip(vals, ps) if p is not None]
            if any(not _same_param(k, present[0], v) for v in present[1:]) or \
                    any(p is not None and k not in p for p in ps):
                params.append(ParameterRow(st.name, k, vals))
        fig_names: list[str] = []
        for r in runs:
            fig_names += [n for n in r.figures.get(st.name, {}) if n not in fig_names]
        for n in fig_names:
            figures.append(FigureRow(st.name, n, [r.figures.get(st.name, {}).get(n) for r in runs]))
    return Comparison(runs, params, figures)


def _default_name(folder: Path) -> str:
    rec = _read(variants.read_variant, folder)
    return str(rec.get("name")) if rec and rec.get("name") else folder.resolve().name


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        m, i = n, 2
        while m in out:
            m, i = f"{n}-{i}", i + 1
        out.append(m)
    return out


# ---- the command line's arguments ----------------------------------------------------------------------

class CompareArgumentError(ValueError):
    """Arguments of ``emotiw compare`` that name no run: ``errors`` holds one line per bad argument."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = list(errors)


#: The argument that names the base run itself.
BASE = "base"


def resolve_arguments(args: Sequence[str], run_dir: str | Path) -> tuple[list[Path], list[str]]:
    """``emotiw compare``'s arguments as ``(folders, names)``.

    An argument that is an existing folder is used as it is (a run or a variant); otherwise it names a variant
    of ``run_dir``, or is ``base`` (``run_dir`` itself). A single variant is compared with its base run, put
    first. :class:`CompareArgumentError` (one line per bad argument; an unknown variant lists the known ones).
    """
    run_dir = Path(run_dir).expanduser()
    folders: list[Path] = []
    names: list[str] = []
    errors: list[str] = []
    for a in args:
        p = Path(a).expanduser()
        if p.is_dir():
            if not is_run(p):
                errors.append(f"{a}: not a run or variant folder (no stage folder with a {stages.MANIFEST}, "
                              f"no {variants.VARIANT_FILE})")
                continue
            folders.append(p)
            names.append(_default_name(p))
        elif a == BASE:
            if not is_run(run_dir):
                errors.append(f"{run_dir}: no run there (make it with `emotiw run`, or give --run-dir)")
                continue
            folders.append(run_dir)
            names.append(BASE)
        else:
            vdir = variants.variant_dir(run_dir, a)
            if not variants.is_variant(vdir):
                known = [v.name for v in variants.list_variants(run_dir)] if run_dir.is_dir() else []
                errors.append(f"{a}: no such folder, and no variant {a!r} of {run_dir}; known variants: "
                              + (", ".join(known) if known else "none (make one with `emotiw run --variant NAME "
                                                                  "-p KEY=VALUE`)"))
                continue
            folders.append(vdir)
            names.append(a)
    if errors:
        raise CompareArgumentError(errors)
    if len(folders) == 1 and variants.is_variant(folders[0]):
        folders.insert(0, variants.base_run_of(folders[0]))
        names.insert(0, BASE)
    if len(folders) < 2:
        raise CompareArgumentError([f"{args[0]}: a run needs something to be compared with: give two or more runs "
                                    "or variants, or a single variant (compared with its base)"])
    return folders, names


# ---- figures ----------------------------------------------------------------------------------------

def _checkpoint_epochs(path: Path) -> list[dict] | None:
    """The learning curves stored in a model checkpoint (:mod:`emotiw_utils.checkpoints`), weights-only read."""
    if not path.is_file():
        return None
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (not a checkpoint of ours: no curves to draw)
        return None
    hist = payload.get("history") if isinstance(payload, dict) else None
    return [dict(e) for e in hist.get("epochs", [])] if isinstance(hist, dict) else None


def learning_curves(run_dir: str | Path, stage: stages.Stage | str):  # -> dict[str, pandas.DataFrame]
    """The learning curves of ``stage`` in ``run_dir``: ``{"": frame}`` from the checkpoint of 02 or 03 (its
    kept seed), ``{regime: frame}`` from 07's metrics; each frame indexed by ``epoch`` (empty dict: none)."""
    import pandas as pd

    st = stage if isinstance(stage, stages.Stage) else stages.get(stage)
    curves: dict[str, list[dict]] = {}
    if st.name in _CURVES:
        eps = _checkpoint_epochs(st.path(run_dir, _CURVES[st.name]))
        if eps:
            curves[""] = eps
    else:
        met = _read(artifacts.read_metrics, st.dir(run_dir)) or {}
        regimes = met.get("regimes") if isinstance(met.get("regimes"), Mapping) else {}
        for r, d in regimes.items():
            if isinstance(d, Mapping) and isinstance(d.get("history"), list) and d["history"]:
                curves[str(r)] = [dict(e) for e in d["history"]]
    out = {}
    for k, eps in curves.items():
        df = pd.DataFrame(eps)
        if "epoch" in df:
            out[k] = df.set_index("epoch")
    return out


def _acc_columns(df) -> tuple[str | None, str | None]:
    """``(held-out accuracy column, training accuracy column)`` of a curves frame."""
    train = "train_acc" if "train_acc" in df else None
    held = "val_acc" if "val_acc" in df else next((c for c in df.columns if c.endswith("_acc") and c != train), None)
    return held, train


def plot_learning_curves(comparison: Comparison, stage: str):
    """Learning curves of ``stage`` overlaid, one colour per run: held-out accuracy solid, training accuracy
    dashed (None when no run has curves for the stage)."""
    from .plots import _finish_epoch_axes, _plt

    series = []
    for r in comparison.runs:
        if r.status.get(stage) is None:
            continue
        for regime, df in learning_curves(r.path, stage).items():
            series.append((r.name + (f" ({regime})" if regime else ""), r.status.get(stage), df))
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, status, df) in enumerate(series):
        held, train = _acc_columns(df)
        c = colours[i % len(colours)]
        tag = " (reused)" if status == "reused" else ""
        if held is not None and df[held].notna().any():
            d = df[held].dropna()
            ax.plot(d.index, 100 * d, "-", lw=1.6, color=c, label=f"{label}{tag}: {held.replace('_acc', '')}")
        if train is not None and df[train].notna().any():
            d = df[train].dropna()
            ax.plot(d.index, 100 * d, "--", lw=1.0, color=c, alpha=0.8, label=f"{label}{tag}: train")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish_epoch_axes(fig, ax, "accuracy (%)", f"{stage}: learning curves ({comparison.data} data)")


def _split_of(comparison: Comparison, stage: str, split: str | None) -> tuple[str, list] | None:
    """The split to compare (Test when every run has it labelled, else Val) and each run's ``clip_probs``."""
    st = stages.get(stage)
    if "clip_probs" not in st.artifacts:
        return None
    for s in ([split] if split else ["Test", "Val"]):
        loaded = []
        for r in comparison.runs:
            p = st.path(r.path, "clip_probs", split=s)
            if not p.is_file():
                break
            _, probs, labels = artifacts.load_clip_probs(p)
            if not (labels >= 0).any():
                break
            loaded.append((probs, labels))
        else:
            return s, loaded
    return None


def plot_confusion_delta(comparison: Comparison, stage: str, split: str | None = None):
    """Difference of the row-normalised confusion matrices (percentage points) of ``stage``'s ``clip_probs`` on
    ``split`` (default: Test if labelled in every run, else Val): each run minus the first, one panel each.
    None when a run lacks the file or the labels."""
    from .metrics import confusion_matrix
    from .plots import _plt

    found = _split_of(comparison, stage, split)
    if found is None or len(found[1]) < 2:
        return None
    split, loaded = found
    cms = [np.nan_to_num(confusion_matrix(lab, pr, normalise="true")) for pr, lab in loaded]
    plt = _plt()
    n = len(cms) - 1
    fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 4.2), squeeze=False)
    for i in range(n):
        ax, d = axes[0, i], 100 * (cms[i + 1] - cms[0])
        im = ax.imshow(d, cmap="RdBu_r", vmin=-100, vmax=100)
        for a in range(d.shape[0]):
            for b in range(d.shape[1]):
                if abs(d[a, b]) >= 0.5:
                    ax.text(b, a, f"{d[a, b]:+.0f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(d[a, b]) > 60 else "black")
        ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(EMOTIONS)), EMOTIONS, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(f"{comparison.names[i + 1]} − {comparison.names[0]}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="points")
    fig.suptitle(f"{stage}: change of the confusion matrix on {split} (%, rows: true class; "
                 f"{comparison.data} data)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_per_class_delta(comparison: Comparison, stage: str, split: str | None = None):
    """Per-class accuracy of each run minus the first's (percentage points), ``stage``'s ``clip_probs`` on
    ``split`` (as :func:`plot_confusion_delta`); None when a run lacks the file or the labels."""
    from .metrics import per_class_accuracy
    from .plots import _plt

    found = _split_of(comparison, stage, split)
    if found is None or len(found[1]) < 2:
        return None
    split, loaded = found
    accs = [per_class_accuracy(lab, pr) for pr, lab in loaded]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    n = len(accs) - 1
    width = 0.8 / n
    x = np.arange(len(EMOTIONS))
    for i in range(n):
        d = 100 * np.nan_to_num(accs[i + 1] - accs[0])
        ax.bar(x + i * width, d, width, label=f"{comparison.names[i + 1]} − {comparison.names[0]}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(x + width * (n - 1) / 2, EMOTIONS, fontsize=8)
    ax.set_ylabel("points")
    ax.set_title(f"{stage}: per-class accuracy change on {split} ({comparison.data} data)", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


# ---- the book's Variants page ---------------------------------------------------------------------------

def book_run_dir(chapters: Sequence[Mapping[str, Any]]) -> Path | None:
    """The run the book is built from: the ``run_dir`` most of its executed chapters name (None: none)."""
    dirs = [str(ch.get("params", {}).get("run_dir")) for ch in chapters if ch.get("params", {}).get("run_dir")]
    if not dirs:
        return None
    return Path(max(dirs, key=dirs.count))


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("`", "'")


def _code(text: Any) -> str:
    """``text`` as inline code in a Markdown table."""
    return "`" + str(text).replace("`", "'").replace("|", "\\|") + "`"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table of cells already in Markdown (only ``|`` outside inline code is escaped)."""
    def cell(c: Any) -> str:
        parts = str(c).split("`")
        return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return out + [""]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _profile_of(run_dir: Path) -> str:
    for st in stages.STAGES:
        m = _read(artifacts.read_manifest, st.dir(run_dir))
        if m and m.get("profile"):
            return str(m["profile"])
    return run_dir.name


def _variant_section(vdir: Path, base: Path, fig_dir: Path, rel_fig: str) -> list[str]:
    rec = _read(variants.read_variant, vdir) or {}
    name = str(rec.get("name") or vdir.name)
    lines = [f"## Variant `{_md(name)}`", ""]
    try:
        c = compare_runs([base, vdir], [BASE, name])
    except (OSError, ValueError, KeyError) as e:
        return lines + [f"This variant could not be compared with the base run: {_md(e)}", ""]
    if c.synthetic:
        lines += [":::{admonition} Synthetic data", ":class: note",
                  f"Both runs are on {c.data} data: the differences below show what the change does on data "
                  "built to have the paper's structure, not what it does on real movies.", ":::", ""]
    lines += [f"Made by `{_md(rec.get('command') or 'emotiw run --variant ' + name)}`"
              + (f" (created {_md(rec.get('created'))}, updated {_md(rec.get('updated'))})." if rec.get("created")
                 else "."), ""]
    ov = rec.get("overrides") or {}
    if ov:
        lines += ["**Overrides** (against the profile):", ""]
        lines += _md_table(["parameter", "value"], [[_code(k), _code(_text(v))] for k, v in ov.items()])
    sts = {s: c.runs[1].status.get(s) for s in c.stage_names}
    ran = [s for s, v in sts.items() if v != "reused"]
    reused = [s for s, v in sts.items() if v == "reused"]
    lines += [f"Stages run in the variant: {', '.join(f'`{s}`' for s in ran) or 'none'}; reused from the base "
              f"run: {', '.join(f'`{s}`' for s in reused) or 'none'}.", ""]
    lines += ["### Parameters that differ", ""]
    if c.parameters:
        lines += _md_table(["stage", "parameter", BASE, _md(name)],
                           [[p.stage, _code(p.key), *(_code(_text(v)) for v in p.values)] for p in c.parameters])
    else:
        lines += ["None (the variant differs in the code of a chapter, or not at all).", ""]
    lines += ["### Figures that changed", "",
              f"Accuracies and UAR in %, mean ± standard deviation over seeds where the chapter records seeds; Δ: "
              f"`{_md(name)}` minus the base run.", ""]
    any_changed = False
    for stage in c.stage_names:
        rows = [f for f in c.changed if f.stage == stage]
        if c.reused_everywhere(stage) or not rows:
            continue
        any_changed = True
        lines += [f"**{stage}** ({BASE}: {c.statuses(stage)[0]}, {_md(name)}: {c.statuses(stage)[1]})", ""]
        lines += _md_table(["figure", BASE, _md(name), "Δ", "seeds' spread"],
                           [[f.name, _cell(f.figures[0]), _cell(f.figures[1]), f.delta(1), f.note(1)] for f in rows])
    if not any_changed:
        lines += ["No figure changed.", ""]
    pngs = c.save_figures(fig_dir)
    if pngs:
        lines += ["### Figures", ""]
        for p in pngs:
            lines += [f"![{_md(p.stem)}]({rel_fig}/{p.name})", ""]
    return lines


def write_variants_page(executed_dir: str | Path, run_dir: str | Path | None = None,
                        chapters: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """``{executed_dir}/variants.md``: the book's *Variants* page, and its figures in ``{executed_dir}/variants/``.

    ``run_dir``: the run the book is built from (default: :func:`book_run_dir` of ``chapters``). For each of its
    variants: its overrides, the command that made it, the stages it ran and reused, and the comparison with
    the base run (the parameters that differ, the figures that changed, the figures). Without variants, how
    to make one. Written either way, so that the table of contents can list it.
    """
    import shutil

    executed_dir = Path(executed_dir)
    executed_dir.mkdir(parents=True, exist_ok=True)
    if run_dir is None and chapters is not None:
        run_dir = book_run_dir(chapters)
    run_dir = Path(run_dir) if run_dir is not None else None
    fig_root = executed_dir / VARIANTS_FIGURES
    if fig_root.is_dir():
        shutil.rmtree(fig_root)
    found = variants.list_variants(run_dir) if run_dir is not None and run_dir.is_dir() else []
    profile = _profile_of(run_dir) if run_dir is not None else "demo"
    example = (f"emotiw run --profile {profile} --variant lstm -p {stages.IRNN.name}.cell=lstm")
    lines = ["# Variants", ""]
    if not found:
        where = f" (`{_md(_rel(run_dir))}`)" if run_dir is not None else ""
        lines += [f"The run this book is built from{where} has no variants yet. A variant changes some parameters "
                  "(or a chapter), runs only the stages the change reaches and reads every other stage from the base "
                  f"run, which it never writes: `{example}` tries an LSTM in place of the IRNN of chapter "
                  f"{stages.IRNN.number}, then `emotiw compare lstm` sets it beside the base run, and the next "
                  "`emotiw book` shows the comparison on this page.", ""]
        return artifacts.atomic_write_text(executed_dir / VARIANTS_PAGE, "\n".join(lines))
    lines += [f"The run this book is built from (`{_md(_rel(run_dir))}`, profile `{_md(profile)}`) has "
              f"{len(found)} variant{'s' if len(found) > 1 else ''}: runs that change some parameters, run only the "
              "stages the change reaches and read every other stage from this run. Each is compared here with it "
              "as `emotiw compare` does (`emotiw_utils/compare.py`): first the parameters that differ, then per stage "
              "the figures that changed. A difference is *within the seeds' spread* when the difference of the "
              "means is no larger than the larger of the two standard deviations. Another variant: "
              f"`{example.replace('lstm', 'NAME', 1)}`.", ""]
    for vdir in found:
        slug = _slug(vdir.name)
        lines += _variant_section(vdir, run_dir, fig_root / slug, f"{VARIANTS_FIGURES}/{slug}")
    return artifacts.atomic_write_text(executed_dir / VARIANTS_PAGE, "\n".join(lines))
