"""Parameter profiles: the shipped YAML files, merge order, overrides and errors."""

from __future__ import annotations

import pytest

from emotiw_utils import paths, profiles

YAML = """
common:
  profile: demo
  seed: 0
  device: auto
  lr: 0.1
stages:
  00_datasets:
    n_examples: 6
    lr: 0.5
  03_irnn:
    epochs: 10
    hidden: 200
"""


@pytest.fixture
def pdir(tmp_path):
    (tmp_path / "demo.yaml").write_text(YAML)
    return tmp_path


@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_shipped_profiles_load(profile):
    params = profiles.load_params(profile)
    assert params["common"]["profile"] == profile
    assert {"seed", "device"} <= set(params["common"])
    sp = profiles.stage_parameters(params, "00_datasets")
    assert sp["n_examples"] >= 1 and sp["profile"] == profile
    assert (paths.PARAMS_DIR / f"{profile}.yaml").is_file()


def test_merge_order(pdir):
    params = profiles.load_params("demo", params_dir=pdir)
    assert profiles.stage_parameters(params, "00_datasets") == {
        "profile": "demo", "seed": 0, "device": "auto", "lr": 0.5, "n_examples": 6}
    # a stage without a section gets the common keys only
    assert profiles.stage_parameters(params, "05_audio") == {"profile": "demo", "seed": 0, "device": "auto", "lr": 0.1}
    # plain KEY overrides everywhere it is defined; STAGE.KEY wins over plain KEY whatever the order
    params = profiles.load_params("demo", ["00.lr=7", "lr=1e-3", "03_irnn.epochs=2", "03.new=[1, 2]"], params_dir=pdir)
    assert profiles.stage_parameters(params, "00_datasets")["lr"] == 7
    irnn = profiles.stage_parameters(params, "03_irnn")
    assert irnn["lr"] == 1e-3 and isinstance(irnn["lr"], float)
    assert irnn["epochs"] == 2 and irnn["new"] == [1, 2] and irnn["hidden"] == 200
    assert profiles.stage_parameters(params, "05_audio")["lr"] == 1e-3
    # the loaded dict is not shared with the file content between calls
    assert profiles.stage_parameters(profiles.load_params("demo", params_dir=pdir), "03_irnn")["epochs"] == 10


def test_parse_overrides():
    out = profiles.parse_overrides(["seed=3", "03.epochs=5", "07_fusion.lr=1e-4", "name=abc", "flag=true",
                                    "x=null", "s='1'", "expr=a=b"])
    assert out == {"seed": 3, "03_irnn.epochs": 5, "07_fusion.lr": 1e-4, "name": "abc", "flag": True, "x": None,
                   "s": "1", "expr": "a=b"}
    assert profiles.parse_overrides(None) == {}


@pytest.mark.parametrize("item, msg", [
    ("noequals", "KEY=VALUE"),
    ("=3", "not a valid parameter name"),
    ("99_nope.k=1", "unknown stage '99_nope'"),
    ("0.k=1", "ambiguous stage"),
    ("03.=1", "STAGE.KEY"),
    ("k=[1,", "cannot parse"),
])
def test_parse_overrides_errors(item, msg):
    with pytest.raises(ValueError, match=msg):
        profiles.parse_overrides([item])


def test_load_errors(pdir, tmp_path):
    with pytest.raises(ValueError, match=r"unknown profile 'nope'.*smoke, demo, full, real"):
        profiles.load_params("nope")
    with pytest.raises(FileNotFoundError, match="smoke.yaml"):
        profiles.load_params("smoke", params_dir=pdir)
    (pdir / "full.yaml").write_text("common: [unclosed\n")
    with pytest.raises(ValueError, match=r"full\.yaml: malformed YAML"):
        profiles.load_params("full", params_dir=pdir)
    (pdir / "real.yaml").write_text("common: {profile: real, seed: 0, device: auto}\nstages: {03_irn: {}}\n")
    with pytest.raises(ValueError, match=r"real\.yaml: unknown stages \['03_irn'\]"):
        profiles.load_params("real", params_dir=pdir)
    (pdir / "smoke.yaml").write_text("common: {profile: demo, seed: 0, device: auto}\n")
    with pytest.raises(ValueError, match="common.profile is 'demo'"):
        profiles.load_params("smoke", params_dir=pdir)
    with pytest.raises(ValueError, match="unknown parameter 'epochz'.*STAGE.epochz"):
        profiles.load_params("demo", {"epochz": 3}, params_dir=pdir)
    with pytest.raises(ValueError, match="unknown stage"):
        profiles.load_params("demo", {"42_x.k": 3}, params_dir=pdir)
    with pytest.raises(ValueError, match="unknown stage"):
        profiles.stage_parameters(profiles.load_params("demo", params_dir=pdir), "10_nope")


def test_parse_value():
    assert profiles.parse_value("1e-3") == 1e-3
    assert profiles.parse_value("-2.5E+2") == -250.0
    assert profiles.parse_value("3") == 3
    assert profiles.parse_value("cuda") == "cuda"
