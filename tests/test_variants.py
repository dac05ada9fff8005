"""Variant runs (emotiw_utils.variants and the runner's ``variant=``): the record, the links to the base run,
and, on the session's smoke run, a variant that changes one parameter of the IRNN: only that stage and the
stages that read it run, in the variant's folder, and the base run keeps every byte and mtime. A JupyterLab
working copy of the chapter, executed as it is (as Run All does), gives the same artifacts as ``emotiw run``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from emotiw_utils import artifacts, pipeline, profiles, stages, variants, working_copies

IRNN_OVERRIDE = {f"{stages.IRNN.name}.hidden": 48}


# ---- the record and the links (no notebook runs) -------------------------------------------------

def test_open_variant_records_and_merges_the_overrides(tmp_path):
    vdir, rec = variants.open_variant(tmp_path, "small", "smoke", {"03_irnn.hidden": 48}, command="emotiw run x")
    assert vdir == tmp_path.resolve() / variants.VARIANTS_DIR / "small"
    assert rec["overrides"] == {"03_irnn.hidden": 48} and rec["profile"] == "smoke"
    assert rec["command"] == f"emotiw run --profile smoke --run-dir {tmp_path.resolve()} --variant small " \
                             "-p 03_irnn.hidden=48"
    _, rec = variants.open_variant(tmp_path, "small", "smoke", {"04_kavg_svm.k": 5})
    assert rec["overrides"] == {"03_irnn.hidden": 48, "04_kavg_svm.k": 5}  # merged: the variant as it was, plus
    assert [h["command"] for h in rec["history"]] == ["emotiw run x"]
    assert variants.read_variant(vdir) == rec
    assert variants.list_variants(tmp_path) == [vdir]
    assert variants.is_variant(vdir) and not variants.is_variant(tmp_path)
    assert variants.base_run_of(vdir) == tmp_path.resolve()


@pytest.mark.parametrize("name", ["", "../up", "a/b", "-x", "x" * 65, "a b"])
def test_a_variant_name_must_be_a_plain_folder_name(tmp_path, name):
    with pytest.raises(ValueError, match="variant name"):
        variants.variant_dir(tmp_path, name)


def test_open_variant_refuses_another_profile_an_unknown_key_and_a_variant_base(tmp_path):
    vdir, _ = variants.open_variant(tmp_path, "v", "smoke")
    with pytest.raises(ValueError, match="made with profile 'smoke', not 'demo'"):
        variants.open_variant(tmp_path, "v", "demo")
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        variants.open_variant(tmp_path, "w", "smoke", {"03_irnn.nope": 1})
    assert not (tmp_path / variants.VARIANTS_DIR / "w").exists()  # refused before anything is written
    with pytest.raises(ValueError, match="is a variant"):
        variants.open_variant(vdir, "x", "smoke")


def _manifest(run_dir: Path, stage: str, input_hash: str, status: str = "ok") -> None:
    artifacts.write_manifest(run_dir / stage, stage=stage, parameters={}, input_hash=input_hash, device="cpu",
                             status=status, wall_time_s=1.0, started="s", finished="f", run_id="r")


def test_reuse_links_an_unchanged_base_stage_and_unlinks_a_changed_one(tmp_path):
    base = tmp_path / "base"
    _manifest(base, stages.CNN.name, "h1")
    _manifest(base, stages.IRNN.name, "h2", status="failed")
    vdir, _ = variants.open_variant(base, "v", "smoke")
    assert variants.reuse_base_stage(base, vdir, stages.CNN.name, "h1")
    link = vdir / stages.CNN.name
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)) and link.resolve() == (base / "02_cnn").resolve()
    assert variants.reused(vdir, stages.CNN.name)
    assert variants.reuse_base_stage(base, vdir, stages.CNN.name, "h1")  # again: the same link
    assert not variants.reuse_base_stage(base, vdir, stages.IRNN.name, "h2")  # failed in the base
    assert not variants.reuse_base_stage(base, vdir, stages.CNN.name, "other")  # the variant changes it
    assert not link.exists() and not link.is_symlink()  # no stale link left to read through
    assert (base / stages.CNN.name / stages.MANIFEST).is_file()


def test_detach_removes_a_link_without_touching_its_target(tmp_path):
    target = tmp_path / "base" / "02_cnn"
    target.mkdir(parents=True)
    (target / "model.bin").write_bytes(b"weights")
    link = tmp_path / "v" / "02_cnn"
    link.parent.mkdir()
    link.symlink_to(target, target_is_directory=True)
    out = variants.detach(link)
    assert out.is_dir() and not out.is_symlink() and list(out.iterdir()) == []
    assert (target / "model.bin").read_bytes() == b"weights"


def test_open_stage_on_a_linked_stage_makes_it_the_runs_own(tmp_path):
    """A working copy run in JupyterLab (no runner) of a stage the variant reused: the link goes, the base stays."""
    from emotiw_utils.stage_context import open_stage

    base = tmp_path / "base"
    (base / stages.IRNN.name).mkdir(parents=True)
    (base / stages.IRNN.name / stages.METRICS).write_text("{}")
    vdir, _ = variants.open_variant(base, "v", "smoke")
    (vdir / stages.IRNN.name).symlink_to(base / stages.IRNN.name, target_is_directory=True)
    ctx = open_stage(stages.IRNN.name, profile="smoke", run_dir=vdir, seed=0, show=False)
    assert ctx.out_dir == vdir / stages.IRNN.name and ctx.out_dir.is_dir() and not ctx.out_dir.is_symlink()
    assert not (ctx.out_dir / stages.METRICS).exists()
    assert (base / stages.IRNN.name / stages.METRICS).read_text() == "{}"


def test_a_variant_whose_base_lacks_a_stage_names_the_command_that_builds_it(tmp_path):
    """The variant changes 03 only; the base never ran the stages 03 reads: refused before anything runs."""
    data = tmp_path / "data"
    (data / "afew").mkdir(parents=True)
    (data / "fer.csv").write_text("emotion,pixels,Usage\n")
    base = tmp_path / "base"
    with pytest.raises(pipeline.StageFailed) as e:
        pipeline.run_pipeline("smoke", stages=[stages.IRNN.name], run_dir=base, variant="v", device="cpu",
                              overrides=IRNN_OVERRIDE, progress=False,
                              data=pipeline.DataPaths(data / "afew", data / "fer.csv"))
    msg = str(e.value)
    assert msg.startswith(f"variant v reuses 01_alignment of the base run {base.resolve()}, which has not run there")
    assert msg.endswith(f"build it first: emotiw run --profile smoke --run-dir {base.resolve()} --stages 01_alignment")
    vdir = base / variants.VARIANTS_DIR / "v"
    assert not any((vdir / s.name).exists() for s in stages.STAGES)  # nothing ran, nothing was linked


# ---- a real variant of the smoke run -----------------------------------------------------------

def _snapshot(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if rel.parts[0] == variants.VARIANTS_DIR or not p.is_file() or p.is_symlink():
            continue
        out[str(rel)] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def irnn_variant(smoke):
    """The smoke run's variant with a smaller IRNN (hidden 48 instead of 200), run once for the module."""
    base = smoke["run"]
    before = _snapshot(base)
    results = pipeline.run_pipeline("smoke", run_dir=base, variant="hidden48", overrides=IRNN_OVERRIDE,
                                    device="cpu", progress=False)
    return dict(base=base, vdir=variants.variant_dir(base, "hidden48"), results=results, before=before)


