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
  deliberate exception to its own rule; :func:`combine`, not a chain).

The frame CNN (stages 00-02) is never retrained (paper 6.3: "the models that are CNN-based have also been
retrained but not the underlying CNN"): every submission links the main run's 00-02. Each chain stage
starts from the main run's own parameters (its ``manifest.json``), so command-line overrides of the main
run carry over, then the submission's values and ``extra`` overrides are applied.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts, records, stages
from .constants import AFEW_SPLITS
from .paper import TABLE2_METHODS

__all__ = ["CHAIN", "MODEL_STAGES", "SHARED_STAGES", "SUBMISSIONS", "Submission", "chain_overrides", "check_selection",
           "combine", "combine_splits", "final_dir", "final_path", "final_probs", "prepare_submission",
           "retrain_overrides", "run_submission", "run_submissions", "scores", "submission_dir", "write_predictions"]

#: Stages every submission takes from the main run unchanged (the CNN is not retrained).
SHARED_STAGES: tuple[str, ...] = tuple(s.name for s in (stages.DATASETS, stages.ALIGNMENT, stages.CNN))
#: Stages that train a model on ``train_splits`` (linked when a submission shares another's models): the
#: classifiers whose probabilities decision fusion combines (``Stage.modality`` in the registry).
MODEL_STAGES: tuple[str, ...] = tuple(s.name for s in stages.modality_stages().values())
#: The chain a submission re-runs.
CHAIN: tuple[str, ...] = MODEL_STAGES + (stages.SEARCH.name,)
#: Files that are caches keyed by the input clips and unsupervised settings (not by the partition): copied
#: from the main run so a re-run does not compute them again (each chain stage's ``caches`` in the registry:
#: the IS10 features, and the activity features -- SAE + k-means + histograms, learned without labels on the
#: main run's ``sae_splits``, so, like the CNN, not retrained per submission: each chain refits only the
#: activity SVM). Stage -> file-name patterns.
_CACHES: dict[str, tuple[str, ...]] = {st.name: tuple(st.artifact(k).glob for k in st.caches)
                                       for st in map(stages.get, CHAIN) if st.caches}
#: Parameters the runner injects; never copied from a manifest into overrides.
_NOT_COPIED = ("stage", "run_dir", "afew_dir", "fer2013_path", "tfd_path", "synthetic", "device", "profile")
#: What a chain stage chooses on its select split, by the record it writes: parameter -> its value in the
#: record. A re-run chain resets these parameters (the stage chooses again); a retraining submission sets them
#: from its reference (paper 6.3: "retaining all hyper-parameters including early stopping epoch number and
#: combination weights"). A record class not listed inherits the entry of its base class.
_CHOSEN: dict[type[records.Record], dict[str, Callable[[Any], Any]]] = {
    records.IrnnRecord: {"fixed_epochs": lambda r: int(r.best_epoch)},
    records.SvmRecord: {"svm_C": lambda r: r.C, "svm_gamma": lambda r: r.gamma},
    records.AudioRecord: {"n_components": lambda r: int(r.n_components), "svm_C": lambda r: r.C,
                          "svm_gamma": lambda r: r.gamma},
    records.FusionRecord: {"fixed_epochs": lambda r: {k: int(v) for k, v in r.best_epochs.items()}},
    records.SearchRecord: {"fixed_weights": lambda r: {"modalities": list(r.modalities),
                                                       "weights": [list(w) for w in r.weights]}},
}


def _chosen(stage: str) -> dict[str, Callable[[Any], Any]]:
    """The parameters ``stage`` chooses on its select split (:data:`_CHOSEN` of its record class)."""
    cls = records.record_class(stage)
    for c in cls.__mro__:
        if c in _CHOSEN:
            return _CHOSEN[c]
    raise ValueError(f"{stage}: no entry for its record {cls.__name__}; say in submissions._CHOSEN which of its "
                     "parameters a retraining submission fixes")


@dataclass(frozen=True)
class Submission:
    """One row of Table 2. ``method``: the paper's wording (:data:`emotiw_utils.paper.TABLE2_METHODS`). ``train_splits``/``select_split``: the partition
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

    @property
    def depends_on(self) -> tuple[int, ...]:
        """The submissions this one needs to have run: the one whose models it shares, the one whose choices it
        retrains with, the ones it combines."""
        return tuple(n for n in (self.same_models_as, self.retrain_of) if n is not None) + tuple(self.combine)

    @property
    def retrained(self) -> bool:
        """True when both Train and Val trained it (3, 6, and 7 through them): no Train or Val figure."""
        return not self.is_chain or self.retrain_of is not None


#: Table 2's seven submissions (methods quoted from the paper).
SUBMISSIONS: dict[int, Submission] = {s.number: s for s in (
    Submission(1, TABLE2_METHODS[1], ("Train",), "Val", "original"),
    Submission(2, TABLE2_METHODS[2], ("Train",), "Val", "stable", same_models_as=1),
    Submission(3, TABLE2_METHODS[3], ("Train", "Val"), None, "stable", retrain_of=2),
    Submission(4, TABLE2_METHODS[4], ("Val",), "Train", "original"),
    Submission(5, TABLE2_METHODS[5], ("Val",), "Train", "stable", same_models_as=4),
    Submission(6, TABLE2_METHODS[6], ("Train", "Val"), None, "original", retrain_of=4),
    Submission(7, TABLE2_METHODS[7], combine=(3, 6)),
)}


def check_selection(numbers: Sequence[int]) -> list[int]:
    """The submissions ``numbers`` asks for, sorted; ValueError for an unknown one, or for one whose
    :attr:`Submission.depends_on` is not among them (naming each, e.g. "3 needs 2")."""
    wanted = sorted({int(n) for n in numbers})
    unknown = [n for n in wanted if n not in SUBMISSIONS]
    if unknown:
        raise ValueError(f"unknown submissions {unknown}; Table 2 has {min(SUBMISSIONS)}-{max(SUBMISSIONS)}")
    missing = [(n, d) for n in wanted for d in SUBMISSIONS[n].depends_on if d not in wanted]
    if missing:
        raise ValueError("submissions depend on others: " + ", ".join(f"{a} needs {b}" for a, b in missing))
    return wanted


def submission_dir(run_dir: str | Path, number: int) -> Path:
    """``{run_dir}/submissions/sub{number}``."""
    return Path(run_dir) / "submissions" / f"sub{int(number)}"


def final_dir(run_dir: str | Path, number: int) -> Path:
    """Folder holding a submission's final ``clip_probs``: its random search (08) for 1-6, the submission
    folder itself for 7."""
    sdir = submission_dir(run_dir, number)
    return stages.SEARCH.dir(sdir) if _get(number).is_chain else sdir


def final_path(run_dir: str | Path, number: int, split: str) -> Path:
    """The file of a submission's final probabilities of ``split`` (the stage contract's ``clip_probs``)."""
    return final_dir(run_dir, number) / stages.CLIP_PROBS.name(split=split)


def final_probs(run_dir: str | Path, number: int, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(clip_ids, probs (N, 7), labels)`` of a submission's final predictions of ``split``."""
    return artifacts.load_clip_probs(final_path(run_dir, number, split))


