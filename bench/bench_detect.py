"""Throughput of MTCNN keypoint detection (emotiw_utils.detect, paper section 2.1.2 step 1).

Usage: python bench/bench_detect.py [--device cpu|cuda|auto] [--n-fer 2000] [--n-frames 256] [--batch-size 64]
       python bench/bench_detect.py --video [--sizes 480x360,720x576,1920x1080] [--workers 2] [--clips 6]
                                    [--no-before] [--pool]

Prints images/s of
* detect_static_faces on the first --n-fer rows of the real FER2013 (48x48 gray; ../shared/data next
  to the repository, or --fer PATH), with its detection rate;
* FaceDetector on --n-frames synthetic 144x176 RGB video frames (scikit-image's astronaut, resized, with
  small shifts and noise so that no two frames are equal).
Exits with a message when the FER2013 file is absent.

``--video``: stage 01's detection on real video frames, before and after emotiw_utils.detect_video. The six
real CREMA-D clips (../shared/data/cremad_sample, or --cremad DIR; 480x360) are resized (bicubic) to each
size of --sizes and written as MPEG-4 AVI (AFEW's codec) into an AFEW-like tree (a third of them in Val).
For each size it prints frames/s and detection rate of
* before: each clip decoded (full-size RGB) and MTCNN (min_face_size 20 px) on every full-size frame, one
  clip at a time (stage 01's former loop; --no-before skips it, and with it the rate and keypoint difference);
* after: emotiw_utils.detect_video.detect_clips with the default VideoPolicy in up to --workers processes;
and of decode + detection + alignment (``aligned.align_afew``: the Train clips detected, AFEW's transform
fitted, the Train clips aligned from a second decode, the Val clips detected and aligned in one decode, in up
to --workers processes, or in threads of this process when the job is too small to pay for starting them:
``detect_video.choose_workers``; --pool starts the pools whatever the job's size, as before that choice;
for "before" its detection is replaced by keypoint sidecars holding the "before" keypoints, so its time is
added to the before loop's), plus the mean keypoint difference of "after" to "before" over the frames where
both found a face, as a fraction of the before frame's eye distance. Each timed call starts without MTCNN
loaded in this process (the weights load is counted, as a stage run pays it).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import platform
import sys
import time
from pathlib import Path

import numpy as np

from emotiw_utils.detect import FaceDetector, detect_static_faces
from emotiw_utils.device import device_description, resolve_device

FER_GZ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
CREMAD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cremad_sample"


def first_fer_rows(path: Path, n: int) -> np.ndarray:
    """The first ``n`` FER2013 images, ``(n, 48, 48)`` uint8 (plain gzip + csv: no need to parse the whole file)."""
    images = []
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            images.append(np.array(row[1].split(), dtype=np.uint8).reshape(48, 48))
            if len(images) == n:
                break
    return np.stack(images)


def synthetic_frames(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 144, 176, 3)`` uint8 RGB frames: the astronaut photo resized, shifted by a few pixels, plus noise."""
    import cv2
    from skimage.data import astronaut

    base = cv2.resize(astronaut(), (200, 164), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    out = np.empty((n, 144, 176, 3), np.uint8)
    for i in range(n):
        dy, dx = rng.integers(0, 21, size=2)
        frame = base[dy:dy + 144, dx:dx + 176].astype(np.int16) + rng.integers(-8, 9, size=(144, 176, 3))
        out[i] = np.clip(frame, 0, 255)
    return out


def timed(fn, n: int) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return n / (time.perf_counter() - t0), result


def _make_videos(cremad: Path, size: tuple[int, int], root: Path, n_clips: int) -> list[Path]:
    """The first ``n_clips`` CREMA-D clips resized to ``size`` (width, height) as MPEG-4 AVI in an AFEW-like tree
    under ``root`` (the last third, at least one, in Val; the others in Train)."""
    import cv2

    from emotiw_utils.datasets.video import read_frames_and_fps, write_clip

    emotions = {"ANG": "Angry", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"}
    out = []
    clips = sorted(cremad.glob("*.flv"))[:n_clips]
    for i, clip in enumerate(clips):
        frames, fps = read_frames_and_fps(clip)
        big = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames])
        d = root / ("Val" if i >= len(clips) - max(1, len(clips) // 3) else "Train") / emotions[clip.stem.split("_")[2]]
        d.mkdir(parents=True, exist_ok=True)
        out.append(write_clip(d / f"{clip.stem}.avi", big, fps=fps, qscale=3))
    return out


def _keypoint_difference(after: np.ndarray, before: np.ndarray) -> tuple[float, int]:
    """Mean over frames with a face in both of the mean keypoint distance / the before eye distance."""
    from emotiw_utils.detect_video import eye_distance

    both = np.isfinite(after).all(axis=(1, 2)) & np.isfinite(before).all(axis=(1, 2))
    err = np.linalg.norm(after[both] - before[both], axis=-1).mean(axis=1) / eye_distance(before[both])
    return float(err.mean()), int(both.sum())


def _fresh_detector_state() -> None:
    """Forget the MTCNN this process keeps for in-process detection, so that each timed call loads it, as a
    stage run does (a no-op on code before detect_video.choose_workers)."""
    from emotiw_utils import detect_video

    getattr(detect_video, "_FREE_DETECTORS", {}).clear()


def video_mode(args) -> None:
    import os
    import tempfile

    import torch

    from emotiw_utils import aligned, detect_video
    from emotiw_utils.datasets.keypoints import keypoints_path_for, write_keypoints
    from emotiw_utils.datasets.video import read_frames
    from emotiw_utils.detect_video import VideoPolicy, detect_clips

    if not args.cremad.is_dir() or not list(args.cremad.glob("*.flv")):
        sys.exit(f"real CREMA-D clips not found in {args.cremad} (pass --cremad DIR); nothing benchmarked")
    if args.pool and hasattr(detect_video, "SMALL_JOB_ITEMS"):
        detect_video.SMALL_JOB_ITEMS = 0
    policy = VideoPolicy()
    fer_mean = np.array([[15.0, 18], [33, 18], [24, 27], [17, 35], [31, 35]])  # a FER-like 48x48 mean shape
    print(f"torch threads {torch.get_num_threads()}; workers {args.workers}{' (pools forced)' if args.pool else ''}; "
          f"python {platform.python_version()}; policy {policy.to_dict()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    det = None
    if not args.no_before:
        det = FaceDetector(device="cpu", min_face_size=20)
        det.detect(synthetic_frames(4))  # warm-up
    for size_s in args.sizes.split(","):
        w, h = (int(v) for v in size_s.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            paths = _make_videos(args.cremad, (w, h), root, args.clips)
            before = None
            if not args.no_before:
                # before: decode full-size RGB, MTCNN min 20 px on every full-size frame, one clip at a time
                t0 = time.perf_counter()
                before = [det.detect(read_frames(p), batch_size=64).keypoints for p in paths]
                t_before = time.perf_counter() - t0
                rate_before = float(np.mean(np.concatenate([np.isfinite(k).all(axis=(1, 2)) for k in before])))
            # after: the fast path
            _fresh_detector_state()
            t0 = time.perf_counter()
            after = detect_clips(paths, policy, workers=args.workers)
            t_after = time.perf_counter() - t0
            n = sum(len(a) for a in after)
            kps_after = np.concatenate([a.keypoints for a in after])
            rate_after = float(np.isfinite(kps_after).all(axis=(1, 2)).mean())
            n_detected = sum(int(a.detected.sum()) for a in after)
            # decode + detection + alignment: stage 01's AFEW path (after), and its alignment alone (before)
            train = [p for p in paths if p.parent.parent.name == "Train"]
            val = [p for p in paths if p.parent.parent.name == "Val"]
            choice = ""
            if hasattr(detect_video, "choose_workers"):
                def where(n: int, n_items: int) -> str:
                    if n > 1:
                        return f"{n} processes"
                    k = detect_video.in_process_threads(args.workers, n_items)
                    return f"{k} thread{'s' if k > 1 else ''} here"

                choice = (f"; Train detected in {where(detect_video.choose_workers(args.workers, train), len(train))}"
                          f", aligned in {where(detect_video.choose_workers(args.workers, val, train), len(paths))}")
            _fresh_detector_state()
            t0 = time.perf_counter()
            _, _, info = aligned.align_afew(root, fer_mean, workers=args.workers, splits=("Train", "Val"),
                                            detect_policy=policy)
            t_e2e_after = time.perf_counter() - t0
            if before is not None:
                diff, n_both = _keypoint_difference(kps_after, np.concatenate(before))
                for p, k in zip(paths, before):
                    write_keypoints(keypoints_path_for(p), k)
                t0 = time.perf_counter()
                aligned.align_afew(root, fer_mean, workers=args.workers, splits=("Train", "Val"))
                t_align = time.perf_counter() - t0
        twice = info["keypoints"].get("decoded_twice")
        print(f"{w}x{h}, {len(paths)} clips, {n} frames (detection image "
              f"{after[0].detection_size[1]}x{after[0].detection_size[0]}, {n_detected} frames detected, "
              f"{n - n_detected} interpolated{'' if twice is None else f'; {twice} clips decoded twice'}{choice}):")
        if before is None:
            print(f"  detection       after {n / t_after:7.1f} frames/s (rate {rate_after:.3f})")
            print(f"  decode + detection + alignment   after {n / t_e2e_after:7.1f} frames/s")
            continue
        print(f"  detection       before {n / t_before:7.1f} frames/s (rate {rate_before:.3f})   "
              f"after {n / t_after:7.1f} frames/s (rate {rate_after:.3f})")
        print(f"  decode + detection + alignment   before {n / (t_before + t_align):7.1f} frames/s   "
              f"after {n / t_e2e_after:7.1f} frames/s")
        print(f"  keypoints after vs before: mean difference {100 * diff:.2f} % of the eye distance "
              f"({n_both} frames with a face in both)")
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", action="store_true", help="video mode (see above)")
    ap.add_argument("--cremad", type=Path, default=CREMAD, help="folder of the CREMA-D sample clips")
    ap.add_argument("--sizes", default="480x360,720x576,1920x1080", help="frame sizes WxH, comma-separated")
    ap.add_argument("--workers", type=int, default=2, help="processes of the fast path and of the alignment")
    ap.add_argument("--clips", type=int, default=6, help="CREMA-D clips used (2 to 6)")
    ap.add_argument("--no-before", action="store_true", help="skip full-resolution MTCNN on every frame")
    ap.add_argument("--pool", action="store_true", help="start worker pools however small the job")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--fer", type=Path, default=FER_GZ, help="FER2013 fer2013.csv(.gz)")
    ap.add_argument("--n-fer", type=int, default=2000)
    ap.add_argument("--n-frames", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64, help="FaceDetector batch size for the frames")
    args = ap.parse_args()
    if args.video:
        video_mode(args)
        return
    if not args.fer.is_file():
        sys.exit(f"real FER2013 not found at {args.fer} (pass --fer PATH); nothing benchmarked")
    device = resolve_device(args.device)
    import torch

    print(f"device: {device_description(device)}; torch threads {torch.get_num_threads()}; "
          f"python {platform.python_version()}")

    fer = first_fer_rows(args.fer, args.n_fer)
    detect_static_faces(fer[:64], device=device)  # warm-up (import, weights, kernels)
    rate, r = timed(lambda: detect_static_faces(fer, device=device), len(fer))
    print(f"detect_static_faces, FER2013 first {len(fer)} (48x48 gray): {rate:.0f} images/s, "
          f"detection rate {r.detection_rate:.3f}")

    frames = synthetic_frames(args.n_frames)
    det = FaceDetector(device=device)
    det.detect(frames[:8])  # warm-up
    rate, r = timed(lambda: det.detect(frames, batch_size=args.batch_size), len(frames))
    print(f"FaceDetector, {len(frames)} frames 144x176 RGB, batch {args.batch_size}: {rate:.0f} images/s, "
          f"detection rate {r.detection_rate:.3f}")


if __name__ == "__main__":
    main()
