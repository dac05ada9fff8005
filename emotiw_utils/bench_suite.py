"""The one-call benchmark suite (issue 16, item 4): every GPU figure the project owes, in one command.

``bash bench/gpu_suite.sh`` runs, each as a child process with its own time budget (a part that runs over
is stopped, the others still run, and what it printed is kept):

1. ``setup``: installs the wheels shipped beside the checkout (``.wheels/``, fetched by ``make wheels``) into a
   folder of the results (``pip install --no-index --no-deps --target``) that every later part finds on its
   ``PYTHONPATH``; skipped when ``.wheels/`` holds no wheel (a machine with ``make install`` done);
2. ``environment``: python, torch, CUDA, the GPU, and which of the modules the pipeline needs import;
3. ``bench/bench_cnn.py`` in float32 and with bf16 autocast, ``bench/bench_irnn.py``,
   ``bench/bench_random_search.py`` and ``bench/bench_detect.py`` (MTCNN on FER2013 images, and its video
   mode when it has one; with whatever options its ``--help`` offers: see :func:`detect_arguments`);
4. ``emotiw data synth`` of the profile, then ``emotiw run --profile full --device cuda`` with the time left
   (its per-stage wall times read from the stage manifests, so a run stopped part-way still reports the
   stages it finished).

Results: ``suite.json`` and ``suite.md`` (a Markdown summary) in the results folder (default
``runs/bench-suite/<date>-<mode>/``), rewritten after every part, so a suite stopped from outside keeps
what it had. ``--quick`` runs the same parts on tiny sizes and the smoke profile (about two minutes on 2 CPU
cores; ``tests/test_bench_suite.py`` runs it), the detection bench's video mode left out.

Usage::

    bash bench/gpu_suite.sh                       # on a GPU machine: about 8.5 minutes at most
    bash bench/gpu_suite.sh --quick --device cpu  # anywhere: the same code paths on tiny sizes
    python -m emotiw_utils.bench_suite --help
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import paths, stages

#: Seconds the whole suite may take on a GPU machine (the issue's limit is 9 minutes, start-up of the
#: python processes and the results included).
GPU_BUDGET_S = 510.0
#: The same for ``--quick``: an upper bound for a busy machine (about 2 minutes on 2 idle cores).
QUICK_BUDGET_S = 720.0
#: Folder of the shipped wheels (git-ignored; ``make wheels``).
WHEEL_DIR = paths.REPO_ROOT / ".wheels"
#: Modules the pipeline imports that a bare GPU image may lack (reported by the ``environment`` part).
PIPELINE_MODULES = ("numpy", "scipy", "sklearn", "pandas", "matplotlib", "seaborn", "tqdm", "yaml", "cv2", "skimage",
                    "av", "opensmile", "skops", "papermill", "jupytext", "nbformat", "ipykernel", "facenet_pytorch")
#: Seconds between SIGINT (the pipeline records the interrupted stage, papermill stops its kernel) and
#: SIGKILL of a part's process group when it runs over its budget.
GRACE_S = 15.0
#: Lines of each part's output kept in the results.
TAIL_LINES = 60
#: The last part gets the time left, but never less than this (else it is skipped).
MIN_PART_S = 5.0
RESULTS_JSON = "suite.json"
RESULTS_MD = "suite.md"
STATUSES = ("ok", "failed", "timeout", "skipped")
#: Stages the pipeline part runs with ``--quick`` (the smoke profile): a notebook each way through the runner.
QUICK_STAGES = (stages.DATASETS.name, stages.ALIGNMENT.name)


@dataclass(frozen=True)
class Part:
    """One child process of the suite: ``python <argv...>`` from the repository root."""

    name: str
    what: str
    argv: tuple[str, ...]
    budget_s: float
    takes_rest: bool = False  # the last part: all the time left, at least its budget_s if there is any


@dataclass
class PartResult:
    """What one part did: ``status`` is one of :data:`STATUSES`."""

    name: str
    what: str
    command: str
    budget_s: float
    status: str
    wall_s: float = 0.0
    timeout_s: float | None = None
    returncode: int | None = None
    reason: str | None = None
    output_tail: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# ---- the plan -----------------------------------------------------------------------------------

def detect_arguments(help_text: str, device: str, quick: bool, workers: int,
                     data: Path | None = None) -> tuple[list[str], list[str] | None]:
    """Arguments of ``bench/bench_detect.py`` for its MTCNN-on-FER2013 run and for its video mode (None when
    it has none), from the options its ``--help`` lists: only what it offers is passed.

    ``--device``; in quick mode small sizes (``--n-fer``, ``--n-frames``, ``--batch-size``); ``--workers``
    for the video mode (which detects on the CPU, at all its frame sizes); with ``data`` (a folder laid out
    as ``../shared/data``), ``--fer`` and ``--cremad`` inside it.
    """
    m = re.search(r"usage:(.*?)(?:\n\s*\n|$)", help_text, flags=re.S)  # the usage block only
    usage = m.group(1).replace("\n", " ") if m else ""
    flags = set(re.findall(r"\[(--[\w-]+)\]", usage))                 # [--flag]: takes no value
    valued = set(re.findall(r"\[(--[\w-]+) [^\]]+\]", usage))          # [--opt VALUE]
    fer: list[str] = []
    if "--device" in valued:
        fer += ["--device", device]
    if quick:
        for opt, value in (("--n-fer", "16"), ("--n-frames", "8"), ("--batch-size", "8")):
            if opt in valued:
                fer += [opt, value]
    if data is not None and "--fer" in valued:
        fer += ["--fer", str(Path(data) / "fer2013" / "fer2013.csv.gz")]
    if "--video" not in flags:
        return fer, None
    video = ["--video"]
    if "--workers" in valued:
        video += ["--workers", str(workers)]
    if data is not None and "--cremad" in valued:
        video += ["--cremad", str(Path(data) / "cremad_sample")]
    return fer, video


def plan(quick: bool, device: str, run_dir: Path, executed_dir: Path, detect_help: str = "",
         stage_names: Sequence[str] | None = None, workers: int = 2, data: Path | None = None) -> list[Part]:
    """The parts of the suite in order, with their arguments and budgets (seconds).

    Full size (a GPU machine): the benches at their defaults (FER2013-size CNN training and 100,000
    extraction frames; AFEW-size IRNN epochs on 3,200-d conv2 features; the paper's 8.2 M-candidate
    search; detection at 480x360, 720x576 and 1920x1080 in the video mode), the ``full`` profile's data
    and run. ``quick``: the same scripts on tiny sizes (without the detection bench's video mode, whose
    smallest run re-encodes and aligns six real clips in worker processes), the smoke profile's data and run.
    ``stage_names``: the stages of the run (default all). ``workers``: processes of the detection bench's
    video mode. ``data``: real data for the detection bench (:func:`detect_arguments`).
    """
    bench = paths.REPO_ROOT / "bench"
    cli = ("-m", "emotiw_utils.cli")
    if quick:
        profile = "smoke"
        cnn = ("--n", "128", "--epochs", "1", "--extract-n", "256", "--repeats", "1", "--batch-size", "64")
        irnn = ("--n-train", "24", "--n-val", "8", "--input-dim", "7", "--hidden", "16", "--epochs", "2")
        search = ("--clips", "8", "--modalities", "2", "--per-round", "1000", "--no-repeat")
        budgets = dict(cnn=60, amp=60, irnn=45, search=45, detect=60, synth=120, run=150)
    else:
        profile = "full"
        cnn, irnn, search = (), (), ()
        budgets = dict(cnn=45, amp=35, irnn=40, search=25, detect=25, video=45, synth=80, run=150)
    run = (*cli, "run", "--profile", profile, "--device", device, "--run-dir", str(run_dir),
           "--executed-dir", str(executed_dir), "--quiet")
    if stage_names:
        run += ("--stages", *stage_names)
    fer_args, video_args = detect_arguments(detect_help, device, quick, workers, data)
    detect = [Part("bench_detect", "MTCNN keypoint detection: FER2013 images and video frames",
                   (str(bench / "bench_detect.py"), *fer_args), budgets["detect"])]
    if video_args is not None and not quick:  # its smallest run re-encodes and aligns real clips: >30 s of CPU
        detect.append(Part("bench_detect_video", "detection on real video frames (CPU processes): before/after",
                           (str(bench / "bench_detect.py"), *video_args), budgets["video"]))
    return [
        Part("bench_cnn", "frame CNN: training images/s, extraction frames/s (float32)",
             (str(bench / "bench_cnn.py"), "--device", device, *cnn), budgets["cnn"]),
        Part("bench_cnn_bf16", "frame CNN with bf16 autocast",
             (str(bench / "bench_cnn.py"), "--device", device, "--amp", *cnn), budgets["amp"]),
        Part("bench_irnn", "IRNN: seconds per epoch over AFEW-size sequences",
             (str(bench / "bench_irnn.py"), "--device", device, *irnn), budgets["irnn"]),
        Part("bench_random_search", "decision-fusion random search, the paper's schedule"
             + (" with 1,000 candidates a round" if quick else " (8.2 M candidates)"),
             (str(bench / "bench_random_search.py"), "--device", device, *search), budgets["search"]),
        *detect,
        Part("data_synth", f"synthetic data of the {profile} profile (generated or reused)",
             (*cli, "data", "synth", "--profile", profile), budgets["synth"]),
        Part("pipeline", f"emotiw run --profile {profile} --device {device}: per-stage wall times",
             run, budgets["run"], takes_rest=True),
    ]


# ---- running a part -----------------------------------------------------------------------------

def _tail(text: str, n: int = TAIL_LINES) -> list[str]:
    """The last ``n`` lines of a process's output, each as a terminal would show it (text after the last
    carriage return: progress bars keep their final state)."""
    lines = [ln.rsplit("\r", 1)[-1].rstrip() for ln in text.split("\n")]
    lines = [ln for ln in lines if ln]
    return lines[-n:]


def _descendants(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """Stop a part that ran over its time: SIGINT to its process group (the runner records the interrupted
    stage, papermill shuts its kernel down), then, after ``grace_s``, SIGKILL to the group and to every
    descendant found before (a notebook kernel runs in a process session of its own)."""
    descendants = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), *(
            (lambda pid=pid: os.kill(pid, signal.SIGKILL)) for pid in descendants)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def run_command(name: str, what: str, argv: Sequence[str], timeout_s: float, env: Mapping[str, str],
                log_path: Path, budget_s: float | None = None, grace_s: float = GRACE_S) -> PartResult:
    """Run ``argv`` (a full command line) in its own process group with a time limit, its output to
    ``log_path``; ``ok`` on exit code 0, ``failed`` otherwise, ``timeout`` when stopped at the limit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(_quote(a) for a in argv)
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        log.write(f"$ {cmd}\n")
        log.flush()
        start = log.tell()
        try:
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=paths.REPO_ROOT, env=dict(env), start_new_session=True)
        except OSError as e:
            return PartResult(name, what, cmd, budget_s or timeout_s, "failed", timeout_s=timeout_s,
                              reason=f"could not start: {e}")
        try:
            rc = proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _stop_group(proc, grace_s)
            rc, timed_out = proc.returncode, True
        except KeyboardInterrupt:  # the suite is interrupted: its part (in a session of its own) stops too
            _stop_group(proc, grace_s)
            raise
    wall = time.perf_counter() - t0
    with open(log_path, "rb") as f:
        f.seek(start)
        tail = _tail(f.read().decode("utf-8", errors="replace"))
    if timed_out:
        status, reason = "timeout", f"stopped after its {timeout_s:.0f} s"
    elif rc == 0:
        status, reason = "ok", None
    else:
        status, reason = "failed", f"exit code {rc}" + (f": {tail[-1]}" if tail else "")
    return PartResult(name, what, cmd, budget_s or timeout_s, status, wall_s=round(wall, 2), timeout_s=timeout_s,
                      returncode=rc, reason=reason, output_tail=tail)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def install_wheels(wheel_dir: Path, target: Path, python: str, timeout_s: float, env: Mapping[str, str],
                   log_path: Path) -> PartResult:
    """``pip install --no-index --no-deps --target`` of every wheel in ``wheel_dir``: nothing is fetched and
    nothing already on the machine is replaced (the suite puts ``target`` first on the children's
    ``PYTHONPATH``). ``skipped`` when the folder holds no wheel."""
    wheels = sorted(Path(wheel_dir).glob("*.whl"))
    what = f"install the {len(wheels)} wheels of {_rel(wheel_dir)} into {_rel(target)}"
    if not wheels:
        return PartResult("setup", what, "", timeout_s, "skipped",
                          reason=f"no wheel in {_rel(wheel_dir)}: the running interpreter's packages are used")
    if target.exists():
        shutil.rmtree(target)
    argv = [python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
            "--disable-pip-version-check", "--quiet", "--target", str(target), *map(str, wheels)]
    res = run_command("setup", what, argv, timeout_s, env, log_path)
    res.extra = {"wheels": [w.name for w in wheels],
                 "wheel_bytes": sum(w.stat().st_size for w in wheels), "target": str(target)}
    return res


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(p)


