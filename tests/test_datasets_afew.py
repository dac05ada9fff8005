"""AFEW tree scanning, keypoint sidecars, clip loading and decode reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotiw_utils.constants import EMOTIONS, KEYPOINTS_SUFFIX, TEST_LABELS_FILENAME, UNKNOWN_LABEL
from emotiw_utils.datasets.afew import (
    KEYPOINT_COLUMNS,
    ClipRecord,
    DecodeReport,
    afew_clip_path,
    afew_summary,
    decode_report,
    iter_clips,
    probe_split,
    keypoints_path_for,
    load_clip,
    read_keypoints,
    read_test_labels,
    scan_afew,
    write_keypoints,
    write_test_labels,
)
from emotiw_utils.datasets.video import write_clip
from emotiw_utils.errors import DataFormatError

FRAMES = 6
SR = 16000


def _frames(seed: int, t: int = FRAMES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(1, 1, 1, 3))
    return np.broadcast_to(base, (t, 32, 32, 3)).astype(np.uint8).copy()


def _audio(t: int = FRAMES) -> np.ndarray:
    return (0.1 * np.sin(np.arange(t * SR // 25) / 10)).astype(np.float32)


def _kps(t: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = rng.uniform(0, 32, size=(t, 5, 2)).astype(np.float32)
    k[1] = np.nan  # a frame without a face
    return k


def _clip(root: Path, split: str, clip_id: str, label: int, *, audio=True, seed=0) -> Path:
    path = afew_clip_path(root, split, clip_id, label)
    write_clip(path, _frames(seed), audio=_audio() if audio else None, sr=SR)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """Train (3 clips, one lower-case emotion folder), Val (2), flat Test (3, two labelled by csv)."""
    root = tmp_path / "afew"
    p = _clip(root, "Train", "a1", EMOTIONS.index("Angry"))
    write_keypoints(keypoints_path_for(p), _kps(FRAMES))
    p = _clip(root, "Train", "h1", EMOTIONS.index("Happy"), audio=False)
    write_keypoints(keypoints_path_for(p), _kps(FRAMES - 2))  # count mismatch
    # lower-case folder name
    (root / "Train" / "sad").mkdir(parents=True)
    write_clip(root / "Train" / "sad" / "s1.avi", _frames(3), audio=_audio(), sr=SR)
    _clip(root, "Val", "v2", EMOTIONS.index("Neutral"))
    bad = afew_clip_path(root, "Val", "v1", EMOTIONS.index("Fear"))
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a video" * 20)
    for cid in ("t3", "t1", "t2"):
        _clip(root, "Test", cid, UNKNOWN_LABEL)
    write_test_labels(root, {"t1": EMOTIONS.index("Surprise"), "t2": EMOTIONS.index("Disgust")})
    return root


def test_scan_order_labels_and_sidecars(tree):
    recs = scan_afew(tree)
    assert [(r.split, r.clip_id, r.label) for r in recs] == [
        ("Train", "a1", 0),
        ("Train", "h1", 3),
        ("Train", "s1", 4),
        ("Val", "v1", 2),
        ("Val", "v2", 6),
        ("Test", "t3", UNKNOWN_LABEL),
        ("Test", "t2", 1),
        ("Test", "t1", 5),
    ]
    by_id = {r.clip_id: r for r in recs}
    assert by_id["a1"].keypoints_path == tree / "Train" / "Angry" / f"a1{KEYPOINTS_SUFFIX}"
    assert by_id["s1"].keypoints_path is None and by_id["s1"].path == tree / "Train" / "sad" / "s1.avi"
    assert by_id["t1"].emotion == "Surprise" and by_id["t3"].emotion is None
    assert [r.split for r in scan_afew(tree, splits=("Val",))] == ["Val", "Val"]


def test_summary(tree):
    table = afew_summary(scan_afew(tree))
    assert list(table.index) == ["Train", "Val", "Test"]
    assert list(table.columns) == [*EMOTIONS, "unknown", "total"]
    assert table["total"].tolist() == [3, 2, 3]
    assert table.loc["Train", "Angry"] == 1 and table.loc["Test", "unknown"] == 1
    assert table.loc["Test", "Surprise"] == 1 and table.values.sum() == 2 * 8


def test_load_clip(tree):
    rec = next(r for r in scan_afew(tree) if r.clip_id == "a1")
    clip = load_clip(rec)
    assert clip.frames.shape == (FRAMES, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == 25.0 and clip.n_frames == FRAMES
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (FRAMES * SR // 25,)
    np.testing.assert_array_equal(clip.keypoints, _kps(FRAMES))
    assert clip.keypoints_match is True
    gray = load_clip(rec, gray=True, audio=False)
    assert gray.frames.shape == (FRAMES, 32, 32) and gray.audio is None


def test_decode_report_counts_every_problem(tree):
    recs = scan_afew(tree)
    report = decode_report(recs, progress=False)
    table = report.table()
    assert table.loc["Train"].to_dict() == {
        "total": 3, "ok": 2, "readable": 3, "unreadable": 0, "truncated": 0, "audio_short": 0,
        "no_audio": 1, "keypoints_missing": 1, "keypoints_mismatch": 1,
    }  # fmt: skip
    assert table.loc["Val", "unreadable"] == 1 and table.loc["Val", "ok"] == 1
    assert table.loc["Test", "ok"] == 3
    (bad,) = report.unreadable()
    assert bad.clip_id == "v1" and bad.split == "Val" and "v1.avi" in bad.message
    kinds = sorted((p.clip_id, p.kind) for p in report.problems)
    assert kinds == [("h1", "keypoints_mismatch"), ("h1", "no_audio"), ("v1", "unreadable")]
    d = report.to_dict()
    assert d["counts"]["Val"]["unreadable"] == 1
    assert {p["kind"] for p in d["problems"]} == {"no_audio", "keypoints_mismatch", "unreadable"}
    assert "unreadable" in str(report)


def test_probe_split_matches_decode(tree):
    recs = scan_afew(tree)
    probe = probe_split(recs, progress=False)
    decoded = decode_report(recs, progress=False)
    assert probe.counts() == decoded.counts()
    assert sorted((p.clip_id, p.kind) for p in probe.problems) == sorted(
        (p.clip_id, p.kind) for p in decoded.problems
    )
    assert len(probe.infos) == len(recs) - 1
    assert all(info.n_frames == FRAMES and info.fps == 25.0 for _, info in probe.infos)
    assert probe.table().loc["Train", "no_audio"] == 1


def test_iter_clips_skips_but_reports(tree):
    recs = scan_afew(tree, splits=("Val",))
    report = DecodeReport()
    got = [c.record.clip_id for c in iter_clips(recs, report=report, progress=False)]
    assert got == ["v2"] and report.counts()["Val"]["unreadable"] == 1
    with pytest.warns(UserWarning, match="skipping unreadable clip: .*v1.avi"):
        assert len(list(iter_clips(recs, progress=False))) == 1


def test_keypoints_round_trip(tmp_path):
    kps = _kps(9, seed=5)
    kps[4, 2] = np.nan  # a partially missing row
    kps[0, 0] = (1e-3, 719.0)
    path = write_keypoints(tmp_path / f"c{KEYPOINTS_SUFFIX}", kps)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(KEYPOINT_COLUMNS)
    assert lines[0] == (
        "frame,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y,"
        "mouth_left_x,mouth_left_y,mouth_right_x,mouth_right_y"
    )
    assert lines[2] == "1" + "," * 10  # empty fields for the frame without a face
    back = read_keypoints(path)
    assert back.dtype == np.float32 and back.shape == (9, 5, 2)
    np.testing.assert_array_equal(back, kps)  # NaN positions equal too


def test_test_labels_round_trip(tmp_path):
    path = write_test_labels(tmp_path / TEST_LABELS_FILENAME, {"b": 6, "a": 0})
    assert path.read_text() == "clip,emotion\na,Angry\nb,Neutral\n"
    assert read_test_labels(path) == {"a": 0, "b": 6}


# --------------------------------------------------------------------------------------------- errors


def test_error_missing_root(tmp_path):
    with pytest.raises(DataFormatError, match="AFEW root folder not found"):
        scan_afew(tmp_path / "nope")


def test_error_missing_split(tree):
    import shutil

    shutil.rmtree(tree / "Val")
    with pytest.raises(DataFormatError, match=r"missing split folder 'Val' \(found: Test, Train\)"):
        scan_afew(tree)


def test_error_unknown_emotion_folder(tree):
    (tree / "Train" / "Happpy").mkdir()
    with pytest.raises(
        DataFormatError,
        match=r"unknown emotion folder 'Happpy' \(expected Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral\)",
    ) as e:
        scan_afew(tree)
    assert e.value.path == tree / "Train" / "Happpy"


def test_error_no_clips(tmp_path):
    for split in ("Train", "Val", "Test"):
        (tmp_path / split / "Angry").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="no clips found") as e:
        scan_afew(tmp_path)
    assert e.value.path == tmp_path / "Train"


def test_error_duplicate_clip_id(tree):
    _clip(tree, "Train", "a1", EMOTIONS.index("Fear"))
    with pytest.raises(DataFormatError, match="duplicate clip id 'a1' in split Train"):
        scan_afew(tree)


def test_error_flat_clip_outside_test(tree):
    write_clip(tree / "Train" / "loose.avi", _frames(0))
    with pytest.raises(DataFormatError, match="clip outside an emotion folder"):
        scan_afew(tree)


def test_error_test_mixed_layout(tree):
    _clip(tree, "Test", "t9", 0)
    with pytest.raises(DataFormatError, match="mixes clips"):
        scan_afew(tree)


def test_error_test_labels_unknown_clip_or_emotion(tree):
    labels = tree / TEST_LABELS_FILENAME
    labels.write_text("clip,emotion\nt1,Happy\nzz9,Sad\n")
    with pytest.raises(DataFormatError, match="unknown clip 'zz9'") as e:
        scan_afew(tree)
    assert e.value.path == labels
    labels.write_text("clip,emotion\nt1.avi,Happy\nt2,Joy\n")
    with pytest.raises(DataFormatError, match=r"row 2: unknown emotion 'Joy' \(expected Angry,"):
        scan_afew(tree)
    labels.write_text("clip,label\nt1,Happy\n")
    with pytest.raises(DataFormatError, match=r"missing column 'emotion' \(found: clip, label\)"):
        scan_afew(tree)


def test_error_keypoints(tmp_path):
    path = tmp_path / f"x{KEYPOINTS_SUFFIX}"
    path.write_text("frame,x,y\n0,1,2\n")
    with pytest.raises(DataFormatError, match="wrong columns: expected frame,left_eye_x,.* \\(found: frame,x,y\\)"):
        read_keypoints(path)
    header = ",".join(KEYPOINT_COLUMNS)
    path.write_text(f"{header}\n0" + ",1" * 10 + "\n2" + ",1" * 10 + "\n")
    with pytest.raises(DataFormatError, match="row 2: frame '2', expected 1"):
        read_keypoints(path)
    path.write_text(f"{header}\n0" + ",1" * 9 + ",abc\n")
    with pytest.raises(DataFormatError, match="row 1: mouth_right_y value 'abc' is not a number"):
        read_keypoints(path)
    path.write_text(f"{header}\n0" + ",1" * 9 + "\n")
    with pytest.raises(DataFormatError, match="row 1: expected 11 fields, found 10"):
        read_keypoints(path)
    path.write_text("")
    with pytest.raises(DataFormatError, match="file is empty"):
        read_keypoints(path)
    with pytest.raises(DataFormatError, match="file not found"):
        read_keypoints(tmp_path / "missing.csv")


def test_bad_sidecar_is_reported_not_fatal(tree):
    (tree / "Val" / "Neutral" / f"v2{KEYPOINTS_SUFFIX}").write_text("nonsense\n")
    report = decode_report(scan_afew(tree, splits=("Val",)), progress=False)
    assert report.counts()["Val"]["unreadable"] == 2
    assert any("wrong columns" in p.message for p in report.unreadable("Val"))


def test_writers_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(T, 5, 2\)"):
        write_keypoints(tmp_path / "k.csv", np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match="label"):
        write_test_labels(tmp_path / "t.csv", {"a": 7})
    with pytest.raises(ValueError, match="label"):
        afew_clip_path(tmp_path, "Train", "x", 9)
    assert not list(tmp_path.iterdir())


def test_record_is_plain_data(tmp_path):
    r = ClipRecord("c", "Train", 2, tmp_path / "c.avi", None)
    assert r.emotion == "Fear" and r == ClipRecord("c", "Train", 2, tmp_path / "c.avi", None)


def test_static_keypoint_sidecar(tmp_path):
    """A static dataset's sidecar sits next to it (also for .csv.gz) and must have one row per image."""
    from emotiw_utils.datasets.keypoints import read_static_keypoints

    data = tmp_path / "fer2013.csv.gz"
    assert keypoints_path_for(data) == tmp_path / "fer2013.keypoints.csv"
    assert read_static_keypoints(data, 3) is None  # no sidecar: the detector must find them
    kps = _kps(3)
    write_keypoints(keypoints_path_for(data), kps)
    np.testing.assert_array_equal(read_static_keypoints(data, 3), kps)
    with pytest.raises(DataFormatError, match="3 keypoint rows for 4 images"):
        read_static_keypoints(data, 4)
