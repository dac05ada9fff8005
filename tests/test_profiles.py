"""Parameter profiles: base + profile file resolution, merge order, overrides and errors (on files of a tmp dir)."""

from __future__ import annotations

import pytest

from emotiw_utils import paths, profiles

BASE = """
common:
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
    units: {a: 1, b: 2}
"""
DEMO = """
common:
  device: cpu
stages:
  03_irnn:
    epochs: 4
    units: {a: 3}
"""


@pytest.fixture
def pdir(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "demo.yaml").write_text(DEMO)
    return tmp_path


@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_shipped_profiles_load(profile):
    params = profiles.load_params(profile)
    assert params["common"]["profile"] == profile
    assert list(params["common"]) == list(profiles.COMMON_KEYS)
    sp = profiles.stage_parameters(params, "00_datasets")
    assert sp["n_examples"] >= 1 and sp["profile"] == profile
    assert params["file"] == str(paths.PARAMS_DIR / f"{profile}.yaml")
    assert params["base"] == str(paths.PARAMS_DIR / "base.yaml")


def test_merge_order(pdir):
    params = profiles.load_params("demo", params_dir=pdir)
    assert profiles.stage_parameters(params, "00_datasets") == {
        "profile": "demo", "seed": 0, "device": "cpu", "lr": 0.5, "n_examples": 6}
    # the profile file replaces base values; a mapping is replaced as a whole, not merged key by key
    assert profiles.stage_parameters(params, "03_irnn") == {
        "profile": "demo", "seed": 0, "device": "cpu", "lr": 0.1, "epochs": 4, "hidden": 200, "units": {"a": 3}}
    # a stage without a section gets the common keys only
    assert profiles.stage_parameters(params, "05_audio") == {"profile": "demo", "seed": 0, "device": "cpu", "lr": 0.1}
    # plain KEY overrides everywhere it is defined; STAGE.KEY wins over plain KEY whatever the order;
    # STAGE.KEY may set a common key for one stage
    params = profiles.load_params("demo", ["00.lr=7", "lr=1e-3", "03_irnn.epochs=2", "03.units={b: 5}",
                                           "05.seed=3"], params_dir=pdir)
    assert profiles.stage_parameters(params, "00_datasets")["lr"] == 7
    irnn = profiles.stage_parameters(params, "03_irnn")
    assert irnn["lr"] == 1e-3 and isinstance(irnn["lr"], float)
    assert irnn["epochs"] == 2 and irnn["units"] == {"b": 5} and irnn["hidden"] == 200 and irnn["seed"] == 0
    assert profiles.stage_parameters(params, "05_audio")["lr"] == 1e-3
    assert profiles.stage_parameters(params, "05_audio")["seed"] == 3
    # the loaded dict is not shared with the file content between calls
    assert profiles.stage_parameters(profiles.load_params("demo", params_dir=pdir), "03_irnn")["epochs"] == 4


def test_empty_profile_file_is_the_base(pdir):
    (pdir / "full.yaml").write_text("# nothing differs\n")
    params = profiles.load_params("full", params_dir=pdir)
    assert params["common"] == {"profile": "full", "seed": 0, "device": "auto", "lr": 0.1}
    assert params["stages"]["03_irnn"] == {"epochs": 10, "hidden": 200, "units": {"a": 1, "b": 2}}


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


@pytest.mark.parametrize("override, msg", [
    ({"epochz": 3}, (r"unknown parameter 'epochz'.*known keys of common: seed, device, lr; "
                     r"of the stages .*epochs, hidden, lr, n_examples, units")),
    ({"03_irnn.epochz": 3}, r"unknown parameter 'epochz' of stage 03_irnn.*: seed, device, lr, epochs, hidden, units$"),
    ({"05_audio.k": 3}, r"unknown parameter 'k' of stage 05_audio.*: seed, device, lr$"),
    ({"profile": "smoke"}, "chosen by name"),
    ({"03_irnn.profile": "smoke"}, "chosen by name"),
    ({"42_x.k": 3}, "unknown stage"),
])
def test_unknown_override_refused(pdir, override, msg):
    with pytest.raises(ValueError, match=msg):
        profiles.load_params("demo", override, params_dir=pdir)


@pytest.mark.parametrize("text, msg", [
    ("stages: {03_irnn: {epochz: 3}}\n",
     (r"demo\.yaml: unknown parameters \['epochz'\] in stages\.03_irnn; known keys of stages\.03_irnn "
      r"\(params/base\.yaml\): epochs, hidden, units")),
    ("stages: {05_audio: {k: 3}}\n", r"unknown parameters \['k'\] in stages\.05_audio; .*: \(none\)"),
    ("common: {sead: 1}\n", r"unknown parameters \['sead'\] in common; known keys of common .*: seed, device, lr"),
    ("common: {profile: demo}\n", r"unknown parameters \['profile'\] in common \(common\.profile is the file's name"),
    ("stages: {03_irn: {}}\n", r"demo\.yaml: unknown stages \['03_irn'\]"),
    ("common: [unclosed\n", r"demo\.yaml: malformed YAML"),
    ("- 1\n", r"demo\.yaml: expected a mapping"),
    ("params: {}\n", r"unknown top-level sections \['params'\]"),
])
def test_bad_profile_file_refused(pdir, text, msg):
    (pdir / "demo.yaml").write_text(text)
    with pytest.raises(ValueError, match=msg):
        profiles.load_params("demo", params_dir=pdir)


