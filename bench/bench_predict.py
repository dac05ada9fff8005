"""Speed and memory of ``emotiw predict`` on a long video: videos per second and peak memory.

A long video is made by looping one clip (a Test clip of the run by default, with its audio; or any clip given
with ``--source``, e.g. a CREMA-D sample) for ``--minutes`` with PyAV, frame by frame (never held whole), and
predicted with the run's models by :func:`emotiw_utils.predict.predict_video` in a fresh process, which
reports its wall time and its peak resident memory (``ru_maxrss``). Videos longer than
:data:`emotiw_utils.predict.LONG_VIDEO_S` are predicted in windows, decoded as a stream: the peak memory
should not grow with the video's length (compare ``--minutes 1`` and ``--minutes 10``).

``--sidecar`` also loops the source clip's keypoint sidecar (synthetic clips have one), so that the time
without face detection is measured; without it MTCNN finds the faces of every frame, as for a user's video.

Usage::

    python bench/bench_predict.py --run-dir runs/demo --minutes 10
    python bench/bench_predict.py --run-dir runs/demo --minutes 10 --sidecar
    python bench/bench_predict.py --run-dir runs/demo --minutes 1 --source ../shared/data/cremad_sample/1001_DFA_HAP_XX.flv
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from emotiw_utils import artifacts, stages
from emotiw_utils.constants import AUDIO_SR
from emotiw_utils.datasets.afew import scan_afew
from emotiw_utils.datasets.keypoints import keypoints_path_for, read_keypoints, write_keypoints
from emotiw_utils.datasets.video import probe_clip, read_audio, read_frames
from emotiw_utils.device import device_description

#: What the child process runs: one prediction, its wall time and peak memory as JSON on stdout.
_CHILD = """
import json, resource, sys, time
from emotiw_utils import predict
run_dir, video, device = sys.argv[1:4]
t0 = time.perf_counter()
models = predict.RunModels.load(run_dir, device=device)
t1 = time.perf_counter()
pred = predict.predict_video(video, models)
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "predict_s": t2 - t1, "status": pred.status, "frames": pred.n_frames,
                  "seconds": pred.duration_s, "windows": len(pred.segments), "error": pred.error,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def loop_video(source: Path, dest: Path, minutes: float, sidecar: bool) -> Path:
    """Write ``source`` looped for ``minutes`` to ``dest`` (MPEG-4 + PCM audio in AVI), one frame at a time."""
    import av

    frames = read_frames(source)
    info = probe_clip(source)
    try:
        audio = read_audio(source, AUDIO_SR)
    except Exception:  # noqa: BLE001 - a source without audio gives a video without audio
        audio = None
    n_total = int(round(minutes * 60 * info.fps))
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    rate = Fraction(info.fps).limit_denominator(1001)
    with av.open(str(dest), mode="w", format="avi") as out:
        vs = out.add_stream("mpeg4", rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.qscale = True  # a constant quantiser, as write_clip encodes
        vs.codec_context.qmin = vs.codec_context.qmax = 2
        vs.codec_context.max_b_frames = 0
        astream = out.add_stream("pcm_s16le", rate=AUDIO_SR, layout="mono") if audio is not None else None
        pcm = None if audio is None else np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
        written = 0  # audio samples muxed so far, interleaved with the video
        for t in range(n_total):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[t % len(frames), :h, :w]), format="rgb24")
            frame.pts = t
            out.mux(vs.encode(frame))
            if astream is not None:
                until = int((t + 1) * AUDIO_SR / rate)
                if until > written:
                    af = av.AudioFrame.from_ndarray(pcm[np.arange(written, until) % len(pcm)][None, :], format="s16",
                                                    layout="mono")
                    af.sample_rate, af.pts = AUDIO_SR, written
                    out.mux(astream.encode(af))
                    written = until
        out.mux(vs.encode(None))
        if astream is not None:
            out.mux(astream.encode(None))
    if sidecar:
        kps = read_keypoints(keypoints_path_for(source))
        write_keypoints(keypoints_path_for(dest), kps[np.arange(n_total) % len(kps)])
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="a finished run (default: runs/demo)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the looped video (default: 10)")
    ap.add_argument("--source", type=Path, default=None, help="clip to loop (default: the run's first Test clip)")
    ap.add_argument("--sidecar", action="store_true", help="loop the source's keypoint sidecar too (no detection)")
    ap.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    args = ap.parse_args()

    source = args.source
    if source is None:
        afew = artifacts.read_manifest(stages.ALIGNMENT.dir(args.run_dir))["parameters"]["afew_dir"]
        source = scan_afew(afew, ["Test"])[0].path
    with tempfile.TemporaryDirectory() as tmp:
        video = loop_video(source, Path(tmp) / "long.avi", args.minutes, args.sidecar)
        size = video.stat().st_size / 2**20
        res = subprocess.run([sys.executable, "-c", _CHILD, str(args.run_dir), str(video), args.device],
                             capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(res.stderr)
        r = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"emotiw predict, {args.minutes:g}-minute video looped from {source.name} ({size:.0f} MiB, "
          f"{r['frames']} frames, {r['windows']} windows), keypoints "
          f"{'from a sidecar' if args.sidecar else 'detected by MTCNN'}, run {args.run_dir}, "
          f"{device_description(args.device)}, {_dt.date.today()}")
    print(f"  status {r['status']}{'' if r['error'] is None else ' ' + r['error']}")
    print(f"  models loaded in {r['load_s']:.1f} s; predicted in {r['predict_s']:.1f} s: "
          f"{1 / r['predict_s']:.4f} videos/s, {r['frames'] / r['predict_s']:.0f} frames/s, "
          f"{r['seconds'] / r['predict_s']:.1f}x real time")
    print(f"  peak resident memory {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
