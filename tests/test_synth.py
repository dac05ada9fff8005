"""The synthetic generator: determinism, ground-truth keypoints, clip structure, sizes."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils.constants import EMOTIONS, NUM_CLASSES
from emotiw_utils.synth import clips, expressions, face, generate, static


def test_expression_prototypes_are_distinct_and_neutral_is_zero():
    p = expressions.PROTOTYPES
    assert p.shape == (NUM_CLASSES, expressions.N_AU)
    assert np.all(p[EMOTIONS.index("Neutral")] == 0)
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    assert np.all(d[~np.eye(NUM_CLASSES, dtype=bool)] > 0.5)


def test_expression_rejects_bad_weights():
    with pytest.raises(ValueError, match="non-negative vector of 7"):
        expressions.expression(np.ones(3), 1.0)


def test_keypoints_follow_pose_exactly():
    rng = np.random.default_rng(0)
    ident = face.sample_identity(rng)
    au = expressions.expression(expressions.one_hot(3), 1.0)
    pose = face.pose_matrix(30.0, 15.0, 80.0, 60.0)
    k = face.transform_points(face.keypoints(ident, au), pose)
    # Eyes are ident.eye_dx*2*scale apart whatever the rotation; the eye line is rotated by 15 degrees.
    assert np.isclose(np.linalg.norm(k[1] - k[0]), 2 * ident.eye_dx * 30.0, rtol=1e-5)
    assert np.isclose(np.degrees(np.arctan2(*(k[1] - k[0])[::-1])), 15.0, atol=1e-4)
    # Smiling widens and raises the mouth corners relative to neutral.
    k0 = face.keypoints(ident, np.zeros(expressions.N_AU))
    k1 = face.keypoints(ident, au)
    assert k1[4, 0] - k1[3, 0] > k0[4, 0] - k0[3, 0] and k1[3, 1] < k0[3, 1]


def test_rendered_face_has_dark_eyes_at_keypoints():
    rng = np.random.default_rng(1)
    ident = face.sample_identity(rng)
    rgb, alpha = face.render_face(ident, np.zeros(expressions.N_AU), 128)
    assert rgb.shape == (128, 128, 3) and alpha.shape == (128, 128)
    assert 0 <= rgb.min() and rgb.max() <= 1 and alpha.max() == 1
    pose = face.pose_matrix(40.0, 0.0, 64.0, 64.0)
    img, a = face.place_face(rgb, alpha, pose, (128, 128))
    k = face.transform_points(face.keypoints(ident, np.zeros(expressions.N_AU)), pose)
    lum = img.mean(-1)
    for x, y in k[:2]:  # iris at the eye centre is darker than the cheek below it
        assert lum[int(round(y)), int(round(x))] < lum[int(round(y + 0.3 * 40)), int(round(x))]


@pytest.mark.parametrize("framing", [static.FER_FRAMING, static.TFD_FRAMING])
def test_static_face_is_deterministic(framing):
    a = static.render_static(np.random.default_rng([5, 1]), 3, framing)
    b = static.render_static(np.random.default_rng([5, 1]), 3, framing)
    c = static.render_static(np.random.default_rng([5, 2]), 3, framing)
    assert a[0].shape == (48, 48) and a[0].dtype == np.uint8
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])


def test_tfd_crops_are_tighter_than_fer():
    def eye_distance(framing):
        d = [np.linalg.norm(np.subtract(*static.render_static(np.random.default_rng([i]), 6, framing)[1][:2]))
             for i in range(20)]
        return np.mean(d)

    assert eye_distance(static.TFD_FRAMING) > 1.15 * eye_distance(static.FER_FRAMING)


def test_clip_is_deterministic_and_consistent():
    a = clips.make_clip(np.random.default_rng([7, 2, 0, 1]), 2)
    b = clips.make_clip(np.random.default_rng([7, 2, 0, 1]), 2)
    n = a.meta["n_frames"]
    assert a.frames.shape == (n, *clips.FRAME_HW, 3) and a.frames.dtype == np.uint8
    assert a.keypoints.shape == (n, 5, 2)
    assert len(a.audio) == round(n / 25 * 16000)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert np.array_equal(a.keypoints, b.keypoints, equal_nan=True)


def test_timeline_events_and_order_pairs():
    cfg = clips.ClipConfig(p_order=1.0, p_distractor=0.0)
    fear, surprise = EMOTIONS.index("Fear"), EMOTIONS.index("Surprise")
    au, events, env = clips.expression_timeline(np.random.default_rng(0), fear, 80, cfg)
    roles = [(e["role"], e["emotion"]) for e in events]
    assert roles == [("precursor", "Surprise"), ("target", "Fear")]
    assert events[0]["start"] < events[1]["start"]
    assert au.shape == (80, expressions.N_AU) and env.max() == pytest.approx(1.0)
    # Neutral clips have no target event.
    _, ev_n, env_n = clips.expression_timeline(np.random.default_rng(0), EMOTIONS.index("Neutral"), 50, cfg)
    assert not [e for e in ev_n if e["role"] == "target"] and env_n.max() == 0
    assert clips.ORDER_PAIRS[surprise] == fear and clips.ORDER_PAIRS[fear] == surprise


def test_envelope_shape():
    e = clips._envelope(30, 5, 4, 6, 5)
    assert e[:5].max() == 0 and e[9:15].min() == pytest.approx(1.0) and e[21:].max() == 0
    assert np.all(np.diff(e[5:10]) >= 0) and np.all(np.diff(e[14:21]) <= 0)


def test_split_counts_sum_and_shares():
    c = generate.split_counts(723, generate.AFEW_CLASS_SHARES)
    assert sum(c) == 723 and min(c) > 0
    assert sum(generate.split_counts(3, [1] * 7)) == 3
    assert generate.split_counts(14, [1] * 7) == [2] * 7


def test_profiles_match_the_paper_sizes():
    full = generate.SYNTH_PROFILES["full"]
    assert full.afew == (723, 383, 539) and sum(full.fer) == 35887 and full.tfd == 4178
    demo = generate.SYNTH_PROFILES["demo"]
    assert 0.4 < sum(demo.afew) / sum(full.afew) < 0.6


def test_fer_generation_does_not_depend_on_worker_count(tmp_path):
    sizes = generate.SynthSizes(afew=(0, 0, 0), fer=(21, 7, 7), tfd=0, tfd_unlabelled=0)
    generate.generate_fer(tmp_path / "a.csv", sizes, 3, workers=1, progress=False)
    generate.generate_fer(tmp_path / "b.csv", sizes, 3, workers=2, progress=False)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_unknown_profile_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no synthetic dataset for profile 'huge'"):
        generate.generate_dataset("huge", root=tmp_path / "x")


def test_cached_dataset_is_reused_and_rebuilt_when_stale(tmp_path, monkeypatch):
    tiny = generate.SynthSizes(afew=(7, 7, 7), fer=(14, 7, 7), tfd=7, tfd_unlabelled=1)
    monkeypatch.setitem(generate.SYNTH_PROFILES, "smoke", tiny)
    root = generate.generate_dataset("smoke", seed=0, workers=1, root=tmp_path / "ds", progress=False)
    info = generate.load_generation_info(root)
    assert info["stats"]["afew"]["clips"] == 21 and info["stats"]["fer2013"]["images"] == 28
    stamp = (root / "generation.json").stat().st_mtime_ns
    assert generate.generate_dataset("smoke", seed=0, root=root, progress=False) == root
    assert (root / "generation.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    monkeypatch.setattr(generate, "generator_fingerprint", lambda: "changed")
    generate.generate_dataset("smoke", seed=0, workers=1, root=root, progress=False)
    assert generate.load_generation_info(root)["generator_fingerprint"] == "changed"
    assert not root.with_name("ds.partial").exists()


def test_generated_dataset_round_trips_through_the_loaders(tmp_path, monkeypatch):
    """What the generator writes, the real-format loaders read back: FER/TFD pixels exactly, clip
    frame counts, audio lengths and keypoints exactly, labels from the folder layout."""
    from emotiw_utils.datasets import afew, fer2013, tfd
    from emotiw_utils.datasets.keypoints import read_static_keypoints

    tiny = generate.SynthSizes(afew=(7, 7, 7), fer=(14, 7, 7), tfd=7, tfd_unlabelled=2)
    monkeypatch.setitem(generate.SYNTH_PROFILES, "smoke", tiny)
    root = generate.generate_dataset("smoke", seed=4, workers=2, root=tmp_path / "ds", progress=False)

    fer = fer2013.load_fer2013(root / "fer2013" / "fer2013.csv")
    assert len(fer) == 28 and list(fer.usage_counts().values()) == [14, 7, 7]
    planned, usages = generate.fer_plan(tiny, 4)
    assert list(fer.usage) == usages
    fer_kps = read_static_keypoints(root / "fer2013" / "fer2013.csv", len(fer))
    for i in range(0, 28, 4):
        img, written, kps = generate._static_task((4, 0, i, int(planned[i]), "fer"))
        assert np.array_equal(fer.images[i], img) and fer.labels[i] == written
        assert np.array_equal(fer_kps[i], kps)  # the sidecar holds the renderer's exact keypoints
    t = tfd.load_tfd(root / "tfd" / "TFD_48x48.mat")
    assert len(t) == 9 and len(t.labelled()) == 7 and (t.labels[-2:] == -1).all()
    tfd_kps = read_static_keypoints(root / "tfd" / "TFD_48x48.mat", len(t))
    assert tfd_kps.shape == (9, 5, 2) and not np.isnan(tfd_kps).any()
    assert (tfd_kps[:, 2, 1] > tfd_kps[:, :2, 1].max(1)).all()  # nose below both eyes

    records = afew.scan_afew(root / "afew")
    assert [sum(r.split == s for r in records) for s in ("Train", "Val", "Test")] == [7, 7, 7]
    assert all(r.label >= 0 for r in records)  # Test labels come from test_labels.csv
    meta = {(row["split"], row["clip"]): row for row in __import__("csv").DictReader(
        open(root / "afew" / generate.METADATA_FILENAME))}
    for r in records[:: 5]:
        clip = afew.load_clip(r)
        split_idx = ("Train", "Val", "Test").index(r.split)
        src = clips.make_clip(np.random.default_rng([4, 2, split_idx, int(r.clip_id[2:])]), r.label)
        assert clip.n_frames == len(src.frames) == int(meta[(r.split, r.clip_id)]["n_frames"])
        assert len(clip.audio) == len(src.audio)
        assert np.array_equal(clip.keypoints, src.keypoints, equal_nan=True)
        assert np.abs(clip.frames.astype(int) - src.frames).mean() < 4  # lossy MPEG-4, 4:2:0 chroma
        assert EMOTIONS[r.label] == meta[(r.split, r.clip_id)]["label"]


def test_clip_story_table(tmp_path):
    assert generate.clip_story_table(tmp_path) is None
    rows = [
        ["split", "clip", "label", "n_frames", "duration_s", "events", "motion", "motion_informative",
         "audio_informative", "occluded", "no_face", "frames_without_keypoints"],
        ["Train", "tr00000", "Fear", 50, 2.0, '[{"role": "precursor"}, {"role": "target", "mixed_with": "Sad"}]',
         "Fear", True, False, False, False, 0],
        ["Train", "tr00001", "Sad", 50, 2.0, '[{"role": "target"}]', "Happy", False, True, True, False, 3],
    ]
    import csv

    with open(tmp_path / generate.METADATA_FILENAME, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    t = generate.clip_story_table(tmp_path)
    assert t.loc["Train", "ordered precursor"] == 50.0 and t.loc["Train", "mixed target"] == 50.0
    assert t.loc["Train", "uninformative audio"] == 50.0 and t.loc["Train", "occluded frames"] == 50.0
    assert t.loc["Train", "no face at all"] == 0.0
