"""Throughput of the frame CNN (paper section 2.1.3): training images/s and extraction frames/s.

Random uint8 faces of FER2013 size (no dataset needed) go through the library's own code paths:
:func:`emotiw_utils.cnn.train_cnn` (data resident on the device, vectorised flip/crop augmentation,
no per-batch host sync) for training, :func:`~emotiw_utils.cnn.predict_logits` and
:func:`~emotiw_utils.cnn.layer_activations` (``"conv2"``, the IRNN input of section 2.2) for extraction.
Every figure is measured after a warm-up run of the same call (cuDNN autotuning, allocator), with
``torch.cuda.synchronize`` before the clock stops on CUDA.

Usage::

    python bench/bench_cnn.py --device cuda                      # FER2013 size, 2 epochs, 100k frames
    python bench/bench_cnn.py --device cuda --amp                # bf16 autocast
    python bench/bench_cnn.py --device cpu --n 2048 --epochs 2 --extract-n 8192

Targets (one H100, cnn9x9, batch 256): >= 75,000 training images/s and >= 300,000 extraction frames/s.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import time

import numpy as np
import torch

from emotiw_utils import cnn
from emotiw_utils.device import device_description, resolve_device

TARGET_TRAIN = 75_000
TARGET_EXTRACT = 300_000


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--arch", default="cnn9x9", choices=cnn.ARCHITECTURES)
    ap.add_argument("--batch-size", type=int, default=256, help="training batch size")
    ap.add_argument("--n", type=int, default=28709, help="training images (FER2013 Training size)")
    ap.add_argument("--epochs", type=int, default=2, help="timed training epochs")
    ap.add_argument("--extract-n", type=int, default=100_000, help="frames for the extraction timings")
    ap.add_argument("--extract-batch", type=int, default=None,
                    help="extraction batch size (default: the library's, 4096 on CUDA, 256 on CPU)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each extraction call (median)")
    ap.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    ap.add_argument("--amp", action="store_true", help="bf16 autocast for training and extraction")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = resolve_device(args.device)
    rng = np.random.default_rng(args.seed)
    x = rng.integers(0, 256, (args.n, 48, 48), dtype=np.uint8)
    y = rng.integers(0, 7, args.n)
    xe = rng.integers(0, 256, (args.extract_n, 48, 48), dtype=np.uint8)
    config = cnn.CnnConfig(arch=args.arch)
    model = cnn.FrameCNN(config, *cnn.mean_std_images(x), seed=args.seed)
    train_kw = dict(batch_size=args.batch_size, device=device, optimizer=args.optimizer, amp=args.amp,
                    seed=args.seed, progress=False)

    # training: warm-up epoch on the same data (cuDNN autotuning of the full and the last partial batch)
    cnn.train_cnn(model, x, y, epochs=1, **train_kw)
    hist = cnn.train_cnn(model, x, y, epochs=args.epochs, **train_kw)
    per_epoch = [args.n / e["seconds"] for e in hist.epochs]

    # extraction: uint8 numpy input (includes the host->device copy) and device-resident input
    xe_dev = torch.from_numpy(xe).to(device)
    bs = args.extract_batch or cnn.INFERENCE_BATCH["cuda" if device.startswith("cuda") else "cpu"]
    rows = [("train_cnn", f"{args.arch}, batch {args.batch_size}, {args.n} images x {args.epochs} epochs",
             hist.images_per_second, TARGET_TRAIN)]
    if len(per_epoch) > 1:
        rows.append(("train_cnn, best epoch", "", max(per_epoch), TARGET_TRAIN))
    for name, fn in [
        ("predict_logits (numpy)", lambda: cnn.predict_logits(model, xe, batch_size=bs, amp=args.amp)),
        ("predict_logits (device)", lambda: cnn.predict_logits(model, xe_dev, batch_size=bs, amp=args.amp)),
        ("layer_activations conv2 (numpy)",
         lambda: cnn.layer_activations(model, xe, "conv2", batch_size=bs, amp=args.amp)),
        ("layer_activations conv2 (device)",
         lambda: cnn.layer_activations(model, xe_dev, "conv2", batch_size=bs, amp=args.amp)),
    ]:
        seconds = _timed(fn, device, args.repeats)
        rows.append((name, f"{args.extract_n} frames, batch {bs}", args.extract_n / seconds, TARGET_EXTRACT))

    print(f"# bench_cnn  {_dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"device: {device_description(device)}")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), threads {torch.get_num_threads()}, "
          f"amp {'bf16' if args.amp else 'off'}, optimizer {args.optimizer}, "
          f"{cnn.FrameCNN(config).feature_dim('conv2')}-d conv2 features")
    print()
    print(f"| {'measure':34s} | {'setting':42s} | {'per second':>12s} | {'target (H100, cnn9x9, bs 256)':>29s} |")
    print(f"|{'-' * 36}|{'-' * 44}|{'-' * 13}:|{'-' * 30}:|")
    for name, setting, value, target in rows:
        print(f"| {name:34s} | {setting:42s} | {value:12,.0f} | {'>= ' + format(target, ','):>29s} |")


if __name__ == "__main__":
    main()
