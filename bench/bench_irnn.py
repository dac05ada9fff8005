"""Speed of the IRNN (paper section 2.2): seconds per training epoch over AFEW-size sequences.

Random float32 sequences shaped like the real thing go through the library's own training loop,
:func:`emotiw_utils.irnn.train_sequence_model` (all sequences resident on the device, batches gathered
by index and packed, SGD lr 0.005, clipping 1.0, batch 64): by default 723 training clips (AFEW 5.0
Train) of 3,200-d conv2 features (cnn9x9, crop 42) with lengths uniform over SynthAFEW's
range (0.5-5 s at 25 fps), 200 hidden units, and 383 validation clips (AFEW 5.0 Val) evaluated after every epoch
(``--eval-every N``: after every N-th epoch, as chapter 03's ``eval_every``). The first epoch (warm-up: cuDNN,
allocator) is not counted; the median epoch is given, and with ``--eval-every`` above 1 also the mean (the
evaluated epochs are the slower ones).

Usage::

    python bench/bench_irnn.py --device cuda
    python bench/bench_irnn.py --device cpu --epochs 3
    python bench/bench_irnn.py --device cpu --input-dim 7      # the demo profile's logits input
    python bench/bench_irnn.py --device cpu --input-dim 7 --n-train 362 --n-val 192 --epochs 41 --eval-every 5
                                                               # the demo's clip counts and evaluation schedule

Target (issue 4): an epoch over AFEW-size sequences in under 1 s on one H100.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics

import numpy as np
import torch

from emotiw_utils import irnn
from emotiw_utils.constants import AFEW_FPS
from emotiw_utils.device import device_description, resolve_device

TARGET_SECONDS = 1.0


def sequences(n: int, dim: int, rng: np.random.Generator) -> list[np.ndarray]:
    lengths = np.maximum(1, np.round(rng.uniform(0.5, 5.0, n) * AFEW_FPS)).astype(int)
    return [np.abs(rng.normal(size=(t, dim))).astype(np.float32) for t in lengths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--n-train", type=int, default=723, help="training clips (AFEW 5.0 Train)")
    ap.add_argument("--n-val", type=int, default=383, help="validation clips evaluated every epoch (AFEW 5.0 Val)")
    ap.add_argument("--input-dim", type=int, default=3200, help="features per frame (cnn9x9 conv2: 3200)")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--cell", default="irnn", choices=irnn.CELLS)
    ap.add_argument("--epochs", type=int, default=6, help="epochs run (the first is a warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    ap.add_argument("--eval-every", type=int, default=1, help="evaluate the validation clips after every N-th epoch")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    train, val = sequences(args.n_train, args.input_dim, rng), sequences(args.n_val, args.input_dim, rng)
    y_train, y_val = rng.integers(0, 7, len(train)), rng.integers(0, 7, len(val))
    frames = sum(len(s) for s in train)
    model = irnn.SequenceClassifier(args.input_dim, args.hidden, args.cell, seed=0)
    hist = irnn.train_sequence_model(model, train, y_train, select=(val, y_val), epochs=max(2, args.epochs),
                                     device=device, fixed_epochs=max(2, args.epochs), eval_every=args.eval_every)
    secs = [e["seconds"] for e in hist.epochs[1:]]
    med, mean = statistics.median(secs), statistics.mean(secs)
    print(f"# bench_irnn  {_dt.date.today()}  device: {device_description(device)}  torch {torch.__version__}")
    print(f"{args.cell}, {args.hidden} units, {args.input_dim}-d inputs; {len(train)} training clips "
          f"({frames:,} frames, mean length {frames / len(train):.1f}), {len(val)} validation clips "
          f"evaluated every {args.eval_every} epoch(s); {torch.get_num_threads()} CPU threads")
    print(f"epoch (train + validation), median of {len(secs)} after a warm-up: {med:.3f} s "
          f"({frames / med:,.0f} training frames/s)  [min {min(secs):.3f} s, max {max(secs):.3f} s]")
    if args.eval_every > 1:
        print(f"mean epoch, evaluations included: {mean:.3f} s")
    print(f"target on one H100: < {TARGET_SECONDS:.0f} s per epoch -> "
          f"{'met' if med < TARGET_SECONDS else 'NOT met'} on this device")


if __name__ == "__main__":
    main()
