"""The papermill runner that executes the stages of the registry (:mod:`emotiw_utils.stages`).

Each stage is one MyST-markdown notebook (jupytext). :func:`run_pipeline` executes the selected stages in
order with papermill into ``book/executed/NN_name.ipynb`` (what Jupyter Book renders) and records the
stage's manifest in ``{run_dir}/{NN_name}/``. A stage refuses to start while a stage it reads has no
successful run.

Parameters a notebook receives (its ``parameters`` cell should declare all of them, with literal
defaults, or papermill warns "Passed unknown parameter"):

* the profile's ``common`` keys (``profile``, ``seed``, ``device``) and the stage's own keys
  (``params/base.yaml`` under ``params/<profile>.yaml``, :mod:`emotiw_utils.profiles`);
* injected by the runner (:data:`INJECTED_PARAMETERS`): ``stage`` (its name), ``run_dir``
  (absolute), ``afew_dir``, ``fer2013_path``, ``tfd_path`` (str or None), ``synthetic`` (bool);
  ``device`` is replaced by the resolved device (``cpu`` or ``cuda``).

Caching: a stage's input hash is the sha256 of its notebook source, its parameters (but ``run_dir``, where the
run is, not what it computes), the data's fingerprint and the ``input_hash``/``run_id`` of the manifest of every
stage it reads, directly or through another (:func:`emotiw_utils.stages.depends_on`). A stage whose manifest is
``ok`` with the same hash, and whose executed notebook is available, is skipped (``cached``). Re-running a stage
gives it a new ``run_id``, so every stage that reads it runs again; the others stay cached. A stage refuses to
start while a stage it depends on has failed, or was made from an earlier run of a stage it reads.

Variants (``variant=``, :mod:`emotiw_utils.variants`): the same stages in ``{run_dir}/variants/NAME/``, where a
stage whose hash equals the base run's is a link to the base's folder (``reused``) and the others run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import artifacts, paths, profiles
from . import stages as registry  # not "stages": run_pipeline has a parameter of that name
from .atomic import atomic_path, remove_stale_temporaries
from .device import device_description, resolve_device
from .stages import EXECUTED_COPY, MANIFEST, Stage, resolve_stage_name


#: Parameters the runner adds to every stage's parameters.
INJECTED_PARAMETERS: tuple[str, ...] = ("stage", "run_dir", "afew_dir", "fer2013_path", "tfd_path", "synthetic",
                                        "device")
#: Tag papermill gives the cell it inserts; the runner adds ``hide-input`` so the book folds it.
INJECTED_TAG = "injected-parameters"
#: Kernel every notebook runs in: always the python running the pipeline (see :func:`_kernel_manager_class`).
KERNEL_NAME = "python3"


def available_stages() -> list[Stage]:
    """Stages whose notebook source exists."""
    return [s for s in registry.STAGES if s.exists]


def select_stages(requested: Iterable[str] | None = None) -> list[Stage]:
    """Stages to run, in pipeline order: all available ones, or the ``requested`` names/prefixes.

    ValueError for an unknown stage or one whose notebook does not exist yet.
    """
    if requested is None:
        selected = available_stages()
        if not selected:
            raise ValueError(f"no stage notebooks found under {paths.NOTEBOOKS_DIR}")
        return selected
    wanted = {resolve_stage_name(r) for r in requested}
    if not wanted:
        raise ValueError("no stages requested")
    selected = [s for s in registry.STAGES if s.name in wanted]
    missing = [s for s in selected if not s.exists]
    if missing:
        avail = ", ".join(s.name for s in available_stages()) or "none"
        raise ValueError("stage " + ", ".join(f"{s.name} (notebook {s.notebook} does not exist yet)" for s in missing)
                         + f"; available stages: {avail}")
    return selected


# ---- data -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataPaths:
    """Where a run reads its datasets: AFEW root (``Train|Val|Test/<Emotion>/<clip>.avi``), FER2013
    (``fer2013.csv``, ``.csv.gz`` or the image-folder root), TFD ``TFD_48x48.mat`` (optional)."""

    afew: Path
    fer2013: Path
    tfd: Path | None = None
    synthetic: bool = False

    @classmethod
    def from_synthetic_root(cls, root: str | Path) -> DataPaths:
        """Paths inside a generated synthetic dataset root."""
        from .constants import TFD_FILENAME

        root = Path(root)
        return cls(afew=root / paths.AFEW_SUBDIR, fer2013=root / paths.FER_SUBDIR / paths.FER_CSV,
                   tfd=root / paths.TFD_SUBDIR / TFD_FILENAME, synthetic=True)

    def resolved(self) -> DataPaths:
        """Absolute paths; FileNotFoundError naming the first path that does not exist."""
        afew = Path(self.afew).expanduser().resolve()
        fer = Path(self.fer2013).expanduser().resolve()
        tfd = Path(self.tfd).expanduser().resolve() if self.tfd is not None else None
        if not afew.is_dir():
            raise FileNotFoundError(f"{afew}: AFEW folder not found (expected Train|Val|Test/<Emotion>/<clip>.avi)")
        if not fer.exists():
            raise FileNotFoundError(f"{fer}: FER2013 not found (expected fer2013.csv, .csv.gz or train|test/ folders)")
        if tfd is not None and not tfd.is_file():
            raise FileNotFoundError(f"{tfd}: TFD file not found (expected TFD_48x48.mat)")
        return DataPaths(afew, fer, tfd, self.synthetic)

    def fingerprint(self) -> str:
        """A hash of the datasets' contents as cheaply observable: a synthetic dataset's
        ``generation.json``; for real data every file's relative path, size and mtime. Part of each
        stage's input hash, so regenerating or replacing the data re-runs the stages."""
        h = hashlib.sha256()
        roots = [p for p in (self.afew, self.fer2013, self.tfd) if p is not None]
        info = Path(self.afew).parent / paths.SYNTH_INFO
        if self.synthetic and info.is_file():
            h.update(info.read_bytes())
            return h.hexdigest()
        for root in roots:
            root = Path(root)
            files = sorted(root.rglob("*")) if root.is_dir() else [root]
            for f in files:
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f.relative_to(root.parent)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def as_parameters(self) -> dict[str, Any]:
        return {"afew_dir": str(self.afew), "fer2013_path": str(self.fer2013),
                "tfd_path": str(self.tfd) if self.tfd is not None else None, "synthetic": bool(self.synthetic)}


