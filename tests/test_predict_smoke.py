"""`emotiw predict` on the smoke run (the session's `smoke` fixture, conftest.py): the run's own Test clips,
predicted again from their video files, give back every modality's Test clip_probs; the command on a folder
mixing a good clip, a clip without audio and a broken file; windows; a run missing a model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from emotiw_utils import aligned, artifacts, cli, predict, records, stages
from emotiw_utils.constants import EMOTIONS
from emotiw_utils.datasets.afew import scan_afew
from emotiw_utils.datasets.video import read_frames, write_clip

pytestmark = pytest.mark.slow


def _test_records(run):
    afew = artifacts.read_manifest(stages.ALIGNMENT.dir(run))["parameters"]["afew_dir"]
    return scan_afew(afew, ["Test"])


def test_predicting_the_runs_test_clips_gives_back_every_modality(smoke):
    run = smoke["run"]
    models = predict.RunModels.load(run, device="cpu")
    stored = {m: artifacts.load_clip_probs(st.path(run, "clip_probs", split="Test"))
              for m, st in stages.modality_stages().items()}
    # the fusion modality of decision fusion is the network of the search's regime
    stored["fusion"] = artifacts.load_clip_probs(
        stages.FUSION.path(run, "regime_probs", regime=models.fusion_regime, split="Test"))
    stored[predict.FUSED] = artifacts.load_clip_probs(stages.SEARCH.path(run, "clip_probs", split="Test"))
    recs = _test_records(run)
    assert [r.clip_id for r in recs] == list(stored[predict.FUSED][0])
    for i, rec in enumerate(recs):
        pred = predict.predict_video(rec.path, models, noise=aligned.clip_noise(models.seed, "Test", i))
        assert pred.ok and len(pred.segments) == 1, (rec.clip_id, pred.status, pred.error)
        assert set(pred.probs) == set(stored)
        for m, p in pred.probs.items():
            np.testing.assert_allclose(p, stored[m][1][i], rtol=0, atol=1e-6, err_msg=f"{rec.clip_id} {m}")
    # the book page did the same for its clips
    m = json.loads((stages.OWN_VIDEOS.dir(run) / stages.METRICS).read_text())
    assert set(m["max_abs_difference"]) == set(stored) and max(m["max_abs_difference"].values()) < 1e-6


def test_predict_command_on_good_no_audio_and_broken_videos(smoke, tmp_path, capsys):
    run = smoke["run"]
    rec = _test_records(run)[0]
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(rec.path, videos / "good.avi")
    shutil.copy(rec.keypoints_path, videos / "good.keypoints.csv")
    write_clip(videos / "silent.avi", read_frames(rec.path))  # no audio stream, no sidecar: MTCNN finds the faces
    (videos / "broken.mp4").write_bytes(b"this is not a video" * 20)
    out = tmp_path / "out"
    assert cli.main(["predict", str(videos), "--run-dir", str(run), "--out", str(out), "--device", "cpu",
                     "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "broken.mp4" in printed.out and "unreadable" in printed.out and "2 of 3 videos predicted" in printed.err
    status = {v: json.loads((out / f"{v}.json").read_text())["status"] for v in ("good", "silent", "broken")}
    assert status == {"good": "ok", "silent": "no_audio", "broken": "unreadable"}
    for v in ("good", "silent"):
        assert (out / f"{v}.txt").read_text().strip() in EMOTIONS
        assert (out / f"{v}.png").stat().st_size > 10_000
        rows = pd.read_csv(out / f"{v}.csv")
        assert set(rows["modality"]) == {*stages.modality_stages(), predict.FUSED}
    assert not (out / "broken.png").exists()
    # the silent clip's audio is the class prior the audio stage gives clips without audio
    silent = json.loads((out / "silent.json").read_text())
    with np.load(stages.AUDIO.path(run, "prior")) as z:
        prior = z["prior"]
    assert np.allclose([silent["probs"]["audio"][e] for e in EMOTIONS], prior)
    assert len(pd.read_csv(out / "predictions.csv")) == 2 * (len(stages.modality_stages()) + 1) + 1


def test_windows_and_submissions(smoke, tmp_path):
    run = smoke["run"]
    rec = _test_records(run)[0]
    models = predict.RunModels.load(run, device="cpu")
    whole = predict.predict_video(rec.path, models)
    pred = predict.predict_video(rec.path, models, window=0.4)
    fps = pred.fps
    per = int(round(0.4 * fps))
    assert [s.n_frames for s in pred.segments][:-1] == [per] * (len(pred.segments) - 1)
    assert sum(s.n_frames for s in pred.segments) == whole.n_frames == pred.n_frames
    assert np.allclose(np.concatenate([s.frame_probs for s in pred.segments]).sum(1), 1)
    assert all(abs(p.sum() - 1) < 1e-6 for p in pred.probs.values())
    paths = predict.write_outputs(pred, tmp_path, "windows")
    assert set(pd.read_csv(paths["csv"])["window"].astype(str)) == {"video", *map(str, range(len(pred.segments)))}
    # submission 4's chain (trained on Val) has its own models and weights
    sub = predict.RunModels.load(run, submission=4, device="cpu")
    assert sub.search.weights == records.read(predict.model_dir(run, 4), stages.SEARCH).weights
    assert predict.predict_video(rec.path, sub).ok


def test_a_run_missing_a_model_names_the_stage_to_run(smoke, tmp_path):
    partial = tmp_path / "run"
    partial.mkdir()
    for st in stages.STAGES:
        if st is not stages.FUSION and st.dir(smoke["run"]).is_dir():
            (partial / st.name).symlink_to(st.dir(smoke["run"]), target_is_directory=True)
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.FUSION.name} first"):
        predict.RunModels.load(partial, device="cpu")
    assert cli.main(["predict", str(tmp_path), "--run-dir", str(partial), "--device", "cpu"]) == 1
