"""The one-call benchmark suite (emotiw_utils.bench_suite, bench/gpu_suite.sh): plan, time limits, wheel
install, stage times, results files, and the quick mode end to end on the CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from emotiw_utils import artifacts, bench_suite, paths, stages

REPO = paths.REPO_ROOT
FER_GZ = REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            assert _norm(name) not in out, f"{name} twice in {path.name}"
            out[_norm(name)] = version
    return out


def test_shipped_wheels_are_pinned_as_in_constraints():
    wheels, constraints = _pins(REPO / "bench" / "gpu_wheels.txt"), _pins(REPO / "constraints.txt")
    assert {"papermill", "jupytext", "ipykernel", "myst-nb", "docutils", "av", "opensmile", "skops", "facenet-pytorch"} <= set(wheels)
    for name, version in wheels.items():
        assert constraints.get(name) == version, f"{name}=={version} in gpu_wheels.txt, {constraints.get(name)} pinned"


DETECT_HELP = ("$ python bench/bench_detect.py --help\n"
               "usage: bench_detect.py [-h] [--video] [--cremad CREMAD] [--sizes SIZES]\n"
               "                       [--workers WORKERS] [--device DEVICE] [--fer FER]\n"
               "                       [--n-fer N_FER] [--n-frames N_FRAMES]\n"
               "                       [--batch-size BATCH_SIZE]\n"
               "\n"
               "Usage: python bench/bench_detect.py [--device cpu|cuda|auto] [--not-an-option 3]\n")
FER_ONLY_HELP = "usage: bench_detect.py [-h] [--device DEVICE] [--fer FER] [--n-fer N_FER]\n"


def test_detect_arguments_follow_what_the_bench_offers(tmp_path):
    assert bench_suite.detect_arguments(DETECT_HELP, "cuda", False, 16) == (
        ["--device", "cuda"], ["--video", "--workers", "16"])
    assert bench_suite.detect_arguments(DETECT_HELP, "cpu", True, 2, data=tmp_path) == (
        ["--device", "cpu", "--n-fer", "16", "--n-frames", "8", "--batch-size", "8",
         "--fer", str(tmp_path / "fer2013" / "fer2013.csv.gz")],
        ["--video", "--workers", "2", "--cremad", str(tmp_path / "cremad_sample")])
    # a bench without the video mode, and one whose --help failed (nothing but the error)
    assert bench_suite.detect_arguments(FER_ONLY_HELP, "cuda", True, 2) == (["--device", "cuda", "--n-fer", "16"], None)
    assert bench_suite.detect_arguments("ImportError: no module named cv2", "cuda", True, 2) == ([], None)


def test_plan_full_size_fits_the_budget_and_runs_the_full_profile(tmp_path):
    parts = bench_suite.plan(False, "cuda", tmp_path / "run", tmp_path / "ex", DETECT_HELP, workers=16)
    names = [p.name for p in parts]
    assert names == ["bench_cnn", "bench_cnn_bf16", "bench_irnn", "bench_random_search", "bench_detect",
                     "bench_detect_video", "data_synth", "pipeline"]
    assert parts[5].argv[1:] == ("--video", "--workers", "16")  # all three frame sizes
    assert [p.takes_rest for p in parts] == [False] * 7 + [True]
    # every bench on the GPU, at its full default sizes
    for p in parts[:5]:
        assert p.argv[p.argv.index("--device") + 1] == "cuda"
        assert "--n" not in p.argv and "--clips" not in p.argv
    run = parts[-1].argv
    assert run[:3] == ("-m", "emotiw_utils.cli", "run")
    assert run[run.index("--profile") + 1] == "full" and run[run.index("--device") + 1] == "cuda"
    assert run[run.index("--executed-dir") + 1] == str(tmp_path / "ex") and "--stages" not in run
    # the parts before the pipeline leave it at least its own budget, with a minute for setup and probe
    assert sum(p.budget_s for p in parts[:-1]) + parts[-1].budget_s + 60 <= bench_suite.GPU_BUDGET_S <= 9 * 60 - 20


def test_plan_quick_uses_tiny_sizes_and_the_smoke_profile(tmp_path):
    parts = bench_suite.plan(True, "cpu", tmp_path / "run", tmp_path / "ex", DETECT_HELP, bench_suite.QUICK_STAGES)
    by = {p.name: p.argv for p in parts}
    assert "--n" in by["bench_cnn"] and "--amp" in by["bench_cnn_bf16"] and "--n-train" in by["bench_irnn"]
    assert by["data_synth"][-2:] == ("--profile", "smoke") and "bench_detect_video" not in by
    run = by["pipeline"]
    assert run[run.index("--profile") + 1] == "smoke"
    assert list(run[run.index("--stages") + 1:]) == [stages.DATASETS.name, stages.ALIGNMENT.name]


def test_run_command_records_ok_failed_and_the_output_tail(tmp_path):
    env = bench_suite.child_env(None)
    ok = bench_suite.run_command("a", "", [sys.executable, "-c", "print('x\\r50%\\r100%'); print('done')"], 30, env,
                                 tmp_path / "a.log")
    assert ok.status == "ok" and ok.returncode == 0 and ok.output_tail == ["100%", "done"]
    bad = bench_suite.run_command("b", "", [sys.executable, "-c", "import sys; sys.exit('no data here')"], 30, env,
                                  tmp_path / "b.log")
    assert bad.status == "failed" and bad.returncode == 1 and bad.reason == "exit code 1: no data here"
    assert (tmp_path / "b.log").read_text().startswith("$ ")
    missing = bench_suite.run_command("c", "", [str(tmp_path / "nope")], 30, env, tmp_path / "c.log")
    assert missing.status == "failed" and "could not start" in missing.reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_a_part_over_its_time_is_stopped_with_its_children(tmp_path):
    """A child in the part's process group and a grandchild in a session of its own (as papermill starts
    notebook kernels) are both gone when the part is stopped; the suite goes on."""
    pids = tmp_path / "pids"
    # SIGINT's default handler first: a shell's background job (nohup ... &) starts its children ignoring SIGINT
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "a = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "b = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
            f"open({str(pids)!r}, 'w').write(f'{{a.pid}} {{b.pid}}')\n"
            "print('started', flush=True)\n"
            "time.sleep(60)\n")
    t0 = time.perf_counter()
    res = bench_suite.run_command("slow", "", [sys.executable, "-c", code], 3, bench_suite.child_env(None),
                                  tmp_path / "slow.log", grace_s=1)
    assert time.perf_counter() - t0 < 15
    assert res.status == "timeout" and res.reason == "stopped after its 3 s"
    assert res.output_tail[0] == "started" and "KeyboardInterrupt" in res.output_tail[-1]  # SIGINT first
    time.sleep(0.5)
    child, grandchild = map(int, pids.read_text().split())
    assert not _alive(child) and not _alive(grandchild)


def _tiny_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (one module) built by hand."""
    name = "emotiw_suite_probe"
    whl = folder / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr(f"{name}.py", "VALUE = 42\n")
        z.writestr(f"{name}-0.1.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        z.writestr(f"{name}-0.1.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{name}-0.1.dist-info/RECORD", "")
    return whl


def test_shipped_wheels_are_installed_offline_and_seen_by_the_parts(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    skipped = bench_suite.install_wheels(wheels, target, sys.executable, 60, os.environ, tmp_path / "s0.log")
    assert skipped.status == "skipped" and "no wheel" in skipped.reason
    _tiny_wheel(wheels)
    res = bench_suite.install_wheels(wheels, target, sys.executable, 120, os.environ, tmp_path / "s1.log")
    assert res.status == "ok", res.output_tail
    assert res.extra["wheels"] == ["emotiw_suite_probe-0.1-py3-none-any.whl"] and res.extra["wheel_bytes"] > 0
    check = bench_suite.run_command(
        "check", "", [sys.executable, "-c", "import emotiw_suite_probe, emotiw_utils; print(emotiw_suite_probe.VALUE)"],
        60, bench_suite.child_env(target), tmp_path / "c.log")
    assert check.status == "ok" and check.output_tail == ["42"]


def test_stage_times_come_from_the_manifests(tmp_path):
    common = dict(parameters={"seed": 0}, input_hash="h", device="cpu (test)", started="s", finished="f")
    artifacts.write_manifest(tmp_path / stages.DATASETS.name, stage=stages.DATASETS.name, status="ok",
                             wall_time_s=12.5, **common)
    artifacts.write_manifest(tmp_path / stages.ALIGNMENT.name, stage=stages.ALIGNMENT.name, status="failed",
                             wall_time_s=3.0, error="interrupted\nmore", **common)
    rows = bench_suite.stage_times(tmp_path)
    assert [r["stage"] for r in rows] == [s.name for s in stages.STAGES]
    assert rows[0] == {"stage": stages.DATASETS.name, "status": "ok", "wall_s": 12.5, "device": "cpu (test)"}
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "interrupted"
    assert all(r["status"] == "not run" and r["wall_s"] is None for r in rows[2:])


def test_the_summary_shows_every_part_and_the_stages(tmp_path):
    results = {"mode": "full size", "started": "2026-12-01T12:00:00", "command": "bash bench/gpu_suite.sh",
               "budget_s": 510.0, "wall_s": 500.0, "complete": False,
               "environment": {"device": "cuda: NVIDIA H200", "cpus": 16, "python": "3.12.3", "torch": "2.11.0",
                               "torch_cuda": "13.0", "modules": {"av": True, "opensmile": False}},
               "parts": [
                   {"name": "bench_cnn", "what": "frame CNN", "command": "python bench/bench_cnn.py", "status": "ok",
                    "wall_s": 20.0, "timeout_s": 60.0, "reason": None, "output_tail": ["| train_cnn | 80,000 |"]},
                   {"name": "pipeline", "what": "emotiw run", "command": "python -m emotiw_utils.cli run --profile full",
                    "status": "timeout", "wall_s": 150.0, "timeout_s": 150.0, "reason": "stopped after its 150 s",
                    "output_tail": [], "extra": {"stages": [
                        {"stage": stages.DATASETS.name, "status": "ok", "wall_s": 30.0, "device": "cuda"},
                        {"stage": stages.ALIGNMENT.name, "status": "not run", "wall_s": None, "device": None}]}}]}
    md = bench_suite.render_markdown(results)
    assert "machine: cuda: NVIDIA H200; 16 CPUs" in md and "modules missing: opensmile" in md
    assert "INCOMPLETE" in md and "| bench_cnn | frame CNN | ok | 20.0 s | 1 min 00.0 s |" in md
    assert "| pipeline | emotiw run | timeout (stopped after its 150 s) | 2 min 30.0 s |" in md
    assert f"| {stages.DATASETS.name} | ok | 30.0 s | cuda |" in md and "| finished stages together | | 30.0 s | |" in md
    assert "| train_cnn | 80,000 |" in md
    json_path, md_path = bench_suite.write_results(tmp_path / "out", results, copy_to=tmp_path)
    assert json.loads(json_path.read_text())["parts"][1]["status"] == "timeout"
    assert (tmp_path / bench_suite.RESULTS_MD).read_text() == md_path.read_text() == md


def test_quick_suite_on_the_cpu_writes_its_results(tmp_path):
    """``bash bench/gpu_suite.sh --quick``: every part on tiny sizes, the smoke profile's first stages, one
    results file (JSON + Markdown). The same code paths as the GPU run, on the CPU."""
    out = tmp_path / "suite"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["PYTHON"] = sys.executable
    env["EMOTIW_DATA"] = str(tmp_path / "data")  # its own smoke data: no race with other runs on the shared cache
    (tmp_path / "nowheels").mkdir()
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_suite.sh"), "--quick", "--device", "cpu", "--out", str(out),
                           "--wheels", str(tmp_path / "nowheels")], capture_output=True, text=True, env=env,
                          timeout=bench_suite.QUICK_BUDGET_S + 120)
    assert (out / bench_suite.RESULTS_JSON).is_file(), proc.stdout + proc.stderr
    res = json.loads((out / bench_suite.RESULTS_JSON).read_text())
    parts = {p["name"]: p for p in res["parts"]}
    assert res["complete"] and res["mode"] == "quick" and res["device"] == "cpu"
    assert list(parts) == ["setup", "environment", "bench_cnn", "bench_cnn_bf16", "bench_irnn", "bench_random_search",
                           "bench_detect", "data_synth", "pipeline"]
    assert parts["setup"]["status"] == "skipped"
    env_info = res["environment"]
    assert env_info["cuda_available"] is False and env_info["device"].startswith("cpu")
    assert env_info["modules"]["papermill"] and env_info["versions"]["torch"]
    for name in ("bench_cnn", "bench_cnn_bf16", "bench_irnn", "bench_random_search", "data_synth", "pipeline"):
        assert parts[name]["status"] == "ok", (name, parts[name]["output_tail"])
        assert 0 < parts[name]["wall_s"] <= parts[name]["timeout_s"]
    assert any("train_cnn" in ln for ln in parts["bench_cnn"]["output_tail"])
    assert any("amp bf16" in ln for ln in parts["bench_cnn_bf16"]["output_tail"])
    assert any("epoch (train + validation)" in ln for ln in parts["bench_irnn"]["output_tail"])
    assert any("candidates" in ln for ln in parts["bench_random_search"]["output_tail"])
    if FER_GZ.is_file():
        assert parts["bench_detect"]["status"] == "ok", parts["bench_detect"]["output_tail"]
    else:
        assert parts["bench_detect"]["status"] == "failed" and "FER2013 not found" in parts["bench_detect"]["reason"]
    rows = parts["pipeline"]["extra"]["stages"]
    assert [r["stage"] for r in rows] == list(bench_suite.QUICK_STAGES)
    assert all(r["status"] == "ok" and r["wall_s"] > 0 for r in rows)
    assert (out / "executed" / f"{stages.DATASETS.name}.ipynb").is_file()  # not the developer's book/executed
    md = (out / bench_suite.RESULTS_MD).read_text()
    assert "| bench_irnn |" in md and f"| {stages.ALIGNMENT.name} | ok |" in md
    assert proc.returncode == (0 if FER_GZ.is_file() else 1)


