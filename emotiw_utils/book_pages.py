"""What the rendered book tells its reader about the run behind every page (issue 17).

Three parts, all generated from the run, never typed in:

* :func:`annotate_executed`, applied by the runner to every executed notebook
  (``pipeline._postprocess_executed``): a box under the chapter's title with the parameters of *this*
  execution (profile, seed, device, data, and every value that differs from the notebook's defaults) and the
  downloads of the page (the executed ``.ipynb`` and its MyST source); the notebook's default parameters cell
  is removed from the page (it stays in the downloadable notebook, where papermill's injected cell follows
  it), and the MyST source is kept in the notebook's metadata so a cached stage still offers it.
* :func:`record_run`, called at the end of every run: which stages ran and which were reused from cache
  (``{executed_dir}/run_status.json``; the manifests alone cannot tell).
* :func:`prepare_book`, called by ``emotiw book`` (and the smoke test) before Jupyter Book renders: writes
  under ``book/executed/`` the execution statistics page (``execution_stats.md``: per chapter the wall time,
  ran or cached, device, profile, seed, package versions and commit, read from the stage manifests), the
  landing page's headline (``headline.md``, included by ``book/intro.md``: Tables 1 and 2, the paper's beside
  ours, from the results stage's ``metrics.json``) and the MyST sources offered for download (``myst/``).
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import artifacts, paths
from . import stages as registry

__all__ = ["BANNER_TAG", "HEADLINE", "MYST_DIR", "RUN_STATUS", "STATS_PAGE", "annotate_executed", "book_chapters",
           "prepare_book", "record_run", "write_headline", "write_stats_page"]

#: Tag of the "executed with" box the runner inserts under a chapter's title.
BANNER_TAG = "emotiw-run-parameters"
#: Papermill's tags: the notebook's defaults cell and the cell it injects with the values used.
DEFAULTS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
#: Files :func:`prepare_book` writes into the executed-notebooks folder (git-ignored, like the notebooks).
STATS_PAGE = "execution_stats.md"
HEADLINE = "headline.md"
MYST_DIR = "myst"
#: Which stages the last runs executed and which they reused (written by :func:`record_run`).
RUN_STATUS = "run_status.json"
#: Parameters every chapter states in the box's title (the others appear in its table when they differ).
_BOX_TITLE_PARAMETERS = ("profile", "seed", "device")


# ---- the box under every chapter's title -------------------------------------------------------

def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _literal_defaults(source: str) -> dict[str, Any]:
    """``name -> value`` of the literal assignments of a parameters cell (non-literals as their source text)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is None or len(targets) != 1 or not isinstance(targets[0], ast.Name):
                continue
            try:
                out[targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[targets[0].id] = ast.get_source_segment(source, node.value)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as parameter values: a tuple literal equals the YAML list, ``True`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str) and a != b and (a.startswith("/") or b.startswith("/")):
        try:  # the runner passes absolute paths; the defaults are relative to the repository
            return (paths.REPO_ROOT / a).resolve() == (paths.REPO_ROOT / b).resolve()
        except OSError:
            return False
    return (list(a) if isinstance(a, tuple) else a) == (list(b) if isinstance(b, tuple) else b)


def _show(value: Any) -> str:
    """A parameter value as inline code for a Markdown table (paths inside the repository made relative)."""
    if isinstance(value, str) and value.startswith("/"):
        try:
            value = str(Path(value).resolve().relative_to(paths.REPO_ROOT))
        except (ValueError, OSError):
            pass
    text = repr(value) if not isinstance(value, str) else value
    text = text.replace("|", "\\|").replace("`", "'")
    return f"`{text}`"


def _data_label(params: Mapping[str, Any]) -> str:
    from .datasets.origins import dataset_origins, describe_origins

    origins = dataset_origins(params.get("afew_dir"), params.get("fer2013_path"), params.get("tfd_path"))
    if not origins:
        return "synthetic" if params.get("synthetic") else "unknown"
    return f"{describe_origins(origins)} ({', '.join(origins)})"


def _when(iso: str | None) -> str:
    if not iso:
        return "–"
    try:
        t = _dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return str(iso)
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _seconds(s: float | None) -> str:
    if s is None or not math.isfinite(float(s)):
        return "–"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def _stage_of(params: Mapping[str, Any]):
    try:
        return registry.get(str(params.get("stage")))
    except (ValueError, StopIteration):
        return None


def _banner(nb, stem: str) -> str:
    pm = nb.metadata.get("papermill", {})
    used = dict(pm.get("parameters") or {})
    defaults_cell = next((c for c in nb.cells if c.cell_type == "code" and DEFAULTS_TAG in _tags(c)), None)
    defaults = _literal_defaults(defaults_cell.source) if defaults_cell is not None else {}
    differ = [k for k in used if k not in defaults or not _same(used[k], defaults[k])]
    what = ", ".join(f"{k} `{used[k]}`" for k in _BOX_TITLE_PARAMETERS if k in used)
    source = nb.metadata.get("emotiw", {}).get("source") or "its notebook"
    lines = [
        f":::{{admonition}} Executed with {what}, {_data_label(used)} data",
        ":class: tip",
        f"`{source}` executed by `emotiw run` (papermill) on {_when(pm.get('end_time'))} in "
        f"{_seconds(pm.get('duration'))}. "
        + ("The values of this execution that differ from the notebook's defaults (all of them are in the "
           "folded *Parameters* cell below; the defaults cell is not shown):" if differ else
           "Every parameter has the notebook's default value (the folded *Parameters* cell below)."),
        "",
    ]
    if differ:
        lines += ["| parameter | this execution | default |", "|---|---|---|"]
        lines += [f"| `{k}` | {_show(used[k])} | {_show(defaults[k]) if k in defaults else '(none)'} |"
                  for k in differ]
        lines.append("")
    lines += [f"Download: {{download}}`executed notebook (.ipynb) <{stem}.ipynb>` · "
              f"{{download}}`MyST source (.md) <{MYST_DIR}/{stem}.md>`. Every chapter's wall time, device, "
              "package versions and commit: {doc}`execution statistics <execution_stats>`.", ":::"]
    return "\n".join(lines)


def annotate_executed(nb, stem: str | None = None) -> bool:
    """Put the "executed with" box under the title of an executed notebook ``nb`` (papermill's); True if changed.

    ``stem``: the notebook's file name without ``.ipynb`` (default: the stage name it was executed as).
    Idempotent: a second call replaces the box. The defaults cell gets ``remove-cell``, papermill's injected
    cell ``hide-input``; the stage's MyST source is recorded in ``nb.metadata['emotiw']`` the first time.
    """
    import nbformat

    params = nb.metadata.get("papermill", {}).get("parameters")
    if not params:
        return False
    stage = _stage_of(params)
    meta = dict(nb.metadata.get("emotiw", {}))
    if "myst" not in meta and stage is not None and stage.exists:
        meta.update(source=stage.notebook, myst=stage.source.read_text(encoding="utf-8"))
        nb.metadata["emotiw"] = meta
    stem = stem or (stage.name if stage is not None else str(params.get("stage")))
    for c in nb.cells:
        tags = _tags(c)
        want = ("remove-cell" if DEFAULTS_TAG in tags else "hide-input" if INJECTED_TAG in tags else None)
        if want and want not in tags:
            c.setdefault("metadata", {})["tags"] = [*tags, want]
    text = _banner(nb, stem)
    box = next((c for c in nb.cells if BANNER_TAG in _tags(c)), None)
    if box is not None:
        box.source = text
        return True
    cell = nbformat.v4.new_markdown_cell(text, metadata={"tags": [BANNER_TAG]})
    cell.id = "emotiw-run-parameters"
    title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                  and any(ln.startswith("# ") for ln in c.source.splitlines())), None)
    if title is None:
        nb.cells.insert(0, cell)
        return True
    lines = nb.cells[title].source.splitlines()
    h = next(i for i, ln in enumerate(lines) if ln.startswith("# "))
    rest = "\n".join(lines[h + 1:]).strip("\n")
    nb.cells[title].source = "\n".join(lines[:h + 1])
    new = [cell]
    if rest:
        after = nbformat.v4.new_markdown_cell(rest)
        after.id = "emotiw-title-rest"
        new.append(after)
    nb.cells[title + 1:title + 1] = new
    return True


