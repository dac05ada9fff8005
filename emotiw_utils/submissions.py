"""The seven EmotiW 2015 submissions of Kahou et al. (section 6.3, Table 2) as re-runs of the chain.

A submission is a partition protocol, not code: each one re-executes the clip-level stages 03-08 with
papermill (:func:`emotiw_utils.pipeline.run_pipeline`) into ``{run_dir}/submissions/subN/`` with other
parameter values. What varies:

* 1, 2: train on Train, select (early stopping, grid searches, random search) on Val; fusion network in
  the original (1) or the stabilised (2) regime. These ARE the main run's models: stages 03-07 are linked
  to the main run, only 08 runs again with the chosen fusion regime (or is linked too, when the main
  run's own search used that regime).
* 4, 5: the same with Train and Val swapped (5 shares 4's models).
* 3, 6: retrain on Train+Val keeping every hyperparameter of 2 (resp. 4): the IRNN's and the fusion
  network's epochs, the SVMs' C and gamma, the audio PCA size, and the random search's weights.
* 7: a random search over the outputs of 3 and 6 on Train+Val, which trained both (the paper's
  deliberate exception to its own rule; done by chapter 09 itself, not by a chain).

The frame CNN (stages 00-02) is never retrained (paper 6.3: "the models that are CNN-based have also been
retrained but not the underlying CNN"): every submission links the main run's 00-02. Each chain stage
starts from the main run's own parameters (its ``manifest.json``), so command-line overrides of the main
run carry over, then the submission's values and ``extra`` overrides are applied.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import artifacts

__all__ = ["CHAIN", "MODEL_STAGES", "SHARED_STAGES", "SUBMISSIONS", "Submission", "chain_overrides", "final_dir",
           "prepare_submission", "retrain_overrides", "run_submission", "run_submissions", "submission_dir",
           "write_predictions"]

#: Stages every submission takes from the main run unchanged (the CNN is not retrained).
SHARED_STAGES: tuple[str, ...] = ("00_datasets", "01_alignment", "02_cnn")
#: Stages that train a model on ``train_splits`` (linked when a submission shares another's models).
MODEL_STAGES: tuple[str, ...] = ("03_irnn", "04_kavg_svm", "05_audio", "06_activity_sae", "07_fusion")
#: The chain a submission re-runs.
CHAIN: tuple[str, ...] = MODEL_STAGES + ("08_random_search",)
#: Files that are caches keyed by the input clips and unsupervised settings (not by the partition): copied
#: from the main run so a re-run does not compute them again. The IS10 features, and the activity features
#: (SAE + k-means + histograms; learned without labels on the main run's ``sae_splits``, so, like the
#: CNN, not retrained per submission: each chain refits only the activity SVM).
_CACHES: dict[str, tuple[str, ...]] = {"05_audio": ("is10_*.npz",), "06_activity_sae": ("activity_features.npz",)}
#: Parameters the runner injects; never copied from a manifest into overrides.
_NOT_COPIED = ("stage", "run_dir", "afew_dir", "fer2013_path", "tfd_path", "synthetic", "device", "profile")


@dataclass(frozen=True)
class Submission:
    """One row of Table 2. ``method``: the paper's wording. ``train_splits``/``select_split``: the partition
    of stages 03-08. ``fusion_regime``: the fusion network's training regime fed to the random search.
    ``retrain_of``: retrain on Train+Val with that submission's hyperparameters, epochs and fusion weights.
    ``same_models_as``: reuse that submission's stages 03-07. ``combine``: submission 7's inputs."""

    number: int
    method: str
    train_splits: tuple[str, ...] = ()
    select_split: str | None = None
    fusion_regime: str = "original"
    retrain_of: int | None = None
    same_models_as: int | None = None
    combine: tuple[int, ...] = ()

    @property
    def is_chain(self) -> bool:
        """True for 1-6 (a re-run of the chain), False for 7 (a search over two submissions' outputs)."""
        return not self.combine


#: Table 2's seven submissions (methods quoted from the paper).
SUBMISSIONS: dict[int, Submission] = {s.number: s for s in (
    Submission(1, "Training on Train, Validation on Valid", ("Train",), "Val", "original"),
    Submission(2, "Training on Train, Validation on Valid, stable fusion", ("Train",), "Val", "stable",
               same_models_as=1),
    Submission(3, "Training on Train+Val, hyperparams from submission 2, stable fusion", ("Train", "Val"), None,
               "stable", retrain_of=2),
    Submission(4, "Training on Val, Validation on Train", ("Val",), "Train", "original"),
    Submission(5, "Training on Val, Validation on Train, stable fusion", ("Val",), "Train", "stable",
               same_models_as=4),
    Submission(6, "Training on Train+Val, hyperparams from submission 4", ("Train", "Val"), None, "original",
               retrain_of=4),
    Submission(7, "Random Search over combinations of submission 3 and 6 on Train+Val", combine=(3, 6)),
)}


def submission_dir(run_dir: str | Path, number: int) -> Path:
    """``{run_dir}/submissions/sub{number}``."""
    return Path(run_dir) / "submissions" / f"sub{int(number)}"


def final_dir(run_dir: str | Path, number: int) -> Path:
    """Folder holding a submission's final ``clip_probs_{split}.npz``: its random search (08) for 1-6, the
    submission folder itself for 7."""
    return submission_dir(run_dir, number) / ("08_random_search" if _get(number).is_chain else "")


def write_predictions(out_dir: str | Path, number: int, clip_ids: Sequence[str], probs: Any) -> int:
    """Write a submission's test predictions in EmotiW's per-clip form, ``{out_dir}/emotiw/sub{N}/<clip>.txt``
    (one line: the emotion name), and all of them in ``{out_dir}/sub{N}_predictions.csv`` (clip, emotion, the
    seven probabilities). Returns the number of clips."""
    import numpy as np
    import pandas as pd

    from .constants import EMOTIONS

    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(clip_ids), len(EMOTIONS)):
        raise ValueError(f"probs must be ({len(clip_ids)}, {len(EMOTIONS)}), got {p.shape}")
    names = [EMOTIONS[i] for i in p.argmax(1)]
    clip_dir = Path(out_dir) / "emotiw" / f"sub{int(number)}"
    clip_dir.mkdir(parents=True, exist_ok=True)
    for cid, name in zip(clip_ids, names):
        artifacts.atomic_write_text(clip_dir / f"{cid}.txt", name + "\n")
    frame = pd.DataFrame({"clip": list(clip_ids), "emotion": names,
                          **{f"p_{e}": p[:, i].round(5) for i, e in enumerate(EMOTIONS)}})
    artifacts.atomic_write_text(Path(out_dir) / f"sub{int(number)}_predictions.csv", frame.to_csv(index=False))
    return len(names)