@pytest.mark.slow
def test_the_variant_runs_the_changed_stage_and_its_dependants_only(irnn_variant):
    status = {r.name: r.status for r in irnn_variant["results"]}
    readers = {s.name for s in stages.STAGES if stages.IRNN.name in stages.depends_on(s)} | {stages.IRNN.name}
    for name, st in status.items():
        assert st == ("ran" if name in readers else "reused"), (name, st)
    assert {stages.DATASETS.name, stages.ALIGNMENT.name, stages.CNN.name, stages.AUDIO.name,
            stages.ACTIVITY.name} <= {n for n, s in status.items() if s == "reused"}
    vdir = irnn_variant["vdir"]
    for name in status:
        entry = vdir / name
        if name in readers:
            assert entry.is_dir() and not entry.is_symlink()
        else:  # linked, never copied
            assert entry.is_symlink() and entry.resolve() == (irnn_variant["base"] / name).resolve()
    executed = {p.stem for p in (vdir / variants.EXECUTED_SUBDIR).glob("*.ipynb")}
    assert executed == readers  # the executed notebooks of the variant's own stages, in the variant


@pytest.mark.slow
def test_the_base_run_keeps_every_byte_and_mtime(irnn_variant):
    assert _snapshot(irnn_variant["base"]) == irnn_variant["before"]


@pytest.mark.slow
def test_the_variant_records_its_overrides_and_its_irnn_differs(irnn_variant):
    vdir, base = irnn_variant["vdir"], irnn_variant["base"]
    rec = variants.read_variant(vdir)
    assert rec["overrides"] == IRNN_OVERRIDE and rec["profile"] == "smoke"
    m = artifacts.read_manifest(vdir / stages.IRNN.name)
    assert m["parameters"]["hidden"] == 48 and m["parameters"]["run_dir"] == str(vdir)
    assert artifacts.read_manifest(base / stages.IRNN.name)["parameters"]["hidden"] == 200
    assert artifacts.read_metrics(vdir / stages.IRNN.name) != artifacts.read_metrics(base / stages.IRNN.name)
    split = "Val"
    _, p_var, _ = artifacts.load_clip_probs(stages.IRNN.path(vdir, "clip_probs", split=split))
    _, p_base, _ = artifacts.load_clip_probs(stages.IRNN.path(base, "clip_probs", split=split))
    assert p_var.shape == p_base.shape and not np.allclose(p_var, p_base)


@pytest.mark.slow
def test_running_the_variant_again_runs_nothing(irnn_variant):
    results = pipeline.run_pipeline("smoke", run_dir=irnn_variant["base"], variant="hidden48", device="cpu",
                                    progress=False)
    assert {r.status for r in results} <= {"reused", "cached"}
    assert {r.name for r in results if r.status == "cached"} >= {stages.IRNN.name, stages.KAVG.name}


