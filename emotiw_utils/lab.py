"""``emotiw lab``: JupyterLab on the working copies of a variant's chapters, on loopback, with a token.

What is implemented
-------------------
* :func:`start_lab` starts ``python -m jupyterlab`` (the interpreter of the ``emotiw`` command, so the
  virtualenv's JupyterLab, jupytext and kernel) and returns a :class:`LabServer` (a context manager with
  ``.url``, ``.token``, ``.port``, ``.stop()``) once the server answers ``/api/status`` with the token. It
  listens on ``127.0.0.1`` only (never ``0.0.0.0``), on port 8888 or the next free one (or the ``port``
  asked for, refused in one line when it is taken), with a random token (:func:`secrets.token_hex`), no
  browser of its own, and ``--allow-root`` only when the process runs as root. The token reaches the
  server through its environment (``JUPYTER_TOKEN``), not its command line, so ``ps`` does not show it.
* :func:`lab_command` builds that command line and environment (what the unit tests check).
* :func:`serve` is ``emotiw lab``: :func:`emotiw_utils.working_copies.prepare_lab` writes the working copies
  (``<run or variant folder>/lab/NN_stage.md``: the chapter with the profile's resolved parameters, the
  variant's overrides and its ``run_dir``), then JupyterLab starts on them, the URL with the token is printed
  and the command waits for the server; Ctrl-C stops the server (and its kernels) and prints one line.
* The root of JupyterLab's file browser is the repository when the working copies are inside it (the default
  ``runs/...``): the chapter sources in ``notebooks/`` are then one click away, and the URL opens the working
  copies' folder. A working-copy folder outside the repository (``--run-dir`` elsewhere) is the root itself.
* ``.md`` files open as notebooks: jupytext's JupyterLab extension (installed with the ``jupytext`` package)
  registers the "Jupytext Notebook" viewer, and :func:`install_settings` makes it the default viewer of the
  ``markdown`` and ``myst`` file types (jupytext's documented ``defaultViewers`` setting) in a JupyterLab
  settings override of the virtualenv
  (``<sys.prefix>/share/jupyter/lab/settings/overrides.d/emotiw-book.json``; ``make install`` writes it,
  :func:`start_lab` writes it when missing). Saving writes the MyST markdown back, without outputs.
* The kernel spec ``emotiw-book`` ("emotiw-book (.venv)"), installed into the virtualenv
  (``python -m ipykernel install --sys-prefix``; ``make install`` does it, :func:`start_lab` when missing), is
  the server's default kernel, and ``JUPYTER_PREFER_ENV_PATH=1`` makes the virtualenv's kernel specs win over
  a user-level one of the same name.

Deviations and choices
----------------------
* JupyterLab's own files stay out of the home folder: its runtime files (connection files, the cookie
  secret), user settings, workspaces, notebook-trust database, Jupyter config and data folders and the server
  log go to ``<lab folder>/.jupyter`` (hidden in the file browser). So a user's ``~/.jupyter`` configuration
  and ``~/.local/share/jupyter`` kernels and extensions are not read: the server is the virtualenv's alone.
  The kernels' IPython history still goes where IPython puts it (``~/.ipython``), as under ``emotiw run``.
* No request leaves the machine: JupyterLab's news feed and update check are off, its extension manager is
  read-only (it would list PyPI otherwise), and jupyter-lsp does not look for language servers (it runs
  ``npm`` to find them; none is installed).
* The server runs in its own session (a Ctrl-C in the terminal reaches ``emotiw lab`` only, which then stops
  the server with SIGTERM: JupyterLab's own Ctrl-C handler would ask "Shutdown this Jupyter server (y/[n])?"),
  and it receives SIGTERM when the process that started it dies (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from . import paths
from .working_copies import LAB_KERNEL, LAB_KERNEL_DISPLAY

__all__ = ["DEFAULT_PORT", "KERNEL_DISPLAY_NAME", "KERNEL_NAME", "LOOPBACK", "LabServer", "free_port",
           "install_kernel", "install_settings", "lab_command", "serve", "settings_override", "start_lab"]

#: Only loopback: the server is never reachable from another machine.
LOOPBACK = "127.0.0.1"
#: Jupyter's usual port; the next free one is taken when it is in use.
DEFAULT_PORT = 8888
#: How many ports after ``DEFAULT_PORT`` are tried.
PORT_TRIES = 50
#: The kernel spec named after the project, installed into the virtualenv (the working copies ask for it).
KERNEL_NAME = LAB_KERNEL
KERNEL_DISPLAY_NAME = LAB_KERNEL_DISPLAY
#: The viewer jupytext's JupyterLab extension registers (text notebooks opened as notebooks).
JUPYTEXT_VIEWER = "Jupytext Notebook"
#: JupyterLab's state folder inside the working copies' folder.
STATE_DIR = ".jupyter"
#: Seconds :func:`start_lab` waits for the server to answer.
START_TIMEOUT = 120.0


# ---- one-time setup in the virtualenv -----------------------------------------------------------------------

def settings_override() -> dict:
    """The JupyterLab settings override: ``.md`` (file type ``markdown``) and MyST files open as notebooks, and
    JupyterLab neither asks to fetch its news nor checks for updates (no request leaves the machine)."""
    return {"@jupyterlab/docmanager-extension:plugin": {
                "defaultViewers": {"markdown": JUPYTEXT_VIEWER, "myst": JUPYTEXT_VIEWER}},
            "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def settings_path(prefix: str | Path | None = None) -> Path:
    """``<prefix>/share/jupyter/lab/settings/overrides.d/emotiw-book.json`` (``prefix``: the virtualenv)."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / f"{KERNEL_NAME}.json"


