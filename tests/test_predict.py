"""emotiw_utils.predict on small inputs: finding videos, streaming frames, the outputs of a prediction, the clip
policy's statuses, and the errors (the whole chain on a finished run: tests/test_predict_smoke.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emotiw_utils import predict, stages
from emotiw_utils.constants import AUDIO_SR, EMOTIONS
from emotiw_utils.datasets.video import read_frames, write_clip
from emotiw_utils.errors import DataFormatError


def _frames(n: int, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _probs(rng: np.random.Generator) -> np.ndarray:
    p = rng.random(len(EMOTIONS)) + 0.05
    return p / p.sum()


def _segment(start: int, n: int, seed: int, no_face: bool = False, audio: str = "ok") -> predict.Segment:
    rng = np.random.default_rng(seed)
    names = [*stages.modality_stages(), predict.FUSED]
    fp = rng.random((n, len(EMOTIONS)))
    return predict.Segment(start_frame=start, n_frames=n, probs={m: _probs(rng) for m in names},
                           frame_probs=fp / fp.sum(1, keepdims=True), has_face=np.arange(n) % 4 != 0,
                           no_face=no_face, audio_status=audio,
                           strip=rng.integers(0, 256, (3, 48, 48), dtype=np.uint8),
                           strip_frames=start + np.array([0, n // 2, n - 1]))


def _prediction(tmp_path: Path, segments, window=None) -> predict.VideoPrediction:
    status, notes = predict._status(segments)
    t = np.linspace(0, sum(s.n_frames for s in segments) / 25, 50)
    return predict.VideoPrediction(path=tmp_path / "clip.avi", status=status, fps=25.0,
                                   n_frames=sum(s.n_frames for s in segments), window_s=window, segments=segments,
                                   notes=notes, wave_t=t, wave=np.abs(np.sin(t)), fusion_regime="stable")


def test_find_videos_takes_files_as_given_and_video_files_of_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.AVI", "a/b/y.mp4", "a/notes.txt", "a/x.keypoints.csv"):
        (tmp_path / name).write_bytes(b"")
    given = tmp_path / "whatever.dat"
    assert predict.find_videos([tmp_path / "a", given]) == [tmp_path / "a/b/y.mp4", tmp_path / "a/x.AVI", given]
    assert predict.output_names([Path("d1/x.avi"), Path("d2/x.mp4"), Path("y.avi"), Path("d3/x.flv")]) == \
        ["x", "x_2", "y", "x_3"]


def test_frames_are_streamed_in_chunks_equal_to_the_whole_decode(tmp_path):
    path = write_clip(tmp_path / "c.avi", _frames(7))
    whole = read_frames(path)
    chunks = list(predict.iter_frame_chunks(path, 3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert np.array_equal(np.concatenate(chunks), whole)
    (one,) = predict.iter_frame_chunks(path, None)
    assert np.array_equal(one, whole)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00 not a video" * 50)
    with pytest.raises(DataFormatError, match="broken.mp4"):
        list(predict.iter_frame_chunks(broken, 3))
    with pytest.raises(DataFormatError, match="file not found"):
        list(predict.iter_frame_chunks(tmp_path / "missing.avi", 3))


def test_audio_track_and_envelope(tmp_path):
    sig = 0.5 * np.sin(np.linspace(0, 200, AUDIO_SR // 2)).astype(np.float32)
    with_audio = write_clip(tmp_path / "a.avi", _frames(12), audio=sig)
    without = write_clip(tmp_path / "n.avi", _frames(12))
    x, status = predict._audio_track(with_audio)
    assert status == "ok" and len(x) == len(sig)
    assert predict._audio_track(without) == (None, "no_audio")
    assert predict._audio_track(with_audio, video_s=0.5)[1] == "ok"
    assert predict._audio_track(with_audio, video_s=2.0)[1] == "audio_short"  # 0.5 s of audio for 2 s
    t, env = predict._envelope(x, points=100)
    assert len(t) == len(env) == 100 and np.all(np.diff(t) > 0) and env.max() == pytest.approx(0.5, abs=0.01)
    assert [len(a) for a in predict._envelope(None)] == [0, 0]


def test_video_probabilities_are_the_frame_weighted_mean_of_the_windows(tmp_path):
    a, b = _segment(0, 30, 1), _segment(30, 10, 2)
    pred = _prediction(tmp_path, [a, b], window=1.2)
    for m, p in pred.probs.items():
        assert np.allclose(p, (30 * a.probs[m] + 10 * b.probs[m]) / 40) and p.sum() == pytest.approx(1)
    assert pred.label == EMOTIONS[int(np.argmax(pred.probs[predict.FUSED]))]
    rows = pd.DataFrame(pred.rows())
    n = len(stages.modality_stages()) + 1
    assert len(rows) == 3 * n and list(rows["window"].unique()) == ["video", "0", "1"]
    assert rows.loc[rows.window == "1", "start_s"].iloc[0] == pytest.approx(1.2)
    assert np.allclose(rows[[f"p_{e}" for e in EMOTIONS]].sum(axis=1), 1, atol=1e-5)
    d = json.loads(json.dumps(pred.to_dict()))
    assert d["emotion"] == pred.label and len(d["windows"]) == 2 and set(d["probs"]) == set(pred.probs)
    # a single clip (no window) has only its video rows
    assert len(_prediction(tmp_path, [a]).rows()) == n


def test_clip_policy_statuses_and_notes(tmp_path):
    assert predict._status([_segment(0, 8, 0)])[0] == "ok"
    status, notes = predict._status([_segment(0, 8, 0, no_face=True, audio="no_audio")])
    assert status == "no_audio+no_face"
    assert any("class prior" in n for n in notes) and any("fallback face box" in n for n in notes)
    status, notes = predict._status([_segment(0, 8, 0, audio="silent"), _segment(8, 8, 1)])
    assert status == "no_audio" and "silent in 1 of 2 windows" in notes[0]
    assert predict._status([_segment(0, 8, 0, audio="audio_short")])[0] == "audio_short"
    status, notes = predict._status([_segment(0, 8, 0, audio="audio_long"), _segment(8, 8, 1)])
    assert status == "audio_long" and "central window" in notes[0] and "1 of 2 windows" in notes[0]
    short = _segment(0, 4, 2)
    short.too_short = True
    status, notes = predict._status([short])
    assert status == "too_short" and "uniform histogram" in notes[0]


def test_outputs_of_a_prediction_and_of_an_unreadable_file(tmp_path):
    pred = _prediction(tmp_path, [_segment(0, 25, 3), _segment(25, 20, 4, audio="silent")], window=1.0)
    out = predict.write_outputs(pred, tmp_path / "out", "clip")
    assert set(out) == {"csv", "json", "label", "png"} and all(p.is_file() for p in out.values())
    assert out["label"].read_text() == f"{pred.label}\n"
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out["csv"])
    assert set(table["modality"]) == {*stages.modality_stages(), predict.FUSED}
    assert json.loads(out["json"].read_text())["status"] == "no_audio"

    bad = predict.VideoPrediction(path=tmp_path / "b.mp4", status="unreadable", error="b.mp4: cannot open video")
    out = predict.write_outputs(bad, tmp_path / "out", "b")
    assert set(out) == {"csv", "json"}
    assert json.loads(out["json"].read_text())["error"] == "b.mp4: cannot open video"
    summary = predict.summary_table([pred, bad])
    assert list(summary.index) == ["clip.avi", "b.mp4"]
    assert summary.loc["b.mp4", "status"] == "unreadable" and summary.loc["clip.avi", "emotion"] == pred.label
    assert summary.loc["b.mp4", "error"].startswith("b.mp4")


def test_a_broken_file_is_reported_not_raised(tmp_path):
    models = predict.RunModels(run_dir=tmp_path, seed=0, aligner=None, cnn=None, irnn=None, irnn_layer="logits",
                               kavg_svm=None, kavg_k=15, audio=None, activity=None, fusion=None, search=None)
    models.search = type("Search", (), {"fusion_regime": "stable"})()
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + b"\x00" * 100)
    pred = predict.predict_video(broken, models)
    assert pred.status == "unreadable" and not pred.ok and "broken.avi" in pred.error and pred.probs == {}
    with pytest.raises(ValueError, match="window"):
        predict.predict_video(broken, models, window=0)


def test_missing_models_name_the_stage_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=stages.ALIGNMENT.name):
        predict.RunModels.load(tmp_path, device="cpu")
    assert predict.model_dir(tmp_path) == tmp_path
    with pytest.raises(ValueError, match="--submission 3 or --submission 6"):
        predict.model_dir(tmp_path, 7)
    with pytest.raises(ValueError, match="unknown submission 9"):
        predict.model_dir(tmp_path, 9)
    with pytest.raises(FileNotFoundError, match=stages.SUBMISSIONS.name):
        predict.model_dir(tmp_path, 2)