def scores(run_dir: str | Path, number: int) -> dict[str, float | None]:
    """A submission's Table 2 row: accuracy on ``train``, ``val``, ``test`` and the Test UAR. Like the paper,
    a submission that both Train and Val trained (:attr:`Submission.retrained`) has no Train or Val figure."""
    from . import metrics

    acc, uar = {}, {}
    for s in AFEW_SPLITS:
        _, p, y = final_probs(run_dir, number, s)
        acc[s] = metrics.accuracy(y, p.argmax(1))
        uar[s] = metrics.unweighted_average_recall(y, p.argmax(1))
    retrained = _get(number).retrained
    return {"train": None if retrained else acc["Train"], "val": None if retrained else acc["Val"],
            "test": acc["Test"], "test_uar": uar["Test"]}


def combine_splits(number: int) -> tuple[str, ...]:
    """The splits submission ``number`` (7) searches its weights on: those that trained the submissions it
    combines (Train+Val), in split order."""
    sub = _get(number)
    trained = {s for n in sub.combine for s in _get(n).train_splits}
    return tuple(s for s in AFEW_SPLITS if s in trained)


def combine(number: int, run_dir: str | Path, spec: Any, *, seed: int = 0, device: Any = "cpu",
            progress: bool = False):
    """Submission 7: a random search over the final probabilities of the submissions it combines (3 and 6),
    on the splits that trained them (:func:`combine_splits`, the paper's deliberate exception to its own rule),
    then their fusion with the weights found written as its final ``clip_probs`` of every split. ``spec``: the
    search's :class:`emotiw_utils.random_search.SearchSpec`. Returns the
    :class:`emotiw_utils.random_search.SearchResult` (its modalities are named ``"sub N"``)."""
    from .decision import fuse_probs
    from .random_search import random_search

    sub = _get(number)
    if sub.is_chain:
        raise ValueError(f"submission {number} is a re-run of the chain; it combines no submissions")
    names = {n: f"sub {n}" for n in sub.combine}
    probs: dict[str, dict[str, np.ndarray]] = {}
    ids: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for n in sub.combine:
        probs[names[n]] = {}
        for s in AFEW_SPLITS:
            cid, probs[names[n]][s], y = final_probs(run_dir, n, s)
            if s in ids and (not np.array_equal(cid, ids[s]) or not np.array_equal(y, labels[s])):
                raise ValueError(f"submission {n}: its {s} clips or labels differ from those of submission "
                                 f"{sub.combine[0]}")
            ids[s], labels[s] = cid, y
    splits = combine_splits(number)
    result = random_search({m: np.concatenate([p[s] for s in splits]) for m, p in probs.items()},
                           np.concatenate([labels[s] for s in splits]), spec, seed=seed, device=device,
                           trained_on={names[n]: _get(n).train_splits for n in sub.combine},
                           search_split="+".join(splits), allow_trained_split=True, progress=progress)
    out = submission_dir(run_dir, number)
    out.mkdir(parents=True, exist_ok=True)
    for s in AFEW_SPLITS:
        fused = fuse_probs({m: p[s] for m, p in probs.items()}, list(result.modalities), result.weights)
        artifacts.save_clip_probs(final_path(run_dir, number, s), ids[s], fused, labels[s])
    return result