def test_bench_fer2013_trains_and_records_its_curves_on_a_tiny_aligned_set(tmp_path):
    """bench/bench_fer2013.py end to end on 200 fake aligned faces: one epoch with every augmentation option,
    the curves and the mirrored-face accuracies in its JSON."""
    import numpy as np

    from emotiw_utils.aligned import StaticFaces

    rng = np.random.default_rng(0)
    usage = np.array(["Training"] * 140 + ["PublicTest"] * 30 + ["PrivateTest"] * 30)
    faces = StaticFaces(rng.integers(0, 256, (200, 48, 48), dtype=np.uint8), rng.integers(0, 7, 200),
                        np.full(200, "FER2013"), usage)
    faces.save(stages.ALIGNMENT.path(tmp_path, "static_faces"))
    out = tmp_path / "curves.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_fer2013.py"), "--run-dir", str(tmp_path),
                           "--epochs", "1", "--batch-size", "32", "--holdout-size", "20", "--rotate", "10",
                           "--scale", "0.1", "--label-smoothing", "0.1", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "holdout selects epoch 1/1" in done.stdout and "mirrored faces averaged" in done.stdout
    result = json.loads(out.read_text())
    assert result["n_train"] == 120 and result["settings"]["rotate"] == 10
    assert set(result["flip_average_acc"]) == {"PublicTest", "PrivateTest"}
    assert {"fit_acc", "holdout_acc", "PublicTest_acc", "PrivateTest_acc"} <= set(result["history"]["epochs"][0])
