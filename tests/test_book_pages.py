"""The pages the book generates from the run (emotiw_utils.book_pages), on small made-up runs."""

from __future__ import annotations

import json

import nbformat
import pytest

from emotiw_utils import artifacts, book_pages, paths
from emotiw_utils import stages as registry

DEFAULTS = '''# Parameters (papermill overrides them)
profile = "smoke"
seed = 0
run_dir = "runs/smoke"
afew_dir = None
synthetic = True
device = "cpu"
epochs = 100
layers = ("conv2",)
'''


def _executed(stage, used: dict, title: str = "# 03 · A chapter\n\nIts introduction.") -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: the defaults cell, then the injected cell with the values used."""
    nb = nbformat.v4.new_notebook()
    injected = "# Parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in used.items())
    nb.cells = [nbformat.v4.new_markdown_cell(title),
                nbformat.v4.new_code_cell(DEFAULTS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")])]
    nb.metadata["papermill"] = {"parameters": used, "end_time": "2026-01-02T03:04:05+00:00", "duration": 12.5}
    return nb


def _used(run_dir, **kw):
    used = dict(profile="demo", seed=0, run_dir=str(run_dir), afew_dir=None, synthetic=True, device="cpu",
                epochs=100, layers=["conv2"], stage=registry.IRNN.name)
    used.update(kw)
    return used


def test_annotate_puts_the_values_used_under_the_title(tmp_path):
    nb = _executed(registry.IRNN, _used(paths.REPO_ROOT / "runs" / "smoke", epochs=6, profile="smoke"))
    assert book_pages.annotate_executed(nb, "03_x")
    box = nb.cells[1]
    assert nb.cells[0].source == "# 03 · A chapter" and nb.cells[2].source == "Its introduction."
    assert book_pages.BANNER_TAG in box.metadata["tags"]
    assert "Executed with profile `smoke`, seed `0`, device `cpu`" in box.source
    # only what differs from the defaults: epochs; run_dir is the default (absolute vs relative), layers too
    # (tuple literal vs YAML list), the stage name is not declared in the defaults
    assert "| `epochs` | `6` | `100` |" in box.source
    assert "`run_dir`" not in box.source and "`layers`" not in box.source and "`profile`" not in box.source
    assert f"| `stage` | `{registry.IRNN.name}` | (none) |" in box.source
    assert "<03_x.ipynb>" in box.source and f"<{book_pages.MYST_DIR}/03_x.md>" in box.source
    tags = {i: c.metadata.get("tags", []) for i, c in enumerate(nb.cells)}
    assert "remove-cell" in tags[3] and "hide-input" in tags[4]  # defaults hidden, values used folded
    assert nb.metadata["emotiw"]["source"] == registry.IRNN.notebook  # the MyST source travels with the notebook
    # idempotent: a second call replaces the box, it does not add one
    n = len(nb.cells)
    book_pages.annotate_executed(nb, "03_x")
    assert len(nb.cells) == n and sum(book_pages.BANNER_TAG in c.metadata.get("tags", []) for c in nb.cells) == 1


def test_annotate_ignores_notebooks_not_executed_by_papermill():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T")])
    assert not book_pages.annotate_executed(nb)
    assert len(nb.cells) == 1


def _fake_run(tmp_path, statuses=None):
    """Executed notebooks of 03 and 10 in ``site/book/executed`` with their manifests in ``run``."""
    site, run = tmp_path / "site", tmp_path / "run"
    executed = site / "book" / "executed"
    executed.mkdir(parents=True)
    results = []
    for stage, wall in ((registry.IRNN, 12.5), (registry.RESULTS, 80.0)):
        used = _used(run, stage=stage.name)
        nb = _executed(stage, used, f"# {stage.number} · {stage.title}")
        book_pages.annotate_executed(nb, stage.name)
        nbformat.write(nb, executed / f"{stage.name}.ipynb")
        artifacts.write_manifest(stage.dir(run), stage=stage.name, parameters=used, input_hash="h", status="ok",
                                 wall_time_s=wall, device="cpu: test", started="2026-01-02T03:00:00+00:00",
                                 finished="2026-01-02T03:04:05+00:00", run_id=f"id-{stage.name}", profile="demo")
        results.append(type("R", (), {"name": stage.name, "status": (statuses or {}).get(stage.name, "ran")}))
    book_pages.record_run(executed, run, results)
    return site, run, executed


def test_stats_page_reads_the_manifests_and_the_run_record(tmp_path):
    site, run, executed = _fake_run(tmp_path, {registry.RESULTS.name: "cached"})
    book_pages.write_stats_page(executed)
    text = (executed / book_pages.STATS_PAGE).read_text()
    assert text.startswith("# Execution statistics")
    assert f"<{registry.IRNN.name}>` | ran | 12.5 s | 2026-01-02 03:04 |" in text
    assert f"<{registry.RESULTS.name}>` | cached | 1 min 20 s |" in text
    assert "| **total** | 1 ran, 1 cached | **1 min 32 s** |" in text
    assert "device cpu: test" in text and "profile `demo`" in text and "| torch |" in text
    # a record that belongs to another execution (run_id differs) is not believed
    status = json.loads((executed / book_pages.RUN_STATUS).read_text())
    status[registry.RESULTS.name]["run_id"] = "someone else"
    (executed / book_pages.RUN_STATUS).write_text(json.dumps(status))
    book_pages.write_stats_page(executed)
    assert f"<{registry.RESULTS.name}>` | ran |" in (executed / book_pages.STATS_PAGE).read_text()


def test_headline_compares_with_the_paper(tmp_path):
    site, run, executed = _fake_run(tmp_path)
    acc = {"RNN": {"train": [0.8], "val": [0.5, 0.3]}, "Aggregated CNN": {"train": [0.6], "val": [0.35]},
           "Frame averaging": {"train": [0.3], "val": [0.2]}, "Audio": {"train": [0.5], "val": [0.3]},
           "Activity": {"train": [1.0], "val": [0.2]}, "Fusion network": {"train": [0.7], "val": [0.45]}}
    t2 = {str(n): {"train": None if n in (3, 6, 7) else 0.5, "val": None if n in (3, 6, 7) else 0.4,
                   "test": 0.3 + n / 100, "test_uar": 0.3} for n in range(1, 8)}
    artifacts.write_metrics(registry.RESULTS.dir(run), {"data": "synthetic", "table1": acc, "table2": t2})
    book_pages.write_headline(executed)
    text = (executed / book_pages.HEADLINE).read_text()
    assert "profile `demo`" in text and "**synthetic data**" in text
    assert "| RNN | 84.8 | 39.6 | 80.0 | 40.0 ± 10.0 |" in text  # the paper's beside the mean ± std of ours
    assert f"{{doc}}`{registry.IRNN.number} </book/executed/{registry.IRNN.name}>`" in text
    assert "| 6 |" in text and "| 52.9 | 36.0 |" in text
    findings = text[text.index("findings"):text.index("Table 1")]
    assert "the RNN beats the aggregated CNN, which beats frame averaging (val) |" in findings
    assert findings.count("| yes |") == 4  # every finding holds on these numbers
    assert text.index("findings") < text.index("Table 1")  # at a glance: first


def test_headline_without_results(tmp_path):
    executed = tmp_path / "book" / "executed"
    executed.mkdir(parents=True)
    book_pages.write_headline(executed)
    assert "No results yet" in (executed / book_pages.HEADLINE).read_text()


def test_prepare_book_writes_every_generated_page(tmp_path):
    site, run, executed = _fake_run(tmp_path)
    written = book_pages.prepare_book(site)
    names = {p.relative_to(executed).as_posix() for p in written}
    assert {book_pages.STATS_PAGE, book_pages.HEADLINE, f"myst/{registry.IRNN.name}.md"} <= names
    assert (executed / "myst" / f"{registry.IRNN.name}.md").read_text() == registry.IRNN.source.read_text()
    before = {p: p.stat().st_mtime_ns for p in executed.glob("*.ipynb")}
    book_pages.prepare_book(site)  # up-to-date notebooks are not rewritten
    assert before == {p: p.stat().st_mtime_ns for p in executed.glob("*.ipynb")}


@pytest.mark.parametrize("a,b,same", [(1, 1.0, True), (True, 1, False), ([1, 2], (1, 2), True),
                                      ("runs/x", str(paths.REPO_ROOT / "runs" / "x"), True), ("a", "b", False)])
def test_parameter_comparison(a, b, same):
    assert book_pages._same(a, b) is same