# ---- which stages ran, which were cached --------------------------------------------------------

def record_run(executed_dir: str | Path, run_dir: str | Path, results: Sequence[Any]) -> Path:
    """Record, in ``{executed_dir}/run_status.json``, whether each stage of ``results`` ran or was cached.

    ``results``: the runner's StageResults. Entries of stages not in ``results`` are kept, so the file always
    describes the last run of every stage; each entry carries the manifest's ``run_id``, which
    :func:`prepare_book` matches against the manifest it reads.
    """
    path = Path(executed_dir) / RUN_STATUS
    try:
        status = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        status = {}
    for r in results:
        m = _manifest(Path(run_dir), r.name) or {}
        status[r.name] = {"status": r.status, "run_id": m.get("run_id"), "run_dir": str(run_dir),
                          "recorded": artifacts.now_iso()}
    return artifacts.atomic_write_json(path, status)


def _manifest(run_dir: Path, stage: str) -> dict | None:
    try:
        return artifacts.read_manifest(Path(run_dir) / stage)
    except (OSError, ValueError):
        return None


# ---- pages written at book time -----------------------------------------------------------------

def book_chapters(executed_dir: str | Path) -> list[dict]:
    """One dict per executed chapter in ``executed_dir``, in stage order: ``stage``, ``path``, ``nb``,
    ``params`` (papermill's), ``manifest`` (None when the run folder is gone), ``title``."""
    import nbformat

    out = []
    for stage in registry.STAGES:
        p = Path(executed_dir) / f"{stage.name}.ipynb"
        if not p.is_file():
            continue
        nb = nbformat.read(p, as_version=4)
        params = dict(nb.metadata.get("papermill", {}).get("parameters") or {})
        run_dir = params.get("run_dir")
        title = next((ln[2:].strip() for c in nb.cells if c.cell_type == "markdown"
                      for ln in c.source.splitlines() if ln.startswith("# ")), stage.title)
        out.append(dict(stage=stage, path=p, nb=nb, params=params, title=title,
                        manifest=_manifest(Path(run_dir), stage.name) if run_dir else None))
    return out