def _execute_as_is(path: Path) -> None:
    """Run every cell of a working copy as JupyterLab's Run All does: no parameters injected."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    client = NotebookClient(nb, kernel_name=pipeline.KERNEL_NAME, timeout=600,
                            kernel_manager_class=pipeline._kernel_manager_class(),
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()


@pytest.mark.slow
def test_a_working_copy_run_as_is_gives_what_emotiw_run_gives(irnn_variant):
    """The working copy of 03 of a second variant with the same override, executed cell by cell in its own folder
    (JupyterLab's Run All): the same artifacts as the runner's variant, a manifest the runner accepts as cached,
    and the base run untouched."""
    base = irnn_variant["base"]
    lab = working_copies.prepare_lab("smoke", "lab48", run_dir=base, overrides=IRNN_OVERRIDE, device="cpu")
    vdir = lab.parent
    copy = lab / f"{stages.IRNN.name}.md"
    assert {p.stem for p in lab.glob("*.md")} == {s.name for s in pipeline.available_stages()}
    text = copy.read_text(encoding="utf-8")
    assert "injected-parameters" in text and "hidden = 48" in text and f'run_dir = "{vdir}"' in text
    assert variants.reused(vdir, stages.CNN.name)  # its inputs are the base's, linked
    _execute_as_is(copy)
    ours = irnn_variant["vdir"]
    for split in ("Train", "Val", "Test"):
        a = artifacts.load_clip_probs(stages.IRNN.path(vdir, "clip_probs", split=split))
        b = artifacts.load_clip_probs(stages.IRNN.path(ours, "clip_probs", split=split))
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    m = artifacts.read_manifest(vdir / stages.IRNN.name)
    assert m["executed_by"] == "jupyterlab"
    assert m["input_hash"] == artifacts.read_manifest(ours / stages.IRNN.name)["input_hash"]
    results = pipeline.run_pipeline("smoke", stages=[stages.IRNN.name], run_dir=base, variant="lab48", device="cpu",
                                    progress=False)
    assert [(r.name, r.status) for r in results if r.name == stages.IRNN.name] == [(stages.IRNN.name, "cached")]
    assert _snapshot(base) == irnn_variant["before"]


@pytest.mark.slow
def test_a_parameter_changed_in_a_working_copy_becomes_an_override_of_the_variant(irnn_variant, capsys):
    base = irnn_variant["base"]
    lab = working_copies.prepare_lab("smoke", "edited", run_dir=base, device="cpu")
    copy = lab / f"{stages.IRNN.name}.md"
    text = copy.read_text(encoding="utf-8")
    assert "hidden = 200" in text
    head, _, tail = text.rpartition("hidden = 200")  # the injected cell's (the chapter's own cell comes first)
    copy.write_text(head + "hidden = 48" + tail, encoding="utf-8")  # the user's edit
    _execute_as_is(copy)
    rec = variants.read_variant(lab.parent)
    assert rec["overrides"] == {f"{stages.IRNN.name}.hidden": 48}
    # 03 was linked to the base's when the copies were written (nothing differed yet): it ran in the variant
    assert not variants.reused(lab.parent, stages.IRNN.name)
    assert _snapshot(base) == irnn_variant["before"]
    params = profiles.load_params("smoke", rec["overrides"])
    assert params["stages"][stages.IRNN.name]["hidden"] == 48
    results = pipeline.run_pipeline("smoke", stages=[stages.IRNN.name], run_dir=base, variant="edited", device="cpu",
                                    progress=False)
    assert {r.name: r.status for r in results}[stages.IRNN.name] == "cached"


def test_a_variant_folder_is_not_run_as_a_plain_run(tmp_path):
    vdir, _ = variants.open_variant(tmp_path, "v", "smoke", IRNN_OVERRIDE)
    with pytest.raises(ValueError, match=r"is variant 'v' of .*--variant v"):
        pipeline.run_pipeline("smoke", stages=[stages.IRNN.name], run_dir=vdir, device="cpu", progress=False)


@pytest.mark.slow
def test_compare_names_the_changed_parameter_and_the_changed_metrics(irnn_variant, tmp_path, capsys):
    from emotiw_utils import cli, compare

    cmp = compare.compare_runs([irnn_variant["base"], irnn_variant["vdir"]], ["base", "hidden48"])
    assert [(p.stage, p.key, p.values) for p in cmp.parameters] == [(stages.IRNN.name, "hidden", [200, 48])]
    changed = {f.stage for f in cmp.changed if f.name != "wall time"}
    assert stages.IRNN.name in changed and stages.AUDIO.name not in changed and stages.CNN.name not in changed
    assert cmp.statuses(stages.CNN.name)[1] == "reused"
    rc = cli.main(["compare", "hidden48", "--run-dir", str(irnn_variant["base"]), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "hidden" in out and "200" in out and "48" in out and stages.IRNN.name in out
    assert (tmp_path / compare.CSV_FILE).is_file() and (tmp_path / compare.JSON_FILE).is_file()
