"""The rendered smoke book opened as a reader opens it: headless Chromium, every page, the network blocked.

Reuses the smoke book that ``tests/conftest.py`` builds once per session (the same build ``test_smoke.py``
checks). The book is served from 127.0.0.1; every request to any other host is aborted and recorded. The
test fails on a JavaScript console error, a request the book makes to another host, a local file that does not
load, an image that did not load, an internal link to a missing page or anchor, unrendered math (raw ``\\(``,
``\\[`` or ``$$`` in the visible text, or a math element without MathJax's output), and a chapter without its
executed outputs; it also checks what issue 17 put on the pages (the parameters box, downloads, the execution
statistics and the landing page's comparison with the paper).

The browser is Debian's ``chromium`` (``make browser`` installs it), driven by Playwright's Python package with
``executable_path`` (Playwright downloads nothing). Without a browser the test is skipped with the reason,
except when ``EMOTIW_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where that is a failure. Screenshots of the pages
with a problem go to ``_build/browser-failures/`` (git-ignored), or ``$EMOTIW_BROWSER_SCREENSHOTS``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from emotiw_utils import paths
from emotiw_utils import stages as registry

pytestmark = [pytest.mark.slow, pytest.mark.browser]

#: Set (to 1) in CI: no browser is a failure there, not a skip.
REQUIRE_ENV = "EMOTIW_REQUIRE_BROWSER"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/usr/bin/chromium-browser")
#: As root in a container, without a GPU, and without any of Chromium's own traffic (updates, sync, QUIC).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--mute-audio"]
#: Folders of the built book that hold assets, not pages.
ASSET_DIRS = ("_static", "_sources", "_downloads", "_images")


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0", "false", "no")


def _unavailable(reason: str):
    if _required():
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, as in CI: `make browser` installs Debian's chromium)")
    pytest.skip(f"{reason}; `make browser` installs Debian's chromium (as root)")


def find_chromium() -> str | None:
    """``$EMOTIW_CHROMIUM``, else Debian's chromium, else one on PATH; None when there is none."""
    env = os.environ.get("EMOTIW_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for c in CHROMIUM_CANDIDATES:
        if Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D102 (no access log in the test output)
        pass


def _serve(root: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


#: Collected in the page once it has loaded and MathJax has typeset (see :func:`inspect_book`).
_PAGE_JS = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = "eager"; }
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  const visible = el => !el || !el.checkVisibility || el.checkVisibility({visibilityProperty: true});
  const skip = "script,style,pre,code,textarea,mjx-container,mjx-assistive-mml,.highlight";
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip) || !visible(el)) continue;
    const t = n.textContent;
    const m = t.match(/\\\(|\\\)|\\\[|\\\]|\$\$/);
    if (m) raw.push(t.slice(Math.max(0, m.index - 40), m.index + 60).trim());
  }
  const math = Array.from(document.querySelectorAll(".math"));
  const main = document.querySelector("article") || document.querySelector("main") || document.body;
  return {
    title: document.title,
    images: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.currentSrc || i.src),
    n_images: imgs.length,
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    ids: Array.from(document.querySelectorAll("[id]")).map(e => e.id)
           .concat(Array.from(document.querySelectorAll("a[name]")).map(a => a.name)),
    raw_math: raw,
    math: math.length,
    unrendered_math: math.filter(e => !e.querySelector("mjx-container")).map(e => e.textContent.slice(0, 80)),
    mathjax_version: (window.MathJax && MathJax.version) || null,
    outputs: document.querySelectorAll(".cell_output").length,
    tracebacks: document.querySelectorAll(".cell_output .traceback, .cell_output .output.error").length,
    text: main.innerText,
    tables: Array.from(main.querySelectorAll("table")).map(
      t => Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.innerText.trim()))),
    downloads: Array.from(document.querySelectorAll("a.download, a[href*='_downloads/'], a[href*='_sources/']"))
                 .map(a => a.href),
  };
}"""


def book_pages(html: Path) -> list[str]:
    """Every page of a built book, as paths relative to ``html`` (assets excluded)."""
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                  if p.relative_to(html).parts[0] not in ASSET_DIRS)


def inspect_book(html: Path, chromium: str, profile_dir: Path, shots: Path) -> dict:
    """Open every page of the book in ``html`` and return what was found, per page and overall."""
    from playwright.sync_api import sync_playwright

    server, origin = _serve(html)
    chapters = {s.name for s in registry.STAGES}
    blocked: list[str] = []
    report: dict = {"origin": origin, "pages": {}, "blocked": blocked}

    def route(r):
        url = r.request.url
        if url.startswith(origin + "/") or url.startswith(("data:", "blob:", "about:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort("blockedbyclient")

    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(profile_dir), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900}, service_workers="block")
            try:
                ctx.route("**/*", route)
                page = ctx.new_page()
                current: dict = {}
                page.on("console", lambda m: m.type == "error" and current["console"].append(m.text))
                page.on("pageerror", lambda e: current["console"].append(f"uncaught: {e}"))
                page.on("requestfailed", lambda r: r.url.startswith(origin) and current["failed"].append(
                    f"{r.url} ({r.failure})"))
                page.on("response", lambda r: r.url.startswith(origin) and r.status >= 400 and current[
                    "failed"].append(f"{r.url} (HTTP {r.status})"))
                for rel in book_pages(html):
                    current.clear()
                    current.update(console=[], failed=[])
                    page.goto(f"{origin}/{rel}", wait_until="load")
                    page.wait_for_load_state("networkidle")
                    info = page.evaluate(_PAGE_JS)
                    info.update(console=list(current["console"]), failed=list(current["failed"]),
                                url=page.url)
                    report["pages"][rel] = info
                    chapter = rel.startswith("book/executed/") and Path(rel).stem in chapters
                    if info["console"] or info["failed"] or info["images"] or info["raw_math"] or \
                            info["unrendered_math"] or (chapter and (not info["outputs"] or info["tracebacks"])):
                        shots.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(shots / (rel.replace("/", "__") + ".png")), full_page=True)
            finally:
                ctx.close()
    finally:
        server.shutdown()
        server.server_close()
    return report


def _link_problems(html: Path, report: dict) -> list[str]:
    origin = report["origin"]
    ids = {rel: set(info["ids"]) for rel, info in report["pages"].items()}
    problems = []
    for rel, info in report["pages"].items():
        for href in info["links"]:
            if not href.startswith(origin + "/"):
                continue  # another host (never requested: the route blocks it) or javascript:, mailto:
            parts = urlsplit(href)
            target = unquote(parts.path).lstrip("/") or "index.html"
            if target.endswith("/"):
                target += "index.html"
            if not (html / target).is_file():
                problems.append(f"{rel}: link to missing {target}")
                continue
            frag = unquote(parts.fragment)
            if frag and target.endswith(".html"):
                known = ids.get(target)
                if known is None:
                    known = set(re.findall(r'\b(?:id|name)="([^"]+)"', (html / target).read_text(errors="replace")))
                if frag not in known:
                    problems.append(f"{rel}: link to missing anchor {target}#{frag}")
    return sorted(set(problems))


@pytest.fixture(scope="module")
def browser_report(request, tmp_path_factory):
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        _unavailable(f"Playwright's Python package is not installed ({e})")
    chromium = find_chromium()
    if chromium is None:
        env = os.environ.get("EMOTIW_CHROMIUM")
        _unavailable(f"EMOTIW_CHROMIUM={env} is not a file" if env else
                     f"no Chromium found ({', '.join(CHROMIUM_CANDIDATES)} or chromium on PATH)")
    smoke = request.getfixturevalue("smoke")
    assert smoke["build"].returncode == 0, "the smoke book did not build (see test_smoke.py)"
    html = smoke["site"] / "_build" / "html"
    shots = Path(os.environ.get("EMOTIW_BROWSER_SCREENSHOTS", paths.REPO_ROOT / "_build" / "browser-failures"))
    shutil.rmtree(shots, ignore_errors=True)
    try:
        report = inspect_book(html, chromium, tmp_path_factory.mktemp("chromium-profile"), shots)
    except Exception as e:  # noqa: BLE001 (a browser that cannot start is "no browser" outside CI)
        if "Executable doesn't exist" in str(e) or "Failed to launch" in str(e):
            _unavailable(f"Chromium at {chromium} does not start: {str(e).splitlines()[0]}")
        raise
    report.update(html=html, shots=shots, smoke=smoke)
    return report


def _chapters(report) -> dict[str, dict]:
    names = {s.name for s in registry.STAGES}
    return {rel: info for rel, info in report["pages"].items()
            if rel.startswith("book/executed/") and Path(rel).stem in names}


def _fmt(problems: dict[str, list]) -> str:
    return "\n".join(f"{rel}: {items}" for rel, items in problems.items() if items)


def test_every_page_is_opened(browser_report):
    pages = browser_report["pages"]
    assert "index.html" in pages and "book/intro.html" in pages and "book/executed/execution_stats.html" in pages
    executed = {Path(p).stem for p in (browser_report["smoke"]["site"] / "book" / "executed").glob("*.ipynb")}
    assert executed and {Path(rel).stem for rel in _chapters(browser_report)} == executed


def test_no_request_leaves_the_machine(browser_report):
    assert browser_report["blocked"] == [], "requests to other hosts: " + ", ".join(sorted(set(
        browser_report["blocked"])))


def test_no_console_errors_or_failed_files(browser_report):
    bad = {rel: info["console"] + info["failed"] for rel, info in browser_report["pages"].items()}
    assert not any(bad.values()), _fmt(bad) + f"\nscreenshots: {browser_report['shots']}"


def test_images_load(browser_report):
    bad = {rel: info["images"] for rel, info in browser_report["pages"].items()}
    assert not any(bad.values()), _fmt(bad) + f"\nscreenshots: {browser_report['shots']}"
    assert sum(info["n_images"] for info in _chapters(browser_report).values()) >= 10


def test_internal_links_resolve(browser_report):
    problems = _link_problems(browser_report["html"], browser_report)
    assert not problems, "\n".join(problems)


def test_math_is_rendered_offline(browser_report):
    pages = browser_report["pages"]
    raw = {rel: info["raw_math"] for rel, info in pages.items()}
    assert not any(raw.values()), "raw TeX in the visible text:\n" + _fmt(raw)
    unrendered = {rel: info["unrendered_math"] for rel, info in pages.items()}
    assert not any(unrendered.values()), "math without MathJax output:\n" + _fmt(unrendered)
    with_math = [rel for rel, info in pages.items() if info["math"]]
    assert with_math, "no page has math: the check would prove nothing"
    assert all(pages[rel]["mathjax_version"] for rel in with_math)


def test_chapters_show_their_executed_outputs(browser_report):
    chapters = _chapters(browser_report)
    empty = [rel for rel, info in chapters.items() if info["outputs"] == 0]
    assert not empty, f"chapters without executed outputs: {empty}"
    errors = [rel for rel, info in chapters.items() if info["tracebacks"]]
    assert not errors, f"chapters showing a traceback: {errors}"


def test_chapters_show_the_parameters_of_this_execution(browser_report):
    for rel, info in _chapters(browser_report).items():
        text = info["text"]
        assert "Executed with profile smoke, seed 0, device cpu" in text, rel
        # the notebook's defaults cell (run_dir = "runs/smoke") is not what the reader sees
        assert 'run_dir = "runs/smoke"' not in text, rel
        assert "this execution" in text and "default" in text, rel


def test_chapters_offer_their_notebook_and_myst_source(browser_report):
    html = browser_report["html"]
    for rel, info in _chapters(browser_report).items():
        stem = Path(rel).stem
        names = {unquote(urlsplit(u).path).rsplit("/", 1)[-1] for u in info["downloads"]}
        assert f"{stem}.ipynb" in names and f"{stem}.md" in names, (rel, sorted(names))
    assert (html / "_sources" / "book" / "executed" / f"{registry.IRNN.name}.ipynb").is_file()  # theme's download


def test_execution_statistics_page(browser_report):
    page = browser_report["pages"]["book/executed/execution_stats.html"]
    head, *rows = page["tables"][0]
    assert head[:3] == ["chapter", "status", "wall time"]
    executed = sorted(p.stem for p in (browser_report["smoke"]["site"] / "book" / "executed").glob("*.ipynb"))
    assert [r[0][:2] for r in rows[:-1]] == [name[:2] for name in executed], rows  # a row per chapter, in order
    assert all(r[1] == "ran" for r in rows[:-1]), rows  # every chapter ran in the smoke fixture
    assert rows[-1][0] == "total" and rows[-1][1] == f"{len(executed)} ran" and re.search(r"\d", rows[-1][2])
    assert "torch" in page["text"] and "profile smoke" in page["text"]


def test_landing_page_answers_does_it_reproduce(browser_report):
    page = browser_report["pages"]["book/intro.html"]
    assert "Does it reproduce?" in page["text"] and "profile smoke" in page["text"]
    findings, table1, table2 = page["tables"][:3]  # at a glance first, then Tables 1 and 2
    assert findings[0] == ["finding", "paper", "ours", "holds here?"] and len(findings) > 2
    assert all(r[3] in ("yes", "no") for r in findings[1:]), findings
    assert table1[0][3:5] == ["ours (synthetic): train", "ours (synthetic): val"]
    rnn = next(r for r in table1 if r[0] == "RNN")
    assert rnn[1:3] == ["84.8", "39.6"] and re.match(r"\d+\.\d", rnn[4]) and rnn[5] == registry.IRNN.number
    assert [r[0] for r in table2[1:]] == [str(n) for n in range(1, 8)] and table2[6][2] == "52.9"
    assert re.match(r"\d+\.\d", table2[6][3])