def _get(number: int) -> Submission:
    if number not in SUBMISSIONS:
        raise ValueError(f"unknown submission {number!r}; Table 2 has submissions 1-7")
    return SUBMISSIONS[number]


def _main_partition(run_dir: Path) -> tuple[tuple[str, ...], str | None]:
    m = artifacts.read_manifest(run_dir / "03_irnn")
    if m is None:
        raise FileNotFoundError(f"{run_dir / '03_irnn'}: no manifest; run the main chain (stages 00-08) first")
    p = m["parameters"]
    return tuple(p["train_splits"]), p["select_split"]


def _main_search_is(sub: Submission, run_dir: Path) -> bool:
    """True when the main run's random search (08) is this submission's: same partition, same fusion regime
    and a search of its own (no fixed weights); the submission then links it instead of searching again."""
    m = artifacts.read_manifest(run_dir / "08_random_search")
    p = m["parameters"] if m else {}
    return (p.get("fusion_regime") == sub.fusion_regime and p.get("fixed_weights") is None
            and tuple(p.get("train_splits") or ()) == sub.train_splits and p.get("select_split") == sub.select_split)


def _link(target: Path, link: Path) -> None:
    """Make ``link`` a relative symlink to the stage folder ``target`` (replacing an old link or folder)."""
    if not (target / "manifest.json").is_file():
        raise FileNotFoundError(f"{target}: no successful stage run to link to (manifest.json missing)")
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()), target_is_directory=True)


def _model_source(sub: Submission, run_dir: Path) -> Path | None:
    """Folder whose stages 03-07 this submission shares (the main run or another submission), or None."""
    if sub.same_models_as is not None:
        return _model_source(_get(sub.same_models_as), run_dir) or submission_dir(run_dir, sub.same_models_as)
    if sub.retrain_of is None and (sub.train_splits, sub.select_split) == _main_partition(run_dir):
        return run_dir
    return None