def resolve_data(profile: str, seed: int, data: DataPaths | None = None, workers: int | None = None,
                 progress: bool = True, replace: Mapping[str, str | Path] | None = None) -> DataPaths:
    """The data of a run: ``data`` if given, else the (generated or cached) synthetic dataset of ``profile``.

    Profile ``real`` needs explicit ``data`` (CLI ``--afew`` and ``--fer2013``), profile ``realfer`` a real
    FER2013 in ``replace`` (:data:`~emotiw_utils.profiles.REQUIRED_DATA`). ``replace`` swaps some
    datasets of a synthetic profile for real files (``{"fer2013": path}``, keys ``afew``, ``fer2013``,
    ``tfd``): e.g. the real-FER2013 check of chapter 02 on synthetic AFEW. A real FER2013 without a
    real TFD drops SynthTFD, so real and synthetic faces are never mixed in one training set. With AFEW and
    FER2013 both replaced, no synthetic dataset is generated or read.
    """
    required = profiles.REQUIRED_DATA.get(profile, ())
    missing = [n for n in required if data is None and n not in (replace or {})]
    if missing:
        raise ValueError(f"profile {profile!r} reads the real datasets: pass "
                         + " and ".join(f"--{n} PATH" for n in required))
    if data is None and {"afew", "fer2013"} <= set(replace or {}):
        data = DataPaths(afew=Path(replace["afew"]), fer2013=Path(replace["fer2013"]))  # nothing synthetic is read
    if data is None:
        from .synth.generate import generate_dataset

        root = generate_dataset(profiles.SYNTHETIC_DATA[profile], seed=seed, workers=workers, progress=progress)
        data = DataPaths.from_synthetic_root(root)
    if replace:
        unknown = set(replace) - {"afew", "fer2013", "tfd"}
        if unknown:
            raise ValueError(f"unknown dataset(s) to replace: {', '.join(sorted(unknown))} (afew, fer2013, tfd)")
        tfd = replace.get("tfd", None if "fer2013" in replace else data.tfd)
        data = DataPaths(afew=Path(replace.get("afew", data.afew)), fer2013=Path(replace.get("fer2013", data.fer2013)),
                         tfd=Path(tfd) if tfd is not None else None, synthetic=False)
    return data.resolved()


# ---- results, failures ------------------------------------------------------------------------

@dataclass
class StageResult:
    """Outcome of one stage: ``status`` is ``ran``, ``cached`` or ``failed``."""

    name: str
    status: str
    wall_s: float
    executed_path: Path | None
    error: str | None = None


class StageFailed(RuntimeError):
    """A stage's notebook failed. The message names the stage, notebook, failing cell and error.

    ``results`` holds the results of the stages handled so far, the failed one last.
    """

    def __init__(self, message: str, *, stage: str, notebook: str | Path, cell_index: int | None = None,
                 cell_source: str | None = None, ename: str | None = None, evalue: str | None = None,
                 executed_path: Path | None = None, results: list[StageResult] | None = None):
        super().__init__(message)
        self.stage = stage
        self.notebook = str(notebook)
        self.cell_index = cell_index
        self.cell_source = cell_source
        self.ename = ename
        self.evalue = evalue
        self.executed_path = executed_path
        self.results = results if results is not None else []


