"""Memory of stages 01-06 with one very long clip (issue 14, item 5): peak RSS per stage, with and without it.

The smoke profile's synthetic AFEW is copied with one Train clip looped to ``--frames`` frames (3,000 by
default: two minutes at 25 fps, about 80 times a synthetic clip) -- its video, its audio track and its
keypoint sidecar alike -- and stages 01-06 run on both datasets, each in its own run directory. Every
stage runs in a fresh child process (the runner, its notebook kernel and the kernel's worker processes);
its peak is the largest resident set size among them (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``
in that child: the kernel, or a worker when one is larger), and its wall time includes the kernel's start.

Usage::

    python bench/bench_long_clip.py                   # both datasets, stages 01-06
    python bench/bench_long_clip.py --frames 1000 --stages 03_irnn

Target (issue 14): the peak of stages 01-06 with the long clip within 1.5x of the same run without it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

TARGET_RATIO = 1.5
STAGE_PREFIXES = ("01", "02", "03", "04", "05", "06")

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from emotiw_utils import pipeline
args = json.loads(sys.argv[1])
data = pipeline.DataPaths(afew=Path(args["afew"]), fer2013=Path(args["fer2013"]),
                          tfd=Path(args["tfd"]) if args["tfd"] else None, synthetic=True)
t0 = time.perf_counter()
pipeline.run_pipeline("smoke", stages=[args["stage"]], run_dir=args["run_dir"], executed_dir=args["executed_dir"],
                      device="cpu", data=data, progress=False)
print("BENCH " + json.dumps({"seconds": time.perf_counter() - t0,
                             "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                             "self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def loop_clip(src_video: Path, dst_video: Path, n_frames: int) -> dict:
    """Write ``dst_video`` (and its keypoint sidecar) as ``src_video`` looped to ``n_frames`` frames."""
    from emotiw_utils.constants import AUDIO_SR
    from emotiw_utils.datasets.keypoints import (
        keypoints_path_for,
        read_keypoints,
        write_keypoints,
    )
    from emotiw_utils.datasets.video import read_audio, read_frames_and_fps, write_clip

    frames, fps = read_frames_and_fps(src_video)
    audio = read_audio(src_video, AUDIO_SR)
    t = np.arange(n_frames) % len(frames)
    n_samples = round(n_frames * AUDIO_SR / fps)
    write_clip(dst_video, frames[t], fps=fps, audio=audio[np.arange(n_samples) % len(audio)], sr=AUDIO_SR)
    src_kp = keypoints_path_for(src_video)
    if src_kp.is_file():
        kps = read_keypoints(src_kp)
        write_keypoints(keypoints_path_for(dst_video), kps[np.arange(n_frames) % len(kps)])
    return {"clip": dst_video.stem, "source_frames": len(frames), "frames": n_frames, "fps": fps}


def long_clip_copy(afew: Path, out: Path, n_frames: int) -> tuple[Path, dict]:
    """A copy of the AFEW folder ``afew`` under ``out`` (a synthetic root: ``generation.json`` beside it) with the
    second clip of ``Train/<first emotion>`` looped to ``n_frames`` frames. Returns (its AFEW folder, info)."""
    root = out / "synth-long"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(afew, root / afew.name)
    info_file = afew.parent / "generation.json"
    if info_file.is_file():
        shutil.copy2(info_file, root / info_file.name)
    first_class = min(p for p in (root / afew.name / "Train").iterdir() if p.is_dir())
    victim = sorted(first_class.glob("*.avi"))[1]  # not the first: chapter 00 shows each class's first clip
    info = loop_clip(afew / "Train" / first_class.name / victim.name, victim, n_frames)
    return root / afew.name, info


def run_stage(stage: str, data: dict, run_dir: Path) -> dict:
    """One stage in a fresh child process: {"seconds", "peak_mb"} (largest process of the stage)."""
    args = {**data, "stage": stage, "run_dir": str(run_dir), "executed_dir": str(run_dir / "executed")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"stage {stage} failed (exit {proc.returncode}); its output is above")
    r = json.loads(lines[-1][len("BENCH "):])
    return {"seconds": r["seconds"], "peak_mb": max(r["children_kb"], r["self_kb"]) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3000, help="length of the looped clip")
    ap.add_argument("--stages", nargs="+", default=list(STAGE_PREFIXES), help="stage names or prefixes, in order")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_long_clip"), help="work folder (replaced)")
    ap.add_argument("--only", choices=("both", "base", "long"), default="both", help="which dataset(s) to run")
    args = ap.parse_args()

    from emotiw_utils import profiles
    from emotiw_utils.pipeline import resolve_data, select_stages

    stages = [s.name for s in select_stages(args.stages)]
    seed = int(profiles.load_params("smoke")["common"]["seed"])
    synth = resolve_data("smoke", seed, progress=False)
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    variants = {}
    if args.only in ("both", "base"):
        variants["base"] = synth.afew
    if args.only in ("both", "long"):
        variants["long"], info = long_clip_copy(synth.afew, out, args.frames)
        print(f"long clip: Train/{info['clip']}, {info['source_frames']} frames looped to {info['frames']} "
              f"({info['frames'] / info['fps']:.0f} s at {info['fps']:g} fps)")
    results: dict[str, dict[str, dict]] = {}
    for name, afew in variants.items():
        run_dir = out / "runs" / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        data = {"afew": str(afew), "fer2013": str(synth.fer2013), "tfd": str(synth.tfd) if synth.tfd else ""}
        results[name] = {}
        for stage in stages:
            results[name][stage] = r = run_stage(stage, data, run_dir)
            print(f"{name:5s} {stage:16s} peak {r['peak_mb']:8.0f} MB  {r['seconds']:7.1f} s", flush=True)

    print(f"\n{platform.machine()}, {os.cpu_count()} CPU cores, {_dt.date.today().isoformat()}, "
          f"frames of the long clip: {args.frames}")
    cols = list(results)
    head = "| stage | " + " | ".join(f"peak {c} (MB)" for c in cols) + " | " + " | ".join(f"{c} (s)" for c in cols)
    if len(cols) == 2:
        head += " | peak long / base"
    print(head + " |")
    print("|---" * (1 + 2 * len(cols) + (len(cols) == 2)) + "|")
    for stage in stages:
        row = [f"{results[c][stage]['peak_mb']:,.0f}" for c in cols] + [f"{results[c][stage]['seconds']:.1f}"
                                                                        for c in cols]
        if len(cols) == 2:
            row.append(f"{results['long'][stage]['peak_mb'] / results['base'][stage]['peak_mb']:.2f}")
        print(f"| {stage} | " + " | ".join(row) + " |")
    peaks = {c: max(r["peak_mb"] for r in results[c].values()) for c in cols}
    total = {c: sum(r["seconds"] for r in results[c].values()) for c in cols}
    line = "| **all** | " + " | ".join(f"**{peaks[c]:,.0f}**" for c in cols) + " | " + \
        " | ".join(f"{total[c]:.1f}" for c in cols)
    if len(cols) == 2:
        ratio = peaks["long"] / peaks["base"]
        line += f" | **{ratio:.2f}**"
    print(line + " |")
    if len(cols) == 2:
        print(f"\npeak of the stages with the long clip / without: {ratio:.2f} "
              f"(target: at most {TARGET_RATIO}) -> {'met' if ratio <= TARGET_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