def prepare_submission(number: int, run_dir: str | Path) -> tuple[Path, list[str]]:
    """Create ``submissions/subN`` with links to the stages it shares; return it and the stages to run."""
    sub = _get(number)
    if not sub.is_chain:
        raise ValueError(f"submission {number} combines submissions {sub.combine}; it is no re-run of the chain")
    run_dir = Path(run_dir).resolve()
    missing = [st for st in SHARED_STAGES + CHAIN if artifacts.read_manifest(run_dir / st) is None]
    if missing:
        raise FileNotFoundError(f"{run_dir}: no successful run of {', '.join(missing)}; run the main chain "
                                "(stages 00-08) first")
    sdir = submission_dir(run_dir, number)
    sdir.mkdir(parents=True, exist_ok=True)
    for stage in SHARED_STAGES:
        _link(run_dir / stage, sdir / stage)
    source = _model_source(sub, run_dir)
    if source is not None:
        for stage in MODEL_STAGES:
            _link(source / stage, sdir / stage)
        if source == run_dir and _main_search_is(sub, run_dir):
            _link(run_dir / "08_random_search", sdir / "08_random_search")
            return sdir, []
        return sdir, ["08_random_search"]
    for stage, patterns in _CACHES.items():
        (sdir / stage).mkdir(exist_ok=True)
        for pattern in patterns:
            for f in (run_dir / stage).glob(pattern):
                if not (sdir / stage / f.name).exists():
                    shutil.copyfile(f, sdir / stage / f.name)
    return sdir, list(CHAIN)


def _stage_metrics(folder: Path, stage: str) -> dict:
    try:
        return artifacts.read_metrics(folder / stage)
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder / stage}: no metrics.json; run that stage first") from None


def retrain_overrides(reference: str | Path) -> dict[str, Any]:
    """``STAGE.KEY`` overrides that fix every choice the reference chain (a run or submission folder) made on
    its select split: IRNN and fusion epochs, SVM C/gamma, audio PCA size, random-search weights (paper 6.3:
    "retaining all hyper-parameters including early stopping epoch number and combination weights")."""
    ref = Path(reference)
    irnn = _stage_metrics(ref, "03_irnn")
    kavg = _stage_metrics(ref, "04_kavg_svm")
    audio = _stage_metrics(ref, "05_audio")
    activity = _stage_metrics(ref, "06_activity_sae")
    fusion = _stage_metrics(ref, "07_fusion")
    search = _stage_metrics(ref, "08_random_search")
    return {
        "03_irnn.fixed_epochs": int(irnn["best_epoch"]),
        "04_kavg_svm.svm_C": kavg["svm"]["C"], "04_kavg_svm.svm_gamma": kavg["svm"]["gamma"],
        "05_audio.n_components": audio["chosen"]["n_components"], "05_audio.svm_C": audio["chosen"]["C"],
        "05_audio.svm_gamma": audio["chosen"]["gamma"],
        "06_activity_sae.svm_C": activity["svm"]["C"], "06_activity_sae.svm_gamma": activity["svm"]["gamma"],
        "07_fusion.fixed_epochs": {r: int(v["best_epoch"]) for r, v in fusion["regimes"].items()},
        "08_random_search.fixed_weights": {"modalities": list(search["final"]["modalities"]),
                                           "weights": search["final"]["weights"]},
    }