def format_summary(results: Sequence[StageResult], run_dir: str | Path | None = None) -> str:
    """A plain-text table of the stages of a run with status and wall time.

    Given the ``run_dir`` the stages ran in, a column ``clips not ok`` counts, per stage, the clips whose status
    (:mod:`emotiw_utils.clip_policy`) is not ``ok`` (``2 (1 truncated, 1 no_face)``; empty for a stage that gives
    clips no status, or that failed), and the dataset's warnings (chapter 00's) follow the table
    (:mod:`emotiw_utils.run_summary`)."""
    header: tuple[str, ...] = ("stage", "status", "wall time")
    rows: list[tuple[str, ...]] = [(r.name, r.status, _fmt_seconds(r.wall_s)) for r in results]
    total = sum(r.wall_s for r in results)
    rows.append(("total", "", _fmt_seconds(total)))
    warnings: list[str] = []
    if run_dir is not None:
        clips = _clips_not_ok(results, Path(run_dir))
        if any(clips):
            header += ("clips not ok",)
            rows = [(*row, c) for row, c in zip(rows, [*clips, ""])]
        warnings = _dataset_warnings(Path(run_dir))
    n = len(header)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(n)]
    right = {2}  # the wall time

    def fmt(row):
        cells = (f"{row[i]:>{widths[i]}}" if i in right else f"{row[i]:<{widths[i]}}" for i in range(n))
        return "  ".join(cells).rstrip()

    sep = "  ".join("-" * w for w in widths)
    lines = [fmt(header), sep, *(fmt(r) for r in rows[:-1]), sep, fmt(rows[-1])]
    if warnings:
        lines += ["", *(f"warning: {w}" for w in warnings)]
    return "\n".join(lines)


def _clips_not_ok(results: Sequence[StageResult], run_dir: Path) -> list[str]:
    """Per result, :func:`emotiw_utils.run_summary.describe_not_ok` of its stage in ``run_dir`` ("" if failed)."""
    from .run_summary import clip_status_counts, describe_not_ok

    return ["" if r.status == "failed" else describe_not_ok(clip_status_counts(run_dir / r.name)) for r in results]


