"""``emotiw lab``: the JupyterLab command line (unit tests), and a chapter of a smoke variant run in JupyterLab
from headless Chromium (the browser test).

The browser test runs the smoke profile's first stage into a temporary base run (the audio chapter reads
nothing else), writes the working copies of variant ``labtest`` with one parameter of the audio chapter changed
(:func:`emotiw_utils.working_copies.prepare_lab`), starts JupyterLab on loopback (:func:`emotiw_utils.lab.start_lab`)
and, in Debian's chromium driven by Playwright, opens the audio chapter's working copy, runs all cells from the
Run menu and waits for the kernel. It checks that every code cell ran, that outputs are shown and that none is
an error, that the variant folder then holds the stage's artifacts (the base run is untouched), and that
saving from JupyterLab (Ctrl+S) leaves a valid MyST source without outputs that still has its parameters
cells. Chromium, its flags and the skip logic are those of ``test_book_browser.py``; screenshots of a failure
go to ``_build/lab-browser-failures/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import jupytext
import pytest

from emotiw_utils import lab, paths, pipeline, variants, working_copies
from emotiw_utils import stages as registry
from emotiw_utils.constants import AFEW_SPLITS
from helpers import die_with_the_test, fail_after
from test_book_browser import CHROMIUM_ARGS, _unavailable, find_chromium

#: The quick chapter: it reads only the datasets (no CNN to train first).
STAGE = registry.AUDIO
#: Its one changed parameter in the variant: no comparison of other audio models (the chapter's slowest cell).
OVERRIDE = f"{STAGE.name}.compare_models=[]"
VARIANT = "labtest"
#: Whole browser test (base run, server, browser, the chapter run) on 2 busy cores.
TIME_LIMIT = 900


# ---- the command line (no server) --------------------------------------------------------------------------

def _opt(cmd: list[str], name: str) -> str | None:
    found = [c.split("=", 1)[1] for c in cmd if c.startswith(f"--{name}=")]
    assert len(found) <= 1, (name, cmd)
    return found[0] if found else None


def test_command_is_loopback_with_a_token_in_the_environment(tmp_path):
    token = "f" * 48
    cmd, env = lab.lab_command(tmp_path, 8890, token, as_root=False)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert _opt(cmd, "ServerApp.ip") == "127.0.0.1" == lab.LOOPBACK
    assert not any("0.0.0.0" in c or c.startswith("--ip=") for c in cmd), cmd
    assert _opt(cmd, "ServerApp.port") == "8890" and _opt(cmd, "ServerApp.port_retries") == "0"
    assert "--no-browser" in cmd and "--allow-root" not in cmd
    assert _opt(cmd, "ServerApp.root_dir") == str(tmp_path.resolve())  # outside the repository: the folder itself
    assert _opt(cmd, "MappingKernelManager.default_kernel_name") == lab.KERNEL_NAME == working_copies.LAB_KERNEL
    # the token is passed to the server explicitly, through its environment, never on the command line (ps)
    assert env["JUPYTER_TOKEN"] == token and not any(token in c for c in cmd)
    # JupyterLab's own files go under the working copies' folder, not the home folder
    state = tmp_path.resolve() / lab.STATE_DIR
    for key in ("JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR"):
        assert Path(env[key]).is_relative_to(state), key
    for name in ("LabApp.user_settings_dir", "LabApp.workspaces_dir", "NotebookNotary.db_file"):
        assert Path(_opt(cmd, name)).is_relative_to(state), name
    # nothing is fetched from the network
    assert _opt(cmd, "LabApp.news_url") == "None" and _opt(cmd, "LabApp.extension_manager") == "readonly"


def test_allow_root_only_as_root(tmp_path, monkeypatch):
    assert "--allow-root" in lab.lab_command(tmp_path, 8888, "t", as_root=True)[0]
    assert "--allow-root" not in lab.lab_command(tmp_path, 8888, "t", as_root=False)[0]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert "--allow-root" in lab.lab_command(tmp_path, 8888, "t")[0]
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "--allow-root" not in lab.lab_command(tmp_path, 8888, "t")[0]


def test_root_is_the_repository_when_the_working_copies_are_inside_it(tmp_path):
    inside = paths.REPO_ROOT / "runs" / "demo" / variants.VARIANTS_DIR / "x" / variants.LAB_SUBDIR
    assert lab.root_for(inside) == paths.REPO_ROOT  # notebooks/ (the chapter sources) is reachable
    assert lab.root_for(tmp_path) == tmp_path.resolve()


def test_port_selection():
    with socket.socket() as busy:
        busy.bind((lab.LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not lab.port_is_free(port)
        with pytest.raises(ValueError, match=f"port {port} .* in use"):
            lab.free_port(port)
    assert lab.free_port(port) == port  # free again
    with pytest.raises(ValueError, match="not a TCP port"):
        lab.free_port(70000)
    first = lab.free_port()
    assert lab.DEFAULT_PORT <= first < lab.DEFAULT_PORT + lab.PORT_TRIES
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds (TIME_WAIT is no obstacle)
        busy.bind((lab.LOOPBACK, first))
        busy.listen()
        assert lab.free_port() > first  # the next free one


def test_settings_make_markdown_open_as_a_notebook(tmp_path):
    path = lab.install_settings(tmp_path)
    assert path == tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / f"{lab.KERNEL_NAME}.json"
    settings = json.loads(path.read_text())
    viewers = settings["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}
    assert settings["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}
    mtime = path.stat().st_mtime_ns
    lab.install_settings(tmp_path)
    assert path.stat().st_mtime_ns == mtime  # unchanged: not rewritten


def test_url_carries_the_token_and_the_path(tmp_path):
    server = lab.LabServer(proc=None, port=8899, token="abc", root_dir=tmp_path, lab_dir=tmp_path,
                           log=tmp_path / "log", open_path="a b/03.md")
    assert server.url == "http://127.0.0.1:8899/lab/tree/a%20b/03.md?token=abc"
    assert server.url_for("") == "http://127.0.0.1:8899/lab?token=abc"


def test_server_answers_with_the_token_only(tmp_path):
    """A real JupyterLab (no browser): it answers /api/status with the token, refuses without, offers the
    project's kernel as its default, opens .md as a notebook (jupytext), and stops on stop()."""
    import urllib.error
    import urllib.request

    (tmp_path / "a.md").write_text("# title\n\n```{code-cell} ipython3\n1 + 1\n```\n")
    with fail_after(180, "JupyterLab start"), lab.start_lab(tmp_path, preexec_fn=die_with_the_test) as server:
        assert server.status() is not None and server.url.startswith(f"http://127.0.0.1:{server.port}/lab")
        assert f"token={server.token}" in server.url and len(server.token) >= 32
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{server.base}/api/status", timeout=10)
        assert e.value.code == 403

        def get(api):
            req = urllib.request.Request(f"{server.base}{api}", headers={"Authorization": f"token {server.token}"})
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())

        specs = get("/api/kernelspecs")
        assert specs["default"] == lab.KERNEL_NAME
        assert specs["kernelspecs"][lab.KERNEL_NAME]["spec"]["display_name"] == lab.KERNEL_DISPLAY_NAME
        assert get("/api/contents/a.md")["type"] == "notebook"  # jupytext's contents manager
        docmanager = get("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
        assert docmanager["schema"]["properties"]["defaultViewers"]["default"]["markdown"] == "Jupytext Notebook"
    assert server.proc.returncode is not None  # stopped
    assert (tmp_path / lab.STATE_DIR / "runtime").is_dir()


def test_emotiw_lab_prints_the_url_and_stops_on_ctrl_c(tmp_path, monkeypatch, capsys):
    """``emotiw lab``: the working copies are asked for with the command's options, the URL is printed, and a
    Ctrl-C (KeyboardInterrupt while waiting) stops the server with one line, no traceback."""
    from emotiw_utils import cli

    asked = {}

    def fake_prepare_lab(profile, variant=None, run_dir=None, overrides=None, device=None, **kw):
        asked.update(profile=profile, variant=variant, run_dir=run_dir, overrides=overrides, device=device)
        (tmp_path / "lab").mkdir(exist_ok=True)
        return tmp_path / "lab"

    servers = []

    def interrupted(self):
        servers.append(self)
        assert self.status() is not None  # the server answers while the command waits
        raise KeyboardInterrupt

    monkeypatch.setattr(working_copies, "prepare_lab", fake_prepare_lab)
    monkeypatch.setattr(lab.LabServer, "wait", interrupted)
    port = lab.free_port()
    with fail_after(180, "emotiw lab"):
        rc = cli.main(["lab", "--profile", "smoke", "--variant", "v1", "--run-dir", str(tmp_path / "run"),
                       "--device", "cpu", "--port", str(port), "-p", "a.b=1", "-p", "c=2"])
    out, err = capsys.readouterr()
    assert rc == 0 and asked == dict(profile="smoke", variant="v1", run_dir=tmp_path / "run",
                                     overrides=["a.b=1", "c=2"], device="cpu")
    (server,) = servers
    assert server.port == port and f"http://127.0.0.1:{port}/lab" in out and f"token={server.token}" in out
    assert err.strip() == "emotiw lab: stopped" and "Traceback" not in out + err
    assert server.proc.returncode is not None and server.status() is None  # stopped


# ---- the browser test ---------------------------------------------------------------------------------------

def _files(root: Path, skip: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_relative_to(skip)}


#: The notebook's kernel is the project's and idle (the status bar reads "emotiw-book (.venv) | Idle").
_KERNEL_IDLE_JS = """() => {
  const bar = document.querySelector('#jp-main-statusbar');
  return !!bar && bar.innerText.includes('""" + lab.KERNEL_DISPLAY_NAME + """ | Idle');
}"""

#: Every code cell has run when none is queued or running ([*]) and the cells that ran are numbered.
_PROMPTS_JS = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')).map(p => p.textContent.trim())"""

_OUTPUTS_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const cells = Array.from(nb.querySelectorAll('.jp-CodeCell'));
  const stderr = Array.from(nb.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')).map(e => e.innerText);
  return {
    cells: cells.length,
    with_output: cells.filter(c => c.querySelector('.jp-OutputArea-output')).length,
    outputs: nb.querySelectorAll('.jp-OutputArea-output').length,
    images: nb.querySelectorAll('.jp-OutputArea-output img').length,
    texts: Array.from(nb.querySelectorAll('.jp-OutputArea-output .jp-RenderedText, .jp-OutputArea-output .jp-RenderedHTMLCommon'))
             .map(e => e.innerText.trim()).filter(t => t.length > 20).slice(0, 20),
    errors: stderr.filter(t => /Traceback|^\\w+(Error|Exception)\\b/m.test(t)),
    status: (document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator') || {})
              .dataset?.status ?? null,
  };
}"""


@pytest.fixture(scope="module")
def chromium():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        _unavailable(f"Playwright's Python package is not installed ({e})")
    found = find_chromium()
    if found is None:
        env = os.environ.get("EMOTIW_CHROMIUM")
        _unavailable(f"EMOTIW_CHROMIUM={env} is not a file" if env else "no Chromium found")
    return found


@pytest.mark.slow
@pytest.mark.browser
def test_a_variant_chapter_runs_in_jupyterlab(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("EMOTIW_BROWSER_SCREENSHOTS", paths.REPO_ROOT / "_build" / "lab-browser-failures"))
    t0 = time.monotonic()
    with fail_after(TIME_LIMIT, "the JupyterLab browser test"):
        base = tmp_path / "run"
        pipeline.run_pipeline("smoke", stages=[registry.DATASETS.name], run_dir=base,
                              executed_dir=tmp_path / "executed", device="cpu", progress=False)
        t_base = time.monotonic() - t0
        lab_dir = working_copies.prepare_lab("smoke", VARIANT, run_dir=base, overrides=[OVERRIDE], device="cpu")
        vdir = variants.variant_dir(base, VARIANT)
        assert lab_dir == vdir.resolve() / variants.LAB_SUBDIR
        copy = lab_dir / f"{STAGE.name}.md"
        assert copy.is_file()
        before = _files(base, skip=base / variants.VARIANTS_DIR)
        source_before = copy.read_text(encoding="utf-8")
        assert "compare_models = []" in source_before  # the variant's override is in the working copy

        with lab.start_lab(lab_dir, preexec_fn=die_with_the_test) as server, sync_playwright() as pw:
            try:
                ctx = pw.chromium.launch_persistent_context(
                    str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True,
                    args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000}, service_workers="block")
            except Exception as e:  # noqa: BLE001 (as test_book_browser.py: a browser that cannot start)
                if "Executable doesn't exist" in str(e) or "Failed to launch" in str(e):
                    _unavailable(f"Chromium at {chromium} does not start: {str(e).splitlines()[0]}")
                raise
            page = ctx.new_page()
            console: list[str] = []
            page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
            try:
                page.goto(server.url_for(server.rel(copy)), wait_until="load")
                # opened as a notebook (jupytext's viewer, the default for .md), with the project's kernel
                page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell",
                                       timeout=120_000)
                page.wait_for_function(_KERNEL_IDLE_JS, timeout=120_000, polling=500)
                t_open = time.monotonic()
                # Run > Run All Cells
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
                page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
                page.wait_for_function(f"() => ({_PROMPTS_JS})().some(p => p === '[*]:')", timeout=60_000)
                page.wait_for_function(
                    f"() => {{ const p = ({_PROMPTS_JS})(); return p.length > 0 && !p.some(t => t === '[*]:'); }}",
                    timeout=(TIME_LIMIT - 120) * 1000, polling=1000)
                page.wait_for_function(_KERNEL_IDLE_JS, timeout=60_000, polling=500)
                t_run = time.monotonic() - t_open
                prompts = page.evaluate(_PROMPTS_JS)
                info = page.evaluate(_OUTPUTS_JS)
                # saved from JupyterLab (Ctrl+S): jupytext writes the MyST source back
                mtime = copy.stat().st_mtime_ns
                page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell").first.click()
                page.keyboard.press("Escape")  # command mode, focus in the notebook
                page.keyboard.press("Control+s")
                deadline = time.monotonic() + 60
                while copy.stat().st_mtime_ns == mtime and time.monotonic() < deadline:
                    time.sleep(0.5)
                saved = copy.stat().st_mtime_ns != mtime
            except BaseException:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / f"{STAGE.name}.png"), full_page=True)
                raise
            finally:
                ctx.close()
        print(f"base run {t_base:.0f} s, {STAGE.name} in JupyterLab {t_run:.0f} s, whole test "
              f"{time.monotonic() - t0:.0f} s")

    # every code cell ran, in order, with outputs and without an error
    assert all(p.startswith("[") and p[1:-2].isdigit() for p in prompts), prompts
    assert [int(p[1:-2]) for p in prompts] == list(range(1, len(prompts) + 1)), prompts
    assert info["errors"] == [], "error outputs:\n" + "\n---\n".join(info["errors"])
    assert info["outputs"] >= 5 and info["with_output"] >= 3 and info["images"] >= 1, info
    assert not console, console

    # the stage's artifacts are in the variant's own folder; the base run is untouched
    sdir = STAGE.dir(vdir)
    assert sdir.is_dir() and not sdir.is_symlink()
    assert (sdir / registry.METRICS).is_file() and (sdir / registry.MANIFEST).is_file()
    for split in AFEW_SPLITS:
        assert STAGE.path(vdir, "clip_probs", split=split).is_file(), split
    manifest = json.loads((sdir / registry.MANIFEST).read_text())
    assert manifest["status"] == "ok" and manifest["parameters"]["compare_models"] == []
    assert not STAGE.dir(base).exists()
    assert _files(base, skip=base / variants.VARIANTS_DIR) == before

    # the saved working copy is a valid MyST source with no output and its parameters cells
    assert saved, "Ctrl+S did not write the working copy"
    text = copy.read_text(encoding="utf-8")
    nb = jupytext.read(copy, fmt="md:myst")
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    assert "Traceback" not in text and '"output_type"' not in text and "execution_count" not in text
    assert not any(t in text for t in info["texts"]), "an output was written into the source"
    tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
    assert "parameters" in tags and "injected-parameters" in tags and working_copies.RECORD_TAG in tags
    assert "compare_models = []" in text and str(vdir.resolve()) in text
