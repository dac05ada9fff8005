"""The papermill runner, on throwaway notebooks (no dataset generation, no real stage notebooks).

One module-scoped fixture executes a short sequence of runs (six notebook executions in all) and
records what each produced; the tests below check the records.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import HEADER, PARAMS_CELL

from emotiw_utils import artifacts, paths, pipeline, stages
from emotiw_utils.datasets.origins import dataset_origins, describe_origins

NB_A = HEADER + "# Stage A\n\n" + PARAMS_CELL.format(extra="x = 0") + """
```{code-cell} ipython3
import json, os, sys
from pathlib import Path
from emotiw_utils import artifacts

out = artifacts.stage_dir(run_dir, stage)
artifacts.atomic_write_json(out / "seen.json", dict(
    profile=profile, seed=seed, device=device, stage=stage, run_dir=run_dir, afew_dir=afew_dir,
    fer2013_path=fer2013_path, tfd_path=tfd_path, synthetic=synthetic, x=x,
    prefix=sys.prefix, executable=sys.executable, cwd=os.getcwd()))
print("stage A done")
```
"""

NB_B = HEADER + "# Stage B\n\n" + PARAMS_CELL.format(extra="y = 0") + """
```{code-cell} ipython3
from pathlib import Path
from emotiw_utils import artifacts

upstream = artifacts.read_json(Path(run_dir) / "00_a" / "seen.json")
artifacts.atomic_write_json(artifacts.stage_dir(run_dir, stage) / "seen.json", {"y": y, "x_from_a": upstream["x"]})
```
"""

NB_FAIL = HEADER + "# Failing stage\n\n" + PARAMS_CELL.format(extra="") + """
```{code-cell} ipython3
ok = 1
```

```{code-cell} ipython3
zero = 0
ratio = ok / zero  # the failing line
```

```{code-cell} ipython3
never = "reached"
```
"""

PARAMS_YAML = """
common:
  seed: 0
  device: cpu
stages:
  00_a:
    x: 1
  01_b:
    y: 2
