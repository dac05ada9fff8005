"""The aligned datasets of stage 01 on a tiny generated synthetic dataset, and its single pass over a clip (one
decode: detection and alignment streamed) against the former two passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotiw_utils import aligned, faces
from emotiw_utils.datasets import afew, read_keypoints
from emotiw_utils.errors import DataFormatError
from emotiw_utils.synth import generate


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    tiny = generate.SynthSizes(afew=(6, 4, 3), fer=(60, 10, 10), tfd=14, tfd_unlabelled=3)
    saved = generate.SYNTH_PROFILES["smoke"]
    generate.SYNTH_PROFILES["smoke"] = tiny
    try:
        return generate.generate_dataset("smoke", seed=5, workers=2, root=tmp_path_factory.mktemp("d") / "ds",
                                         progress=False)
    finally:
        generate.SYNTH_PROFILES["smoke"] = saved


def test_static_faces_from_sidecars(tiny_root, tmp_path):
    st, als, info = aligned.build_static_faces(tiny_root / "fer2013" / "fer2013.csv",
                                               tiny_root / "tfd" / "TFD_48x48.mat", seed=0)
    assert len(st) == 80 + 14 and st.images.shape == (94, 48, 48) and st.images.dtype == np.uint8
    assert (st.source == "TFD").sum() == 14 and set(st.usage[st.source == "FER2013"]) == {
        "Training", "PublicTest", "PrivateTest"}
    assert info["FER2013"]["keypoints"] == aligned.SIDECAR and info["TFD"]["labelled"] == 14
    np.testing.assert_allclose(als["FER2013"].transform, np.eye(2, 3), atol=1e-9)
    assert als["TFD"].residual < 1.0 and 0.6 < faces.similarity_parameters(als["TFD"].transform)["scale"] < 0.95
    assert st.counts_table().loc["total", "total"] == 94
    back = aligned.StaticFaces.load(st.save(tmp_path / "s.npz"))
    assert np.array_equal(back.images, st.images) and list(back.usage) == list(st.usage)
    assert len(st.in_usage(["Training", "TFD"])) == 60 + 14


def test_align_afew_keeps_every_frame_and_counts_missing_faces(tiny_root, tmp_path):
    fer_mean = np.array([[16.8, 21.1], [31.1, 21.0], [24.0, 30.0], [17.7, 37.2], [30.4, 37.2]])
    out, aligner, info = aligned.align_afew(tiny_root / "afew", fer_mean, seed=1, workers=2)
    assert info["keypoints"]["sidecar"] == 13 and not info["unreadable"]
    al = aligner.alignment
    assert al.name == "AFEW" and al.residual < 1.0 and aligner.box_scale == faces.AFEW_BOX_SCALE
    assert aligner.fallback.shape == (5, 2) and ((aligner.fallback > 0) & (aligner.fallback < 1)).all()
    records = afew.scan_afew(tiny_root / "afew")
    for split, n in (("Train", 6), ("Val", 4), ("Test", 3)):
        a = out[split]
        recs = [r for r in records if r.split == split]
        assert len(a) == n and list(a.clip_ids) == [r.clip_id for r in recs]
        assert list(a.labels) == [r.label for r in recs]  # Test labels from test_labels.csv
        kps = [read_keypoints(r.keypoints_path) for r in recs]
        assert list(a.lengths) == [len(k) for k in kps]
        own = np.concatenate([np.isfinite(k).all(axis=(1, 2)) for k in kps])
        np.testing.assert_array_equal(a.has_face, own)
        assert a.faces.shape == (a.offsets[-1], 48, 48)
        assert len(a.frame_labels()) == len(a.faces) and a.frame_clip_index()[-1] == n - 1
        s = a.sample_frames(4)
        assert len(s) == 4 * n and np.all(np.diff(a.frame_clip_index()[s]) >= 0)
    table = aligned.detection_table(out)
    assert table.loc["Train", "frames"] == len(out["Train"].faces)
    assert table.loc["Val", "frames without a face"] == int((~out["Val"].has_face).sum())
    # The result does not depend on the number of worker processes.
    one, _, _ = aligned.align_afew(tiny_root / "afew", fer_mean, seed=1, workers=1, splits=("Train", "Val"))
    np.testing.assert_array_equal(one["Val"].faces, out["Val"].faces)
    back = aligned.AfewFaces.load(out["Val"].save(tmp_path / "v.npz"))
    assert back.split == "Val" and np.array_equal(back.faces, out["Val"].faces)
    np.testing.assert_array_equal(back.clip(1), out["Val"].clip(1))


def test_persisted_alignments_align_a_clip_exactly_as_the_stage_did(tiny_root, tmp_path):
    """What stage 01 persists (alignments file) is enough to align a new clip: re-aligning every Test clip
    from the file alone (its keypoints sidecar, its frames, the loaded aligner) gives the stage's faces."""
    st, als, _ = aligned.build_static_faces(tiny_root / "fer2013" / "fer2013.csv", None, seed=0)
    out, aligner, _ = aligned.align_afew(tiny_root / "afew", als["FER2013"].mean_shape, seed=3, workers=1,
                                         splits=("Train", "Test"))
    path = aligned.save_alignments(tmp_path / "alignments.json", als, aligner)
    datasets, loaded = aligned.load_alignments(path)
    assert list(datasets) == ["FER2013", "AFEW"] and loaded.box_scale == aligner.box_scale
    np.testing.assert_array_equal(loaded.alignment.transform, aligner.alignment.transform)
    np.testing.assert_array_equal(loaded.fallback, aligner.fallback)
    test = [r for r in afew.scan_afew(tiny_root / "afew") if r.split == "Test"]
    for i, rec in enumerate(test):
        faces_, has, no_face = aligned.align_clip(rec, loaded, aligned.clip_noise(3, "Test", i))
        np.testing.assert_array_equal(faces_, out["Test"].clip(i))
        np.testing.assert_array_equal(has, out["Test"].has_face[out["Test"].offsets[i]:out["Test"].offsets[i + 1]])
        assert no_face == out["Test"].clip_no_face[i]
    # A clip without any face gets the Train fallback box, scaled to its frame size.
    frames = afew.load_clip(test[0], gray=True, audio=False).frames
    f0, has0, none0 = loaded.align(frames, None, np.random.default_rng(0))
    assert none0 and not has0.any() and f0.shape == (len(frames), 48, 48)
    (tmp_path / "bad.json").write_text('{"datasets": {}}')
    with pytest.raises(DataFormatError, match="not an alignments file"):
        aligned.load_alignments(tmp_path / "bad.json")