def install_settings(prefix: str | Path | None = None) -> Path:
    """Write :func:`settings_override` where the virtualenv's JupyterLab reads its overrides; returns the file."""
    path = settings_path(prefix)
    text = json.dumps(settings_override(), indent=2) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def kernel_dir(prefix: str | Path | None = None) -> Path:
    """``<prefix>/share/jupyter/kernels/emotiw-book``."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def install_kernel(prefix: str | Path | None = None) -> Path:
    """The ``emotiw-book`` kernel spec of this interpreter in ``prefix`` (as ``ipykernel install --sys-prefix``)."""
    from ipykernel.kernelspec import install

    return Path(install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=str(prefix or sys.prefix)))


def _ensure_setup() -> None:
    """Install the settings override and the kernel spec when missing (a venv installed without ``make``)."""
    try:
        install_settings()
        if not (kernel_dir() / "kernel.json").is_file():
            install_kernel()
    except OSError as e:  # a read-only installation: JupyterLab still runs, .md files open as text
        print(f"emotiw lab: warning: could not write JupyterLab's settings or kernel spec into {sys.prefix}: {e}",
              file=sys.stderr)


# ---- the command line ---------------------------------------------------------------------------------------

def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``host:port`` can be bound now (as the server binds it: SO_REUSEADDR, so a port whose last
    connection is in TIME_WAIT counts as free; one with a listener does not)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(port: int | None = None, tries: int = PORT_TRIES) -> int:
    """``port`` when given and free (ValueError naming it when taken), else ``DEFAULT_PORT`` or the next free one."""
    if port is not None:
        if not 0 < port < 65536:
            raise ValueError(f"--port {port}: not a TCP port (1-65535)")
        if not port_is_free(port):
            raise ValueError(f"port {port} on {LOOPBACK} is in use (leave --port out to take the next free one)")
        return port
    for p in range(DEFAULT_PORT, DEFAULT_PORT + tries):
        if port_is_free(p):
            return p
    raise ValueError(f"no free port on {LOOPBACK} in {DEFAULT_PORT}-{DEFAULT_PORT + tries - 1} (pass --port)")


def root_for(lab_dir: Path) -> Path:
    """The file browser's root: the repository when ``lab_dir`` is inside it (``notebooks/`` reachable), else
    ``lab_dir``."""
    lab_dir = Path(lab_dir).resolve()
    return paths.REPO_ROOT if lab_dir.is_relative_to(paths.REPO_ROOT) else lab_dir


def lab_command(lab_dir: Path, port: int, token: str, *, root_dir: Path | None = None,
                as_root: bool | None = None, python: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The JupyterLab command line and the environment variables to add for it (token, state folders)."""
    lab_dir = Path(lab_dir).resolve()
    root = Path(root_dir).resolve() if root_dir is not None else root_for(lab_dir)
    state = lab_dir / STATE_DIR
    if as_root is None:
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    cmd = [python or sys.executable, "-m", "jupyterlab",
           f"--ServerApp.ip={LOOPBACK}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           "--no-browser", f"--ServerApp.root_dir={root}",
           f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
           f"--LabApp.user_settings_dir={state / 'user-settings'}",
           f"--LabApp.workspaces_dir={state / 'workspaces'}",
           f"--NotebookNotary.db_file={state / 'nbsignatures.db'}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--LanguageServerManager.autodetect=False"]
    if as_root:
        cmd.append("--allow-root")
    env = {"JUPYTER_TOKEN": token, "JUPYTER_PREFER_ENV_PATH": "1", "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
           "JUPYTER_CONFIG_DIR": str(state / "config"), "JUPYTER_DATA_DIR": str(state / "data")}
    return cmd, env


