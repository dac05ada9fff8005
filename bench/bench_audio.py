"""Audio model (paper section 3): extraction speed, and the speaker-independent RAVDESS comparison.

1. Speed: seconds of audio turned into IS10 functionals per wall second, decode (PyAV, 16 kHz mono)
   included, with one process and with all cores. Input: the clips of a SynthAFEW split (``--afew``,
   default the demo dataset when generated) or, without one, RAVDESS files.
2. RAVDESS (``../shared/data/ravdess_speech16k``, actors 1-12, skipped when absent): nested leave-speakers-out
   evaluation (:func:`emotiw_utils.audio_selection.speaker_independent`). Six outer folds each leave two
   actors out (actors 2k-1 and 2k: one male, one female); on the other ten actors every classifier's
   hyperparameters are chosen by cross-validation in five folds grouped by actor (the same folds for every
   classifier), the classifier is refitted on the ten and tested on the two. Classifiers: the paper's
   PCA + RBF SVM, an RBF SVM without PCA, a linear SVM and logistic regression on the IS10 features, and an
   RBF SVM on the eGeMAPSv02 functionals, with the grids of the ``full`` profile (params/base.yaml,
   ``05_audio``). Accuracy and unweighted average recall (UAR): mean ± std over the six outer folds; the
   confusion matrix of every clip's prediction. Issue 16 asks for at least 55 % accuracy for the paper's
   model. Features are cached in ``runs/bench_audio/`` (keyed by the files).

Usage::

    python bench/bench_audio.py                     # both
    python bench/bench_audio.py --no-speed          # the RAVDESS comparison only
    python bench/bench_audio.py --no-ravdess --afew data/synth/demo-seed0/afew --n 200
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import time
from pathlib import Path

import numpy as np

from emotiw_utils import audio, audio_selection, egemaps, metrics, paths, profiles, stages
from emotiw_utils.constants import EMOTIONS
from emotiw_utils.datasets.afew import scan_afew
from emotiw_utils.datasets.ravdess import scan_ravdess
from emotiw_utils.device import device_description

RAVDESS = paths.REPO_ROOT.parent / "shared" / "data" / "ravdess_speech16k"
CACHE = paths.REPO_ROOT / "runs" / "bench_audio"
#: Outer folds: two actors each, one male (odd) and one female (even).
OUTER = [(a, a + 1) for a in range(1, 13, 2)]


def speed(files: list[Path], workers: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    _, status, seconds = audio.extract_paths(files, workers=workers)
    wall = time.perf_counter() - t0
    return float(seconds.sum()), wall, int((status == "ok").sum())


def _cached(name: str, key: str, compute) -> tuple[np.ndarray, np.ndarray]:
    """(features, status) from ``CACHE/name.npz`` when its key matches, else computed and saved."""
    path = CACHE / f"{name}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return z["features"], z["status"].astype(str)
    feats, status = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=feats, status=status.astype(str), key=np.array(key))
    return feats, status


def ravdess(models: list[str]) -> None:
    rav = [f for f in scan_ravdess(RAVDESS) if f.actor <= 12]
    files = [f.path for f in rav]
    t0 = time.perf_counter()
    is10, st_is10 = _cached("ravdess_is10", audio.features_key(files),
                            lambda: audio.extract_paths(files, workers=0, progress=True, desc="RAVDESS IS10")[:2])
    eg, st_eg = _cached("ravdess_egemaps", egemaps.features_key(files),
                        lambda: egemaps.extract_paths(files, workers=0, progress=True, desc="RAVDESS eGeMAPS"))
    t_extract = time.perf_counter() - t0
    ok = (st_is10 == "ok") & (st_eg == "ok")
    y = np.array([f.label for f in rav])[ok]
    actors = np.array([f.actor for f in rav])[ok]
    feats = {"is10": is10[ok].astype(np.float64), "egemaps": eg[ok].astype(np.float64)}
    p = profiles.stage_parameters(profiles.load_params("full"), stages.AUDIO.name)
    grids = {m: audio_selection.grid_points(m, p["pca_dims"], p["svm_Cs"], p["svm_gammas"], p["linear_Cs"])
             for m in models}
    print(f"RAVDESS actors 1-12: {len(rav)} files, {int(ok.sum())} with both feature sets (features in "
          f"{t_extract:.0f} s); classes {', '.join(EMOTIONS)}; majority class "
          f"{100 * np.bincount(y).max() / len(y):.1f} %, chance UAR {100 / len(EMOTIONS):.1f} %")
    print(f"nested: outer folds {OUTER} left out in turn; inner: 5 folds grouped by actor over the other ten; "
          f"grids of the full profile: " + "; ".join(f"{m} {len(g)} points" for m, g in grids.items()))
    t0 = time.perf_counter()
    res = audio_selection.speaker_independent(feats, y, actors, OUTER, grids, n_folds=5, seed=0, progress=True)
    wall = time.perf_counter() - t0
    print("\n| model | accuracy (mean ± std over 6 folds) | UAR (mean ± std) | per-fold accuracy | chosen per fold |")
    print("|---|---:|---:|---|---|")
    for m, r in res.items():
        s = r.summary()
        chosen = "; ".join(", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in c.values())
                           for c in r.chosen)
        print(f"| {audio_selection.CANDIDATES[m].label} | {100 * s['acc_mean']:.1f} ± {100 * s['acc_std']:.1f} % | "
              f"{100 * s['uar_mean']:.1f} ± {100 * s['uar_std']:.1f} % | "
              f"{' / '.join(f'{100 * a:.0f}' for a in r.accuracy)} | {chosen} |")
    print(f"(nested evaluation of {len(res)} classifiers in {wall:.0f} s)")
    paper = res[audio_selection.PAPER]
    cm = metrics.confusion_matrix(y, paper.pred)
    print("\nconfusion matrix of the paper's model, every clip predicted by the fold that left its actor out "
          "(rows: true, columns: predicted; counts):")
    print("| | " + " | ".join(e[:3] for e in EMOTIONS) + " | recall |")
    print("|---|" + "---:|" * (len(EMOTIONS) + 1))
    for i, e in enumerate(EMOTIONS):
        row = np.asarray(cm[i])
        print(f"| {e} | " + " | ".join(str(int(v)) for v in row) +
              f" | {100 * row[i] / max(row.sum(), 1):.0f} % |")
    acc = paper.summary()["acc_mean"]
    print(f"\ntarget: the paper's model at least 55 % accuracy -> {'met' if acc >= 0.55 else 'NOT met'} "
          f"({100 * acc:.1f} %)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--afew", type=Path, default=None, help="an AFEW-layout folder (default: the demo SynthAFEW)")
    ap.add_argument("--split", default="Train")
    ap.add_argument("--n", type=int, default=120, help="clips timed")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-ravdess", action="store_true")
    ap.add_argument("--models", nargs="+", default=list(audio_selection.CANDIDATES),
                    choices=list(audio_selection.CANDIDATES))
    args = ap.parse_args()
    print(f"# bench_audio  {_dt.date.today()}  machine: {device_description('cpu')}  ({os.cpu_count()} cores)")

    if not args.no_speed:
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
            print(f"  {workers} process(es): {secs:.0f} s of audio in {wall:.1f} s -> {secs / wall:.1f} s of audio "
                  f"per wall second ({ok} clips with features)")

    if args.no_ravdess:
        return
    if not RAVDESS.is_dir():
        print(f"RAVDESS check skipped: {RAVDESS} not found")
        return
    ravdess([m for m in audio_selection.CANDIDATES if m in args.models])


if __name__ == "__main__":
    main()