# ---- the environment and the stage times --------------------------------------------------------

def probe() -> dict[str, Any]:
    """What the suite runs on: python, platform, CPUs, torch and CUDA, the GPU (``nvidia-smi``), package
    versions and which of :data:`PIPELINE_MODULES` are importable (found, not imported)."""
    import importlib.util
    import platform

    from .artifacts import git_commit, package_versions

    info: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable,
                            "platform": platform.platform(), "cpus": os.cpu_count(),
                            "versions": package_versions(), "git_commit": git_commit()}
    info["modules"] = {m: importlib.util.find_spec(m) is not None for m in PIPELINE_MODULES}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
    except Exception as e:  # noqa: BLE001 (reported, not raised: the suite goes on)
        info["torch_error"] = f"{type(e).__name__}: {e}"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = out.stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            info["nvidia_smi"] = f"failed: {e}"
    from .device import device_description, resolve_device

    dev = "cuda" if info.get("cuda_available") else "cpu"
    info["device"] = device_description(resolve_device(dev))
    return info


def stage_times(run_dir: Path) -> list[dict[str, Any]]:
    """One row per stage of the registry: ``status`` from its manifest in ``run_dir`` (``ok``, ``failed``)
    or ``not run`` when it has none (not selected, not reached, or stopped before it finished), with
    ``wall_s`` and the device its manifest records."""
    from .artifacts import read_manifest

    rows = []
    for s in stages.STAGES:
        try:
            m = read_manifest(Path(run_dir) / s.name)
        except ValueError as e:
            rows.append({"stage": s.name, "status": "failed", "wall_s": None, "device": None, "error": str(e)})
            continue
        if m is None:
            rows.append({"stage": s.name, "status": "not run", "wall_s": None, "device": None})
            continue
        row = {"stage": s.name, "status": m.get("status"), "wall_s": m.get("wall_time_s"), "device": m.get("device")}
        if m.get("error"):
            row["error"] = str(m["error"]).splitlines()[0]
        rows.append(row)
    return rows


