"""The frame CNN of chapter 02 on the real FER2013: accuracy, learning curves and training throughput.

Reads the aligned faces of a run's stage 01 (run it first on the real FER2013, e.g.
``emotiw run --profile realfer --fer2013 PATH/fer2013.csv.gz --stages 00 01 --run-dir runs/realfer``),
trains on FER2013 Training minus the 1,000-image holdout of chapter 02 with the library's
:func:`emotiw_utils.cnn.train_cnn`, and records after every epoch the accuracy on the holdout, on
PublicTest and on PrivateTest (never used to select anything here), plus the training accuracy without
augmentation on a fixed 2,000-image sample of the training set (what the network fits, dropout off).
Prints one line per epoch and writes the curves and the settings to ``--out`` (JSON).

Usage::

    python bench/bench_fer2013.py --run-dir runs/realfer --epochs 40 --optimizer sgd --lr 0.05 \\
        --schedule onecycle --out runs/realfer/curves_sgd.json
    python bench/bench_fer2013.py --run-dir runs/realfer --throughput   # float32 vs bf16 images/s only
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from emotiw_utils import cnn, stages
from emotiw_utils import early_stopping as es
from emotiw_utils.aligned import StaticFaces
from emotiw_utils.device import device_description

#: Training images whose un-augmented accuracy is tracked (the "fit" curve).
FIT_SAMPLE = 2000


def _data(run_dir: str, holdout_size: int, seed: int):
    static = StaticFaces.load(stages.ALIGNMENT.require(run_dir, "static_faces"))
    pool = static.in_usage(["Training"])
    if not len(pool):
        raise SystemExit(f"{run_dir}: no FER2013 Training faces; run stages 00 01 on the real FER2013 first")
    hold = es.holdout_mask(len(pool), holdout_size, seed)
    tests = {u: static.in_usage(u) for u in ("PublicTest", "PrivateTest")}
    return pool, hold, tests


def _throughput(train, mean_img, std_img, args) -> None:
    n = min(len(train), 8192)
    for amp in (False, True):
        model = cnn.FrameCNN(cnn.CnnConfig(arch=args.arch), mean_img, std_img, seed=0)
        cnn.train_cnn(model, train.images[:1024], train.labels[:1024], epochs=1, batch_size=args.batch_size,
                      progress=False, amp=amp)  # warm-up
        hist = cnn.train_cnn(model, train.images[:n], train.labels[:n], epochs=2, batch_size=args.batch_size,
                             lr=args.lr, optimizer=args.optimizer, progress=False, amp=amp)
        print(f"{'bfloat16' if amp else 'float32'}: {hist.images_per_second:,.0f} training images/s "
              f"({args.arch}, batch {args.batch_size}, {torch.get_num_threads()} threads, {n:,} images x 2 epochs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="a run whose stage 01 aligned the real FER2013")
    ap.add_argument("--arch", default="cnn9x9", choices=cnn.ARCHITECTURES)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    ap.add_argument("--schedule", default="onecycle", choices=cnn.SCHEDULES)
    ap.add_argument("--dropout", type=float, default=0.25)
    ap.add_argument("--fc-units", type=int, default=0)
    ap.add_argument("--crop", type=int, default=42)
    ap.add_argument("--rotate", type=float, default=0.0, help="random rotation in +-degrees (0: none)")
    ap.add_argument("--scale", type=float, default=0.0, help="random zoom in 1 +- scale (0: none)")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    ap.add_argument("--limit", type=int, default=0, help="train on the first N training images only (probes)")
    ap.add_argument("--holdout-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--throughput", action="store_true", help="measure float32 and bf16 images/s, no training run")
    ap.add_argument("--out", default=None, help="JSON file for the curves (default: RUN_DIR/fer2013_curves.json)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pool, hold, tests = _data(args.run_dir, args.holdout_size, args.seed)
    train = pool.select(~hold)
    if args.limit:
        train = train.select(np.arange(len(train)) < args.limit)
    mean_img, std_img = cnn.mean_std_images(pool.images)
    print(f"{_dt.date.today()} {platform.processor() or platform.machine()} {device_description('cpu')}; "
          f"training {len(train):,} FER2013 images, holdout {int(hold.sum()):,}, "
          + ", ".join(f"{u} {len(t):,}" for u, t in tests.items()))
    if args.throughput:
        _throughput(train, mean_img, std_img, args)
        return

    config = cnn.CnnConfig(arch=args.arch, dropout=args.dropout, fc_units=args.fc_units, crop=args.crop)
    model = cnn.FrameCNN(config, mean_img, std_img, seed=args.seed)
    fit = np.random.default_rng([args.seed, 3]).choice(len(train), min(FIT_SAMPLE, len(train)), replace=False)
    monitors = {"fit": (train.images[fit], train.labels[fit]),
                "holdout": (pool.images[hold], pool.labels[hold]),
                **{u: (t.images, t.labels) for u, t in tests.items()}}
    t0 = time.perf_counter()
    hist = cnn.train_cnn(model, train.images, train.labels, monitors=monitors, select_on="holdout",
                         snapshots=("PublicTest",), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, optimizer=args.optimizer, schedule=args.schedule,
                         seed=args.seed, amp=args.amp, progress=False, rotate=args.rotate, scale=args.scale,
                         label_smoothing=args.label_smoothing,
                         log=lambda line: print(line, flush=True))
    minutes = (time.perf_counter() - t0) / 60
    frame = hist.to_frame()
    best = frame.loc[hist.best_epoch]
    # the selected model again, each face's logits averaged with its mirror image's (chapter 02's second row)
    flip = {u: float(np.mean(cnn.predict_logits(model, t.images, flip_average=True, amp=args.amp).argmax(1)
                             == t.labels)) for u, t in tests.items()}
    print(f"holdout selects epoch {hist.best_epoch}/{len(frame)}: PublicTest {100 * best['PublicTest_acc']:.1f} %, "
          f"PrivateTest {100 * best['PrivateTest_acc']:.1f} % (mirrored faces averaged: "
          + ", ".join(f"{u} {100 * a:.1f} %" for u, a in flip.items())
          + f"); {hist.images_per_second:,.0f} images/s; {minutes:.1f} min")
    out = Path(args.out) if args.out else Path(args.run_dir) / "fer2013_curves.json"
    out.write_text(json.dumps({"settings": vars(args), "n_train": len(train), "minutes": minutes,
                               "flip_average_acc": flip, "history": hist.to_dict()}, indent=1))
    print(f"curves -> {out}")


if __name__ == "__main__":
    main()
