"""Throughput of MTCNN keypoint detection (emotiw_utils.detect, paper section 2.1.2 step 1).

Usage: python bench/bench_detect.py [--device cpu|cuda|auto] [--n-fer 2000] [--n-frames 256] [--batch-size 64]

Prints images/s of
* detect_static_faces on the first --n-fer rows of the real FER2013 (48x48 gray; ../shared/data next
  to the repository, or --fer PATH), with its detection rate;
* FaceDetector on --n-frames synthetic 144x176 RGB video frames (scikit-image's astronaut, resized, with
  small shifts and noise so that no two frames are equal).
Exits with a message when the FER2013 file is absent.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--fer", type=Path, default=FER_GZ, help="FER2013 fer2013.csv(.gz)")
    ap.add_argument("--n-fer", type=int, default=2000)
    ap.add_argument("--n-frames", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64, help="FaceDetector batch size for the frames")
    args = ap.parse_args()
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
