"""The shipped parameter files: one home per default (params/base.yaml), profile files that hold only what
differs, and notebook parameters cells equal to the resolved smoke profile."""

from __future__ import annotations

import ast
import re

import jupytext
import pytest
import yaml

from emotiw_utils import artifacts, paths, pipeline, profiles, stages
from emotiw_utils import submissions as subs

#: What the runner injects (pipeline.INJECTED_PARAMETERS), as a notebook opened in Jupyter should default them.
INJECTED_DEFAULTS = {"run_dir": "runs/smoke", "afew_dir": None, "fer2013_path": None, "tfd_path": None,
                     "synthetic": True, "device": "cpu"}


def _yaml(name):
    return yaml.load((paths.PARAMS_DIR / f"{name}.yaml").read_text(), Loader=profiles._Loader) or {}


def test_injected_defaults_cover_the_runner():
    assert set(INJECTED_DEFAULTS) | {"stage"} == set(pipeline.INJECTED_PARAMETERS)


@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_profile_files_hold_only_what_differs_from_base(profile):
    """A profile file holds only what differs from its parent: base.yaml, or the profile it extends."""
    base, overlay = _yaml("base"), _yaml(profile)
    assert set(overlay) <= {"common", "stages", profiles.EXTENDS}
    if profiles.EXTENDS in overlay:
        parent = profiles.load_params(overlay[profiles.EXTENDS])
        parent = {"common": {k: v for k, v in parent["common"].items() if k != "profile"}, "stages": parent["stages"]}
    else:
        parent = base
    pairs = [(f"common.{k}", parent["common"].get(k, KeyError), v) for k, v in (overlay.get("common") or {}).items()]
    for stage, section in (overlay.get("stages") or {}).items():
        assert section, f"{profile}.yaml: empty section {stage}"
        pairs += [(f"{stage}.{k}", parent["stages"][stage].get(k, KeyError), v) for k, v in section.items()]
    for key, parent_value, value in pairs:
        assert parent_value is not KeyError, f"{profile}.yaml sets {key}, which base.yaml does not define"
        assert value != parent_value, f"{profile}.yaml repeats its parent's {key} = {value!r}"
    # the resolved profile is the parent with exactly these keys replaced
    params = profiles.load_params(profile)
    assert params["common"] == {"profile": profile, **parent["common"], **(overlay.get("common") or {})}
    assert params["stages"] == {s: {**v, **(overlay.get("stages") or {}).get(s, {})}
                                for s, v in parent["stages"].items()}


def test_full_is_the_paper_and_the_others_differ():
    assert _yaml("full") == {}
    base = profiles.load_params("full")
    real = profiles.load_params("real")
    assert real["stages"]["06_activity_sae"]["frame_scale"] == 0.2
    real["stages"]["06_activity_sae"]["frame_scale"] = base["stages"]["06_activity_sae"]["frame_scale"]
    assert real["stages"] == base["stages"]
    irnn = profiles.stage_parameters(base, "03_irnn")
    assert (irnn["lr"], irnn["clip"], irnn["batch_size"], irnn["hidden"], irnn["feature_layer"]) == (
        0.005, 1.0, 64, 200, "conv2")  # paper 2.2 and 6.2
    smoke = profiles.stage_parameters(profiles.load_params("smoke"), "03_irnn")
    assert smoke["epochs"] == 6 and smoke["lr"] == 0.005  # from smoke.yaml, from base.yaml
    # demo replaces the whole chain_overrides mapping: base's entries are repeated, one added
    demo = profiles.load_params("demo")["stages"]["09_submissions"]["chain_overrides"]
    full = base["stages"]["09_submissions"]["chain_overrides"]
    assert demo == {**full, "08_random_search.per_round": 25000}


def test_every_base_key_has_a_comment():
    lines = (paths.PARAMS_DIR / "base.yaml").read_text().splitlines()
    seen = set()
    for i, line in enumerate(lines):
        m = re.match(r"^( {2}| {4})(\w+):", line)
        if not m:
            continue
        seen.add(m.group(2))
        commented = "#" in line or lines[i - 1].lstrip().startswith("#")
        assert commented, f"base.yaml line {i + 1} has no comment: {line!r}"
    base = _yaml("base")
    keys = set(base["common"]) | set(base["stages"]) | {k for v in base["stages"].values() for k in v}
    assert keys <= seen


@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_chain_overrides_are_valid_overrides(profile):
    over = profiles.load_params(profile)["stages"]["09_submissions"]["chain_overrides"]
    params = profiles.load_params(profile, over)
    for key, value in over.items():
        stage, sub = key.split(".", 1)
        assert params["stages"][stage][sub] == value


def test_submission_overrides_from_manifests_are_known_keys(tmp_path):
    """The STAGE.KEY overrides a submission builds from the main run's manifests pass the loader's key check."""
    params = profiles.load_params("smoke")
    run = tmp_path / "run"
    for name in subs.CHAIN:
        sp = {**profiles.stage_parameters(params, name), **INJECTED_DEFAULTS, "stage": name, "run_dir": str(run)}
        artifacts.write_manifest(artifacts.stage_dir(run, name), stage=name, parameters=sp, input_hash="h",
                                 status="ok", wall_time_s=1.0, device="cpu", started="s", finished="f")
    extra = params["stages"]["09_submissions"]["chain_overrides"]
    over = subs.chain_overrides(4, run, list(subs.CHAIN), extra)
    assert over["03_irnn.train_splits"] == ["Val"] and over["03_irnn.n_seeds"] == 1
    loaded = profiles.load_params("smoke", over)
    assert profiles.stage_parameters(loaded, "03_irnn")["select_split"] == "Train"


def _parameters_cell(stage):
    nb = jupytext.read(stage.source)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{stage.notebook}: expected one cell tagged 'parameters', found {len(cells)}"
    values = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), \
            f"{stage.notebook}: the parameters cell holds only NAME = literal assignments"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("stage", [s for s in stages.STAGES if s.exists], ids=lambda s: s.name)
def test_notebook_parameters_cell_is_the_smoke_profile(stage):
    expected = {**profiles.stage_parameters(profiles.load_params("smoke"), stage.name), **INJECTED_DEFAULTS,
                "stage": stage.name}
    assert _parameters_cell(stage) == expected
