"""Parameter profiles: ``params/<profile>.yaml`` -> the papermill parameters of every stage.

A profile file has two top-level sections::

    common:            # passed to every notebook
      profile: demo
      seed: 0
      device: auto
    stages:            # stage name -> that stage's own parameters
      00_datasets:
        n_examples: 6

The parameters of one stage are ``common``, then that stage's section, then the user's overrides,
later ones winning (:func:`stage_parameters`). Overrides are ``KEY=VALUE`` strings (CLI ``-p``),
values parsed as YAML (``-p 03_irnn.epochs=5 -p seed=1``): ``STAGE.KEY=VALUE`` sets a key of one
stage (``STAGE`` may be a prefix such as ``03``); a plain ``KEY=VALUE`` sets that key wherever the
profile defines it (in ``common`` and in every stage section that has it) and is an error if the
profile defines it nowhere.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import paths, stages

#: Known profiles (DESIGN.md "Profiles"); ``real`` reads user-supplied datasets.
PROFILES: tuple[str, ...] = ("smoke", "demo", "full", "real")
#: Profiles that run on the embedded synthetic dataset.
SYNTHETIC_PROFILES: tuple[str, ...] = ("smoke", "demo", "full")
#: Keys every profile's ``common`` section must define.
COMMON_KEYS: tuple[str, ...] = ("profile", "seed", "device")


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-3`` (no dot) as a float, as people write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """Parse one override value as YAML (``3`` -> int, ``1e-3`` -> float, ``[1, 2]`` -> list, ``x`` -> str)."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse override value {text!r} as YAML: {e}") from None


def params_path(profile: str, params_dir: str | Path | None = None) -> Path:
    """Path of a profile's YAML file (``params/<profile>.yaml``); ValueError for an unknown profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known profiles: {', '.join(PROFILES)}")
    return Path(params_dir if params_dir is not None else paths.PARAMS_DIR) / f"{profile}.yaml"


def _stage_names() -> list[str]:
    return [s.name for s in stages.STAGES]


def _resolve_stage(name: str) -> str:
    return stages.resolve_stage_name(name)


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` / ``STAGE.KEY=VALUE`` strings into a flat dict ``{'seed': 1, '03_irnn.epochs': 5}``.

    Stage prefixes are resolved to full stage names; ValueError for a malformed item or an unknown stage.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"malformed override {item!r}: expected KEY=VALUE or STAGE.KEY=VALUE")
        key, value = item.split("=", 1)
        key = key.strip()
        stage, sub = key.split(".", 1) if "." in key else (None, key)
        if stage is not None and (not sub or not stage):
            raise ValueError(f"malformed override {item!r}: expected STAGE.KEY=VALUE")
        if not sub.isidentifier():
            raise ValueError(f"malformed override {item!r}: {sub!r} is not a valid parameter name")
        if stage is not None:
            key = f"{_resolve_stage(stage)}.{sub}"
        out[key] = parse_value(value)
    return out


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path}: parameter file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: malformed YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'common:' and 'stages:' sections")
    return data


def load_params(profile: str, overrides: Mapping[str, Any] | Iterable[str] | None = None,
                params_dir: str | Path | None = None) -> dict:
    """Load ``params/<profile>.yaml`` and apply overrides.

    ``overrides`` is a flat dict as returned by :func:`parse_overrides` or a list of ``KEY=VALUE``
    strings. Returns ``{'profile', 'file', 'common': {...}, 'stages': {stage: {...}}}``.
    Errors: unknown profile (ValueError listing the known ones), missing file (FileNotFoundError),
    malformed YAML or structure (ValueError naming the file), unknown stage or parameter in the
    overrides (ValueError).
    """
    path = params_path(profile, params_dir)
    data = _read_yaml(path)
    unknown_sections = sorted(set(data) - {"common", "stages"})
    if unknown_sections:
        raise ValueError(f"{path}: unknown top-level sections {unknown_sections}; expected 'common' and 'stages'")
    common = data.get("common") or {}
    stages = data.get("stages") or {}
    if not isinstance(common, dict):
        raise ValueError(f"{path}: 'common' must be a mapping of parameter names to values")
    if not isinstance(stages, dict) or not all(isinstance(v, dict) or v is None for v in stages.values()):
        raise ValueError(f"{path}: 'stages' must map stage names to mappings of parameters")
    missing = [k for k in COMMON_KEYS if k not in common]
    if missing:
        raise ValueError(f"{path}: 'common' lacks required keys {missing}")
    if common["profile"] != profile:
        raise ValueError(f"{path}: common.profile is {common['profile']!r} but the file is profile {profile!r}")
    known = _stage_names()
    bad = [s for s in stages if s not in known]
    if bad:
        raise ValueError(f"{path}: unknown stages {bad}; known stages: {', '.join(known)}")
    params = {
        "profile": profile,
        "file": str(path),
        "common": copy.deepcopy(common),
        "stages": {s: copy.deepcopy(v or {}) for s, v in stages.items()},
    }
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    items = list((overrides or {}).items())
    # Plain KEY=VALUE first, then STAGE.KEY=VALUE, so the more specific override wins.
    for key, value in sorted(items, key=lambda kv: "." in kv[0]):
        _apply_override(params, key, value, path)
    return params


def _apply_override(params: dict, key: str, value: Any, path: Path) -> None:
    if "." in key:
        stage, sub = key.split(".", 1)
        stage = _resolve_stage(stage)
        params["stages"].setdefault(stage, {})[sub] = value
        return
    hit = False
    if key in params["common"]:
        params["common"][key] = value
        hit = True
    for section in params["stages"].values():
        if key in section:
            section[key] = value
            hit = True
    if not hit:
        raise ValueError(f"unknown parameter {key!r}: {path} defines it neither in 'common' nor in any stage; "
                         f"use STAGE.{key}=VALUE to set a parameter of one stage")


def stage_parameters(params: Mapping[str, Any], stage: str) -> dict:
    """Parameters of one stage: ``common`` merged with the stage's section (overrides already applied)."""
    if stage not in _stage_names():
        raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join(_stage_names())}")
    out = copy.deepcopy(dict(params["common"]))
    out.update(copy.deepcopy(params["stages"].get(stage, {})))
    return out
