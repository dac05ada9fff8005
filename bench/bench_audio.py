"""Audio model (paper section 3): extraction speed, and the speaker-independent RAVDESS check.

1. Speed: seconds of audio turned into IS10 functionals per wall second, decode (PyAV, 16 kHz mono)
   included, with one process and with all cores. Input: the clips of a SynthAFEW split (``--afew``,
   default the demo dataset when generated) or, without one, RAVDESS files.
2. RAVDESS (``../shared/data/ravdess_speech16k``, skipped when absent): train on actors 1-8 (grid search:
   train 1-6, select 7-8, then refit on 1-8), test on the unseen actors 9-12; accuracy, unweighted average
   recall and the majority-class rate. Issue 5 asks for at least 45 % accuracy.

Usage::

    python bench/bench_audio.py                     # both
    python bench/bench_audio.py --no-ravdess --afew data/synth/demo-seed0/afew --n 200
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import time
from pathlib import Path

import numpy as np

from emotiw_utils import audio, paths
from emotiw_utils.constants import EMOTIONS
from emotiw_utils.datasets.afew import scan_afew
from emotiw_utils.datasets.ravdess import scan_ravdess
from emotiw_utils.device import device_description

RAVDESS = paths.REPO_ROOT.parent / "shared" / "data" / "ravdess_speech16k"


def speed(files: list[Path], workers: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    _, status, seconds = audio.extract_paths(files, workers=workers)
    wall = time.perf_counter() - t0
    return float(seconds.sum()), wall, int((status == "ok").sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--afew", type=Path, default=None, help="an AFEW-layout folder (default: the demo SynthAFEW)")
    ap.add_argument("--split", default="Train")
    ap.add_argument("--n", type=int, default=120, help="clips timed")
    ap.add_argument("--no-ravdess", action="store_true")
    args = ap.parse_args()
    print(f"# bench_audio  {_dt.date.today()}  machine: {device_description('cpu')}  ({os.cpu_count()} cores)")

    afew = args.afew or (paths.synth_dataset_dir("demo", 0) / "afew")
    if afew.is_dir():
        files = [r.path for r in scan_afew(afew, [args.split])][: args.n]
        source = f"{afew} {args.split}"
    elif RAVDESS.is_dir():
        files = [f.path for f in scan_ravdess(RAVDESS)][: args.n]
        source = str(RAVDESS)
    else:
        raise SystemExit(f"no clips to time: {afew} does not exist (run `emotiw data synth --profile demo`) "
                         f"and RAVDESS is absent")
    print(f"speed on {len(files)} files from {source}:")
    for workers in (1, os.cpu_count() or 1):
        secs, wall, ok = speed(files, workers)
        print(f"  {workers} process(es): {secs:.0f} s of audio in {wall:.1f} s -> {secs / wall:.1f} s of audio per "
              f"wall second ({ok} clips with features)")

    if args.no_ravdess:
        return
    if not RAVDESS.is_dir():
        print(f"RAVDESS check skipped: {RAVDESS} not found")
        return
    rav = scan_ravdess(RAVDESS)
    t0 = time.perf_counter()
    feats, status, _ = audio.extract_paths([f.path for f in rav], workers=0, progress=True, desc="RAVDESS")
    t_extract = time.perf_counter() - t0
    r = audio.evaluate_speaker_split(feats, [f.label for f in rav], [f.actor for f in rav],
                                     train=range(1, 7), select=(7, 8), test=range(9, 13),
                                     pca_dims=(20, 50, 100, 200), Cs=(0.3, 1, 3, 10, 30),
                                     gammas=("scale", 0.001, 0.003, 0.01), seed=0)
    print(f"RAVDESS ({len(rav)} files, {int((status == 'ok').sum())} with features, extracted in {t_extract:.0f} s); "
          f"classes {', '.join(EMOTIONS)}")
    print(f"  train actors 1-8 ({r['n_train']} clips; grid: train 1-6, select 7-8 -> PCA {r['n_components']}, "
          f"C {r['C']}, gamma {r['gamma']}), test actors 9-12 ({r['n_test']} clips)")
    print(f"  test accuracy {100 * r['accuracy']:.1f} %, unweighted average recall {100 * r['uar']:.1f} %, "
          f"majority class {100 * r['majority']:.1f} %, chance UAR {100 / len(EMOTIONS):.1f} %")
    print(f"  target: accuracy >= 45 % -> {'met' if r['accuracy'] >= 0.45 else 'NOT met'}")


if __name__ == "__main__":
    main()