def write_predictions(run_dir: str | Path, number: int, clip_ids: Sequence[str], probs: Any) -> int:
    """Write a submission's test predictions into this run's submissions stage: in EmotiW's per-clip form
    (artifact ``emotiw``: one file per clip, one line: the emotion name), and all of them in one CSV (artifact
    ``predictions``: clip, emotion, the seven probabilities). Returns the number of clips."""
    import pandas as pd

    from .constants import EMOTIONS

    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(clip_ids), len(EMOTIONS)):
        raise ValueError(f"probs must be ({len(clip_ids)}, {len(EMOTIONS)}), got {p.shape}")
    names = [EMOTIONS[i] for i in p.argmax(1)]
    for cid, name in zip(clip_ids, names):
        path = stages.SUBMISSIONS.path(run_dir, "emotiw", number=int(number), clip=cid)
        path.parent.mkdir(parents=True, exist_ok=True)
        artifacts.atomic_write_text(path, name + "\n")
    frame = pd.DataFrame({"clip": list(clip_ids), "emotion": names,
                          **{f"p_{e}": p[:, i].round(5) for i, e in enumerate(EMOTIONS)}})
    csv = stages.SUBMISSIONS.path(run_dir, "predictions", number=int(number))
    csv.parent.mkdir(parents=True, exist_ok=True)
    artifacts.atomic_write_text(csv, frame.to_csv(index=False))
    return len(names)


def _get(number: int) -> Submission:
    if number not in SUBMISSIONS:
        raise ValueError(f"unknown submission {number!r}; Table 2 has submissions 1-7")
    return SUBMISSIONS[number]


def _main_partition(run_dir: Path) -> tuple[tuple[str, ...], str | None]:
    m = artifacts.read_manifest(stages.IRNN.dir(run_dir))
    if m is None:
        raise FileNotFoundError(f"{stages.IRNN.dir(run_dir)}: no manifest; run the main chain "
                                f"({SHARED_STAGES[0]} to {CHAIN[-1]}) first")
    p = m["parameters"]
    return tuple(p["train_splits"]), p["select_split"]


def _main_search_is(sub: Submission, run_dir: Path) -> bool:
    """True when the main run's random search (08) is this submission's: same partition, same fusion regime
    and a search of its own (no fixed weights); the submission then links it instead of searching again."""
    m = artifacts.read_manifest(stages.SEARCH.dir(run_dir))
    p = m["parameters"] if m else {}
    return (p.get("fusion_regime") == sub.fusion_regime and p.get("fixed_weights") is None
            and tuple(p.get("train_splits") or ()) == sub.train_splits and p.get("select_split") == sub.select_split)


def _link(target: Path, link: Path) -> None:
    """Make ``link`` a relative symlink to the stage folder ``target`` (replacing an old link or folder)."""
    if not (target / stages.MANIFEST).is_file():
        raise FileNotFoundError(f"{target}: no successful stage run to link to ({stages.MANIFEST} missing)")
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()), target_is_directory=True)


