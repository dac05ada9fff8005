"""Parameter profiles: ``params/base.yaml`` + ``params/<profile>.yaml`` -> the papermill parameters of every stage.

``params/base.yaml`` holds every parameter's default once (the paper's hyperparameters), in two sections::

    common:            # passed to every notebook
      seed: 0
      device: auto
    stages:            # stage name -> that stage's own parameters
      00_datasets:
        n_examples: 6

A profile file (``smoke``, ``demo``, ``full``, ``real``, ``realfer``) has the same two sections, both optional,
and holds only what differs from the base; ``extends: PROFILE`` applies another profile file first (``realfer``
is ``demo`` with another CNN recipe). ``common.profile`` is set by the loader to the profile's name.

The parameters of one stage are ``common``, then that stage's section (:func:`stage_parameters`); each
section is the base's, then the profile file's, then the user's overrides. Merge rule: a value from the
profile file or an override REPLACES the base value as a whole; mappings (``07_fusion.epochs``,
``09_submissions.chain_overrides``) are not merged key by key. Every key set by a profile file or an
override must be defined in the base; an unknown key is refused (ValueError listing the known keys).

Overrides are ``KEY=VALUE`` strings (CLI ``-p``), values parsed as YAML (``-p 03_irnn.epochs=5
-p seed=1``): ``STAGE.KEY=VALUE`` sets a key of one stage (``STAGE`` may be a prefix such as ``03``;
``KEY`` is one of that stage's keys or a ``common`` key); a plain ``KEY=VALUE`` sets that key wherever
the base defines it (in ``common`` and in every stage section that has it). ``profile`` is chosen by
name, never overridden.

Types: every value a profile file or an override sets must have the type of its default in the base
(:func:`type_error`): an int default takes an int (not a bool), a float default an int or a float, a bool
default a bool, a str default a str, a list default a list (whose elements have the type the default's
elements share, if they share one), a mapping default a mapping, a None default (unset) anything; None is
taken only where the default is None or :data:`ALSO_ACCEPTS` says so (``select_split``: a retraining chain
selects nothing). A mismatch is refused in one line naming the key, the value and the expected type.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import paths, stages

#: Known profiles (README "Profiles"); ``real`` reads user-supplied datasets; ``realfer`` is the demo with the
#: real FER2013 (the CNN of chapter 02 trained on real faces).
PROFILES: tuple[str, ...] = ("smoke", "demo", "full", "real", "realfer")
#: Profiles that run on the embedded synthetic dataset.
SYNTHETIC_PROFILES: tuple[str, ...] = ("smoke", "demo", "full")
#: The synthetic dataset each profile generates for the datasets the user does not pass (``real``: none).
SYNTHETIC_DATA: dict[str, str] = {"smoke": "smoke", "demo": "demo", "full": "full", "realfer": "demo"}
#: The real datasets a profile cannot run without (CLI ``--afew``, ``--fer2013``).
REQUIRED_DATA: dict[str, tuple[str, ...]] = {"real": ("afew", "fer2013"), "realfer": ("fer2013",)}
#: Keys of every resolved ``common`` section (``profile`` from the loader, the others from the base).
COMMON_KEYS: tuple[str, ...] = ("profile", "seed", "device")
#: Name of the file holding every default (``params/base.yaml``).
BASE = "base"
_SECTIONS = ("common", "stages")
#: Top-level key of a profile file naming the profile it builds on (applied first; the base cannot extend).
EXTENDS = "extends"


#: Parameters that take more than the type of their default (by key, in whichever section): None where a
#: non-null default has a meaning for None (``select_split``: a retraining chain selects nothing, paper 6.3;
#: ``max_audio_seconds``: no bound), a float where the default is an int (seconds), a bool beside ``auto``.
ALSO_ACCEPTS: dict[str, tuple[str, ...]] = {
    "select_split": ("None",),
    "max_audio_seconds": ("None", "float"),
    "amp": ("bool",),
}
_KIND_NAMES = {"bool": "a bool (true or false)", "int": "an int", "float": "a number", "str": "a string",
               "list": "a list", "dict": "a mapping", "None": "null"}
_PLURALS = {"bool": "bools", "int": "ints", "float": "numbers", "str": "strings", "list": "lists", "dict": "mappings"}


def _kind(value: Any) -> str:
    """The kind of a parameter value: bool, int, float, str, list, dict, None (or the Python type's name)."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "dict"
    return type(value).__name__


def _describe(value: Any) -> str:
    kind = _kind(value)
    return "a float" if kind == "float" else _KIND_NAMES.get(kind, f"a {kind}")


def _fits(value: Any, kind: str) -> bool:
    """True if ``value`` is acceptable where the default is of ``kind`` (an int is a float, a bool no int)."""
    got = _kind(value)
    return got == kind or (kind == "float" and got == "int")


def _element_kind(default: list) -> str | None:
    """The kind every element of a list default shares (ints and floats mixed: float), or None (empty, mixed)."""
    kinds = {_kind(v) for v in default}
    if kinds == {"int", "float"}:
        return "float"
    return kinds.pop() if len(kinds) == 1 else None


def type_error(key: str, value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace the base default ``default`` of parameter ``key`` (``STAGE.KEY`` or a common
    key), as one line, or None when it can (the rules: module docstring)."""
    if default is None:
        return None
    kind = _kind(default)
    allowed = [kind, *ALSO_ACCEPTS.get(key.rsplit(".", 1)[-1], ())]
    if any(_fits(value, k) for k in allowed):
        if kind != "list" or _kind(value) != "list":
            return None
        elem = _element_kind(default)
        bad = [v for v in value if elem is not None and not _fits(v, elem)]
        if not bad:
            return None
        return (f"parameter {key}: {value!r} holds {bad[0]!r} ({_describe(bad[0])}); "
                f"expected a list of {_PLURALS.get(elem, elem)} like its default {default!r} "
                f"(params/{BASE}.yaml)")
    expected = " or ".join(_KIND_NAMES.get(k, k) for k in allowed)
    return (f"parameter {key}: {value!r} is {_describe(value)}; expected {expected} "
            f"like its default {default!r} (params/{BASE}.yaml)")


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
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse override value {text!r} as YAML: {e}") from None


def params_path(profile: str, params_dir: str | Path | None = None) -> Path:
    """Path of a profile's YAML file (``params/<profile>.yaml``); ValueError for an unknown profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known profiles: {', '.join(PROFILES)}")
    return _params_dir(params_dir) / f"{profile}.yaml"


def base_path(params_dir: str | Path | None = None) -> Path:
    """Path of the defaults file (``params/base.yaml``)."""
    return _params_dir(params_dir) / f"{BASE}.yaml"


def _params_dir(params_dir: str | Path | None) -> Path:
    return Path(params_dir if params_dir is not None else paths.PARAMS_DIR)


def _stage_names() -> list[str]:
    return [s.name for s in stages.STAGES]


def _resolve_stage(name: str) -> str:
    return stages.resolve_stage_name(name)


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` / ``STAGE.KEY=VALUE`` strings into a flat dict ``{'seed': 1, '03_irnn.epochs': 5}``.

    Stage prefixes are resolved to full stage names; ValueError for a malformed item or an unknown stage.
    Whether ``KEY`` is a known parameter is checked by :func:`load_params`.
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


def _read_sections(path: Path) -> tuple[dict, dict, str | None]:
    """``(common, stages, extends)`` of one parameter file, checked for shape and stage names (an empty file:
    no keys; ``extends``: the profile it builds on, or None)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: parameter file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: malformed YAML: {e}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'common:' and 'stages:' sections")
    unknown_sections = sorted(set(data) - set(_SECTIONS) - {EXTENDS})
    if unknown_sections:
        raise ValueError(f"{path}: unknown top-level sections {unknown_sections}; expected 'common' and 'stages' "
                         f"(and optionally '{EXTENDS}: PROFILE')")
    extends = data.get(EXTENDS)
    if extends is not None and extends not in PROFILES:
        raise ValueError(f"{path}: {EXTENDS}: {extends!r} is not a profile; known profiles: {', '.join(PROFILES)}")
    common = data.get("common") or {}
    sections = data.get("stages") or {}
    if not isinstance(common, dict):
        raise ValueError(f"{path}: 'common' must be a mapping of parameter names to values")
    if not isinstance(sections, dict) or not all(isinstance(v, dict) or v is None for v in sections.values()):
        raise ValueError(f"{path}: 'stages' must map stage names to mappings of parameters")
    known = _stage_names()
    bad = [s for s in sections if s not in known]
    if bad:
        raise ValueError(f"{path}: unknown stages {bad}; known stages: {', '.join(known)}")
    return common, {s: v or {} for s, v in sections.items()}, extends


def _known(keys: Iterable[str]) -> str:
    keys = list(keys)
    return ", ".join(keys) if keys else "(none)"


def _read_base(path: Path) -> tuple[dict, dict]:
    common, sections, extends = _read_sections(path)
    if extends is not None:
        raise ValueError(f"{path}: the base file cannot extend a profile")
    if "profile" in common:
        raise ValueError(f"{path}: common.profile is set by the loader to the profile's name; remove it here")
    missing = [k for k in COMMON_KEYS if k != "profile" and k not in common]
    if missing:
        raise ValueError(f"{path}: 'common' lacks required keys {missing}")
    return common, sections


def _apply_profile_file(common: dict, sections: dict, path: Path, seen: tuple[Path, ...] = (),
                        defaults: tuple[dict, dict] | None = None) -> None:
    """Replace base values by those of the profile file at ``path`` (after those of the profile it extends);
    unknown keys and values of another type than the default's (``defaults``: the base's ``(common,
    sections)``, by default those passed in) are refused."""
    if defaults is None:
        defaults = copy.deepcopy((common, sections))
    p_common, p_sections, extends = _read_sections(path)
    if extends is not None:
        parent = path.with_name(f"{extends}.yaml")
        if parent in seen + (path,):
            chain = " -> ".join(p.stem for p in seen + (path, parent))
            raise ValueError(f"{path}: profiles extend each other in a cycle: {chain}")
        _apply_profile_file(common, sections, parent, seen + (path,), defaults)
    base_common = [k for k in common if k != "profile"]
    for where, known, overlay in [("common", base_common, p_common),
                                  *((f"stages.{s}", list(sections.get(s, {})), v) for s, v in p_sections.items())]:
        unknown = [k for k in overlay if k not in known]
        if unknown:
            hint = " (common.profile is the file's name; do not set it)" if "profile" in unknown else ""
            raise ValueError(f"{path}: unknown parameters {unknown} in {where}{hint}; known keys of {where} "
                             f"(params/{BASE}.yaml): {_known(known)}")
    base_common, base_sections = defaults
    for where, base, overlay in [("", base_common, p_common),
                                 *((f"{s}.", base_sections.get(s, {}), v) for s, v in p_sections.items())]:
        for k, v in overlay.items():
            err = type_error(where + k, v, base.get(k))
            if err is not None:
                raise ValueError(f"{path}: {err}")
    common.update(copy.deepcopy(p_common))
    for s, v in p_sections.items():
        sections.setdefault(s, {}).update(copy.deepcopy(v))


def load_params(profile: str, overrides: Mapping[str, Any] | Iterable[str] | None = None,
                params_dir: str | Path | None = None) -> dict:
    """Load ``params/base.yaml``, then ``params/<profile>.yaml`` over it (after the profile it ``extends``, if
    any), then the overrides.

    ``overrides`` is a flat dict as returned by :func:`parse_overrides` or a list of ``KEY=VALUE``
    strings. Returns ``{'profile', 'file' (the profile file), 'base' (the base file), 'common': {...},
    'stages': {stage: {...}}}`` (key order: the base's). Errors: unknown profile (ValueError listing the
    known ones), missing file (FileNotFoundError), malformed YAML or structure (ValueError naming the
    file), unknown stage or parameter in the profile file or the overrides (ValueError listing the known
    keys).
    """
    path = params_path(profile, params_dir)
    base = base_path(params_dir)
    base_common, sections = _read_base(base)
    defaults = copy.deepcopy((base_common, sections))
    common = {"profile": profile, **copy.deepcopy(base_common)}
    sections = copy.deepcopy(sections)
    _apply_profile_file(common, sections, path, defaults=defaults)
    params = {"profile": profile, "file": str(path), "base": str(base), "common": common, "stages": sections}
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    items = list((overrides or {}).items())
    # Plain KEY=VALUE first, then STAGE.KEY=VALUE, so the more specific override wins.
    for key, value in sorted(items, key=lambda kv: "." in kv[0]):
        _apply_override(params, key, value, base, defaults)
    return params


def _check_override(key: str, value: Any, default: Any, plain: str | None = None) -> None:
    err = type_error(key, value, default)
    if err is not None:
        hint = (f" (the plain override {plain}=... sets every stage defining {plain}; STAGE.{plain}=VALUE sets "
                "one stage's)") if plain is not None and "." in key else ""
        raise ValueError(f"override {err}{hint}")


def _apply_override(params: dict, key: str, value: Any, base: Path, defaults: tuple[dict, dict]) -> None:
    if key.rsplit(".", 1)[-1] == "profile":
        raise ValueError(f"override {key!r}: the profile is chosen by name (--profile), not overridden")
    common = params["common"]
    base_common, base_sections = defaults
    if "." in key:
        stage, sub = key.split(".", 1)
        stage = _resolve_stage(stage)
        section = params["stages"].get(stage, {})
        if sub not in section and sub not in common:
            known = [k for k in (*common, *section) if k != "profile"]
            raise ValueError(f"unknown parameter {sub!r} of stage {stage} (override {key!r}); known keys of "
                             f"{stage} (common and its own, {base}): {_known(known)}")
        own = base_sections.get(stage, {})
        _check_override(f"{stage}.{sub}", value, own[sub] if sub in own else base_common.get(sub))
        params["stages"].setdefault(stage, {})[sub] = value
        return
    hit = False
    if key in common:
        _check_override(key, value, base_common.get(key))
        common[key] = value
        hit = True
    for name, section in params["stages"].items():
        if key in section:
            _check_override(f"{name}.{key}", value, base_sections.get(name, {}).get(key), plain=key)
            section[key] = value
            hit = True
    if not hit:
        own = sorted({k for section in params["stages"].values() for k in section})
        raise ValueError(f"unknown parameter {key!r}: {base} defines it neither in 'common' nor in any stage; "
                         f"known keys of common: {_known(k for k in common if k != 'profile')}; "
                         f"of the stages (STAGE.KEY=VALUE sets one stage's): {_known(own)}")


def stage_parameters(params: Mapping[str, Any], stage: str) -> dict:
    """Parameters of one stage: ``common`` merged with the stage's section (overrides already applied)."""
    if stage not in _stage_names():
        raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join(_stage_names())}")
    out = copy.deepcopy(dict(params["common"]))
    out.update(copy.deepcopy(params["stages"].get(stage, {})))
    return out