"""


def _statuses(results):
    return [(r.name, r.status) for r in results]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    nbdir = tmp / "notebooks"
    nbdir.mkdir()
    for name, text in (("a.md", NB_A), ("b.md", NB_B), ("fail.md", NB_FAIL)):
        (nbdir / name).write_text(text)
    pdir = tmp / "params"
    pdir.mkdir()
    (pdir / "base.yaml").write_text(PARAMS_YAML)
    (pdir / "smoke.yaml").write_text("# nothing differs from base.yaml\n")
    afew = tmp / "data" / "afew"
    afew.mkdir(parents=True)
    fer = tmp / "data" / "fer2013.csv"
    fer.write_text("emotion,pixels,Usage\n")
    # A user-level "python3" kernelspec pointing at another interpreter must not be used.
    kdir = tmp / "jupyter" / "kernels" / "python3"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "wrong python", "language": "python"}))

    mp = pytest.MonkeyPatch()
    mp.setattr(stages, "STAGES", [
        stages.Stage("00_a", str(nbdir / "a.md"), "A"),
        stages.Stage("01_b", str(nbdir / "b.md"), "B", reads=("00_a",)),
        stages.Stage("02_fail", str(nbdir / "fail.md"), "Fails"),
        stages.Stage("03_missing", str(nbdir / "missing.md"), "Not written yet"),
    ])
    mp.setattr(paths, "PARAMS_DIR", pdir)
    mp.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    venv_bin = str(Path(sys.executable).parent)
    mp.setenv("PATH", os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin))

    from jupyter_client.kernelspec import KernelSpecManager

    default_argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]

    run_dir = tmp / "run"
    executed = tmp / "executed"
    data = pipeline.DataPaths(afew=afew, fer2013=fer, tfd=None, synthetic=True)

    def run(**kw):
        kw.setdefault("stages", ["00", "01_b"])
        return pipeline.run_pipeline("smoke", run_dir=run_dir, data=data, executed_dir=executed, progress=False, **kw)

    def seen(stage):
        return json.loads((run_dir / stage / "seen.json").read_text())

    def manifest(stage):
        return artifacts.read_manifest(run_dir / stage)

    rec = {"tmp": tmp, "run_dir": run_dir, "executed": executed, "default_argv0": default_argv0, "afew": afew,
           "fer": fer}
    try:
        rec["r1"] = run()
        rec["seen_a1"], rec["seen_b1"] = seen("00_a"), seen("01_b")
        rec["man_a1"], rec["man_b1"] = manifest("00_a"), manifest("01_b")
        rec["executed_nb_a"] = nbformat.read(executed / "00_a.ipynb", as_version=4)
        (executed / "00_a.ipynb").unlink()  # e.g. another profile's run overwrote the book's copy
        rec["r2"] = run()
        rec["restored"] = (executed / "00_a.ipynb").is_file()
        rec["r3"] = run(overrides=["01_b.y=5"])
        rec["seen_b3"] = seen("01_b")
        rec["r4"] = run(stages=["00_a"], recompute=True, overrides=["01_b.y=5"])
        rec["man_a4"] = manifest("00_a")
        rec["r5"] = run(stages=["01"], overrides=["01_b.y=5"])
        rec["r5b"] = run(overrides={"01_b.y": 5})
        with pytest.raises(pipeline.StageFailed) as ei:
            run(stages=["02"])
        rec["failure"] = ei.value
        rec["man_fail"] = manifest("02_fail")
    finally:
        mp.undo()  # the records are taken; later tests see the real STAGES and environment
    return rec


def test_first_run_executes_and_injects_parameters(pipe):
    assert _statuses(pipe["r1"]) == [("00_a", "ran"), ("01_b", "ran")]
    s = pipe["seen_a1"]
    assert s["x"] == 1 and s["profile"] == "smoke" and s["seed"] == 0 and s["device"] == "cpu"
    assert s["stage"] == "00_a" and s["run_dir"] == str(pipe["run_dir"].resolve())
    assert s["afew_dir"] == str(pipe["afew"].resolve()) and s["fer2013_path"] == str(pipe["fer"].resolve())
    assert s["tfd_path"] is None and s["synthetic"] is True
    assert s["cwd"] == str(paths.REPO_ROOT)
    assert pipe["seen_b1"] == {"y": 2, "x_from_a": 1}
    for r in pipe["r1"]:
        assert r.executed_path == pipe["executed"].resolve() / f"{r.name}.ipynb" and r.wall_s > 0


def test_kernel_runs_in_this_interpreter(pipe):
    # the environment of the runs had a "python3" kernelspec pointing elsewhere and no venv on PATH
    assert pipe["default_argv0"] == "/nonexistent/python"
    assert pipe["seen_a1"]["prefix"] == sys.prefix
    assert Path(pipe["seen_a1"]["executable"]).resolve() == Path(sys.executable).resolve()


def test_manifest_contents(pipe):
    m = pipe["man_a1"]
    assert m["status"] == "ok" and m["stage"] == "00_a" and m["seed"] == 0
    assert m["parameters"]["x"] == 1 and m["parameters"]["stage"] == "00_a"
    assert len(m["input_hash"]) == 64 and m["run_id"] and m["wall_time_s"] > 0
    assert m["device"].startswith("cpu") and m["started"] <= m["finished"]
    assert {"python", "torch", "numpy", "sklearn"} <= set(m["versions"])
    assert "git_commit" in m
    assert pipe["man_b1"]["upstream"] == [{"stage": "00_a", "input_hash": m["input_hash"], "run_id": m["run_id"],
                                           "status": "ok"}]
    assert (pipe["run_dir"] / "00_a" / stages.EXECUTED_COPY).is_file()


def test_executed_notebook_has_folded_injected_parameters(pipe):
    nb = pipe["executed_nb_a"]
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "hide-input" in injected[0].metadata.tags
    assert "x = 1" in injected[0].source
    assert any("stage A done" in o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_second_run_is_cached_and_restores_executed_notebook(pipe):
    assert _statuses(pipe["r2"]) == [("00_a", "cached"), ("01_b", "cached")]
    assert pipe["restored"]


def test_changed_parameter_reruns_only_that_stage(pipe):
    assert _statuses(pipe["r3"]) == [("00_a", "cached"), ("01_b", "ran")]
    assert pipe["seen_b3"]["y"] == 5


def test_recompute_reruns_and_invalidates_downstream(pipe):
    assert _statuses(pipe["r4"]) == [("00_a", "ran")]
    assert pipe["man_a4"]["input_hash"] == pipe["man_a1"]["input_hash"]
    assert pipe["man_a4"]["run_id"] != pipe["man_a1"]["run_id"]
    assert _statuses(pipe["r5"]) == [("01_b", "ran")]
    assert _statuses(pipe["r5b"]) == [("00_a", "cached"), ("01_b", "cached")]


def test_failing_cell_raises_stage_failed(pipe):
    e = pipe["failure"]
    msg = str(e)
    assert e.stage == "02_fail"
    assert "stage 02_fail failed" in msg and "fail.md" in msg
    assert "ratio = ok / zero" in msg and "ZeroDivisionError" in msg
    assert "never" not in msg
    assert e.ename == "ZeroDivisionError" and "ratio = ok / zero" in e.cell_source
    assert [(r.name, r.status) for r in e.results] == [("02_fail", "failed")]
    assert pipe["man_fail"]["status"] == "failed" and "ZeroDivisionError" in pipe["man_fail"]["error"]
    assert "line" in msg  # the line of the failing cell in the .md source


def test_selection_errors(pipe, monkeypatch):
    monkeypatch.setattr(stages, "STAGES", [
        stages.Stage("00_a", str(pipe["tmp"] / "notebooks" / "a.md"), "A"),
        stages.Stage("03_missing", str(pipe["tmp"] / "notebooks" / "missing.md"), "M"),
    ])
    assert [s.name for s in pipeline.select_stages(None)] == ["00_a"]
    assert [s.name for s in pipeline.select_stages(["00"])] == ["00_a"]
    with pytest.raises(ValueError, match="unknown stage '7'.*00_a, 03_missing"):
        pipeline.select_stages(["7"])
    with pytest.raises(ValueError, match="03_missing.*does not exist yet.*available stages: 00_a"):
        pipeline.select_stages(["03"])


def test_real_profile_needs_data_and_data_must_exist(tmp_path):
    with pytest.raises(ValueError, match="--afew PATH and --fer2013 PATH"):
        pipeline.resolve_data("real", 0, None)
    with pytest.raises(FileNotFoundError, match="AFEW folder not found"):
        pipeline.resolve_data("real", 0, pipeline.DataPaths(tmp_path / "no", tmp_path / "f.csv"))
    (tmp_path / "afew").mkdir()
    with pytest.raises(FileNotFoundError, match="FER2013 not found"):
        pipeline.resolve_data("real", 0, pipeline.DataPaths(tmp_path / "afew", tmp_path / "f.csv"))
    (tmp_path / "f.csv").write_text("")
    d = pipeline.resolve_data("real", 0, pipeline.DataPaths(tmp_path / "afew", tmp_path / "f.csv"))
    assert d.as_parameters() == {"afew_dir": str(tmp_path / "afew"), "fer2013_path": str(tmp_path / "f.csv"),
                                 "tfd_path": None, "synthetic": False}
    with pytest.raises(FileNotFoundError, match="TFD file not found"):
        pipeline.resolve_data("real", 0, pipeline.DataPaths(tmp_path / "afew", tmp_path / "f.csv", tmp_path / "t"))


def test_input_hash_depends_on_everything():
    h = pipeline.compute_input_hash(b"src", {"a": 1}, [])
    assert h == pipeline.compute_input_hash(b"src", {"a": 1}, [])
    assert h != pipeline.compute_input_hash(b"src2", {"a": 1}, [])
    assert h != pipeline.compute_input_hash(b"src", {"a": 2}, [])
    assert h != pipeline.compute_input_hash(b"src", {"a": 1}, [{"stage": "00", "input_hash": "x", "run_id": "r"}])


def test_stage_list_and_summary():
    names = list(stages.STAGE_NAMES)
    assert names == ["00_datasets", "01_alignment", "02_cnn", "03_irnn", "04_kavg_svm", "05_audio",
                     "06_activity_sae", "07_fusion", "08_random_search", "09_submissions", "10_results",
                     "11_own_videos"]
    assert stages.resolve_stage_name("03") == "03_irnn"
    table = pipeline.format_summary([pipeline.StageResult("00_datasets", "ran", 3.21, None),
                                     pipeline.StageResult("01_alignment", "cached", 0.0, None),
                                     pipeline.StageResult("02_cnn", "ran", 125.0, None)])
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "status", "wall", "time"]
    assert lines[2].split() == ["00_datasets", "ran", "3.2", "s"] and "3.2 s" in table and "2:05 min" in table
    assert lines[-1].startswith("total") and "2:08 min" in lines[-1]


def test_resolve_device(monkeypatch):
    import torch

    from emotiw_utils import device

    assert device.resolve_device("cpu") == "cpu"
    assert device.resolve_device(" CPU ") == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        device.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA GPU is usable.*--device cpu"):
        device.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("auto") == "cuda"
    assert device.device_description("cpu").startswith("cpu: ")


def test_seed_everything_is_reproducible():
    import random

    import numpy as np
    import torch

    from emotiw_utils.device import seed_everything

    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(3)
    a = draw()
    seed_everything(3)
    assert draw() == a


def test_data_fingerprint_changes_with_the_data(tmp_path):
    afew = tmp_path / "afew"
    (afew / "Train" / "Happy").mkdir(parents=True)
    clip = afew / "Train" / "Happy" / "a.avi"
    clip.write_bytes(b"x")
    fer = tmp_path / "fer2013.csv"
    fer.write_text("emotion,pixels,Usage\n")
    real = pipeline.DataPaths(afew, fer)
    fp1 = real.fingerprint()
    assert fp1 == pipeline.DataPaths(afew, fer).fingerprint()
    clip.write_bytes(b"xy")
    fp2 = real.fingerprint()
    assert fp2 != fp1
    # A synthetic dataset is identified by its generation record.
    (tmp_path / paths.SYNTH_INFO).write_text('{"seed": 0}')
    synth = pipeline.DataPaths(afew, fer, synthetic=True)
    fp3 = synth.fingerprint()
    (tmp_path / paths.SYNTH_INFO).write_text('{"seed": 1}')
    assert synth.fingerprint() != fp3


def test_real_datasets_replace_synthetic_ones_and_origins_tell_them_apart(tmp_path):
    root = tmp_path / "synth"
    (root / "afew" / "Train").mkdir(parents=True)
    (root / "fer2013").mkdir()
    (root / "tfd").mkdir()
    (root / "fer2013" / "fer2013.csv").write_text("x")
    (root / "tfd" / "TFD_48x48.mat").write_text("x")
    (root / paths.SYNTH_INFO).write_text("{}")
    real_fer = tmp_path / "real" / "fer2013.csv.gz"
    real_fer.parent.mkdir()
    real_fer.write_text("x")
    base = pipeline.DataPaths.from_synthetic_root(root)
    mixed = pipeline.resolve_data("smoke", 0, base, replace={"fer2013": real_fer})
    assert mixed.fer2013 == real_fer.resolve() and mixed.afew == (root / "afew").resolve()
    assert mixed.tfd is None and not mixed.synthetic  # synthetic TFD never joins real FER2013
    origins = dataset_origins(mixed.afew, mixed.fer2013, mixed.tfd)
    assert origins == {"AFEW": "synthetic", "FER2013": "real"}
    assert describe_origins(origins) == "real FER2013, synthetic AFEW"
    both = dataset_origins(base.afew, base.fer2013, base.tfd)
    assert describe_origins(both) == "synthetic" and both["TFD"] == "synthetic"
    kept = pipeline.resolve_data("smoke", 0, base, replace={"afew": root / "afew"})
    assert kept.tfd == (root / "tfd" / "TFD_48x48.mat").resolve()
    with pytest.raises(ValueError, match="unknown dataset"):
        pipeline.resolve_data("smoke", 0, base, replace={"fer": real_fer})
