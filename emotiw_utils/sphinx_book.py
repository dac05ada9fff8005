"""Sphinx extension for the rendered book as a reader opens it (issue 17); ``_config.yml`` loads it.

* Every script tag once: Jupyter Book 1's sphinx-thebe adds its inline configuration twice to every page, and
  the second copy is a JavaScript error in every reader's console (``Identifier 'THEBE_JS_URL' has already
  been declared``).
* The theme's download menu (the download button at the top of a chapter) offers the chapter's MyST source
  beside its executed ``.ipynb``: the file :mod:`emotiw_utils.book_pages` writes to
  ``book/executed/myst/<chapter>.md``, which the chapter's "executed with" box links with ``{download}``
  (so Sphinx has already copied it into ``_downloads/``).
"""

from __future__ import annotations

import posixpath

from .book_pages import MYST_DIR

__all__ = ["setup"]


def _unique_scripts(app, pagename, templatename, context, doctree):  # noqa: ANN001 (Sphinx event)
    seen, out = set(), []
    for js in context.get("script_files") or []:
        attrs = getattr(js, "attributes", {}) or {}
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:  # the same file or inline body, whatever its priority
            seen.add(key)
            out.append(js)
    if "script_files" in context:
        context["script_files"] = out


def _myst_download(app, pagename, templatename, context, doctree):  # noqa: ANN001 (Sphinx event)
    myst = posixpath.join(posixpath.dirname(pagename), MYST_DIR, posixpath.basename(pagename) + ".md")
    entry = app.env.dlfiles.get(myst)
    if not entry:
        return
    url = context["pathto"]("_downloads/" + entry[1], 1)
    for group in context.get("header_buttons", []):
        if group.get("label") == "download-buttons":
            buttons = group["buttons"]
            at = next((i + 1 for i, b in enumerate(buttons) if b.get("text") == ".ipynb"), 0)
            buttons.insert(at, {"type": "link", "url": url, "text": ".md (MyST)", "icon": "fas fa-file-lines",
                                "tooltip": "Download the MyST source of this notebook",
                                "label": "download-myst-button"})


def setup(app):  # noqa: ANN001, ANN201 (Sphinx's extension entry point)
    app.connect("html-page-context", _unique_scripts, priority=900)
    app.connect("html-page-context", _myst_download, priority=600)  # after the theme's buttons (501)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
