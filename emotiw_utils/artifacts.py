"""Reading and writing stage artifacts (file names: :mod:`emotiw_utils.stages`).

Every stage writes under ``{run_dir}/{NN_stage}/``. Writes are atomic: a file is produced under a
temporary name in its destination folder and renamed onto the final name (``os.replace``) only once
it is complete, so an interrupted stage never leaves a truncated artifact behind.

Files:

* ``manifest.json``: what produced the stage (parameters, seed, input hash, package versions, git
  commit, device, wall time, timestamps, status); written by the runner.
* ``metrics.json``: the stage's numbers (accuracies, counts), written by the notebook.
* ``clip_probs_{split}.npz``: per-clip class probabilities of a classifier stage: ``clip_ids`` (N,)
  unique strings, ``probs`` (N, 7) finite rows summing to 1, ``labels`` (N,) ints in -1..6 (-1 where
  unknown), class order :data:`emotiw_utils.constants.EMOTIONS`.
* ``fusion_features_{split}.npz``: per-clip inputs of the feature-fusion network: ``clip_ids`` and
  one (N, d) float array per feature block.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import paths, stages
from .atomic import atomic_path
from .constants import NUM_CLASSES, UNKNOWN_LABEL

#: Tolerance on ``|sum(probs[i]) - 1|`` in the clip-probabilities contract.
PROB_SUM_TOL = 1e-4
#: Distributions whose versions every manifest records (``python`` is added separately).
MANIFEST_PACKAGES: tuple[tuple[str, str], ...] = (
    ("emotiw_book", "emotiw-book"),
    ("torch", "torch"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("pandas", "pandas"),
    ("opencv", "opencv-python-headless"),
    ("av", "av"),
    ("opensmile", "opensmile"),
    ("matplotlib", "matplotlib"),
    ("papermill", "papermill"),
    ("jupytext", "jupytext"),
)
#: Allowed values of a manifest's ``status``.
MANIFEST_STATUSES = ("ok", "failed")


# ---- atomic writes ----------------------------------------------------------------------------

def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths, sets and tuples (recursively) into JSON types.

    Non-finite floats become ``None`` (JSON has no NaN/Infinity).
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (str, type(None))):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    raise TypeError(f"cannot write object of type {type(obj).__name__} to JSON: {obj!r}")


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically; numpy scalars and arrays are converted (see :func:`to_jsonable`)."""
    text = json.dumps(to_jsonable(obj), indent=indent, sort_keys=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; ValueError naming the file if it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def save_npz_atomic(path: str | Path, **arrays: Any) -> Path:
    """``np.savez`` (uncompressed) to ``path`` atomically. ``path`` should end in ``.npz``."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        # np.savez appends ".npz" to names that lack it; the temp name ends in ".npz" already.
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


# ---- stage folders, metrics, manifest -----------------------------------------------------------

def stage_dir(run_dir: str | Path, stage: str) -> Path:
    """Return ``{run_dir}/{stage}``, creating it if needed."""
    d = Path(run_dir) / stage
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_metrics(stage_dir: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics.json`` of a stage (numpy values allowed)."""
    return atomic_write_json(Path(stage_dir) / stages.METRICS, dict(metrics))


def read_metrics(stage_dir: str | Path) -> dict:
    """Read ``metrics.json`` of a stage; FileNotFoundError naming the file when the stage did not write one."""
    p = Path(stage_dir) / stages.METRICS
    if not p.exists():
        raise FileNotFoundError(f"{p}: no metrics; has stage {Path(stage_dir).name} run?")
    return read_json(p)


def package_versions() -> dict[str, str | None]:
    """Versions of python and of the main packages (``None`` for a package that is not installed).

    Read from the installed distributions' metadata, so nothing heavy (torch) is imported.
    """
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in MANIFEST_PACKAGES:
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def git_commit(repo: str | Path | None = None) -> str | None:
    """HEAD commit of the repository (default: the project's), or ``None`` when not a git checkout."""
    repo = Path(repo) if repo is not None else paths.REPO_ROOT
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = res.stdout.strip()
    return commit if res.returncode == 0 and commit else None


def now_iso() -> str:
    """Current local time, ISO 8601 with UTC offset, seconds precision."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_manifest(stage_dir: str | Path, *, stage: str, parameters: Mapping[str, Any], input_hash: str,
                   status: str, wall_time_s: float, device: str, started: str, finished: str,
                   seed: int | None = None, **extra: Any) -> dict:
    """Write ``manifest.json`` of a stage and return its content.

    Records ``stage``, ``status`` (``ok``/``failed``), ``input_hash``, ``parameters``, ``seed``
    (default ``parameters['seed']``), ``versions`` (:func:`package_versions`), ``git_commit``
    (``None`` outside a git checkout), ``device`` (a description), ``wall_time_s``, ``started``,
    ``finished`` and any ``extra`` keys (e.g. ``run_id``, ``notebook``, ``error``).
    """
    if status not in MANIFEST_STATUSES:
        raise ValueError(f"manifest status must be one of {MANIFEST_STATUSES}, got {status!r}")
    manifest = {
        "stage": stage,
        "status": status,
        "input_hash": input_hash,
        "parameters": dict(parameters),
        "seed": seed if seed is not None else parameters.get("seed"),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": device,
        "wall_time_s": round(float(wall_time_s), 3),
        "started": started,
        "finished": finished,
    }
    manifest.update(extra)
    atomic_write_json(Path(stage_dir) / stages.MANIFEST, manifest)
    return to_jsonable(manifest)


def read_manifest(stage_dir: str | Path) -> dict | None:
    """Read ``manifest.json`` of a stage; ``None`` if the stage has none, ValueError if it is corrupt."""
    p = Path(stage_dir) / stages.MANIFEST
    if not p.exists():
        return None
    m = read_json(p)
    if not isinstance(m, dict):
        raise ValueError(f"{p}: manifest must be a JSON object, got {type(m).__name__}")
    return m


# ---- clip probabilities and fusion features ---------------------------------------------------

def _check_clip_ids(path: Path, clip_ids: Any) -> np.ndarray:
    ids = np.asarray(clip_ids)
    if ids.ndim != 1:
        raise ValueError(f"{path}: clip_ids must be 1-D, got shape {ids.shape}")
    if ids.size and ids.dtype.kind not in "UO":
        raise ValueError(f"{path}: clip_ids must be strings, got dtype {ids.dtype}")
    if ids.dtype.kind == "O" and not all(isinstance(c, str) for c in ids.tolist()):
        raise ValueError(f"{path}: clip_ids must be strings")
    ids = ids.astype(str)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dups = uniq[counts > 1][:5].tolist()
        raise ValueError(f"{path}: clip_ids must be unique; duplicated: {dups}")
    return ids


def validate_clip_probs(path: str | Path, clip_ids: Any, probs: Any, labels: Any
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the clip-probabilities contract; return ``(clip_ids str (N,), probs float64 (N,7), labels int64 (N,))``.

    Raises ValueError whose message starts with ``path`` and names the violated rule.
    """
    path = Path(path)
    ids = _check_clip_ids(path, clip_ids)
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] != NUM_CLASSES:
        raise ValueError(f"{path}: probs must have shape (N, {NUM_CLASSES}), got {p.shape}")
    if p.dtype.kind not in "fiu":
        raise ValueError(f"{path}: probs must be numeric, got dtype {p.dtype}")
    p = p.astype(np.float64)
    if not np.isfinite(p).all():
        raise ValueError(f"{path}: probs must be finite; {int((~np.isfinite(p)).any(axis=1).sum())} rows contain NaN/inf")
    if (p < 0).any():
        raise ValueError(f"{path}: probs must be non-negative; min {p.min():.3g}")
    sums = p.sum(axis=1)
    bad = np.abs(sums - 1.0) > PROB_SUM_TOL
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: probs rows must sum to 1 (tol {PROB_SUM_TOL}); {int(bad.sum())} rows do not, "
                         f"e.g. row {i} sums to {sums[i]:.6f}")
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"{path}: labels must be 1-D, got shape {lab.shape}")
    if lab.size and lab.dtype.kind == "f":
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise ValueError(f"{path}: labels must be integers, got non-integral floats")
    elif lab.size and lab.dtype.kind not in "iu":
        raise ValueError(f"{path}: labels must be integers, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    out = (lab < UNKNOWN_LABEL) | (lab >= NUM_CLASSES)
    if out.any():
        raise ValueError(f"{path}: labels must be in {UNKNOWN_LABEL}..{NUM_CLASSES - 1} "
                         f"({UNKNOWN_LABEL} = unknown); found {sorted(set(lab[out].tolist()))[:5]}")
    if not (len(ids) == len(p) == len(lab)):
        raise ValueError(f"{path}: clip_ids, probs and labels must have equal lengths, "
                         f"got {len(ids)}, {len(p)}, {len(lab)}")
    return ids, p, lab


def save_clip_probs(path: str | Path, clip_ids: Any, probs: Any, labels: Any) -> Path:
    """Validate (:func:`validate_clip_probs`) and write ``clip_probs_{split}.npz`` atomically."""
    ids, p, lab = validate_clip_probs(path, clip_ids, probs, labels)
    return save_npz_atomic(path, clip_ids=ids, probs=p, labels=lab)


def load_clip_probs(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load and validate ``clip_probs_{split}.npz``: ``(clip_ids (N,) str, probs (N,7) float64, labels (N,) int64)``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such clip-probabilities file; has the stage that writes it run?")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("clip_ids", "probs", "labels") if k not in z.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}; a clip_probs file holds clip_ids, probs, labels")
        return validate_clip_probs(path, z["clip_ids"], z["probs"], z["labels"])


def save_fusion_features(path: str | Path, clip_ids: Any, **features: Any) -> Path:
    """Write ``fusion_features_{split}.npz``: ``clip_ids`` (N,) and feature blocks, each (N, d) finite floats.

    Example: ``save_fusion_features(p, ids, rnn=h (N,200), kavg=x (N,105), audio=a (N,10))``.
    """
    path = Path(path)
    ids = _check_clip_ids(path, clip_ids)
    if not features:
        raise ValueError(f"{path}: at least one feature block is required")
    if "clip_ids" in features:
        raise ValueError(f"{path}: 'clip_ids' is reserved and cannot be a feature name")
    arrays = {}
    for name, x in features.items():
        a = np.asarray(x)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ValueError(f"{path}: feature {name!r} must have shape (N, d), got {a.shape}")
        if a.shape[0] != len(ids):
            raise ValueError(f"{path}: feature {name!r} has {a.shape[0]} rows but there are {len(ids)} clip_ids")
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{path}: feature {name!r} must be numeric, got dtype {a.dtype}")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: feature {name!r} must be finite (contains NaN/inf)")
        arrays[name] = a
    return save_npz_atomic(path, clip_ids=ids, **arrays)


def load_fusion_features(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Load ``fusion_features_{split}.npz``: ``(clip_ids (N,) str, {name: (N, d) array})``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such fusion-features file; has the stage that writes it run?")
    with np.load(path, allow_pickle=False) as z:
        if "clip_ids" not in z.files:
            raise ValueError(f"{path}: missing array 'clip_ids'")
        ids = _check_clip_ids(path, z["clip_ids"])
        feats = {k: z[k] for k in z.files if k != "clip_ids"}
    for k, a in feats.items():
        if a.ndim != 2 or a.shape[0] != len(ids):
            raise ValueError(f"{path}: feature {k!r} must have shape ({len(ids)}, d), got {a.shape}")
    return ids, feats