# ------------------------------------------------------------------ stage 01's single pass (one decode)

CREMAD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cremad_sample"
FER_LIKE = np.array([[15.0, 18], [33, 18], [24, 27], [17, 35], [31, 35]])  # a FER2013-like 48x48 mean shape


def _shape(x: float, y: float, eye: float = 40.0) -> np.ndarray:
    """Five keypoints, left eye at (x, y), eye distance ``eye``."""
    e = eye / 40.0
    return np.array([[x, y], [x + 40 * e, y], [x + 20 * e, y + 25 * e], [x + 5 * e, y + 45 * e],
                     [x + 35 * e, y + 45 * e]], dtype=np.float64)


def _aligner(h: int, w: int) -> aligned.AfewAligner:
    train = np.stack([_shape(60 + 3 * i, 40 + i, 40 + i) for i in range(20)])
    al = faces.fit_dataset_alignment("AFEW", faces.crop_keypoints(train), FER_LIKE, faces.FACE_SIZE)
    return aligned.AfewAligner(al, aligned.fallback_keypoints([train], [(h, w)]))


def _keypoints(pattern: str) -> np.ndarray:
    """One row per character: ``x`` a face (moving slowly), ``.`` none."""
    return np.stack([_shape(60 + i, 40 + 0.5 * i) if c == "x" else np.full((5, 2), np.nan)
                     for i, c in enumerate(pattern)])


