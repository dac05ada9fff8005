"""The stage registry (emotiw_utils.stages) and the rule that stage and artifact names live only there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import pytest

from emotiw_utils import paths, records, stages

# Code that must take stage names and artifact file names from the registry.
CODE_GLOBS = ("emotiw_utils/**/*.py", "bench/*.py", "tests/conftest.py", *(s.notebook for s in stages.STAGES))
REGISTRY = paths.REPO_ROOT / "emotiw_utils" / "stages.py"


def test_registry_is_complete_and_ordered():
    names = [s.name for s in stages.STAGES]
    assert names == list(stages.STAGE_NAMES) and len(set(names)) == len(names)
    assert all(re.fullmatch(r"\d\d[a-z]?_[a-z0-9_]+", n) for n in names)
    assert [s.number for s in stages.STAGES] == sorted(s.number for s in stages.STAGES)
    for s in stages.STAGES:
        assert s.exists, f"{s.name}: notebook {s.notebook} missing"
        for r in s.reads:
            assert names.index(r) < names.index(s.name)
        if s.record is not None:
            assert issubclass(records.record_class(s), records.Record)


def test_artifact_names_are_unique_per_stage_and_filled_in():
    for s in stages.STAGES:
        patterns = [a.pattern for a in s.artifacts.values()]
        assert len(set(patterns)) == len(patterns), s.name
        assert stages.MANIFEST not in patterns and stages.METRICS not in patterns
    assert stages.IRNN.file("clip_probs", split="Val") == "clip_probs_Val.npz"
    assert stages.FUSION.file("regime_probs", regime="stable", split="Test") == "clip_probs_stable_Test.npz"
    assert stages.IRNN.path("/r", "irnn") == Path("/r/03_irnn/irnn.pt")
    with pytest.raises(ValueError, match="needs fields"):
        stages.IRNN.file("clip_probs")
    with pytest.raises(KeyError, match="03_irnn writes no artifact 'nope'"):
        stages.IRNN.path("/r", "nope")


def test_resolve_and_require(tmp_path):
    assert stages.get("03").name == "03_irnn" and stages.resolve_stage_name("10") == "10_results"
    with pytest.raises(ValueError, match="ambiguous stage '0'"):
        stages.resolve_stage_name("0")
    with pytest.raises(ValueError, match="unknown stage 'x'.*00_datasets"):
        stages.get("x")
    with pytest.raises(FileNotFoundError, match="run stage 02_cnn first"):
        stages.CNN.require(tmp_path, "cnn")
    p = stages.CNN.path(tmp_path, "cnn")
    p.parent.mkdir()
    p.write_bytes(b"x")
    assert stages.CNN.require(tmp_path, "cnn") == p


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="not among its artifacts"):
        stages.Stage("99_x", "x.md", "X", models=("m",))


# ---- nothing outside the registry spells out a stage name or an artifact file name ---------------

def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal of a module (f-strings with their fields as ``{}``), docstrings left out."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append((node.lineno, node.value))
    return out


def _code_units() -> list[tuple[str, ast.AST]]:
    units = []
    for pattern in CODE_GLOBS:
        for f in sorted(paths.REPO_ROOT.glob(pattern)):
            if f == REGISTRY:
                continue
            rel = str(f.relative_to(paths.REPO_ROOT))
            if f.suffix == ".py":
                units.append((rel, ast.parse(f.read_text(encoding="utf-8"))))
                continue
            nb = jupytext.read(f)
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
                    continue  # the parameters cell holds `stage = "03_irnn"`: the runner's own value
                src = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
                units.append((f"{rel} cell {i}", ast.parse(src)))
    return units


def _forbidden() -> list[tuple[str, re.Pattern]]:
    pats = [(n, re.compile(rf"(?<![\w/]){re.escape(n)}(?!\w)")) for n in stages.STAGE_NAMES]
    files = {stages.MANIFEST, stages.METRICS, stages.EXECUTED_COPY}
    for s in stages.STAGES:
        files.update(a.pattern for a in s.artifacts.values())
    for pattern in sorted(files):
        parts = re.split(r"\{[^}]*\}", pattern)
        if len(parts) > 1 and len(parts[0]) < 4:
            continue  # a name like "sub{number}_predictions.csv" is matched by its tail instead
        rx = r"(?:\{[^}]*\}|[\w*]+)".join(re.escape(p) for p in parts)
        pats.append((pattern, re.compile(rf"(?<![\w]){rx}(?![\w])")))
    return pats


def test_no_stage_or_artifact_name_outside_the_registry():
    forbidden = _forbidden()
    hits = []
    for where, tree in _code_units():
        for line, text in _strings(tree):
            for what, rx in forbidden:
                if rx.search(text):
                    hits.append(f"{where}:{line}: {what!r} in {text[:80]!r}")
    assert not hits, "spelled out instead of taken from emotiw_utils.stages:\n" + "\n".join(hits)


def test_the_scan_catches_a_literal(tmp_path):
    tree = ast.parse('"""docstring: 02_cnn"""\nx = "03_irnn"\ny = f"clip_probs_{s}.npz"\nz = "is10_*.npz"')
    found = {what for _, text in _strings(tree) for what, rx in _forbidden() if rx.search(text)}
    assert found == {"03_irnn", "clip_probs_{split}.npz", "is10_{split}.npz"}
