"""The run's summary (issue 22): clips that are not ``ok`` counted per stage and the dataset's warnings below the
stage table of ``emotiw run``; stage 06 calls a truncated clip ``truncated`` as the other stages do."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import activity, artifacts, clip_policy, pipeline, run_summary, stages
from emotiw_utils.activity_features import ActivitySettings, clip_status, decode_clips
from emotiw_utils.datasets import afew
from emotiw_utils.datasets.video import write_clip

SPLITS = ("Train", "Val")


def _clips(statuses: dict[str, list[str]]) -> dict[str, clip_policy.SplitClips]:
    return {s: clip_policy.SplitClips(s, np.array([f"{s}{i}" for i in range(len(st))]), np.zeros(len(st), int),
                                      np.array(st)) for s, st in statuses.items()}


def test_status_counts_are_what_a_stage_records():
    clips = _clips({"Train": ["ok", "truncated", "ok", "no_face"], "Val": ["ok"], "Test": []})
    assert clip_policy.status_counts(clips) == {"Train": {"ok": 2, "no_face": 1, "truncated": 1}, "Val": {"ok": 1},
                                                "Test": {}}
    assert clip_policy.STATUS_COUNTS_KEY == "clip_status_counts"  # the keyword chapters 03, 04 and 06 write


def test_clip_status_counts_read_every_recorded_form(tmp_path):
    run = tmp_path / "run"
    # the key every clip-level stage writes
    artifacts.write_metrics(run / stages.CNN.name, {clip_policy.STATUS_COUNTS_KEY: clip_policy.status_counts(
        _clips({"Train": ["ok", "truncated", "no_face"], "Val": ["ok", "unreadable", "truncated"]}))})
    assert run_summary.clip_status_counts(run / stages.CNN.name) == {"ok": 2, "no_face": 1, "truncated": 2,
                                                                     "unreadable": 1}
    # stage 01's clip -> status map, and stage 05's counts (zeros included), as they were written before
    artifacts.write_metrics(run / stages.ALIGNMENT.name, {clip_policy.ALIGNMENT_STATUS_KEY: {
        "Train": {"a": "ok", "b": "truncated"}, "Val": {"c": "no_face"}}})
    assert run_summary.clip_status_counts(run / stages.ALIGNMENT.name) == {"ok": 1, "no_face": 1, "truncated": 1}
    artifacts.write_metrics(run / stages.AUDIO.name, {"audio_status": {"Train": {"ok": 3, "no_audio": 0, "silent": 1},
                                                                       "Val": {"ok": 1, "no_audio": 2}}})
    assert run_summary.clip_status_counts(run / stages.AUDIO.name) == {"ok": 4, "silent": 1, "no_audio": 2}
    # a stage without clip statuses, one that has not run, a half-written file
    artifacts.write_metrics(run / stages.FUSION.name, {"seconds": 1.0})
    assert run_summary.clip_status_counts(run / stages.FUSION.name) == {}
    assert run_summary.clip_status_counts(run / stages.SEARCH.name) == {}
    (run / stages.ACTIVITY.name).mkdir()
    (run / stages.ACTIVITY.name / stages.METRICS).write_text('{"clip_status')
    assert run_summary.clip_status_counts(run / stages.ACTIVITY.name) == {}


def test_describe_not_ok():
    assert run_summary.describe_not_ok({"ok": 5, "truncated": 1, "no_face": 1}) == "2 (1 truncated, 1 no_face)"
    assert run_summary.describe_not_ok({"ok": 5}) == "0"
    assert run_summary.describe_not_ok({}) == ""


def test_layout_warnings_name_a_folder_beside_the_splits(tmp_path):
    for s in ("Train", "Val", "Test", "Vall", ".hidden"):
        (tmp_path / s).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert afew.layout_warnings(tmp_path) == [f"{tmp_path}: folder(s) 'Vall' are not AFEW splits (Train, Val, Test) "
                                              "and are not read"]
    (tmp_path / "Vall").rmdir()
    assert afew.layout_warnings(tmp_path) == [] and afew.layout_warnings(tmp_path / "missing") == []


def test_the_summary_counts_clips_not_ok_per_stage_and_repeats_the_warnings(tmp_path):
    run = tmp_path / "run"
    warning = "/data/afew: folder(s) 'Vall' are not AFEW splits (Train, Val, Test) and are not read"
    artifacts.write_metrics(run / stages.DATASETS.name, {
        clip_policy.STATUS_COUNTS_KEY: {"Train": {"ok": 3, "truncated": 1}, "Val": {"ok": 2, "no_audio": 1}},
        run_summary.DATASET_WARNINGS_KEY: [warning]})
    artifacts.write_metrics(run / stages.ACTIVITY.name, {clip_policy.STATUS_COUNTS_KEY: {"Train": {"ok": 4}}})
    artifacts.write_metrics(run / stages.CNN.name, {clip_policy.STATUS_COUNTS_KEY: {"Train": {"unreadable": 4}}})
    results = [pipeline.StageResult(stages.DATASETS.name, "ran", 3.21, None),
               pipeline.StageResult(stages.ACTIVITY.name, "cached", 0.0, None),
               pipeline.StageResult(stages.FUSION.name, "ran", 125.0, None),
               pipeline.StageResult(stages.CNN.name, "failed", 1.0, None)]  # its metrics are an older run's
    lines = pipeline.format_summary(results, run).splitlines()
    assert lines[0].split() == ["stage", "status", "wall", "time", "clips", "not", "ok"]
    assert lines[2].split() == [stages.DATASETS.name, "ran", "3.2", "s", "2", "(1", "no_audio,", "1", "truncated)"]
    assert lines[3].split() == [stages.ACTIVITY.name, "cached", "0.0", "s", "0"]
    assert lines[4].split() == [stages.FUSION.name, "ran", "2:05", "min"]
    assert lines[5].split() == [stages.CNN.name, "failed", "1.0", "s"]
    assert lines[7].split()[:3] == ["total", "2:09", "min"]
    assert lines[-2:] == ["", f"warning: {warning}"]
    assert all(line == line.rstrip() for line in lines)
    # without the run's folder, or with nothing recorded: the table as before
    plain = pipeline.format_summary(results)
    assert plain.splitlines()[0].split() == ["stage", "status", "wall", "time"] and "warning" not in plain
    assert pipeline.format_summary(results, tmp_path / "empty") == plain


# ---- stage 06: truncated like the others ------------------------------------------------------------------

SETTINGS = ActivitySettings(frame_scale=1.0, n_train_blocks=200, n_components=20, n_hidden=8, sae_epochs=1,
                            batch_size=64, stride=(5, 16, 16), vocabulary_size=3)


@pytest.mark.parametrize("frames, unreadable, truncated, expected", [
    (40, False, False, "ok"), (40, False, True, "truncated"), (5, False, True, "too_short"),
    (5, False, False, "too_short"), (0, True, False, "unreadable"),
])
def test_activity_clip_status(frames, unreadable, truncated, expected):
    clip = np.zeros((frames, 32, 32), np.uint8)
    assert clip_status(clip, SETTINGS, unreadable=unreadable, truncated=truncated) == expected


def test_a_truncated_clip_is_truncated_in_stage_06_and_described_by_its_decoded_frames(tmp_path):
    """Before, stage 06 decoded with read_frames and called a clip cut off part-way ``ok``."""
    rng = np.random.default_rng(0)
    paths = {s: [write_clip(tmp_path / f"{s}{i}.avi", rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8))
                 for i in range(3)] for s in SPLITS}
    cut = paths["Val"][1]
    data = cut.read_bytes()
    cut.write_bytes(data[: int(0.6 * len(data))])  # the header still states 40 frames
    truncated: dict[int, str] = {}
    frames = activity.load_clip_frames(paths["Val"], 1.0, workers=1, errors={}, truncated=truncated)
    assert list(truncated) == [1] and "the header states 40" in truncated[1]
    assert 10 <= len(frames[1]) < 40
    clips, status = decode_clips(paths, SETTINGS, workers=1)  # what ActivityFeatures.learn decodes and records
    assert list(status["Val"]) == ["ok", "truncated", "ok"] and list(status["Train"]) == ["ok"] * 3
    np.testing.assert_array_equal(clips["Val"][1], frames[1])  # the frames that decoded are used
    assert [len(c) for c in clips["Val"]] == [40, len(frames[1]), 40]
