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
