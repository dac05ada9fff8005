"""The stage contract: every stage of the reproduction, declared once.

One :class:`Stage` per notebook: its name (``NN_name``), notebook, chapter title, paper section, the
stages whose artifacts it reads, every file it writes (its :class:`Artifact`\\ s, names defined here and
nowhere else), the typed record its ``metrics.json`` holds (:mod:`emotiw_utils.records`), the modality name
under which decision fusion combines its outputs, and which of its files are fitted models (what a finished run needs to be applied to a new clip) or caches (computed without
labels, reused by the submission chains).

The runner (:mod:`emotiw_utils.pipeline`), the parameter profiles, the notebooks, the submissions and the
book take stage names and file paths from here::

    from emotiw_utils import stages
    stages.IRNN.path(run_dir, "clip_probs", split="Val")   # runs/demo/03_irnn/clip_probs_Val.npz
    stages.get("03").name                                  # "03_irnn"

``tests/test_stages.py`` fails when a stage name or artifact file name is spelled out anywhere else.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import paths

__all__ = [
    "ACTIVITY", "ALIGNMENT", "AUDIO", "Artifact", "CLIP_PROBS", "CNN", "DATASETS", "EXECUTED_COPY",
    "FUSION", "FUSION_FEATURES", "IRNN", "KAVG", "MANIFEST", "METRICS", "OWN_VIDEOS", "RESULTS", "SEARCH", "STAGES",
    "STAGE_NAMES", "SUBMISSIONS", "Stage", "depends_on", "get", "modality_stages", "resolve_stage_name",
]

#: Files every stage writes in its folder ``{run_dir}/{stage}/``.
MANIFEST = "manifest.json"  # parameters, input hash, status, wall time, device, versions (emotiw_utils.artifacts)
METRICS = "metrics.json"    # the stage's record (emotiw_utils.records) plus what its chapter reports
EXECUTED_COPY = "executed.ipynb"  # copy of the executed notebook, restored into book/executed/ when cached


@dataclass(frozen=True)
class Artifact:
    """One file a stage writes: ``pattern`` is its name with ``{split}``-style fields (``str.format``)."""

    pattern: str
    about: str

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields of the pattern (``("split",)`` for ``clip_probs_{split}.npz``)."""
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.pattern) if f)

    def name(self, **fields: object) -> str:
        """The file name with ``fields`` filled in; ValueError naming a missing or unknown field."""
        missing = [f for f in self.fields if f not in fields]
        extra = [f for f in fields if f not in self.fields]
        if missing or extra:
            raise ValueError(f"{self.pattern}: needs fields {list(self.fields)}, got {sorted(fields)}")
        return self.pattern.format(**fields)

    @property
    def glob(self) -> str:
        """The pattern with every field a ``*`` (``is10_*.npz``), to find every file of the artifact."""
        return "".join(text + ("*" if f else "") for text, f, _, _ in string.Formatter().parse(self.pattern))


#: The clip-level contract of every classifier stage (03-08): clip ids, (N, 7) probabilities, labels.
CLIP_PROBS = Artifact("clip_probs_{split}.npz", "per-clip class probabilities (clip_ids, probs N x 7, labels)")
#: Inputs of the feature-fusion network (07) written by 03, 04 and 05.
FUSION_FEATURES = Artifact("fusion_features_{split}.npz", "per-clip inputs of the feature-fusion network")


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline (see the module docstring). ``artifacts`` maps a key used in code to the
    :class:`Artifact`; ``models`` and ``caches`` are keys of ``artifacts``; ``record`` is the name of the
    stage's metrics record class in :mod:`emotiw_utils.records` (None: the stage has none that others read)."""

    name: str
    notebook: str
    title: str
    section: str = ""
    reads: tuple[str, ...] = ()
    artifacts: Mapping[str, Artifact] = field(default_factory=dict, compare=False)
    models: tuple[str, ...] = ()
    caches: tuple[str, ...] = ()
    record: str | None = None
    #: The key under which decision-level fusion (08) combines this stage's ``clip_probs`` (None: not a
    #: modality of the search).
    modality: str | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in (*self.models, *self.caches) if k not in self.artifacts]
        if unknown:
            raise ValueError(f"{self.name}: models/caches {unknown} are not among its artifacts")

    @property
    def number(self) -> str:
        """``"03"`` for ``03_irnn``."""
        return self.name.split("_", 1)[0]

    @property
    def source(self) -> Path:
        """Absolute path of the notebook source."""
        return paths.REPO_ROOT / self.notebook

    @property
    def exists(self) -> bool:
        return self.source.is_file()

    def dir(self, run_dir: str | Path) -> Path:
        """``{run_dir}/{name}`` (not created)."""
        return Path(run_dir) / self.name

    def artifact(self, key: str) -> Artifact:
        try:
            return self.artifacts[key]
        except KeyError:
            raise KeyError(f"{self.name} writes no artifact {key!r}; its artifacts: {list(self.artifacts)}") from None

    def file(self, key: str, **fields: object) -> str:
        """The file name of artifact ``key`` (``fields`` fill its pattern)."""
        return self.artifact(key).name(**fields)

    def path(self, run_dir: str | Path, key: str, **fields: object) -> Path:
        """``{run_dir}/{name}/{file}`` of artifact ``key``."""
        return self.dir(run_dir) / self.file(key, **fields)

    def require(self, run_dir: str | Path, key: str, **fields: object) -> Path:
        """Like :meth:`path`, but FileNotFoundError naming the stage to run when the file is missing."""
        p = self.path(run_dir, key, **fields)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing ({self.artifact(key).about}); run stage {self.name} first "
                                    f"(emotiw run --stages {self.name})")
        return p