def test_load_errors(pdir):
    with pytest.raises(ValueError, match=r"unknown profile 'nope'.*smoke, demo, full, real"):
        profiles.load_params("nope")
    with pytest.raises(FileNotFoundError, match="smoke.yaml"):
        profiles.load_params("smoke", params_dir=pdir)
    with pytest.raises(ValueError, match="unknown stage"):
        profiles.stage_parameters(profiles.load_params("demo", params_dir=pdir), "10_nope")
    (pdir / "base.yaml").write_text("common: {profile: demo, seed: 0, device: auto}\n")
    with pytest.raises(ValueError, match=r"base\.yaml: common\.profile is set by the loader"):
        profiles.load_params("demo", params_dir=pdir)
    (pdir / "base.yaml").write_text("common: {seed: 0}\n")
    with pytest.raises(ValueError, match=r"base\.yaml: 'common' lacks required keys \['device'\]"):
        profiles.load_params("demo", params_dir=pdir)
    (pdir / "base.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="base.yaml"):
        profiles.load_params("demo", params_dir=pdir)


def test_parse_value():
    assert profiles.parse_value("1e-3") == 1e-3
    assert profiles.parse_value("-2.5E+2") == -250.0
    assert profiles.parse_value("3") == 3
    assert profiles.parse_value("cuda") == "cuda"


def test_extends_applies_the_parent_profile_first(pdir, monkeypatch):
    (pdir / "child.yaml").write_text("extends: demo\nstages:\n  03_irnn:\n    hidden: 50\n")
    (pdir / "loop_a.yaml").write_text("extends: loop_b\n")
    (pdir / "loop_b.yaml").write_text("extends: loop_a\n")
    (pdir / "bad.yaml").write_text("extends: nope\n")
    p = pdir / "child.yaml"
    common, sections = profiles._read_base(pdir / "base.yaml")
    profiles._apply_profile_file(common, sections, p)
    assert common["device"] == "cpu"                                  # from demo
    assert sections["03_irnn"] == {"epochs": 4, "hidden": 50, "units": {"a": 3}}  # demo's, then the child's
    with pytest.raises(ValueError, match="not a profile"):
        profiles._apply_profile_file(dict(common), {}, pdir / "bad.yaml")
    monkeypatch.setattr(profiles, "PROFILES", profiles.PROFILES + ("loop_a", "loop_b"))
    with pytest.raises(ValueError, match="cycle: loop_a -> loop_b -> loop_a"):
        profiles._apply_profile_file(dict(common), {}, pdir / "loop_a.yaml")
    (pdir / "base.yaml").write_text(BASE + "extends: demo\n")
    with pytest.raises(ValueError, match="base file cannot extend"):
        profiles.load_params("demo", params_dir=pdir)


def test_realfer_is_demo_with_its_own_cnn_recipe():
    demo, realfer = profiles.load_params("demo"), profiles.load_params("realfer")
    for stage in demo["stages"]:
        if stage != "02_cnn":
            assert realfer["stages"][stage] == demo["stages"][stage], stage
    assert realfer["stages"]["02_cnn"] != demo["stages"]["02_cnn"]


# ---- types: a value must have the type of its default in base.yaml (issue 22) ------------------------------

TYPED_BASE = """
common:
  seed: 0
  device: auto
stages:
  02_cnn:
    epochs: 40
    lr: 0.05
    amp: auto
    standardise: true
    usages: [Training]
    recipes: []
    Cs: [0.1, 1, 3]
    gammas: [scale, 0.01]
    stride: [5, 16, 16]
    select_split: Val
    fixed: null
    units: {a: 1}
  05_audio:
    max_audio_seconds: 60
"""


@pytest.fixture
def tdir(tmp_path):
    (tmp_path / "base.yaml").write_text(TYPED_BASE)
    (tmp_path / "demo.yaml").write_text("")
    return tmp_path


@pytest.mark.parametrize("override", [
    "02.epochs=3", "02.lr=1", "02.lr=1e-3", "02.amp=false", "02.amp=auto", "02.standardise=false",
    "02.usages=[Training, PublicTest]", "02.usages=[]", "02.recipes=[{amp: false}, 3]", "02.Cs=[2, 0.5]",
    "02.gammas=[0.1]", "02.stride=[1, 2]", "02.select_split=null", "02.select_split=Train", "02.fixed=7",
    "02.fixed={original: 3}", "02.fixed=[1]", "02.units={b: 2}", "05.max_audio_seconds=null",
    "05.max_audio_seconds=12.5", "seed=3", "device=cuda", "05.seed=2",
])
def test_values_of_the_default_type_accepted(tdir, override):
    profiles.load_params("demo", [override], params_dir=tdir)


@pytest.mark.parametrize("override, msg", [
    ("02_cnn.epochs=abc", r"^override parameter 02_cnn\.epochs: 'abc' is a string; expected an int like its "
                          r"default 40 \(params/base\.yaml\)$"),
    ("02.epochs=2.5", r"02_cnn\.epochs: 2\.5 is a float; expected an int"),
    ("02.epochs=true", r"02_cnn\.epochs: True is a bool .*; expected an int"),
    ("02.epochs=null", r"02_cnn\.epochs: None is null; expected an int"),
    ("02.lr=fast", r"02_cnn\.lr: 'fast' is a string; expected a number"),
    ("02.lr=true", r"02_cnn\.lr: True is a bool"),
    ("02.amp=1", r"02_cnn\.amp: 1 is an int; expected a string or a bool"),
    ("02.standardise=1", r"02_cnn\.standardise: 1 is an int; expected a bool"),
    ("02.standardise=yes please", r"02_cnn\.standardise: 'yes please' is a string; expected a bool"),
    ("02.usages=Training", r"02_cnn\.usages: 'Training' is a string; expected a list"),
    ("02.usages=[1]", r"02_cnn\.usages: \[1\] holds 1 \(an int\); expected a list of strings"),
    ("02.Cs=[1, x]", r"02_cnn\.Cs: \[1, 'x'\] holds 'x' \(a string\); expected a list of numbers"),
    ("02.stride=[1, 2.5]", r"02_cnn\.stride: \[1, 2\.5\] holds 2\.5 \(a float\); expected a list of ints"),
    ("02.select_split=3", r"02_cnn\.select_split: 3 is an int; expected a string or null"),
    ("02.units=3", r"02_cnn\.units: 3 is an int; expected a mapping"),
    ("05.max_audio_seconds=long", r"05_audio\.max_audio_seconds: 'long' is a string; expected an int or null or a "
                                  r"number"),
    ("seed=x", r"^override parameter seed: 'x' is a string; expected an int"),
    ("05.seed=x", r"^override parameter 05_audio\.seed: 'x' is a string; expected an int"),
    ("device=null", r"parameter device: None is null; expected a string"),
])
def test_values_of_another_type_refused_in_one_line(tdir, override, msg):
    with pytest.raises(ValueError, match=msg) as e:
        profiles.load_params("demo", [override], params_dir=tdir)
    assert "\n" not in str(e.value)


def test_plain_override_names_the_stage_whose_default_differs(pdir):
    (pdir / "base.yaml").write_text(BASE + "  07_fusion:\n    epochs: {original: 1, stable: 2}\n")
    with pytest.raises(ValueError, match=r"07_fusion\.epochs: 5 is an int; expected a mapping .*STAGE\.epochs=VALUE"):
        profiles.load_params("demo", ["epochs=5"], params_dir=pdir)
    assert profiles.load_params("demo", ["03.epochs=5"], params_dir=pdir)["stages"]["03_irnn"]["epochs"] == 5


def test_profile_file_values_are_checked_too(tdir):
    (tdir / "demo.yaml").write_text("stages:\n  02_cnn:\n    epochs: forty\n")
    with pytest.raises(ValueError, match=r"demo\.yaml: parameter 02_cnn\.epochs: 'forty' is a string; expected an int"):
        profiles.load_params("demo", params_dir=tdir)
    # against the base's default, not the value of the profile it extends
    (tdir / "demo.yaml").write_text("stages:\n  02_cnn:\n    fixed: 3\n")
    (tdir / "child.yaml").write_text("extends: demo\nstages:\n  02_cnn:\n    fixed: {original: 3}\n")
    common, sections = profiles._read_base(tdir / "base.yaml")
    profiles._apply_profile_file(common, sections, tdir / "child.yaml")
    assert sections["02_cnn"]["fixed"] == {"original": 3}
    (tdir / "child.yaml").write_text("extends: demo\ncommon:\n  seed: '1'\n")
    with pytest.raises(ValueError, match=r"child\.yaml: parameter seed: '1' is a string"):
        profiles._apply_profile_file(*profiles._read_base(tdir / "base.yaml"), tdir / "child.yaml")


@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_shipped_values_and_chain_resets_pass_the_type_check(profile):
    """Every shipped profile's values, and what a submission's chain sets (its chosen hyperparameters reset to
    None, a retraining chain's select_split None, the values it copies from manifests), pass the check."""
    from emotiw_utils import submissions

    params = profiles.load_params(profile)
    over = {}
    for stage in submissions.CHAIN:
        over.update({f"{stage}.{k}": v for k, v in params["stages"][stage].items()})
        over.update({f"{stage}.{key}": None for key in submissions._chosen(stage)})
        over[f"{stage}.select_split"] = None
    profiles.load_params(profile, over)
    profiles.load_params(profile, {"03_irnn.fixed_epochs": 7, "04_kavg_svm.svm_C": 3.0,
                                   "04_kavg_svm.svm_gamma": "scale",
                                   "05_audio.n_components": 20, "07_fusion.fixed_epochs": {"original": 3, "stable": 4},
                                   "08_random_search.fixed_weights": {"modalities": ["rnn"], "weights": [[1.0]]}})
