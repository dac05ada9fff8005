"""Where things live: the repository, the synthetic-data cache and the run directories.

Every file name a stage reads or writes is defined here once.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root (the folder holding notebooks/, params/ and book/).
REPO_ROOT: Path = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR: Path = REPO_ROOT / "notebooks"
PARAMS_DIR: Path = REPO_ROOT / "params"
EXECUTED_DIR: Path = REPO_ROOT / "book" / "executed"

#: Layout of one synthetic dataset root (the same layout users get from the real datasets).
FER_SUBDIR = "fer2013"
FER_CSV = "fer2013.csv"
TFD_SUBDIR = "tfd"
AFEW_SUBDIR = "afew"
SYNTH_INFO = "generation.json"

#: Per-stage artifact names (DESIGN.md stage contract).
MANIFEST = "manifest.json"
METRICS = "metrics.json"
#: Copy of a stage's executed notebook kept in its stage folder (restored into book/executed/ when cached).
EXECUTED_COPY = "executed.ipynb"


def data_root() -> Path:
    """Cache folder for generated synthetic datasets: ``$EMOTIW_DATA`` or ``<repo>/data``."""
    return Path(os.environ.get("EMOTIW_DATA", REPO_ROOT / "data")).expanduser().resolve()


def synth_dataset_dir(profile: str, seed: int) -> Path:
    """Folder of the synthetic dataset generated for ``(profile, seed)``."""
    return data_root() / "synth" / f"{profile}-seed{seed}"


def default_run_dir(profile: str) -> Path:
    """Default run directory for a profile: ``<repo>/runs/<profile>``."""
    return REPO_ROOT / "runs" / profile


def clip_probs_name(split: str, variant: str | None = None) -> str:
    """``clip_probs_{split}.npz``: per-clip class probabilities of a classifier stage.

    A stage with a second classifier beside its main one (04: the frame-averaging baseline) names it
    with ``variant``: ``clip_probs_{variant}_{split}.npz``.
    """
    return f"clip_probs_{split}.npz" if variant is None else f"clip_probs_{variant}_{split}.npz"


def fusion_features_name(split: str) -> str:
    """``fusion_features_{split}.npz``: per-clip inputs of the feature-fusion network."""
    return f"fusion_features_{split}.npz"


# ---- artifacts of the face and CNN stages (01_alignment, 02_cnn) ------------------------------

#: ``01_alignment``: aligned, equalised FER2013 + TFD faces with labels, source dataset and usage.
STATIC_FACES = "static_faces.npz"
#: ``01_alignment``: mean shapes and the one similarity transform per dataset (JSON).
ALIGNMENTS = "alignments.json"
#: ``02_cnn``: the frame CNN (config, weights incl. the FER+TFD mean/std images, learning curves).
CNN_CHECKPOINT = "cnn.pt"


def afew_faces_name(split: str) -> str:
    """``afew_faces_{split}.npz`` (``01_alignment``): every frame's aligned face of every clip of a split."""
    return f"afew_faces_{split}.npz"


#: ``03_irnn``: the sequence model (config, weights, input scaler, learning curves).
IRNN_CHECKPOINT = "irnn.pt"


def frame_logits_name(split: str) -> str:
    """``frame_logits_{split}.npz`` (``02_cnn``): per-frame pre-softmax CNN outputs of every clip of a split."""
    return f"frame_logits_{split}.npz"