def _a(pattern: str, about: str) -> Artifact:
    return Artifact(pattern, about)


DATASETS = Stage(
    "00_datasets", "notebooks/00_datasets.md", "Datasets: AFEW 5.0, FER2013 and TFD (section 2.1.1)", "2.1.1")
ALIGNMENT = Stage(
    "01_alignment", "notebooks/01_alignment.md", "Face detection and alignment (section 2.1.2)", "2.1.2",
    reads=(), artifacts={
        "static_faces": _a("static_faces.npz", "aligned, equalised FER2013 + TFD faces, labels, source, usage"),
        "afew_faces": _a("afew_faces_{split}.npz", "every frame's aligned face of every clip of a split"),
        "alignments": _a("alignments.json", "mean shapes and the similarity transform of each dataset, AFEW's "
                                            "face-box scale and fallback box (aligned.load_alignments)"),
    }, models=("alignments",))
CNN = Stage(
    "02_cnn", "notebooks/02_cnn.md", "Frame-level CNN trained on static faces (section 2.1.3)", "2.1.3",
    reads=("01_alignment",), artifacts={
        "cnn": _a("cnn.pt", "the frame CNN: config, weights, mean/std images, learning curves"),
        "frame_logits": _a("frame_logits_{split}.npz", "per-frame pre-softmax CNN outputs of every clip"),
    }, models=("cnn",))
IRNN = Stage(
    "03_irnn", "notebooks/03_irnn.md", "Learning sequences with an IRNN (section 2.2)", "2.2",
    reads=("01_alignment", "02_cnn"), artifacts={
        "irnn": _a("irnn.pt", "the sequence model: config, weights, input scaler, learning curves"),
        "clip_probs": CLIP_PROBS, "fusion_features": FUSION_FEATURES,
    }, models=("irnn",), record="IrnnRecord", modality="rnn")
KAVG = Stage(
    "04_kavg_svm", "notebooks/04_kavg_svm.md", "Aggregated CNN features and SVM (section 2.3)", "2.3",
    reads=("02_cnn", "03_irnn"), artifacts={
        "svm": _a("kavg_svm.skops", "the RBF SVM on k-averaged CNN outputs (with its scaler)"),
        "clip_probs": CLIP_PROBS,
        "frame_average": _a("clip_probs_frame_average_{split}.npz", "the frame-averaging baseline's probabilities"),
        "fusion_features": FUSION_FEATURES,
    }, models=("svm",), record="KavgRecord", modality="kavg")
AUDIO = Stage(
    "05_audio", "notebooks/05_audio.md", "Audio features and SVM (section 3)", "3",
    artifacts={
        "is10": _a("is10_{split}.npz", "openSMILE IS10 functionals of every clip (cache keyed by the files)"),
        "egemaps": _a("egemaps_{split}.npz", "openSMILE eGeMAPSv02 functionals of the clips of the classifier "
                                             "comparison (cache keyed by the files)"),
        "model": _a("audio_model.skops", "standardiser + PCA + RBF SVM on the IS10 features"),
        "projection": _a("audio_projection.skops", "the PCA whitening that gives the fusion network's 10 inputs"),
        "prior": _a("audio_prior.npz", "the class prior given to clips without audio, and the run's bound on "
                                       "long audio tracks (max_audio_seconds)"),
        "clip_probs": CLIP_PROBS, "fusion_features": FUSION_FEATURES,
    }, models=("model", "projection", "prior"), caches=("is10", "egemaps"), record="AudioRecord",
    modality="audio")
ACTIVITY = Stage(
    "06_activity_sae", "notebooks/06_activity_sae.md", "Activity: spatio-temporal autoencoder (section 4)", "4",
    artifacts={
        "features": _a("activity_features.npz", "whitening, synchrony autoencoder, k-means and every clip's "
                                                "histogram (cache keyed by settings and files)"),
        "svm": _a("activity_svm.skops", "the RBF SVM on the bag-of-words histograms"),
        "clip_probs": CLIP_PROBS,
    }, models=("features", "svm"), caches=("features",), record="SvmRecord", modality="activity")