def _run_status(executed_dir: Path) -> dict:
    try:
        return json.loads((executed_dir / RUN_STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _status(entry: Mapping | None, manifest: Mapping | None) -> str:
    if not manifest:
        return "no manifest"
    if entry and entry.get("run_id") == manifest.get("run_id") and entry.get("status") in ("ran", "cached"):
        return entry["status"]
    return "ran" if manifest.get("status") == "ok" else str(manifest.get("status"))


def _rel_dir(p: str | None) -> str:
    if not p:
        return "–"
    try:
        return str(Path(p).resolve().relative_to(paths.REPO_ROOT))
    except (ValueError, OSError):
        return str(p)


def write_stats_page(executed_dir: str | Path, chapters: Sequence[Mapping] | None = None) -> Path:
    """``{executed_dir}/execution_stats.md`` from the chapters' manifests (see :func:`book_chapters`)."""
    executed_dir = Path(executed_dir)
    chapters = book_chapters(executed_dir) if chapters is None else chapters
    runs = _run_status(executed_dir)
    lines = [
        "# Execution statistics", "",
        "Every chapter of this book is a notebook executed by `emotiw run` (papermill) and rendered as it was "
        "executed. This page is generated by `emotiw book` from each stage's manifest "
        f"(`{{run_dir}}/{{stage}}/{registry.MANIFEST}`, written by the runner); nothing on it is typed in. "
        "*Status* says whether the last `emotiw run` executed the chapter (**ran**) or found its inputs unchanged "
        "and reused the earlier execution (**cached**); the wall time is that of the execution shown.", "",
    ]
    if not chapters:
        lines.append("No chapter has been executed yet: run `emotiw run --profile demo`, then `emotiw book`.")
        return artifacts.atomic_write_text(executed_dir / STATS_PAGE, "\n".join(lines) + "\n")
    columns = {  # what every chapter shares goes into one sentence, what differs gets a column
        "device": [(ch["manifest"] or {}).get("device", "–") for ch in chapters],
        "profile": [f"`{(ch['manifest'] or {}).get('profile', ch['params'].get('profile', '–'))}`"
                    for ch in chapters],
        "seed": [str((ch["manifest"] or {}).get("seed", ch["params"].get("seed", "–"))) for ch in chapters],
        "commit": [f"`{((ch['manifest'] or {}).get('git_commit') or '–')[:10]}`" for ch in chapters],
    }
    shared = {k: v[0] for k, v in columns.items() if len(set(v)) == 1}
    varying = [k for k in columns if k not in shared]
    lines += ["| chapter | status | wall time | finished (UTC) | " + "".join(f"{k} | " for k in varying),
              "|---|---|---:|---|" + "---|" * len(varying)]
    total, n_status = 0.0, {}
    for i, ch in enumerate(chapters):
        m, stage = ch["manifest"] or {}, ch["stage"]
        st = _status(runs.get(stage.name), ch["manifest"])
        n_status[st] = n_status.get(st, 0) + 1
        wall = m.get("wall_time_s")
        total += float(wall or 0)
        title = ch["title"].split(" · ", 1)[-1].replace("`", "").replace("<", "").replace("|", "/")
        lines.append(f"| {{doc}}`{stage.number} · {title} <{stage.name}>` | {st} | "
                     f"{_seconds(wall)} | {_when(m.get('finished')).removesuffix(' UTC')} | "
                     + "".join(f"{columns[k][i]} | " for k in varying))
    lines.append(f"| **total** | {', '.join(f'{n} {s}' for s, n in n_status.items())} | **{_seconds(total)}** "
                 "| |" + " |" * len(varying))
    run_dirs = sorted({_rel_dir(ch["params"].get("run_dir")) for ch in chapters})
    data = sorted({_data_label(ch["params"]) for ch in chapters})
    lines += ["", "Every chapter: " + "".join(f"{k} {v}, " for k, v in shared.items())
              + f"run folder{'s' if len(run_dirs) > 1 else ''} {', '.join(f'`{d}`' for d in run_dirs)}, "
              f"{'; '.join(data)} data. The total is the sum of the chapters' executions (chapter "
              f"{registry.SUBMISSIONS.number} includes the re-run chains of the seven submissions).", ""]
    # package versions: one column when every chapter ran with the same, else the chapters of each version
    versions: dict[str, dict[str, list[str]]] = {}
    for ch in chapters:
        for pkg, v in ((ch["manifest"] or {}).get("versions") or {}).items():
            versions.setdefault(pkg, {}).setdefault(str(v), []).append(ch["stage"].number)
    if versions:
        lines += ["## Package versions", "", "As recorded in the manifests (`python` is the interpreter).", "",
                  "| package | version |", "|---|---|"]
        for pkg, vs in versions.items():
            if len(vs) == 1:
                lines.append(f"| {pkg} | {next(iter(vs))} |")
            else:
                lines.append(f"| {pkg} | " + "; ".join(f"{v} (chapters {', '.join(chs)})" for v, chs in vs.items())
                             + " |")
        commits = sorted({(ch["manifest"] or {}).get("git_commit") or "–" for ch in chapters})
        lines += ["", f"Commit{'s' if len(commits) > 1 else ''} of the code that executed the chapters: "
                      + ", ".join(f"`{c}`" for c in commits) + "."]
    return artifacts.atomic_write_text(executed_dir / STATS_PAGE, "\n".join(lines) + "\n")


#: Table 1's rows on the landing page and the chapter that computes each.
_TABLE1_ROWS: tuple[tuple[str, registry.Stage], ...] = (
    ("RNN", registry.IRNN), ("Aggregated CNN", registry.KAVG), ("Frame averaging", registry.KAVG),
    ("Audio", registry.AUDIO), ("Activity", registry.ACTIVITY), ("Fusion network", registry.FUSION))


def _pct(values: Any) -> tuple[float | None, str]:
    """Mean of a per-seed accuracy list (or a single value) and its text in %, "mean ± std" over seeds."""
    from .paper import mean_std

    vals = [v for v in (values if isinstance(values, (list, tuple)) else [values]) if v is not None]
    m, s = mean_std(vals)
    if not math.isfinite(m):
        return None, "–"
    return m, f"{100 * m:.1f}" if len(vals) == 1 else f"{100 * m:.1f} ± {100 * s:.1f}"


def _doc(stage: registry.Stage, text: str | None = None) -> str:
    target = f"/book/executed/{stage.name}"
    return f"{{doc}}`{text} <{target}>`" if text else f"{{doc}}`{target}`"


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def write_headline(executed_dir: str | Path, chapters: Sequence[Mapping] | None = None) -> Path:
    """``{executed_dir}/headline.md``: "does it reproduce?", the paper's Tables 1 and 2 beside this run's.

    Read from the results stage's ``metrics.json`` (in the run folder its executed notebook names); every
    number of ours is computed there, the paper's come from :mod:`emotiw_utils.paper`.
    """
    from .paper import FRAME_AVERAGING_VAL, FUSION_VAL, TABLE1, TABLE2, TABLE2_METHODS

    executed_dir = Path(executed_dir)
    chapters = book_chapters(executed_dir) if chapters is None else chapters
    res = next((ch for ch in chapters if ch["stage"].name == registry.RESULTS.name), None)
    metrics = None
    if res is not None and res["params"].get("run_dir"):
        try:
            metrics = artifacts.read_metrics(registry.RESULTS.dir(res["params"]["run_dir"]))
        except (OSError, ValueError):
            metrics = None
    if not metrics:
        text = ("*No results yet: the results chapter has not been executed (`emotiw run`), so there is nothing "
                "to compare with the paper.*\n")
        return artifacts.atomic_write_text(executed_dir / HEADLINE, text)
    p = res["params"]
    data = metrics.get("data") or _data_label(p)
    ours = metrics.get("table1") or {}
    paper_val = {**{k: v[1] for k, v in TABLE1.items()}, "Frame averaging": FRAME_AVERAGING_VAL,
                 "Fusion network": FUSION_VAL}
    paper_train = {k: v[0] for k, v in TABLE1.items()}
    lines = [
        f"**The run summarised here**: profile `{p.get('profile')}`, seed {p.get('seed')}, device "
        f"`{p.get('device')}`, **{data} data** (run folder `{_rel_dir(p.get('run_dir'))}`; every chapter's "
        "parameters are in the box under its title, times and versions on the "
        "{doc}`execution statistics </book/executed/execution_stats>` page). The paper's numbers are on real "
        f"AFEW 5.0; ours are on the {data} data of this run, computed by the chapters linked below "
        f"and gathered by {_doc(registry.RESULTS, 'the results chapter')}.", "",
    ]
    summary_end = len(lines)
    lines += [
        "**Table 1: accuracy (%) of every model trained on Train**", "",
        f"| model | paper: train | paper: val | ours ({data}): train | ours ({data}): val | chapter |",
        "|---|---|---|---|---|---|",
    ]
    val_mean: dict[str, float | None] = {}
    for row, stage in _TABLE1_ROWS:
        if row not in ours and row not in paper_val:
            continue
        tr = _pct(ours.get(row, {}).get("train", []))[1]
        val_mean[row], va = _pct(ours.get(row, {}).get("val", []))
        pt, pv = paper_train.get(row), paper_val.get(row)
        lines.append(f"| {row} | {'–' if pt is None else f'{100 * pt:.1f}'} | "
                     f"{'–' if pv is None else f'{100 * pv:.1f}'} | {tr} | {va} | {_doc(stage, stage.number)} |")
    lines += ["", "Ours: mean ± standard deviation over the seeds of each chapter, on the split the models were "
                  "selected on.", ""]
    t2 = metrics.get("table2") or {}
    if t2:
        lines += ["**Table 2: accuracy (%) of the seven submissions on Test**", "",
                  f"| submission | method (paper) | paper: test | ours ({data}): test |", "|---|---|---|---|"]
        for n, r in sorted(t2.items(), key=lambda kv: int(kv[0])):
            paper = TABLE2.get(int(n))
            lines.append(f"| {n} | {TABLE2_METHODS.get(int(n), '–')} | "
                         f"{'–' if paper is None else f'{100 * paper[2]:.1f}'} | {_pct(r.get('test'))[1]} |")
        lines += ["", f"Computed in {_doc(registry.SUBMISSIONS, 'chapter ' + registry.SUBMISSIONS.number)}.", ""]
    # the paper's findings, checked on this run
    checks = []
    r, k, a = (val_mean.get(x) for x in ("RNN", "Aggregated CNN", "Frame averaging"))
    if None not in (r, k, a):
        checks.append(("the RNN beats the aggregated CNN, which beats frame averaging (val)",
                       f"{100 * paper_val['RNN']:.1f} > {100 * paper_val['Aggregated CNN']:.1f} > "
                       f"{100 * FRAME_AVERAGING_VAL:.1f}", f"{100 * r:.1f}, {100 * k:.1f}, {100 * a:.1f}", r > k > a))
    singles = {x: val_mean.get(x) for x in ("RNN", "Aggregated CNN", "Audio", "Activity")}
    singles = {x: v for x, v in singles.items() if v is not None}
    f = val_mean.get("Fusion network")
    if f is not None and singles:
        best = max(singles, key=singles.get)
        checks.append(("the fusion network beats every single model (val)",
                       f"{100 * FUSION_VAL:.1f} against {100 * paper_val['RNN']:.1f} (RNN)",
                       f"{100 * f:.1f} against {100 * singles[best]:.1f} ({best})", f > singles[best]))
    gaps = {}
    for x in singles:
        tr = _pct(ours.get(x, {}).get("train", []))[0]
        if tr is not None:
            gaps[x] = tr - singles[x]
    if "Activity" in gaps:
        worst = max(gaps, key=gaps.get)
        checks.append(("the activity model overfits most (train − val)",
                       f"{100 * (TABLE1['Activity'][0] - TABLE1['Activity'][1]):.1f} points",
                       f"{100 * gaps['Activity']:.1f} points (largest: {worst})", worst == "Activity"))
    tests = {int(n): v.get("test") for n, v in t2.items() if v.get("test") is not None}
    if tests:
        best_sub = max(tests, key=tests.get)
        retrained = [int(n) for n, v in t2.items() if v.get("val") is None]
        paper_best = max(TABLE2, key=lambda n: TABLE2[n][2])
        checks.append(("the best submission is one retrained on Train+Val",
                       f"submission {paper_best} ({100 * TABLE2[paper_best][2]:.1f})",
                       f"submission {best_sub} ({100 * tests[best_sub]:.1f})",
                       best_sub in retrained if retrained else None))
    if checks:  # at a glance: first, right under the summary
        found = ["**The paper's findings, checked on this run**", "",
                 "| finding | paper | ours | holds here? |", "|---|---|---|---|"]
        found += [f"| {what} | {pp} | {oo} | {_verdict(ok)} |" for what, pp, oo, ok in checks]
        found += ["", f"On {data} data these say whether the pipeline behaves like the paper's, not whether the "
                      "numbers match; the results chapter discusses each difference.", ""]
        lines[summary_end:summary_end] = found
    return artifacts.atomic_write_text(executed_dir / HEADLINE, "\n".join(lines) + "\n")


def prepare_book(root: str | Path | None = None) -> list[Path]:
    """Write the generated pages of the book under ``{root}/book/executed/`` and return their paths.

    ``root``: the book's folder (default: the repository). An executed notebook whose "executed with" box is
    missing or out of date (executed by an older version) gets it now; the file is rewritten only then. Every
    chapter's MyST source is written to ``myst/`` for download.
    """
    import nbformat

    executed_dir = Path(root if root is not None else paths.REPO_ROOT) / "book" / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)
    chapters = book_chapters(executed_dir)
    written = []
    for ch in chapters:
        nb, stem = ch["nb"], ch["path"].stem
        before = nbformat.writes(nb)
        if annotate_executed(nb, stem) and nbformat.writes(nb) != before:  # executed before the box existed
            artifacts.atomic_write_text(ch["path"], nbformat.writes(nb))
        myst = nb.metadata.get("emotiw", {}).get("myst")
        if myst is None and ch["stage"].exists:
            myst = ch["stage"].source.read_text(encoding="utf-8")
        if myst is not None:
            written.append(artifacts.atomic_write_text(executed_dir / MYST_DIR / f"{stem}.md", myst))
    written.append(write_stats_page(executed_dir, chapters))
    written.append(write_headline(executed_dir, chapters))
    from .compare import write_variants_page  # the Variants page: this run's variants beside it (issue 22)

    written.append(write_variants_page(executed_dir, chapters=chapters))
    return written
