"""A Sphinx directive that renders the stage table of the architecture page from the registry.

``_config.yml`` loads this module as a Sphinx extension; a page then writes::

    ```{stage-table}
    ```

and the book shows one row per stage of :mod:`emotiw_utils.stages` (notebook, paper section, what it reads,
the files it writes, the models it persists), so the page can never disagree with the code.
"""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

from . import stages

__all__ = ["setup", "stage_table_markdown"]


def _code(text: str) -> str:
    return f"`{text}`"


def stage_table_markdown() -> str:
    """The stage table as a Markdown pipe table."""
    head = ["stage", "paper", "notebook", "reads", "writes", "persisted models", "record"]
    rows = []
    for s in stages.STAGES:
        files = [a.pattern for a in s.artifacts.values()]
        rows.append([
            _code(s.name), s.section, _code(s.notebook),
            ", ".join(_code(r) for r in s.reads) or "the datasets",
            ", ".join(_code(f) for f in files) or "–",
            ", ".join(_code(s.artifacts[m].pattern) for m in s.models) or "–",
            _code(s.record) if s.record else "–",
        ])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


class StageTable(Directive):
    """``{stage-table}``: the registry's stages as a table (no arguments, no content)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        lines = StringList(stage_table_markdown().splitlines(), source="emotiw_utils/stages.py")
        self.state.nested_parse(lines, self.content_offset, container)
        return container.children


def setup(app):  # noqa: ANN001, ANN201 (Sphinx's extension entry point)
    app.add_directive("stage-table", StageTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