# ---- results ------------------------------------------------------------------------------------

def _fmt_s(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:04.1f} s"


def render_markdown(results: Mapping[str, Any]) -> str:
    """The Markdown summary of a results dict (:func:`run_suite`'s, as written to ``suite.json``)."""
    env = results.get("environment") or {}
    out = [f"# Benchmark suite ({results['mode']}), {results['started']}", ""]
    machine = env.get("device") or "unknown (the environment part did not finish)"
    out.append(f"- machine: {machine}; {env.get('cpus', '?')} CPUs; python {env.get('python', '?')}, "
               f"torch {env.get('torch', '?')} (CUDA {env.get('torch_cuda') or 'none'})")
    if env.get("nvidia_smi"):
        out.append(f"- nvidia-smi: {env['nvidia_smi']}")
    missing = [m for m, found in (env.get("modules") or {}).items() if not found]
    if env.get("modules"):
        out.append(f"- modules missing: {', '.join(missing) if missing else 'none'}")
    out.append(f"- command: `{results['command']}`; commit {env.get('git_commit') or 'unknown'}")
    state = "complete" if results.get("complete") else "INCOMPLETE (stopped or still running)"
    out.append(f"- total wall time {_fmt_s(results.get('wall_s'))} of a {results['budget_s']:.0f} s budget; {state}")
    out += ["", "| part | what | status | wall time | limit |", "|---|---|---|---:|---:|"]
    for p in results["parts"]:
        status = p["status"] + (f" ({p['reason']})" if p.get("reason") and p["status"] != "ok" else "")
        out.append(f"| {p['name']} | {p['what']} | {status.replace('|', '/')} | {_fmt_s(p.get('wall_s'))} | "
                   f"{_fmt_s(p.get('timeout_s'))} |")
    pipe = next((p for p in results["parts"] if p["name"] == "pipeline"), None)
    if pipe and pipe.get("extra", {}).get("stages"):
        out += ["", f"## Stages ({pipe['what']})", "",
                "| stage | status | wall time | device |", "|---|---|---:|---|"]
        for r in pipe["extra"]["stages"]:
            out.append(f"| {r['stage']} | {r['status']} | {_fmt_s(r.get('wall_s'))} | {r.get('device') or ''} |")
        done = [r["wall_s"] for r in pipe["extra"]["stages"] if r["status"] == "ok" and r.get("wall_s") is not None]
        out.append(f"| finished stages together | | {_fmt_s(sum(done))} | |")
    out += ["", "## Output of each part (last lines)"]
    for p in results["parts"]:
        if p.get("output_tail"):
            out += ["", f"### {p['name']}", "", f"`{p['command']}`", "", "```text", *p["output_tail"], "```"]
    return "\n".join(out) + "\n"