def _term_with_parent() -> None:
    """``preexec_fn``: SIGTERM (a clean shutdown, kernels included) when the process that started it dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass


# ---- the server ---------------------------------------------------------------------------------------------

@dataclass
class LabServer:
    """A running JupyterLab (see :func:`start_lab`). ``url`` opens ``open_path`` with the token."""

    proc: subprocess.Popen
    port: int
    token: str
    root_dir: Path
    lab_dir: Path
    log: Path
    open_path: str = ""
    _log_file: object = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def url_for(self, rel: str = "") -> str:
        """``http://127.0.0.1:PORT/lab/tree/REL?token=...`` (``rel`` relative to the root)."""
        rel = quote(str(rel).strip("/"))
        return f"{self.base}/lab/tree/{rel}?token={self.token}" if rel else f"{self.base}/lab?token={self.token}"

    @property
    def url(self) -> str:
        return self.url_for(self.open_path)

    def rel(self, path: str | Path) -> str:
        """``path`` relative to the root, as JupyterLab names it."""
        return Path(path).resolve().relative_to(self.root_dir).as_posix()

    def status(self, timeout: float = 2.0) -> dict | None:
        """``/api/status`` (with the token), None when the server does not answer."""
        req = urllib.request.Request(f"{self.base}/api/status", headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once the server answers; RuntimeError with its log's last lines when it exits or times out."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.running():
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode} before answering; "
                                   f"last lines of {self.log}:\n{self.log_tail()}")
            if self.status() is not None:
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer on {self.base} within {timeout:.0f} s; last lines of "
                           f"{self.log}:\n{self.log_tail()}")

    def wait(self) -> int:
        """Wait for the server to exit; its exit code."""
        return self.proc.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (JupyterLab shuts its kernels down), SIGKILL after ``timeout`` s; the exit code."""
        if self.running():
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def __enter__(self) -> LabServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_lab(lab_dir: str | Path, *, port: int | None = None, root_dir: str | Path | None = None,
              open_path: str | Path | None = None, timeout: float = START_TIMEOUT,
              preexec_fn: Callable[[], None] | None = None, env: Mapping[str, str] | None = None) -> LabServer:
    """Start JupyterLab on ``lab_dir`` (see the module docstring) and return it once it answers.

    ``open_path``: a file or folder the URL opens (default: ``lab_dir``); ``preexec_fn`` replaces the default
    "SIGTERM when the parent dies"; ``env``: more environment variables for the server and its kernels.
    """
    lab_dir = Path(lab_dir).resolve()
    if not lab_dir.is_dir():
        raise NotADirectoryError(f"{lab_dir}: no such folder (the working copies of the chapters)")
    _ensure_setup()
    port = free_port(port)
    token = secrets.token_hex(24)
    cmd, extra = lab_command(lab_dir, port, token, root_dir=root_dir)
    root = Path(cmd[[c.startswith("--ServerApp.root_dir=") for c in cmd].index(True)].split("=", 1)[1])
    state = lab_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    log = state / "server.log"
    log_file = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed by LabServer.stop)
    full_env = {**os.environ, **(env or {}), **extra}
    proc = subprocess.Popen(cmd, cwd=str(root), env=full_env, stdin=subprocess.DEVNULL, stdout=log_file,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=preexec_fn or _term_with_parent)
    target = Path(open_path).resolve() if open_path is not None else lab_dir
    server = LabServer(proc=proc, port=port, token=token, root_dir=root, lab_dir=lab_dir, log=log,
                       open_path="" if target == root else target.relative_to(root).as_posix(), _log_file=log_file)
    try:
        server.wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


def serve(profile: str, variant: str | None = None, run_dir: Path | None = None,
          overrides: Sequence[str] | None = None, device: str | None = None, port: int | None = None,
          browser: bool = False, command: str | None = None) -> int:
    """``emotiw lab``: the working copies (:func:`emotiw_utils.working_copies.prepare_lab`), JupyterLab on them, the
    URL printed; waits for the server. Ctrl-C stops it."""
    from . import working_copies

    lab_dir = working_copies.prepare_lab(profile, variant, run_dir=run_dir, overrides=list(overrides or []) or None,
                                         device=device, command=command)
    server = start_lab(lab_dir, port=port)
    try:
        print(f"JupyterLab on the chapters of profile {profile}" + (f", variant {variant}" if variant else "")
              + f" ({lab_dir}):\n\n    {server.url}\n\n"
              f"server log: {server.log}; Ctrl-C stops the server", flush=True)
        if browser:
            import webbrowser

            webbrowser.open(server.url)
        rc = server.wait()
        if rc:
            print(f"emotiw lab: JupyterLab exited with code {rc}; last lines of {server.log}:\n{server.log_tail()}",
                  file=sys.stderr)
        return rc
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not interrupt the shutdown
        server.stop()
        print("emotiw lab: stopped", file=sys.stderr)
        return 0
    finally:
        server.stop()


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m emotiw_utils.lab --setup``: the settings override and the kernel spec (``make install``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m emotiw_utils.lab")
    p.add_argument("--setup", action="store_true",
                   help="write the JupyterLab settings override and the emotiw-book kernel spec into sys.prefix")
    args = p.parse_args(argv)
    if args.setup:
        print(install_settings())
        print(install_kernel())
    return 0


if __name__ == "__main__":
    sys.exit(_main())