def _model_source(sub: Submission, run_dir: Path) -> Path | None:
    """Folder whose model stages this submission shares (the main run or another submission), or None."""
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
                                f"({SHARED_STAGES[0]} to {CHAIN[-1]}) first")
    sdir = submission_dir(run_dir, number)
    sdir.mkdir(parents=True, exist_ok=True)
    for stage in SHARED_STAGES:
        _link(run_dir / stage, sdir / stage)
    source = _model_source(sub, run_dir)
    search = stages.SEARCH.name
    if source is not None:
        for stage in MODEL_STAGES:
            _link(source / stage, sdir / stage)
        if source == run_dir and _main_search_is(sub, run_dir):
            _link(run_dir / search, sdir / search)
            return sdir, []
        return sdir, [search]
    for stage, patterns in _CACHES.items():
        (sdir / stage).mkdir(exist_ok=True)
        for pattern in patterns:
            for f in (run_dir / stage).glob(pattern):
                if not (sdir / stage / f.name).exists():
                    shutil.copyfile(f, sdir / stage / f.name)
    return sdir, list(CHAIN)


def retrain_overrides(reference: str | Path) -> dict[str, Any]:
    """``STAGE.KEY`` overrides that fix every choice the reference chain (a run or submission folder) made on
    its select split, read from each chain stage's record: IRNN and fusion epochs, SVM C/gamma, audio PCA
    size, random-search weights (paper 6.3: "retaining all hyper-parameters including early stopping epoch
    number and combination weights"). FileNotFoundError naming a stage of the reference that has not run."""
    out: dict[str, Any] = {}
    for stage in CHAIN:
        record = records.read(reference, stage)
        out.update({f"{stage}.{key}": value(record) for key, value in _chosen(stage).items()})
    return out


def chain_overrides(number: int, run_dir: str | Path, to_run: Sequence[str],
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flat ``STAGE.KEY`` overrides for the stages a submission runs (``to_run``): the main run's parameters of each
    stage, then the submission's partition and fusion regime, with every choice a stage makes on its select
    split left to it again, then (3, 6) :func:`retrain_overrides` of the reference submission, then ``extra``
    (``STAGE.KEY`` keys, e.g. fewer seeds)."""
    sub = _get(number)
    run_dir = Path(run_dir).resolve()
    out: dict[str, Any] = {}
    for stage in to_run:
        m = artifacts.read_manifest(run_dir / stage)
        if m is None:
            raise FileNotFoundError(f"{run_dir / stage}: no manifest; run the main chain "
                                    f"({SHARED_STAGES[0]} to {CHAIN[-1]}) first")
        out.update({f"{stage}.{k}": v for k, v in m["parameters"].items() if k not in _NOT_COPIED})
        out[f"{stage}.train_splits"] = list(sub.train_splits)
        out[f"{stage}.select_split"] = sub.select_split
    search = stages.SEARCH.name
    if search in to_run:
        out[f"{search}.fusion_regime"] = sub.fusion_regime
    for stage in to_run:
        if stage in CHAIN:
            out.update({f"{stage}.{key}": None for key in _chosen(stage)})
    if sub.retrain_of is not None:
        out.update({k: v for k, v in retrain_overrides(submission_dir(run_dir, sub.retrain_of)).items()
                    if k.split(".", 1)[0] in to_run})
    for k, v in (extra or {}).items():
        if k.split(".", 1)[0] in to_run:
            out[k] = v
    return out


def run_submission(number: int, run_dir: str | Path, profile: str, *, data: Any = None, device: str | None = None,
                   extra: Mapping[str, Any] | None = None, progress: bool = True, recompute: bool = False):
    """Prepare and run submission ``number`` (1-6) of the main run in ``run_dir``; return the stage results.

    Executed notebooks go to ``submissions/subN/executed/``; unchanged stages are cached like any run.
    A retraining submission (3, 6) needs its reference submission (2, 4) to have run first.
    """
    from .pipeline import run_pipeline

    sdir, to_run = prepare_submission(number, run_dir)
    if not to_run:  # every stage linked (submission 2 when the main run's search used the stable fusion)
        return []
    overrides = chain_overrides(number, run_dir, to_run, extra)
    return run_pipeline(profile, stages=to_run, run_dir=sdir, device=device, data=data, overrides=overrides,
                        executed_dir=sdir / "executed", progress=progress, recompute=recompute)


def run_submissions(numbers: Sequence[int], run_dir: str | Path, profile: str, *, parallel: int = 1,
                    on_done: Any = None, bar: bool = False, **kwargs: Any) -> dict[int, list]:
    """Run the chain submissions among ``numbers`` (:func:`run_submission`, ``kwargs`` passed on), up to
    ``parallel`` at a time; return ``{number: stage results}`` in number order.

    A submission starts once those it builds on (:attr:`Submission.depends_on`) have finished, so
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
    needs = {n: [d for d in _get(n).depends_on if d in chain] for n in chain}
    # Start first what unlocks the most others (4 unlocks 5 and 6).
    unlocks = {n: sum(1 for m in chain if n in needs[m]) for n in chain}
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
                    if len(running) < int(parallel) and all(d in out for d in needs[n]):
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