def write_results(out_dir: Path, results: Mapping[str, Any], copy_to: Path | None = None) -> tuple[Path, Path]:
    """Write ``suite.json`` and ``suite.md`` into ``out_dir`` (atomically), and a copy into ``copy_to``."""
    from .atomic import atomic_path

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, text in ((RESULTS_JSON, json.dumps(results, indent=2, default=str) + "\n"),
                       (RESULTS_MD, render_markdown(results))):
        with atomic_path(out_dir / name) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        files.append(out_dir / name)
        if copy_to is not None:
            shutil.copyfile(out_dir / name, Path(copy_to) / name)
    return files[0], files[1]


# ---- the suite ----------------------------------------------------------------------------------

def child_env(site: Path | None) -> dict[str, str]:
    """The children's environment: the shipped wheels' folder and the repository first on PYTHONPATH
    (the project needs no installation), unbuffered output."""
    env = dict(os.environ)
    front = [str(site)] if site is not None else []
    front.append(str(paths.REPO_ROOT))
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(front + [p for p in rest if p not in front])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_suite(out_dir: Path, quick: bool, device: str, budget_s: float, python: str = sys.executable,
              wheel_dir: Path = WHEEL_DIR, command: str = "", copy_to: Path | None = None,
              stage_names: Sequence[str] | None = None, only: Sequence[str] | None = None,
              data: Path | None = None) -> dict[str, Any]:
    """Run every part within ``budget_s`` seconds in all and return the results (also written to
    ``out_dir`` after each part). ``device``: ``auto`` becomes ``cuda`` when the environment part finds a
    GPU, else ``cpu``. ``only``: names of the parts to run (the others are recorded as skipped). ``data``:
    real data for the detection bench, laid out as ``../shared/data`` (default: the bench's own paths)."""
    t_start = time.perf_counter()
    deadline = t_start + budget_s
    results: dict[str, Any] = {
        "suite": "emotiw bench suite", "format": 1, "mode": "quick" if quick else "full size",
        "command": command, "started": _dt.datetime.now().isoformat(timespec="seconds"), "budget_s": budget_s,
        "device_requested": device, "environment": None, "parts": [], "complete": False, "wall_s": None}
    logs = out_dir / "logs"

    def record(res: PartResult) -> None:
        results["parts"].append(asdict(res))
        results["wall_s"] = round(time.perf_counter() - t_start, 2)
        write_results(out_dir, results, copy_to)
        print(f"[suite] {res.name}: {res.status} in {_fmt_s(res.wall_s)}"
              + (f" ({res.reason})" if res.reason and res.status != "ok" else ""), flush=True)

    site = out_dir / "site"
    setup = install_wheels(wheel_dir, site, python, min(90.0, budget_s / 4), dict(os.environ), logs / "setup.log")
    record(setup)
    env = child_env(site if setup.status == "ok" else None)

    probe_res = run_command("environment", "python, torch, CUDA, GPU, modules", [python, "-m", "emotiw_utils.bench_suite", "--probe"],
                            min(60.0, max(MIN_PART_S, deadline - time.perf_counter())), env,
                            logs / "environment.log")
    if probe_res.status == "ok":
        try:
            results["environment"] = json.loads(probe_res.output_tail[-1])
            probe_res.output_tail = []
        except (IndexError, json.JSONDecodeError) as e:
            probe_res.status, probe_res.reason = "failed", f"unreadable probe output: {e}"
    env_info = results["environment"] or {}
    if device == "auto":
        device = "cuda" if env_info.get("cuda_available") else "cpu"
    results["device"] = device
    record(probe_res)

    # the detection bench is called with the options it offers (detect_arguments)
    run_command("detect_help", "", [python, str(paths.REPO_ROOT / "bench" / "bench_detect.py"), "--help"], 30.0, env,
                logs / "bench_detect_help.log")
    run_dir, executed_dir = out_dir / "run", out_dir / "executed"
    if quick and stage_names is None:
        stage_names = QUICK_STAGES
    workers = int(env_info.get("cpus") or os.cpu_count() or 2)
    help_text = (logs / "bench_detect_help.log").read_text(encoding="utf-8", errors="replace")
    parts = plan(quick, device, run_dir, executed_dir, help_text, stage_names,
                 workers=2 if quick else workers, data=data)
    for part in parts:
        left = deadline - time.perf_counter()
        if only is not None and part.name not in only:
            record(PartResult(part.name, part.what, "", part.budget_s, "skipped", reason="not selected (--only)"))
            continue
        timeout = left if part.takes_rest else min(part.budget_s, left)
        if timeout < MIN_PART_S:
            record(PartResult(part.name, part.what, "", part.budget_s, "skipped",
                              reason=f"no time left ({max(left, 0):.0f} s of the suite's budget)"))
            continue
        res = run_command(part.name, part.what, [python, *part.argv], timeout, env, logs / f"{part.name}.log",
                          budget_s=part.budget_s)
        if part.name == "pipeline":
            res.extra["stages"] = [r for r in stage_times(run_dir) if not stage_names or r["stage"] in stage_names]
        record(res)
    results["complete"] = True
    results["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    results["wall_s"] = round(time.perf_counter() - t_start, 2)
    write_results(out_dir, results, copy_to)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/gpu_suite.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and the smoke profile (a CPU, CI)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="device of every part (default: cuda when torch sees a GPU, else cpu)")
    ap.add_argument("--budget", type=float, default=None,
                    help=f"seconds for the whole suite (default {GPU_BUDGET_S:.0f}; {QUICK_BUDGET_S:.0f} with --quick)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default runs/bench-suite/<date>-<mode>)")
    ap.add_argument("--copy-to", type=Path, default=None, help="also copy suite.json and suite.md into this folder")
    ap.add_argument("--wheels", type=Path, default=WHEEL_DIR, help="folder of wheels to install first (default .wheels)")
    ap.add_argument("--stages", nargs="+", default=None, help="stages of the pipeline part (default: all; "
                    "with --quick the first two)")
    ap.add_argument("--data", type=Path, default=None,
                    help="real data for the detection bench, laid out as ../shared/data (fer2013/fer2013.csv.gz, "
                         "cremad_sample/); default: the bench's own (../shared/data)")
    ap.add_argument("--only", nargs="+", default=None, help="run only these parts (names as in the summary)")
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(), default=str))
        return 0
    mode = "quick" if args.quick else "full"
    out = args.out or paths.REPO_ROOT / "runs" / "bench-suite" / f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{mode}"
    budget = args.budget if args.budget is not None else (QUICK_BUDGET_S if args.quick else GPU_BUDGET_S)
    stage_names = [stages.resolve_stage_name(s) for s in args.stages] if args.stages else None
    command = " ".join(["bash bench/gpu_suite.sh", *(_quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    print(f"[suite] {mode} mode, budget {budget:.0f} s, results in {out}", flush=True)
    results = run_suite(Path(out).resolve(), args.quick, args.device, budget, wheel_dir=args.wheels, command=command,
                        copy_to=args.copy_to, stage_names=stage_names, only=args.only, data=args.data)
    print()
    print(render_markdown(results).split("## Output of each part", 1)[0].rstrip())
    print(f"\n[suite] results: {Path(out) / RESULTS_JSON} and {Path(out) / RESULTS_MD}")
    return 0 if all(p["status"] in ("ok", "skipped") for p in results["parts"]) else 1


if __name__ == "__main__":
    sys.exit(main())
