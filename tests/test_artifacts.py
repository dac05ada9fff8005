"""Artifacts contract: atomic writes, JSON with numpy, clip probabilities, fusion features, manifest."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from emotiw_utils import artifacts, stages


def _probs(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).random((n, 7)) + 0.01
    return x / x.sum(axis=1, keepdims=True)


def test_atomic_writes_leave_no_temp_files(tmp_path):
    artifacts.atomic_write_bytes(tmp_path / "a.bin", b"abc")
    artifacts.atomic_write_text(tmp_path / "sub" / "b.txt", "héllo")
    artifacts.atomic_write_json(tmp_path / "c.json", {"x": 1})
    artifacts.save_npz_atomic(tmp_path / "d.npz", x=np.arange(3))
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert np.load(tmp_path / "d.npz")["x"].tolist() == [0, 1, 2]
    names = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert names == ["a.bin", "b.txt", "c.json", "d.npz"]


def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.json"
    artifacts.atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        artifacts.atomic_write_json(target, {"v": object()})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_write_file_permissions_follow_umask(tmp_path):
    p = artifacts.atomic_write_text(tmp_path / "x.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_json_handles_numpy(tmp_path):
    obj = {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "a": np.arange(3),
           "m": np.eye(2, dtype=np.float32), "t": (1, 2), "nan": float("nan"), "p": tmp_path, 7: "seven"}
    artifacts.atomic_write_json(tmp_path / "x.json", obj)
    back = artifacts.read_json(tmp_path / "x.json")
    assert back == {"i": 3, "f": 0.5, "b": True, "a": [0, 1, 2], "m": [[1.0, 0.0], [0.0, 1.0]], "t": [1, 2],
                    "nan": None, "p": str(tmp_path), "7": "seven"}


def test_metrics_roundtrip_and_missing(tmp_path):
    sd = artifacts.stage_dir(tmp_path / "run", "03_irnn")
    assert sd == tmp_path / "run" / "03_irnn" and sd.is_dir()
    artifacts.write_metrics(sd, {"val_acc": np.float64(0.4), "n": np.int32(5)})
    assert artifacts.read_metrics(sd) == {"val_acc": 0.4, "n": 5}
    with pytest.raises(FileNotFoundError, match="metrics"):
        artifacts.read_metrics(tmp_path / "nope")


def test_manifest_roundtrip(tmp_path):
    m = artifacts.write_manifest(tmp_path, stage="00_x", parameters={"seed": 3, "a": np.float32(1.5)},
                                 input_hash="h", status="ok", wall_time_s=1.23456, device="cpu: test",
                                 started="s", finished="f", run_id="r")
    back = artifacts.read_manifest(tmp_path)
    assert back == m
    assert back["seed"] == 3 and back["parameters"]["a"] == 1.5 and back["run_id"] == "r"
    assert back["versions"]["python"] and "numpy" in back["versions"] and "torch" in back["versions"]
    assert "git_commit" in back and back["wall_time_s"] == 1.235
    assert artifacts.read_manifest(tmp_path / "none") is None
    with pytest.raises(ValueError, match="status"):
        artifacts.write_manifest(tmp_path, stage="x", parameters={}, input_hash="h", status="weird",
                                 wall_time_s=0, device="cpu", started="s", finished="f")


def test_git_commit_outside_repo_is_none(tmp_path):
    assert artifacts.git_commit(tmp_path) is None


def test_clip_probs_roundtrip(tmp_path):
    p = tmp_path / stages.IRNN.file("clip_probs", split="Val")
    ids = [f"clip{i:03d}" for i in range(5)]
    probs = _probs(5)
    labels = [0, 6, -1, 3, 2]
    artifacts.save_clip_probs(p, ids, probs, labels)
    ids2, probs2, labels2 = artifacts.load_clip_probs(p)
    assert ids2.tolist() == ids and labels2.dtype == np.int64 and labels2.tolist() == labels
    np.testing.assert_allclose(probs2, probs)
    # empty split is allowed
    artifacts.save_clip_probs(tmp_path / "e.npz", np.array([], dtype=str), np.zeros((0, 7)), np.array([], dtype=int))
    assert artifacts.load_clip_probs(tmp_path / "e.npz")[1].shape == (0, 7)


@pytest.mark.parametrize("case, rule", [
    ("shape", "shape"),
    ("nan", "finite"),
    ("sum", "sum to 1"),
    ("negative", "non-negative"),
    ("label_range", "labels must be in -1..6"),
    ("label_float", "integers"),
    ("dup_ids", "unique"),
    ("int_ids", "strings"),
    ("lengths", "equal lengths"),
])
def test_clip_probs_rejects(tmp_path, case, rule):
    p = tmp_path / "clip_probs_Train.npz"
    ids, probs, labels = [f"c{i}" for i in range(4)], _probs(4), np.array([0, 1, 2, 3])
    if case == "shape":
        probs = probs[:, :6]
    elif case == "nan":
        probs[1, 2] = np.nan
    elif case == "sum":
        probs[0] *= 1.01
    elif case == "negative":
        probs[0, :2] = [-0.1, probs[0, 0] + probs[0, 1] + 0.1]
    elif case == "label_range":
        labels = np.array([0, 1, 7, 3])
    elif case == "label_float":
        labels = np.array([0.0, 1.5, 2.0, 3.0])
    elif case == "dup_ids":
        ids = ["a", "b", "a", "c"]
    elif case == "int_ids":
        ids = np.arange(4)
    elif case == "lengths":
        labels = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=rule) as ei:
        artifacts.save_clip_probs(p, ids, probs, labels)
    assert str(p) in str(ei.value)
    assert not p.exists()


def test_clip_probs_tolerance_and_load_errors(tmp_path):
    probs = _probs(3)
    probs[0, 0] += 5e-5  # within 1e-4
    artifacts.save_clip_probs(tmp_path / "ok.npz", ["a", "b", "c"], probs, [0, 1, -1])
    # a file written by hand that violates the contract is rejected on load, naming the file
    bad = tmp_path / "bad.npz"
    np.savez(bad, clip_ids=np.array(["a", "b"]), probs=np.full((2, 7), 0.5), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"bad\.npz.*sum to 1"):
        artifacts.load_clip_probs(bad)
    np.savez(tmp_path / "missing.npz", clip_ids=np.array(["a"]), probs=np.full((1, 7), 1 / 7))
    with pytest.raises(ValueError, match="missing arrays.*labels"):
        artifacts.load_clip_probs(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="nothere"):
        artifacts.load_clip_probs(tmp_path / "nothere.npz")


def test_fusion_features(tmp_path):
    p = tmp_path / stages.IRNN.file("fusion_features", split="Val")
    ids = ["a", "b", "c"]
    artifacts.save_fusion_features(p, ids, rnn=np.ones((3, 200), np.float32), kavg=np.zeros((3, 105)),
                                   audio=np.arange(30.0).reshape(3, 10))
    ids2, feats = artifacts.load_fusion_features(p)
    assert ids2.tolist() == ids
    assert {k: v.shape for k, v in feats.items()} == {"rnn": (3, 200), "kavg": (3, 105), "audio": (3, 10)}
    with pytest.raises(ValueError, match="rows"):
        artifacts.save_fusion_features(p, ids, rnn=np.ones((2, 200)))
    with pytest.raises(ValueError, match="finite"):
        artifacts.save_fusion_features(p, ids, rnn=np.full((3, 2), np.inf))
    with pytest.raises(ValueError, match="at least one"):
        artifacts.save_fusion_features(p, ids)
