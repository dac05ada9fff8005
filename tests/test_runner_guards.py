"""The runner refuses a stage whose inputs have no successful run, and names the command that fixes it."""

from __future__ import annotations

from emotiw_utils import artifacts, paths, pipeline, stages


def _manifest(run_dir, name, status):
    artifacts.write_manifest(run_dir / name, stage=name, parameters={}, input_hash="h", device="cpu",
                             status=status, wall_time_s=1.0, started="s", finished="f", run_id="r")


def test_refuses_when_an_input_stage_never_ran(tmp_path):
    _manifest(tmp_path, stages.ALIGNMENT.name, "ok")
    why = pipeline._upstream_refusal(stages.IRNN, tmp_path, "smoke")
    assert why == (f"stage 03_irnn reads 02_cnn, which has not run in {tmp_path}; run it first: "
                   f"emotiw run --profile smoke --run-dir {tmp_path} --stages 02_cnn")


def test_refuses_when_an_input_stage_failed(tmp_path):
    _manifest(tmp_path, stages.ALIGNMENT.name, "failed")
    _manifest(tmp_path, stages.CNN.name, "ok")
    assert "reads 01_alignment, which failed" in pipeline._upstream_refusal(stages.IRNN, tmp_path, "demo")


def test_accepts_when_every_input_is_ok(tmp_path):
    for s in stages.IRNN.reads:
        _manifest(tmp_path, s, "ok")
    assert pipeline._upstream_refusal(stages.IRNN, tmp_path, "smoke") is None
    assert pipeline._upstream_refusal(stages.AUDIO, tmp_path, "smoke") is None  # reads only the datasets


def test_the_default_run_dir_goes_without_saying(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "default_run_dir", lambda profile: tmp_path)
    why = pipeline._upstream_refusal(stages.CNN, tmp_path, "smoke")
    assert why.endswith("run it first: emotiw run --profile smoke --stages 01_alignment")


def _chain(run_dir, status=None):
    """Manifests of every stage up to 08 as the runner writes them (each with the run ids it was made from)."""
    ids = {}
    for st in stages.STAGES[:9]:
        ids[st.name] = f"run-{st.name}"
        upstream = [{"stage": d, "input_hash": "h", "run_id": ids[d], "status": "ok"} for d in stages.depends_on(st)]
        artifacts.write_manifest(run_dir / st.name, stage=st.name, parameters={}, input_hash="h", device="cpu",
                                 status=(status or {}).get(st.name, "ok"), wall_time_s=1.0, started="s",
                                 finished="f", run_id=ids[st.name], upstream=upstream)


def test_refuses_when_a_stage_it_depends_on_through_another_failed(tmp_path):
    """--stages 07 after 02 failed: 03 and 04 are still ok from an earlier 02, but 07 depends on 02 through them."""
    _chain(tmp_path, status={stages.CNN.name: "failed"})
    why = pipeline._upstream_refusal(stages.FUSION, tmp_path, "smoke")
    assert why.startswith(f"stage 07_fusion depends on 02_cnn, which failed in {tmp_path}; run it first: ")
    assert why.endswith("--stages 02_cnn")


def test_refuses_when_a_stage_it_reads_was_made_from_an_earlier_run(tmp_path):
    """02 ran again (a new run id) and 03 did not: 07 must not run on 03's outputs of the old CNN."""
    _chain(tmp_path)
    m = artifacts.read_manifest(tmp_path / stages.CNN.name)
    artifacts.write_manifest(tmp_path / stages.CNN.name, **{**m, "run_id": "run-02-again"})
    why = pipeline._upstream_refusal(stages.FUSION, tmp_path, "smoke")
    assert why == (f"stage 07_fusion depends on 03_irnn, which was made from an earlier run of 02_cnn (02_cnn ran "
                   f"again since); run it again first: emotiw run --profile smoke --run-dir {tmp_path} --stages 03_irnn")
    assert pipeline._upstream_refusal(stages.AUDIO, tmp_path, "smoke") is None  # 05 does not read the CNN


def test_accepts_a_consistent_chain(tmp_path):
    _chain(tmp_path)
    assert pipeline._upstream_refusal(stages.SEARCH, tmp_path, "smoke") is None


def test_depends_on_is_the_transitive_reads_in_stage_order():
    assert stages.depends_on(stages.IRNN) == ("01_alignment", "02_cnn")
    assert stages.depends_on("07") == ("01_alignment", "02_cnn", "03_irnn", "04_kavg_svm", "05_audio",
                                       "06_activity_sae")
    assert stages.depends_on(stages.AUDIO) == ()