FUSION = Stage(
    "07_fusion", "notebooks/07_fusion.md", "Feature-level fusion network (section 5.1)", "5.1",
    reads=("03_irnn", "04_kavg_svm", "05_audio", "06_activity_sae"), artifacts={
        "fusion": _a("fusion_{regime}.pt", "the fusion network of one training regime, with its input scaler"),
        "regime_probs": _a("clip_probs_{regime}_{split}.npz", "per-clip probabilities of one regime's network"),
        "clip_probs": CLIP_PROBS,
    }, models=("fusion",), record="FusionRecord", modality="fusion")
SEARCH = Stage(
    "08_random_search", "notebooks/08_random_search.md", "Decision-level fusion by random search (section 5.2)",
    "5.2", reads=("03_irnn", "04_kavg_svm", "05_audio", "06_activity_sae", "07_fusion"),
    artifacts={"clip_probs": CLIP_PROBS}, record="SearchRecord")
SUBMISSIONS = Stage(
    "09_submissions", "notebooks/09_submissions.md", "Challenge submissions (section 6.3, Table 2)", "6.3",
    reads=("03_irnn", "04_kavg_svm", "05_audio", "06_activity_sae", "07_fusion", "08_random_search"), artifacts={
        "predictions": _a("sub{number}_predictions.csv", "a submission's Test predictions: clip, emotion, probs"),
        "emotiw": _a("emotiw/sub{number}/{clip}.txt", "one clip's predicted emotion in EmotiW's per-clip format"),
    }, record="SubmissionsRecord")
# The results page is a hand-written chapter of the book, executed like a stage so that every number on it is
# read from this run's artifacts.
RESULTS = Stage(
    "10_results", "book/results.md", "Results beside the paper (Tables 1 and 2, Figures 4 and 5)", "6",
    reads=("03_irnn", "04_kavg_svm", "05_audio", "06_activity_sae", "07_fusion", "08_random_search",
           "09_submissions"))
# "Your own videos": the finished run applied to new videos with `emotiw predict` (emotiw_utils.predict), a
# hand-written page executed after the results page; it reads every stage whose model predict loads.
OWN_VIDEOS = Stage(
    "11_own_videos", "book/own_videos.md", "Your own videos: the finished run applied to any video", "",
    reads=("01_alignment", "02_cnn", "03_irnn", "04_kavg_svm", "05_audio", "06_activity_sae", "07_fusion",
           "08_random_search"), artifacts={
        "outputs": _a("{video}.{kind}", "emotiw predict's outputs of one video (emotiw_utils.predict.write_outputs): "
                                        "kind csv, json, txt (EmotiW label file), png (timeline)"),
    })

#: Every stage, in execution order.
STAGES: tuple[Stage, ...] = (DATASETS, ALIGNMENT, CNN, IRNN, KAVG, AUDIO, ACTIVITY, FUSION, SEARCH, SUBMISSIONS,
                             RESULTS, OWN_VIDEOS)
#: Their names, in order.
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def resolve_stage_name(name: str) -> str:
    """Full stage name for ``name``: an exact name (``03_irnn``) or a unique prefix (``03``).

    ValueError listing the known stages otherwise.
    """
    names = [s.name for s in STAGES]  # read at call time: tests swap STAGES for stages of their own
    name = str(name).strip()
    if name in names:
        return name
    matches = [n for n in names if n.startswith(name)] if name else []
    if len(matches) == 1:
        return matches[0]
    what = f"ambiguous stage {name!r} (matches {', '.join(matches)})" if matches else f"unknown stage {name!r}"
    raise ValueError(f"{what}; known stages: {', '.join(names)}")


def get(name: str) -> Stage:
    """The stage called ``name`` (or a unique prefix of it)."""
    name = resolve_stage_name(name)
    return next(s for s in STAGES if s.name == name)


def depends_on(stage: Stage | str) -> tuple[str, ...]:
    """Every stage whose artifacts ``stage`` reads, directly or through another stage, in execution order
    (``03_irnn`` -> ``("01_alignment", "02_cnn")``): what its input hash covers and what must be current before it
    runs."""
    st = stage if isinstance(stage, Stage) else get(stage)
    by_name = {s.name: s for s in STAGES}
    seen: set[str] = set()
    todo = list(st.reads)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(by_name[name].reads)
    return tuple(s.name for s in STAGES if s.name in seen)


def modality_stages() -> dict[str, Stage]:
    """Modality name -> the stage whose ``clip_probs`` decision fusion combines under it, in stage order."""
    return {s.modality: s for s in STAGES if s.modality is not None}


def _check_registry() -> None:
    modalities = [s.modality for s in STAGES if s.modality is not None]
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"a modality is declared by two stages: {modalities}")
    for s in STAGES:
        later = [r for r in s.reads if r not in STAGE_NAMES or STAGE_NAMES.index(r) >= STAGE_NAMES.index(s.name)]
        if later:
            raise ValueError(f"{s.name} reads {later}, which do not run before it")


_check_registry()
