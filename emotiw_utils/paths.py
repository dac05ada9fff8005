"""Where things live: the repository, the synthetic-data cache and the run directories.

The files a stage reads and writes are named in the stage registry, :mod:`emotiw_utils.stages`.
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


def data_root() -> Path:
    """Cache folder for generated synthetic datasets: ``$EMOTIW_DATA`` or ``<repo>/data``."""
    return Path(os.environ.get("EMOTIW_DATA", REPO_ROOT / "data")).expanduser().resolve()


def synth_dataset_dir(profile: str, seed: int) -> Path:
    """Folder of the synthetic dataset generated for ``(profile, seed)``."""
    return data_root() / "synth" / f"{profile}-seed{seed}"


def default_run_dir(profile: str) -> Path:
    """Default run directory for a profile: ``<repo>/runs/<profile>``."""
    return REPO_ROOT / "runs" / profile