PATTERNS = ["xxxxxxxxxx", "....xxxxx", "xxxx.....", "xx.....xx", "xx......xx", "x.x..x...x.", "..........",
            "x", ".", "xx" + "." * 30 + "x" + "." * 9 + "xx"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("max_pending", [2, 4, 100])
def test_stream_aligner_gives_the_faces_of_the_whole_clip(pattern, max_pending):
    """Frames pushed in chunks of any size, their keypoints streamed (or hinted by a sidecar, longer or shorter
    than the clip), waiting frames dropped and aligned again from a second decode when more than max_pending
    wait: always the faces, own-face flags and no-face flag of AfewAligner.align on the whole clip."""
    rng = np.random.default_rng(0)
    t, h, w = len(pattern), 120, 160
    frames = rng.integers(0, 256, (t, h, w), dtype=np.uint8)
    kps = _keypoints(pattern)
    al = _aligner(h, w)
    want = al.align(frames, kps, np.random.default_rng(9))
    for chunk in (1, 3, t):
        for hint in (None, kps, kps[: t // 2], np.concatenate([kps, _keypoints("x" * 5)])):
            s = aligned.StreamAligner(al, np.random.default_rng(9), max_pending, hint=hint)
            given = kps if hint is None else np.concatenate([hint, np.full((t, 5, 2), np.nan)])[:t]
            for a in range(0, t, chunk):
                s.push(list(frames[a:a + chunk]), given[a:a + chunk])
            s.finish()
            if s.overflow is not None:
                assert len(s._pending) == 0 and s.overflow >= 0
                s.align_known(iter(frames), given)
            ref = want if hint is None else al.align(frames, hint, np.random.default_rng(9))
            got = s.result()
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
            assert got[2] == ref[2]
    # keypoints known for every frame (a previous detection): nothing waits
    s = aligned.StreamAligner(al, np.random.default_rng(9), 0)
    s.align_known(iter(frames), kps)
    np.testing.assert_array_equal(s.result()[0], want[0])


class _FakeDetector:
    """Stands in for FaceDetector: the grey level of a frame's top-left block (4 per frame) numbers the frame;
    its face is at a place that moves one pixel per frame (in the pixels of the image it is given), none for
    the frames in ``no_face``."""

    def __init__(self, no_face=()):
        self.min_face_size, self.no_face, self.n_images = 20.0, set(no_face), 0

    def detect(self, images, batch_size=64):
        from emotiw_utils.detect import Detections

        kps = np.full((len(images), 5, 2), np.nan, np.float32)
        for i, img in enumerate(images):
            t = round(float(img[:3, :3].mean()) / 4)
            if t not in self.no_face:
                h, w = img.shape[:2]
                kps[i] = _shape(0.3 * w + t, 0.25 * h, 0.2 * w)
        self.n_images += len(images)
        found = np.isfinite(kps[:, 0, 0])
        return Detections(boxes=np.where(found[:, None], 1.0, np.nan).astype(np.float32).repeat(4, 1),
                          keypoints=kps, scores=np.where(found, 0.99, np.nan).astype(np.float32))


def _numbered_clip(path, n: int, h: int = 96, w: int = 128):
    """A clip whose frame t has a textured background and a top-left block of grey 4 t (t < 60)."""
    from emotiw_utils.datasets.video import write_clip

    rng = np.random.default_rng(1)
    texture = np.repeat(rng.integers(40, 200, (h // 8, w // 8, 3), dtype=np.uint8), 8, 0).repeat(8, 1)
    frames = np.repeat(texture[None], n, 0)
    for t in range(n):
        frames[t, :16, :16] = 4 * (t % 60)
    return write_clip(path, frames, fps=25)


def _two_pass(path, detector, aligner, policy, seed=3):
    """Stage 01 before the single pass: detect on one decode, align the frames of another (read_video, gray)."""
    from emotiw_utils.datasets.video import read_video
    from emotiw_utils.detect_video import detect_clip

    vk = detect_clip(path, detector, policy)
    video = read_video(path, gray=True)
    return vk, video, aligner.align(video.frames, vk.keypoints, np.random.default_rng(seed))


@pytest.mark.parametrize(("no_face", "window", "decodes"), [((), 12, 1), (set(range(20, 26)), 12, 1),
                                                           (set(range(3, 50)), 12, 2), (set(range(60)), 12, 2),
                                                           (set(range(60)), 96, 1)])
def test_single_pass_equals_detecting_and_aligning_on_two_decodes(tmp_path, no_face, window, decodes):
    """align_clip_stream (one decode: MTCNN on the RGB frames, alignment of their gray frames as the keypoints
    come) gives the faces, keypoints and counts of stage 01's former two passes; a clip whose frames wait for
    a face longer than the window is decoded a second time, with the same result."""
    from emotiw_utils.detect_video import VideoPolicy

    path = _numbered_clip(tmp_path / "c.avi", 50)
    policy = VideoPolicy(detect_every=3, window=window)
    al = _aligner(96, 128)
    vk, video, want = _two_pass(path, _FakeDetector(no_face), al, policy)
    got = aligned.align_clip_stream(path, al, np.random.default_rng(3), detector=_FakeDetector(no_face), policy=policy)
    np.testing.assert_array_equal(got["faces"], want[0])
    np.testing.assert_array_equal(got["has_face"], want[1])
    assert got["no_face"] == want[2] and got["decodes"] == decodes and got["problems"] == []
    np.testing.assert_array_equal(got["keypoints"].keypoints, vk.keypoints)
    assert got["keypoints"].counts() == vk.counts()
    # the same clip from its keypoints (a sidecar, or those of a first decode)
    for kw in ({"keypoints": vk.keypoints}, {"keypoints": vk.keypoints, "exact": True},
               {"keypoints": vk.keypoints[:20]}):
        got = aligned.align_clip_stream(path, al, np.random.default_rng(3), policy=policy, **kw)
        ref = al.align(video.frames, kw["keypoints"], np.random.default_rng(3))
        np.testing.assert_array_equal(got["faces"], ref[0])
        np.testing.assert_array_equal(got["has_face"], ref[1])


def test_single_pass_holds_a_window_of_frames_not_the_clip(tmp_path):
    """Memory of the single pass does not grow with the clip: a 240-frame 480x640 clip (221 MB of RGB frames,
    74 MB gray) with runs of 30 frames without a face (longer than the window: decoded twice) is aligned
    within a few windows' worth."""
    import tracemalloc

    from emotiw_utils.detect_video import VideoPolicy

    path = _numbered_clip(tmp_path / "long.avi", 240, 480, 640)
    policy = VideoPolicy(detect_every=3, window=12)
    al = _aligner(480, 640)
    tracemalloc.start()
    try:
        got = aligned.align_clip_stream(path, al, np.random.default_rng(0), detector=_FakeDetector(range(10, 40)),
                                        policy=policy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(got["faces"]) == 240 and got["decodes"] == 2 and not got["has_face"][70:100].any()
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"


def _clips_for_mtcnn(tmp_path) -> list[Path]:
    """The real CREMA-D clips when present, else two clips of the astronaut photo, moving, written with PyAV."""
    clips = sorted(CREMAD.glob("*.flv"))[:2]
    if clips:
        return clips
    import cv2
    from skimage.data import astronaut

    from emotiw_utils.datasets.video import write_clip

    base = cv2.resize(astronaut(), (240, 240), interpolation=cv2.INTER_AREA)
    out = []
    for c in range(2):
        # slow enough (half a pixel a frame) for interpolation between every 3rd frame, as on real video
        frames = np.stack([np.roll(base, (t // 2 + c, t // 3), axis=(0, 1))[8:232, 8:232] for t in range(20)])
        out.append(write_clip(tmp_path / f"astronaut{c}.avi", frames, fps=25))
    return out


def test_single_pass_with_mtcnn_equals_the_two_passes(tmp_path):
    """Real MTCNN (the CREMA-D sample when present, else a clip written with PyAV): the single pass gives the
    two-pass faces, keypoints and counts of detected and interpolated frames, bit for bit."""
    from emotiw_utils.detect import FaceDetector
    from emotiw_utils.detect_video import VideoPolicy

    policy = VideoPolicy()
    det = FaceDetector(min_face_size=policy.face_px)
    for path in _clips_for_mtcnn(tmp_path):
        vk, _, want = _two_pass(path, det, _aligner(*video_size(path)), policy)
        got = aligned.align_clip_stream(path, _aligner(*video_size(path)), np.random.default_rng(3), detector=det,
                                        policy=policy)
        assert vk.found.mean() > 0.9 and vk.counts()["interpolated"] > 0
        np.testing.assert_array_equal(got["keypoints"].keypoints, vk.keypoints)
        assert got["keypoints"].counts() == vk.counts() and got["decodes"] == 1
        np.testing.assert_array_equal(got["faces"], want[0])
        np.testing.assert_array_equal(got["has_face"], want[1])


def video_size(path) -> tuple[int, int]:
    from emotiw_utils.datasets.video import probe_clip

    info = probe_clip(path)
    return info.height, info.width