def chain_overrides(number: int, run_dir: str | Path, stages: Sequence[str],
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flat ``STAGE.KEY`` overrides for the ``stages`` a submission runs: the main run's parameters of each
    stage, then the submission's partition and fusion regime, then (3, 6) :func:`retrain_overrides` of the
    reference submission, then ``extra`` (``STAGE.KEY`` keys, e.g. fewer seeds)."""
    sub = _get(number)
    run_dir = Path(run_dir).resolve()
    out: dict[str, Any] = {}
    for stage in stages:
        m = artifacts.read_manifest(run_dir / stage)
        if m is None:
            raise FileNotFoundError(f"{run_dir / stage}: no manifest; run the main chain (stages 00-08) first")
        out.update({f"{stage}.{k}": v for k, v in m["parameters"].items() if k not in _NOT_COPIED})
        out[f"{stage}.train_splits"] = list(sub.train_splits)
        out[f"{stage}.select_split"] = sub.select_split
    if "08_random_search" in stages:
        out["08_random_search.fusion_regime"] = sub.fusion_regime
        out["08_random_search.fixed_weights"] = None
    for stage in ("03_irnn", "07_fusion"):
        if stage in stages:
            out[f"{stage}.fixed_epochs"] = None
    for stage, keys in (("04_kavg_svm", ("svm_C", "svm_gamma")), ("06_activity_sae", ("svm_C", "svm_gamma")),
                        ("05_audio", ("n_components", "svm_C", "svm_gamma"))):
        if stage in stages:
            out.update({f"{stage}.{k}": None for k in keys})
    if sub.retrain_of is not None:
        out.update({k: v for k, v in retrain_overrides(submission_dir(run_dir, sub.retrain_of)).items()
                    if k.split(".", 1)[0] in stages})
    for k, v in (extra or {}).items():
        if k.split(".", 1)[0] in stages:
            out[k] = v
    return out


def run_submission(number: int, run_dir: str | Path, profile: str, *, data: Any = None, device: str | None = None,
                   extra: Mapping[str, Any] | None = None, progress: bool = True, recompute: bool = False):
    """Prepare and run submission ``number`` (1-6) of the main run in ``run_dir``; return the stage results.

    Executed notebooks go to ``submissions/subN/executed/``; unchanged stages are cached like any run.
    A retraining submission (3, 6) needs its reference submission (2, 4) to have run first.
    """
    from .pipeline import run_pipeline

    sdir, stages = prepare_submission(number, run_dir)
    if not stages:  # every stage linked (submission 2 when the main run's search used the stable fusion)
        return []
    overrides = chain_overrides(number, run_dir, stages, extra)
    return run_pipeline(profile, stages=stages, run_dir=sdir, device=device, data=data, overrides=overrides,
                        executed_dir=sdir / "executed", progress=progress, recompute=recompute)



def _parent(number: int) -> int | None:
    sub = _get(number)
    return sub.same_models_as if sub.same_models_as is not None else sub.retrain_of


def run_submissions(numbers: Sequence[int], run_dir: str | Path, profile: str, *, parallel: int = 1,
                    on_done: Any = None, bar: bool = False, **kwargs: Any) -> dict[int, list]:
    """Run the chain submissions among ``numbers`` (:func:`run_submission`, ``kwargs`` passed on), up to
    ``parallel`` at a time; return ``{number: stage results}`` in number order.

    A submission starts once the one it builds on (``same_models_as``, ``retrain_of``) has finished, so
    with two at a time 4 runs beside 1-2-3, and 5 and 6 beside each other. Each is run by a thread driving
    papermill kernels; with more than one, the kernels started meanwhile get ``OMP_NUM_THREADS`` (and the
    MKL/OpenBLAS equivalents) set to the CPU cores divided by ``parallel``, so that they share the cores
    instead of oversubscribing them. ``on_done(number, results)`` is called as each one finishes; ``bar``
    shows a progress bar over the submissions. After a
    failure no new submission starts; the first failure is re-raised once the running ones have stopped.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    if int(parallel) < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    chain = sorted({int(n) for n in numbers if _get(int(n)).is_chain})
    needs = {n: (_parent(n) if _parent(n) in chain else None) for n in chain}
    # Start first what unlocks the most others (4 unlocks 5 and 6).
    unlocks = {n: sum(1 for m in chain if needs[m] == n) for n in chain}
    pending = sorted(chain, key=lambda n: (-unlocks[n], n))
    out: dict[int, list] = {}
    errors: list[BaseException] = []
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    if int(parallel) > 1:
        os.environ.update({k: str(max(1, (os.cpu_count() or 1) // int(parallel))) for k in names})
    progress_bar = None
    if bar:
        from tqdm import tqdm

        progress_bar = tqdm(total=len(chain), desc=f"submissions ({int(parallel)} at a time)", unit="sub")
    try:
        with ThreadPoolExecutor(max_workers=int(parallel), thread_name_prefix="submission") as pool:
            running: dict[Any, int] = {}
            while pending or running:
                for n in list(pending):
                    if len(running) < int(parallel) and (needs[n] is None or needs[n] in out):
                        pending.remove(n)
                        running[pool.submit(run_submission, n, run_dir, profile, **kwargs)] = n
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    n = running.pop(f)
                    if f.exception() is not None:
                        errors.append(f.exception())
                        pending.clear()
                    else:
                        out[n] = f.result()
                        if progress_bar is not None:
                            progress_bar.update(1)
                        if on_done is not None:
                            on_done(n, out[n])
    finally:
        if progress_bar is not None:
            progress_bar.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if errors:
        raise errors[0]
    return {n: out[n] for n in sorted(out)}
