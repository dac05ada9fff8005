"""The ``emotiw`` command line (argument handling; the runner itself is tested in test_pipeline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emotiw_utils import cli, paths, pipeline, stages


def test_console_script_lists_stages():
    exe = Path(sys.executable).parent / "emotiw"
    if not exe.exists():
        pytest.skip("console script not installed next to this python")
    res = subprocess.run([str(exe), "stages"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == list(stages.STAGE_NAMES)
    for ln, s in zip(lines, stages.STAGES):
        assert ln.split()[1] == ("ok" if s.exists else "missing")


@pytest.mark.parametrize("argv", [
    [],
    ["nope"],
    ["run", "--profile", "nope"],
    ["run", "--device", "tpu"],
    ["run", "--stages", "42"],
    ["run", "-p", "novalue"],
    ["run", "-p", "99_x.k=1"],
    ["run", "--profile", "real"],
    ["run", "--profile", "real", "--afew", "/x"],
    ["run", "--profile", "realfer"],
    ["run", "--profile", "realfer", "--afew", "/x"],
    ["data", "synth", "--profile", "real"],
    ["book", "--bogus"],
])
def test_argument_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(argv)
    assert ei.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_run_passes_arguments_and_prints_summary(monkeypatch, capsys, tmp_path):
    calls = {}

    def fake_run(profile, **kw):
        calls.update(kw, profile=profile)
        return [pipeline.StageResult("00_datasets", "ran", 1.5, None)]

    monkeypatch.setattr(pipeline, "run_pipeline", fake_run)
    rc = cli.main(["run", "--profile", "smoke", "--stages", "00", "--device", "cpu", "--seed", "7",
                   "-p", "00.n_examples=2", "--run-dir", str(tmp_path), "--recompute", "--quiet"])
    assert rc == 0
    assert calls["profile"] == "smoke" and calls["stages"] == ["00"] and calls["device"] == "cpu"
    assert calls["overrides"] == {"00_datasets.n_examples": 2, "seed": 7}
    assert calls["run_dir"] == tmp_path and calls["recompute"] and not calls["progress"]
    assert calls["data"] is None
    assert "00_datasets" in capsys.readouterr().out

    rc = cli.main(["run", "--profile", "real", "--afew", str(tmp_path), "--fer2013", str(tmp_path / "f.csv")])
    assert rc == 0
    assert calls["data"] == pipeline.DataPaths(tmp_path, tmp_path / "f.csv", None, synthetic=False)


def test_run_failure_exit_1_without_traceback(monkeypatch, capsys):
    def failing(profile, **kw):
        res = [pipeline.StageResult("00_datasets", "failed", 0.5, None)]
        raise pipeline.StageFailed("stage 00_datasets failed (notebook notebooks/00_datasets.md)\nerror: boom",
                                   stage="00_datasets", notebook="notebooks/00_datasets.md", results=res)

    monkeypatch.setattr(pipeline, "run_pipeline", failing)
    assert cli.main(["run", "--profile", "smoke"]) == 1
    out, err = capsys.readouterr()
    assert "00_datasets" in out and "failed" in out
    assert "stage 00_datasets failed" in err and "Traceback" not in err

    def bad_args(profile, **kw):
        raise FileNotFoundError("/data/afew: AFEW folder not found")

    monkeypatch.setattr(pipeline, "run_pipeline", bad_args)
    assert cli.main(["run", "--profile", "smoke"]) == 1
    assert "emotiw: error: /data/afew: AFEW folder not found" in capsys.readouterr().err


def test_book_reports_missing_executed_notebooks(monkeypatch, tmp_path, capsys):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       "  - file: book/executed/00_datasets\n")
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)
    assert cli.main(["book"]) == 1
    err = capsys.readouterr().err
    assert "book/executed/00_datasets" in err and "emotiw run" in err


def test_toc_files_of_the_repository():
    files = cli._toc_files(paths.REPO_ROOT / "_toc.yml")
    assert files[0] == "book/intro"
    assert "book/executed/00_datasets" in files


def test_data_synth_uses_profile_seed(monkeypatch, capsys, tmp_path):
    import emotiw_utils.synth.generate as gen

    calls = {}

    def fake_generate(profile, seed=0, workers=None, force=False, **kw):
        calls.update(profile=profile, seed=seed, workers=workers, force=force)
        return tmp_path

    monkeypatch.setattr(gen, "generate_dataset", fake_generate)
    assert cli.main(["data", "synth", "--profile", "smoke", "--workers", "2"]) == 0
    assert calls == {"profile": "smoke", "seed": 0, "workers": 2, "force": False}
    assert capsys.readouterr().out.strip() == str(tmp_path)
    assert cli.main(["data", "synth", "--profile", "demo", "--seed", "5", "--force"]) == 0
    assert calls == {"profile": "demo", "seed": 5, "workers": None, "force": True}


def test_real_fer2013_alone_replaces_the_synthetic_one(monkeypatch, tmp_path):
    calls = {}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda profile, **kw: calls.update(kw) or [])
    assert cli.main(["run", "--profile", "demo", "--fer2013", str(tmp_path / "f.csv.gz"), "--quiet"]) == 0
    assert calls["data"] is None and calls["replace"] == {"fer2013": tmp_path / "f.csv.gz"}


def test_realfer_profile_takes_the_real_fer2013_and_the_demo_synthetic_rest(monkeypatch, tmp_path):
    calls = {}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda profile, **kw: calls.update(kw, profile=profile) or [])
    assert cli.main(["run", "--profile", "realfer", "--fer2013", str(tmp_path / "f.csv"), "--quiet"]) == 0
    assert calls["profile"] == "realfer" and calls["data"] is None
    assert calls["replace"] == {"fer2013": tmp_path / "f.csv"}
    with pytest.raises(ValueError, match="--fer2013 PATH"):
        pipeline.resolve_data("realfer", 0)  # called without the real FER2013: refused, never synthetic