def _dataset_warnings(run_dir: Path) -> list[str]:
    from .run_summary import dataset_warnings

    return dataset_warnings(run_dir)


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m}:{sec:02d} min" if m < 60 else f"{m // 60}:{m % 60:02d}:{sec:02d} h"


# ---- hashing and caching ----------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest_quiet(sdir: Path) -> dict | None:
    try:
        return artifacts.read_manifest(sdir)
    except ValueError:
        return None


def _upstream(run_dir: Path, stage: Stage) -> list[dict]:
    """``{stage, input_hash, run_id, status}`` of every stage ``stage`` reads, directly or not
    (:func:`emotiw_utils.stages.depends_on`), that has a manifest in ``run_dir``. Stages it does not read are
    left out, so a change elsewhere (a variant's IRNN) does not re-run it (the audio model)."""
    out = []
    for name in registry.depends_on(stage):
        m = _read_manifest_quiet(run_dir / name)
        if m is not None:
            out.append({"stage": name, "input_hash": m.get("input_hash"), "run_id": m.get("run_id"),
                        "status": m.get("status")})
    return out


#: Parameters that say where a run is, not what it computes: left out of the input hash, so that a variant's
#: stage with the base run's notebook, parameters and inputs has the base's hash (and is linked, not re-run).
LOCATION_PARAMETERS: tuple[str, ...] = ("run_dir",)


def stage_call_parameters(params: Mapping[str, Any], stage: Stage, data: DataPaths | None, run_dir: str | Path,
                          device: str | None) -> dict:
    """The parameters papermill gives ``stage``: the profile's (:func:`emotiw_utils.profiles.stage_parameters`),
    the datasets (``data``; None: left out) and the injected ``stage``, ``run_dir``, ``device``."""
    sp = profiles.stage_parameters(params, stage.name)
    if data is not None:
        sp.update(data.as_parameters())
    sp.update(stage=stage.name, run_dir=str(run_dir), device=device)
    return sp


def stage_input_hash(stage: Stage, parameters: Mapping[str, Any], data_fingerprint: str, run_dir: str | Path,
                     source: bytes | None = None) -> tuple[str, list[dict]]:
    """``(input hash, upstream)`` of ``stage`` run with ``parameters`` in ``run_dir``: its notebook source, its
    parameters but the location (:data:`LOCATION_PARAMETERS`), the data's fingerprint and the identities of the
    stages it reads in ``run_dir`` (:func:`compute_input_hash`)."""
    source = stage.source.read_bytes() if source is None else source
    upstream = _upstream(Path(run_dir), stage)
    hashed = {k: v for k, v in parameters.items() if k not in LOCATION_PARAMETERS}
    return compute_input_hash(source, {**hashed, "_data_fingerprint": data_fingerprint}, upstream), upstream


def compute_input_hash(source: bytes, parameters: Mapping[str, Any], upstream: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of the notebook source, the parameters (canonical JSON) and the upstream manifests' identities."""
    h = hashlib.sha256()
    h.update(b"notebook\0")
    h.update(source)
    h.update(b"\0parameters\0")
    h.update(json.dumps(artifacts.to_jsonable(parameters), sort_keys=True).encode())
    h.update(b"\0upstream\0")
    h.update(json.dumps(artifacts.to_jsonable(list(upstream)), sort_keys=True).encode())
    return h.hexdigest()


def _restore_cached(manifest: dict | None, input_hash: str, sdir: Path, executed: Path) -> bool:
    """True if the stage can be skipped; restores ``executed`` from the stage's copy when needed."""
    if not manifest or manifest.get("status") != "ok" or manifest.get("input_hash") != input_hash:
        return False
    if manifest.get("executed_by") == "jupyterlab":  # run from a working copy: its outputs stayed in the browser
        return True
    want = manifest.get("executed_sha256")
    if executed.is_file() and (want is None or _sha256_file(executed) == want):
        return True
    copy = sdir / EXECUTED_COPY
    if copy.is_file() and (want is None or _sha256_file(copy) == want):
        artifacts.atomic_write_bytes(executed, copy.read_bytes())
        return True
    return False


# ---- execution --------------------------------------------------------------------------------

_KM_CLASS = None


def _kernel_manager_class():
    """A jupyter_client kernel manager whose ``python3`` kernel is always ``sys.executable -m ipykernel_launcher``.

    A ``python3`` kernelspec found on the Jupyter path (e.g. a user-level one pointing at another
    python) would otherwise take precedence; the notebooks must run in the interpreter (virtualenv)
    that runs the pipeline.
    """
    global _KM_CLASS
    if _KM_CLASS is None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager
        from traitlets import default

        class _ThisPythonKernelSpecManager(KernelSpecManager):
            def get_kernel_spec(self, kernel_name):
                if kernel_name == KERNEL_NAME:
                    from ipykernel.kernelspec import RESOURCES, get_kernel_dict

                    return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
                return super().get_kernel_spec(kernel_name)

        class ThisPythonKernelManager(AsyncKernelManager):
            @default("kernel_spec_manager")
            def _default_ksm(self):
                return _ThisPythonKernelSpecManager(data_dir=self.data_dir)

            @default("transport_encryption")
            def _default_transport_encryption(self):
                # CurveZMQ keys when available (ipykernel warns about plain TCP otherwise).
                import zmq

                return "auto" if zmq.has("curve") else "disabled"

            async def _async_launch_kernel(self, kernel_cmd, **kw):
                # The kernel process's own log (not the notebook's output, which papermill records) goes to a
                # file, not the terminal: a kernel shut down while a cell ran can still print a ZMQError
                # traceback there after Ctrl-C, whatever _quiesce does. KERNEL_LOG_DIR keeps it for a crash.
                KERNEL_LOG_DIR.mkdir(parents=True, exist_ok=True)
                log = open(KERNEL_LOG_DIR / f"kernel-{os.getpid()}-{uuid.uuid4().hex[:8]}.log", "w")  # noqa: SIM115
                kw.setdefault("stderr", log)
                try:
                    return await super()._async_launch_kernel(kernel_cmd, **kw)
                finally:
                    log.close()  # the kernel holds its own copy of the descriptor

            async def _async_interrupt_kernel(self):
                # jupyter_client's shutdown_kernel sends the kernel SIGINT, then at once the shutdown request.
                # An idle kernel still finishing its last reply logged "[IPKernelApp] ERROR | KeyboardInterrupt
                # caught in kernel" into the terminal (a successful run); one running a cell (the run interrupted
                # by Ctrl-C) failed to send the interrupted cell's reply on the socket the shutdown had closed
                # ("ZMQError: Socket operation on non-socket", a traceback). At shutdown: _quiesce instead.
                if self.shutting_down:
                    await _quiesce(self)
                    return
                await super()._async_interrupt_kernel()

        _KM_CLASS = ThisPythonKernelManager
    return _KM_CLASS


#: Where the kernels' own logs go (their stderr; the notebooks' outputs are in the executed notebooks).
KERNEL_LOG_DIR = Path(tempfile.gettempdir()) / "emotiw-kernels"

#: Seconds a kernel at shutdown has to answer before it is taken as busy (running a cell), then, interrupted,
#: to end that cell and answer (it is then asked to shut down either way; jupyter_client terminates it if it
#: does not).
_IDLE_PROBE_S, _INTERRUPT_GRACE_S = 0.5, 5.0


async def _quiesce(km) -> None:
    """Bring the kernel of ``km`` to idle before it is asked to shut down: a kernel that answers a
    ``kernel_info`` request at once is idle and gets no SIGINT; a busy one (a cell running: the run was
    interrupted) gets SIGINT, and the shutdown waits until it has answered (its shell handles requests in
    order, so the interrupted cell has ended and its reply has been sent)."""
    import asyncio
    import signal

    kc = km.client()
    try:
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        msg_id = kc.kernel_info()

        async def answered(timeout: float) -> bool:
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while (left := end - loop.time()) > 0:
                try:
                    msg = await kc.shell_channel.get_msg(timeout=left)
                except Exception:  # noqa: BLE001 (queue.Empty on a timeout; a closed socket: give up)
                    return False
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    return True
            return False

        if not await answered(_IDLE_PROBE_S):
            await km._async_signal_kernel(signal.SIGINT)
            await answered(_INTERRUPT_GRACE_S)
    except Exception:  # noqa: BLE001 (a kernel already gone: the shutdown that follows deals with it)
        pass
    finally:
        with contextlib.suppress(Exception):
            kc.stop_channels()


def _has_parameters_cell(nb) -> bool:
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)


def _postprocess_executed(executed: Path) -> None:
    """Fold the papermill-injected parameters cell in the book (``hide-input``)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    changed = False
    for c in nb.cells:
        tags = c.get("metadata", {}).get("tags", [])
        if INJECTED_TAG in tags and "hide-input" not in tags:
            c.metadata["tags"] = [*tags, "hide-input"]
            changed = True
    from .book_pages import annotate_executed  # the "executed with" box under the title (issue 17)

    changed = annotate_executed(nb, executed.stem) or changed
    if changed:
        artifacts.atomic_write_text(executed, nbformat.writes(nb))


def _find_failed_cell(executed: Path) -> tuple[int | None, str | None, str | None, str | None]:
    """``(index, source, ename, evalue)`` of the first failed cell of an executed notebook (or Nones)."""
    try:
        import nbformat

        nb = nbformat.read(executed, as_version=4)
    except Exception:  # noqa: BLE001 (the notebook may be half-written)
        return None, None, None, None
    running = None
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                return i, c.source, o.get("ename"), o.get("evalue")
        pm = c.get("metadata", {}).get("papermill", {})
        if pm.get("exception"):
            return i, c.source, None, None
        if running is None and pm.get("status") == "running":
            running = (i, c.source, None, None)
    return running or (None, None, None, None)


def _source_location(src_path: Path, src_nb, cell_source: str | None) -> str:
    """``cell K, line L of notebooks/x.md`` for a cell source, as precisely as can be found."""
    rel = _rel(src_path)
    if not cell_source:
        return f"{rel}"
    idx = next((i for i, c in enumerate(src_nb.cells) if c.source.strip() == cell_source.strip()), None)
    where = f"cell {idx} of {rel}" if idx is not None else f"{rel}"
    try:
        text = src_path.read_text(encoding="utf-8")
        pos = text.find(cell_source.strip().splitlines()[0])
        if pos >= 0:
            where += f", line {text.count(chr(10), 0, pos) + 1}"
    except (OSError, IndexError):
        pass
    return where


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(p)


def _excerpt(source: str | None, n: int = 6) -> str:
    if not source:
        return "    (source unavailable)"
    lines = source.rstrip().splitlines()
    body = [f"    {ln}" for ln in lines[:n]]
    if len(lines) > n:
        body.append(f"    ... ({len(lines) - n} more lines)")
    return "\n".join(body)


def _execute(stage: Stage, nb, parameters: dict, executed: Path, progress: bool, timeout: int | None):
    import papermill

    papermill.execute_notebook(
        nb, str(executed), parameters=parameters, kernel_name=KERNEL_NAME, language="python",
        cwd=str(paths.REPO_ROOT), progress_bar=progress, log_output=False, start_timeout=180,
        execution_timeout=timeout, kernel_manager_class=_kernel_manager_class(),
    )


#: errno values of a full disk (ENOSPC) or an exhausted quota (EDQUOT), reported as "no space left on device".
_DISK_FULL = tuple(getattr(errno, n) for n in ("ENOSPC", "EDQUOT") if hasattr(errno, n))


def _disk_full(exc: BaseException) -> str | None:
    """The file the runner could not write because the disk is full (``exc`` or an exception it was raised from,
    an OSError whose errno says so; ``"(a file it does not name)"`` without a filename), or None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            return str(e.filename) if e.filename else "(a file it does not name)"
        e = e.__cause__ or e.__context__
    return None


def _cell_disk_full(ename: str | None, evalue: str) -> str | None:
    """``no space left on device: could not write FILE`` for a cell's OSError of a full disk (its ``evalue``:
    ``[Errno 28] No space left on device: 'FILE'``), or None."""
    import re

    m = re.match(r"\[Errno (\d+)\][^:]*(?::\s*'(.*?)')?", evalue or "")
    if not m or int(m.group(1)) not in _DISK_FULL or not ename:
        return None
    return "no space left on device: could not write " + (m.group(2) or "(the file is named in the traceback)")


def _failure(stage: Stage, exc: BaseException, src_nb, executed: Path) -> StageFailed:
    """Build the StageFailed describing ``exc`` raised while executing ``stage``."""
    try:
        from papermill.exceptions import PapermillExecutionError
    except ImportError:  # pragma: no cover
        PapermillExecutionError = ()  # type: ignore[assignment]  # noqa: N806
    full = _disk_full(exc)
    if full is not None:  # the runner (papermill) could not write a file: no cell of the notebook is at fault
        msg = (f"stage {stage.name} failed (notebook {_rel(stage.source)}): no space left on device: could not "
               f"write {full}")
        return StageFailed(msg, stage=stage.name, notebook=stage.notebook, ename=type(exc).__name__,
                           evalue=str(exc), executed_path=executed if Path(full) != executed else None)
    if isinstance(exc, PapermillExecutionError):
        cell_source, ename, evalue = exc.source, exc.ename, exc.evalue
        idx = exc.cell_index
        fidx, fsrc, _, _ = _find_failed_cell(executed) if executed.exists() else (None, None, None, None)
        if fsrc is not None and cell_source is None:
            idx, cell_source = fidx, fsrc
    else:
        idx, cell_source, ename, evalue = _find_failed_cell(executed) if executed.exists() else (None,) * 4
        ename = ename or type(exc).__name__
        evalue = evalue or str(exc)
    where = _source_location(stage.source, src_nb, cell_source)
    evalue_s = str(evalue or "").strip()
    if len(evalue_s) > 2000:
        evalue_s = evalue_s[:2000] + " ..."
    cell_full = _cell_disk_full(ename, evalue_s)
    msg = (f"stage {stage.name} failed (notebook {_rel(stage.source)})\n"
           f"failing cell: {where}" + (f" (executed cell {idx})" if idx is not None else "") + "\n"
           f"{_excerpt(cell_source)}\n"
           f"error: {ename}: {evalue_s}\n"
           + (f"{cell_full}\n" if cell_full else "")
           + f"full traceback in the executed notebook: {executed}")
    return StageFailed(msg, stage=stage.name, notebook=stage.notebook, cell_index=idx, cell_source=cell_source,
                       ename=ename, evalue=evalue_s, executed_path=executed)


def _upstream_refusal(stage: Stage, run_dir: Path, profile: str,
                      again: Callable[[str], str] | None = None) -> str | None:
    """Why ``stage`` must not start, or None: a stage it reads, directly or through another
    (:func:`emotiw_utils.stages.depends_on`), has no successful run in ``run_dir``, or was made from an earlier
    run of a stage it reads (that stage ran again, or failed, since). ``again(name)`` is the command that runs
    stage ``name`` (default: ``emotiw run --profile PROFILE [--run-dir RUN_DIR] --stages NAME``)."""
    if again is None:
        from .variants import base_command

        def again(name: str) -> str:
            return base_command(profile, run_dir, name)
    needed = registry.depends_on(stage)
    manifests = {name: _read_manifest_quiet(run_dir / name) for name in needed}
    for name in needed:
        m = manifests[name]
        if m is None or m.get("status") != "ok":
            state = "has not run" if m is None else "failed" if m.get("status") == "failed" else "did not finish"
            how = "reads" if name in stage.reads else "depends on"
            return f"stage {stage.name} {how} {name}, which {state} in {run_dir}; run it first: {again(name)}"
    for name in needed:
        if "upstream" not in manifests[name]:  # not written by the runner: nothing to check against
            continue
        made_from = {u.get("stage"): u.get("run_id") for u in manifests[name]["upstream"]}
        for dep in registry.get(name).reads:
            if made_from.get(dep) != manifests[dep].get("run_id"):
                return (f"stage {stage.name} depends on {name}, which was made from an earlier run of {dep} "
                        f"({dep} ran again since); run it again first: {again(name)}")
    return None


def _variant_input_refusal(stage: Stage, base_dir: Path, vdir: Path, variant: str, profile: str,
                           overrides: Mapping[str, Any]) -> str:
    """Why variant ``variant`` cannot use ``stage``, a stage a selected one reads: the base run lacks it (the
    command that builds it there), or the variant changes it and has not run it (the command that does)."""
    from . import variants as variants_mod

    m = _read_manifest_quiet(base_dir / stage.name)
    touched = [k for k in overrides if k.split(".", 1)[0] == stage.name or "." not in k]
    own = [d for d in registry.depends_on(stage) if (vdir / d).exists() and not (vdir / d).is_symlink()]
    if (m is None or m.get("status") != "ok") and not touched and not own:
        state = "has not run" if m is None else "failed" if m.get("status") == "failed" else "did not finish"
        return (f"variant {variant} reuses {stage.name} of the base run {base_dir}, which {state} there; build it "
                f"first: {variants_mod.base_command(profile, base_dir, stage.name)}")
    return (f"variant {variant} changes {stage.name} (its parameters, notebook or inputs differ from the base "
            f"run's) and has not run it; run it: {variants_mod.variant_command(profile, base_dir, variant, stage.name)}")


def run_pipeline(profile: str, stages: Iterable[str] | None = None, run_dir: str | Path | None = None,
                 device: str | None = None, data: DataPaths | None = None, recompute: bool = False,
                 overrides: Mapping[str, Any] | Iterable[str] | None = None, progress: bool = True,
                 executed_dir: str | Path | None = None, workers: int | None = None,
                 timeout: int | None = None, replace: Mapping[str, str | Path] | None = None,
                 variant: str | None = None, command: str | None = None) -> list[StageResult]:
    """Execute the selected stages of ``profile`` in order; return one StageResult per stage.

    ``stages``: names or prefixes (default: every stage whose notebook exists). ``run_dir``: default
    ``runs/<profile>``. ``device``: ``auto|cpu|cuda`` (default: the profile's ``common.device``).
    ``data``: the datasets (default: the synthetic dataset of the profile, generated if needed;
    required for ``real``). ``replace``: real files in place of some synthetic datasets
    (:func:`resolve_data`). ``recompute``: run even if cached. ``overrides``: ``KEY=VALUE`` strings
    or a flat dict (:func:`emotiw_utils.profiles.parse_overrides`). ``executed_dir``: where executed
    notebooks go (default ``book/executed``). ``timeout``: per-cell limit in seconds (default none).

    ``variant``: run variant ``variant`` of the run in ``run_dir`` instead (:mod:`emotiw_utils.variants`): in
    ``{run_dir}/variants/{variant}/``, with its recorded overrides and then ``overrides``; every stage the
    selected ones depend on whose notebook, parameters and inputs equal the base run's is linked to it
    (status ``reused``), the others run in the variant; the base run is never written. ``executed_dir`` then
    defaults to the variant's ``executed/``. ``command``: the command line recorded in the variant.

    Raises StageFailed (with ``.results``) when a notebook fails; ValueError / FileNotFoundError /
    RuntimeError for bad arguments before anything runs.
    """
    from . import variants as variants_mod

    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = profiles.parse_overrides(list(overrides))
    selected = select_stages(stages)
    run_dir = Path(run_dir if run_dir is not None else paths.default_run_dir(profile)).expanduser().resolve()
    base_dir = run_dir
    if variant is None and variants_mod.is_variant(run_dir):
        rec = variants_mod.read_variant(run_dir) or {}
        raise ValueError(f"{run_dir} is variant {rec.get('name')!r} of {variants_mod.base_run_of(run_dir)}: run it with "
                         f"--run-dir of its base and --variant {rec.get('name')} (its overrides apply then)")
    if variant is not None:
        run_dir, record = variants_mod.open_variant(base_dir, variant, profile, overrides, command)
        overrides = record["overrides"]
        if executed_dir is None:
            executed_dir = run_dir / variants_mod.EXECUTED_SUBDIR
    params = profiles.load_params(profile, overrides)
    common = params["common"]
    dev = resolve_device(device if device is not None else common.get("device", "auto"))
    data = resolve_data(profile, int(common["seed"]), data, workers=workers, progress=progress, replace=replace)
    run_dir.mkdir(parents=True, exist_ok=True)
    executed_dir = Path(executed_dir if executed_dir is not None else paths.EXECUTED_DIR).expanduser().resolve()
    executed_dir.mkdir(parents=True, exist_ok=True)
    dev_desc = device_description(dev)
    data_fp = data.fingerprint()
    if variant is None:
        def again(name: str) -> str:
            return variants_mod.base_command(profile, run_dir, name)
        todo = selected
    else:
        def again(name: str) -> str:
            return variants_mod.variant_command(profile, base_dir, variant, name)
        # A variant also walks the stages the selected ones read, to link those it shares with the base.
        wanted = {s.name for s in selected} | {d for s in selected for d in registry.depends_on(s)}
        todo = [s for s in registry.STAGES if s.name in wanted]
    chosen = {s.name for s in selected}

    import jupytext

    results: list[StageResult] = []
    for stage in todo:
        if not stage.exists:
            raise ValueError(f"stage {stage.name}: notebook {stage.notebook} does not exist")
        sp = stage_call_parameters(params, stage, data, run_dir, dev)
        input_hash, upstream = stage_input_hash(stage, sp, data_fp, run_dir)
        sdir = run_dir / stage.name
        executed = executed_dir / f"{stage.name}.ipynb"
        if variant is not None and not (recompute and stage.name in chosen) and \
                variants_mod.reuse_base_stage(base_dir, run_dir, stage.name, input_hash):
            results.append(StageResult(stage.name, "reused", 0.0, sdir / EXECUTED_COPY))
            if progress:
                print(f"[{stage.name}] reused from the base run (unchanged)", file=sys.stderr, flush=True)
            continue
        if not (recompute and stage.name in chosen) and \
                _restore_cached(_read_manifest_quiet(sdir), input_hash, sdir, executed):
            results.append(StageResult(stage.name, "cached", 0.0, executed))
            if progress:
                print(f"[{stage.name}] cached (inputs unchanged)", file=sys.stderr, flush=True)
            continue
        refusal = None
        if stage.name not in chosen:  # a variant's input that it can neither reuse nor has made itself
            refusal = _variant_input_refusal(stage, base_dir, run_dir, variant, profile, overrides or {})
        refusal = refusal or _upstream_refusal(stage, run_dir, profile, again)
        if refusal is not None:
            results.append(StageResult(stage.name, "failed", 0.0, None, refusal))
            raise StageFailed(refusal, stage=stage.name, notebook=stage.notebook, results=results)
        variants_mod.detach(sdir)  # a link to another run's stage is removed, never written through

        if progress:
            print(f"[{stage.name}] running {stage.notebook} on {dev}", file=sys.stderr, flush=True)
        src_nb = jupytext.read(stage.source)
        src_nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)",
                                         "language": "python"}
        (sdir / MANIFEST).unlink(missing_ok=True)  # an interrupted run must not look cached
        remove_stale_temporaries(sdir)  # what a run killed mid-write (SIGKILL) left behind
        started, t0 = artifacts.now_iso(), time.perf_counter()
        common_manifest = dict(stage=stage.name, parameters=sp, input_hash=input_hash, device=dev_desc,
                               run_id=uuid.uuid4().hex, profile=profile, notebook=stage.notebook,
                               executed=str(executed), upstream=upstream)
        try:
            if not _has_parameters_cell(src_nb):
                raise StageFailed(
                    f"stage {stage.name} failed (notebook {_rel(stage.source)})\n"
                    "error: the notebook has no cell tagged 'parameters' (add ':tags: [parameters]' to the "
                    "code-cell holding the parameter defaults)",
                    stage=stage.name, notebook=stage.notebook)
            _execute(stage, src_nb, sp, executed, progress, timeout)
            _postprocess_executed(executed)
        except BaseException as exc:  # noqa: BLE001 (record the failure, then re-raise)
            wall = time.perf_counter() - t0
            if isinstance(exc, StageFailed):
                failure = exc
            elif isinstance(exc, KeyboardInterrupt):
                failure = None
            else:
                failure = _failure(stage, exc, src_nb, executed)
            err = str(failure) if failure is not None else "interrupted"
            with contextlib.suppress(OSError):  # e.g. a full disk: the stage then simply has no manifest
                artifacts.write_manifest(sdir, status="failed", wall_time_s=wall, started=started,
                                         finished=artifacts.now_iso(), error=err, **common_manifest)
            results.append(StageResult(stage.name, "failed", wall, executed if executed.exists() else None, err))
            if failure is None:
                raise
            failure.results = results
            raise failure from (None if failure is exc else exc)
        wall = time.perf_counter() - t0
        try:
            with atomic_path(sdir / EXECUTED_COPY) as tmp:
                shutil.copyfile(executed, tmp)
            artifacts.write_manifest(sdir, status="ok", wall_time_s=wall, started=started,
                                     finished=artifacts.now_iso(), executed_sha256=_sha256_file(executed),
                                     **common_manifest)
        except OSError as exc:
            err = (f"stage {stage.name} ran, but its outputs could not be recorded in {sdir}: "
                   f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
            with contextlib.suppress(OSError):
                artifacts.write_manifest(sdir, status="failed", wall_time_s=wall, started=started,
                                         finished=artifacts.now_iso(), error=err, **common_manifest)
            results.append(StageResult(stage.name, "failed", wall, executed, err))
            raise StageFailed(err, stage=stage.name, notebook=stage.notebook, results=results) from exc
        results.append(StageResult(stage.name, "ran", wall, executed))
        if progress:
            print(f"[{stage.name}] done in {_fmt_seconds(wall)}", file=sys.stderr, flush=True)
    from .book_pages import record_run  # ran or cached, for the book's execution statistics (issue 17)

    try:
        record_run(executed_dir, run_dir, results)
    except OSError as exc:  # e.g. a full disk: one line, not a traceback (the stages' manifests are written)
        raise RuntimeError(f"the stages ran and their manifests are in {run_dir}, but the book's record of this run "
                           f"could not be written in {executed_dir}: {exc.strerror or exc}") from exc
    return results


__all__ = [
    "DataPaths", "INJECTED_PARAMETERS", "StageFailed", "StageResult", "available_stages", "compute_input_hash",
    "format_summary", "resolve_data", "run_pipeline", "select_stages",
]
