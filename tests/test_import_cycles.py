"""The package has no import cycle, counting the imports inside functions too (issue 13, item 6)."""

from __future__ import annotations

import ast

from emotiw_utils import paths

PACKAGE = "emotiw_utils"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for f in sorted((paths.REPO_ROOT / PACKAGE).rglob("*.py")):
        parts = f.relative_to(paths.REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(f.read_text(encoding="utf-8"))
    return out


def _imports(name: str, tree: ast.Module, known: set[str], is_package: bool) -> set[str]:
    """The package's modules that ``name`` imports anywhere (``from . import x`` counts as importing ``.x``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[:len(here) - node.level + 1]
                base = ".".join(here + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t not in known and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in known and t != name:
                found.add(t)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (c := visit(w)):
                return c
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (c := visit(v)):
            return c
    return None


def test_no_import_cycle():
    mods = _modules()
    known = set(mods)
    graph = {n: _imports(n, t, known, n == PACKAGE or (paths.REPO_ROOT / n.replace(".", "/") / "__init__.py").is_file())
             for n, t in mods.items()}
    # __init__ modules that only hand names on are left out: importing a package's submodule runs them anyway
    cycle = _cycle({n: {d for d in deps if d != PACKAGE} for n, deps in graph.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
