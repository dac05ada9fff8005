"""Wall time of synthetic-data generation for a profile (``emotiw data synth``), per dataset.

Usage: python bench/bench_synth.py --profile full [--workers N] [--seed S]
Prints the figures recorded in bench/RESULTS.md. Generates into a temporary folder unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from emotiw_utils.synth.generate import SYNTH_PROFILES, generate_afew, generate_fer, generate_tfd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="demo", choices=sorted(SYNTH_PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    sizes = SYNTH_PROFILES[args.profile]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "afew").mkdir()
        times, stats = {}, {}
        for name, fn, target in [("SynthFER", generate_fer, root / "fer2013.csv"),
                                 ("SynthTFD", generate_tfd, root / "TFD_48x48.mat"),
                                 ("SynthAFEW", generate_afew, root / "afew")]:
            t0 = time.perf_counter()
            stats[name] = fn(target, sizes, args.seed, args.workers, True)
            times[name] = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    total = sum(times.values())
    print(f"profile={args.profile} seed={args.seed} workers={args.workers} cpu={platform.processor() or platform.machine()}"
          f" cores={os.cpu_count()}")
    for name, t in times.items():
        print(f"  {name:10s} {t:8.1f} s   {json.dumps(stats[name])}")
    frames = stats["SynthAFEW"]["frames"]
    print(f"  total      {total:8.1f} s   ({frames / times['SynthAFEW']:.0f} video frames/s, {size_mb:.0f} MiB on disk)")


if __name__ == "__main__":
    main()
