"""Variant runs: one changed parameter (or chapter) tried beside a finished run, without touching it.

A *variant* of a base run ``runs/<profile>/`` lives in ``runs/<profile>/variants/<NAME>/``::

    variant.json        name, profile, base run, the overrides against the profile, the command that made it
    00_datasets -> ../../00_datasets     a stage whose notebook, parameters and inputs are the base's: a link
    03_irnn/            a stage the variant changes (or one that reads a changed stage): run in the variant
    executed/           the executed notebooks of the stages run in the variant
    lab/                the chapters as JupyterLab working copies (:func:`prepare_lab`)

What is implemented
-------------------
* :func:`open_variant` creates or updates the folder and its record; overrides given again are merged into
  the recorded ones (a later value of a key wins), so ``emotiw run --variant NAME`` with no ``-p`` re-runs the
  variant as it was made.
* :func:`reuse_base_stage` links a stage to the base run when the base's manifest is ``ok`` and has the input
  hash the variant computes for it (the runner leaves the run folder out of the hash, so an unchanged stage
  hashes the same in both). A link is the only way a base stage enters a variant: nothing is copied and
  nothing of the base is ever written (:func:`detach` turns a link into a folder of the variant's own before
  a stage runs there).
* The JupyterLab working copies of a variant's chapters live in its ``lab/`` folder
  (:mod:`emotiw_utils.working_copies`).

This module is the storage of variants and imports no runner: the runner (:mod:`emotiw_utils.pipeline`)
decides, stage by stage, what to link and what to run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import artifacts, paths, profiles, stages

__all__ = [
    "EXECUTED_SUBDIR", "LAB_SUBDIR", "VARIANTS_DIR", "VARIANT_FILE", "base_command", "base_run_of", "check_name",
    "detach", "is_variant", "list_variants", "open_variant", "read_variant", "reuse_base_stage", "reused",
    "variant_command", "variant_dir",
]

#: Folder of a base run that holds its variants.
VARIANTS_DIR = "variants"
#: A variant's record (name, profile, base run, overrides, command).
VARIANT_FILE = "variant.json"
#: Executed notebooks of the stages run in a variant.
EXECUTED_SUBDIR = "executed"
#: The JupyterLab working copies of the chapters (:func:`prepare_lab`).
LAB_SUBDIR = "lab"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: str) -> str:
    """``name`` if it can name a variant folder (letters, digits, ``_ . -``; up to 64); ValueError otherwise."""
    name = str(name)
    if not _NAME.fullmatch(name):
        raise ValueError(f"variant name {name!r}: use letters, digits, '_', '.', '-' (starting with a letter or "
                         "digit, at most 64 characters)")
    return name


def variant_dir(base_run: str | Path, name: str) -> Path:
    """``{base_run}/variants/{name}`` (not created)."""
    return Path(base_run) / VARIANTS_DIR / check_name(name)


def read_variant(vdir: str | Path) -> dict | None:
    """The record of the variant in ``vdir`` (None when ``vdir`` is no variant)."""
    p = Path(vdir) / VARIANT_FILE
    if not p.is_file():
        return None
    rec = artifacts.read_json(p)
    if not isinstance(rec, dict):
        raise ValueError(f"{p}: expected a JSON object")
    return rec


def is_variant(path: str | Path) -> bool:
    """Whether ``path`` is a variant folder."""
    return (Path(path) / VARIANT_FILE).is_file()


def base_run_of(vdir: str | Path) -> Path:
    """The base run of the variant in ``vdir`` (its record's ``base_run``, or the folder two levels up)."""
    rec = read_variant(vdir) or {}
    return Path(rec.get("base_run") or Path(vdir).parent.parent)


def list_variants(base_run: str | Path) -> list[Path]:
    """The variant folders of ``base_run``, sorted by name."""
    root = Path(base_run) / VARIANTS_DIR
    return sorted(p for p in root.iterdir() if is_variant(p)) if root.is_dir() else []


def reused(vdir: str | Path, stage: str) -> bool:
    """Whether the variant reuses the base run's ``stage`` (its folder is a link to the base's)."""
    return (Path(vdir) / stage).is_symlink()


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(p)


def base_command(profile: str, base_run: str | Path, stage: str) -> str:
    """The command that builds ``stage`` in the base run."""
    where = "" if Path(base_run).resolve() == paths.default_run_dir(profile).resolve() else f" --run-dir {_rel(base_run)}"
    return f"emotiw run --profile {profile}{where} --stages {stage}"


def variant_command(profile: str, base_run: str | Path, name: str, stage: str | None = None) -> str:
    """The command that runs ``stage`` (default: every stage) of variant ``name``."""
    where = "" if Path(base_run).resolve() == paths.default_run_dir(profile).resolve() else f" --run-dir {_rel(base_run)}"
    return f"emotiw run --profile {profile}{where} --variant {name}" + (f" --stages {stage}" if stage else "")


def _override_text(key: str, value: Any) -> str:
    """``-p KEY=VALUE`` that gives back ``value`` when parsed as the command line parses it (YAML), quoted for a
    shell."""
    import json
    import shlex

    text = value if isinstance(value, str) and _parses_back(value) else json.dumps(artifacts.to_jsonable(value))
    return "-p " + shlex.quote(f"{key}={text}")


def _parses_back(text: str) -> bool:
    try:
        return profiles.parse_value(text) == text
    except ValueError:
        return False


def open_variant(base_run: str | Path, name: str, profile: str, overrides: Mapping[str, Any] | None = None,
                 command: str | None = None) -> tuple[Path, dict]:
    """Create (or update) variant ``name`` of ``base_run``; return its folder and record.

    ``overrides`` (a flat dict, :func:`emotiw_utils.profiles.parse_overrides`) are merged into the recorded ones
    and checked against the profile (unknown key or wrong type: ValueError). A variant of another profile is
    refused, and so is a base run that is itself a variant. The record's ``command`` is the one command that
    makes the variant as it now is; ``history`` lists the commands typed (``command``, when given).
    """
    base_run = Path(base_run).expanduser().resolve()
    if is_variant(base_run):
        raise ValueError(f"{base_run} is a variant; a variant's base must be a run (use --run-dir of its base)")
    vdir = variant_dir(base_run, name)
    rec = read_variant(vdir)
    now = artifacts.now_iso()
    if rec is not None and rec.get("profile") != profile:
        raise ValueError(f"variant {name!r} of {base_run} was made with profile {rec.get('profile')!r}, not "
                         f"{profile!r}: use --profile {rec.get('profile')} or another variant name")
    merged = dict((rec or {}).get("overrides") or {})
    merged.update(overrides or {})
    profiles.load_params(profile, merged)  # unknown keys and wrong types are refused before anything is written
    vdir.mkdir(parents=True, exist_ok=True)
    typed = list((rec or {}).get("history") or [])
    if command:
        typed.append({"command": command, "at": now})
    rec = {"name": name, "profile": profile, "base_run": str(base_run),
           "overrides": artifacts.to_jsonable(merged),
           # the one command that makes the variant as it is now (every override), and what was typed
           "command": variant_command(profile, base_run, name) + "".join(
               " " + _override_text(k, v) for k, v in merged.items()),
           "history": typed, "created": (rec or {}).get("created", now), "updated": now}
    artifacts.atomic_write_json(vdir / VARIANT_FILE, rec)
    return vdir, rec


def reuse_base_stage(base_run: str | Path, vdir: str | Path, stage: str, input_hash: str) -> bool:
    """Link ``stage`` of the variant to the base run's when the base ran it (``ok``) with ``input_hash``; return
    whether it is reused. A folder the variant ran itself is left alone (False); a link to a base stage that
    no longer matches is removed, so nothing reads a stale base stage through it."""
    link = Path(vdir) / stage
    if link.exists() and not link.is_symlink():
        return False
    target = Path(base_run) / stage
    try:
        m = artifacts.read_manifest(target)
    except ValueError:
        m = None
    if m is not None and m.get("status") == "ok" and m.get("input_hash") == input_hash:
        want = os.path.relpath(target.resolve(), link.parent.resolve())
        if not (link.is_symlink() and os.readlink(link) == want):
            if link.is_symlink():
                link.unlink()
            link.symlink_to(want, target_is_directory=True)
        return True
    if link.is_symlink():
        link.unlink()
    return False


def detach(stage_dir: str | Path) -> Path:
    """Make ``stage_dir`` a folder of this run before a stage runs in it: a link (to the base run's or another
    run's stage) is removed, never written through. Returns the (created) folder."""
    stage_dir = Path(stage_dir)
    if stage_dir.is_symlink():
        stage_dir.unlink()
    stage_dir.mkdir(parents=True, exist_ok=True)
    return stage_dir
