"""Fast face detection in video (emotiw_utils.detect_video): detection resolution, mapping back to the frame,
key frames and interpolation, streamed windows, worker processes, and real CREMA-D clips end to end."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from emotiw_utils import detect_video as dv
from emotiw_utils.datasets.video import iter_frames
from emotiw_utils.detect import Detections
from emotiw_utils.errors import DataFormatError

REPO = Path(__file__).resolve().parents[1]
CREMAD = REPO.parent / "shared" / "data" / "cremad_sample"

# ------------------------------------------------------------------------------------ resolution choice


def test_detection_scale_from_frame_size_and_smallest_face():
    # AFEW's 720x576: the smallest face (10 % of 576 = 57.6 px) becomes 40 px
    assert dv.detection_scale(576, 720, 0.1, 40) == pytest.approx(40 / 57.6)
    assert dv.detection_size(576, 720, dv.VideoPolicy()) == (320, 400)  # the default: 32 px
    pol = dv.VideoPolicy(min_face_fraction=0.1, face_px=40)
    assert dv.detection_size(576, 720, pol) == (400, 500)
    assert dv.detection_size(1080, 1920, pol) == (400, 711)
    # frames whose smallest face is already below face_px are never upscaled
    assert dv.detection_scale(360, 480, 0.1, 40) == 1.0
    assert dv.detection_size(360, 480, pol) == (360, 480)
    assert dv.detection_size(48, 64, pol) == (48, 64)
    # a larger smallest face allows a smaller detection image
    assert dv.detection_size(576, 720, dv.VideoPolicy(min_face_fraction=0.2, face_px=40)) == (200, 250)
    with pytest.raises(ValueError, match="positive"):
        dv.detection_scale(0, 720, 0.1, 40)


@pytest.mark.parametrize("kwargs, match", [
    ({"min_face_fraction": 0.0}, "min_face_fraction"), ({"face_px": 8}, "face_px"),
    ({"detect_every": 0}, "detect_every"), ({"detect_every": 1.5}, "detect_every"),
    ({"max_motion": -1}, "max_motion"), ({"batch_size": 0}, "batch_size"), ({"window": 2, "detect_every": 3}, "window"),
])
def test_policy_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dv.VideoPolicy(**kwargs)


def test_policy_span_is_a_multiple_of_detect_every():
    assert dv.VideoPolicy(detect_every=3, window=20).span == 18
    assert dv.VideoPolicy(detect_every=1, window=20).span == 20


# ----------------------------------------------------------------------------------- mapping back


@pytest.mark.parametrize("frame_hw, det_hw", [((576, 720), (400, 500)), ((1080, 1920), (400, 711)),
                                              ((360, 480), (360, 480))])
def test_points_found_in_the_downscaled_frame_map_back_to_the_frame(frame_hw, det_hw):
    import cv2

    rng = np.random.default_rng(0)
    for _ in range(5):
        # a bright square blob at a random position: its centroid in the downscaled image, mapped back,
        # is its centroid in the frame
        h, w = frame_hw
        x0, y0 = int(rng.integers(20, w - 60)), int(rng.integers(20, h - 60))
        frame = np.zeros((h, w), np.float32)
        frame[y0:y0 + 31, x0:x0 + 37] = 1.0
        small = cv2.resize(frame, (det_hw[1], det_hw[0]), interpolation=cv2.INTER_AREA)
        ys, xs = np.mgrid[:det_hw[0], :det_hw[1]]
        centroid = np.array([(xs * small).sum(), (ys * small).sum()]) / small.sum()
        back = dv.to_frame_pixels(centroid, det_hw, frame_hw)
        np.testing.assert_allclose(back, [x0 + 18, y0 + 15], atol=0.05)
    # shapes are kept and identity leaves points alone
    pts = rng.uniform(0, 300, size=(4, 5, 2))
    np.testing.assert_allclose(dv.to_frame_pixels(pts, (360, 480), (360, 480)), pts, rtol=1e-6)


# ------------------------------------------------------------------------------ key frames, tracking


def test_key_frames():
    assert dv.key_frames(10, 3).tolist() == [0, 3, 6, 9]
    assert dv.key_frames(11, 3).tolist() == [0, 3, 6, 9, 10]
    assert dv.key_frames(1, 3).tolist() == [0]
    assert dv.key_frames(5, 1).tolist() == [0, 1, 2, 3, 4]
    assert dv.key_frames(0, 3).tolist() == []


def _shape(x: float, y: float = 100.0) -> np.ndarray:
    """Five keypoints with an eye distance of 40 px, left eye at (x, y)."""
    return np.array([[x, y], [x + 40, y], [x + 20, y + 25], [x + 5, y + 45], [x + 35, y + 45]], dtype=np.float64)


def test_interpolable():
    assert dv.interpolable(_shape(100), _shape(105), max_motion=0.25)  # 5 px < 0.25 * 40
    assert not dv.interpolable(_shape(100), _shape(111), max_motion=0.25)  # 11 px > 10 px
    assert not dv.interpolable(_shape(100), np.full((5, 2), np.nan), max_motion=10)
    assert not dv.interpolable(np.full((5, 2), np.nan), _shape(100), max_motion=10)


class _Truth:
    """Keypoints of a clip known in advance; records which frames were asked for."""

    def __init__(self, kps: np.ndarray):
        self.kps, self.calls = kps, []

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        self.calls.append(list(map(int, idx)))
        return self.kps[idx]


def test_track_interpolates_smooth_motion_and_detects_only_key_frames():
    truth = np.stack([_shape(100 + 1.5 * t) for t in range(20)])
    det = _Truth(truth)
    kps, detected, interp = dv.track(20, det, every=4, max_motion=0.25)
    np.testing.assert_allclose(kps, truth)  # linear motion: interpolation is exact
    assert det.calls == [[0, 4, 8, 12, 16, 19]]
    assert detected.sum() == 6 and interp.sum() == 14 and not (detected & interp).any()


def test_track_redetects_gaps_it_cannot_interpolate():
    truth = np.stack([_shape(100 + t) for t in range(13)])
    truth[8] = np.nan          # face lost at key frame 8: gaps 5-7 and 9-11 are detected
    truth[4] = _shape(300)     # a jump (a cut) at key frame 4: gaps 1-3 and 5-7 are detected
    det = _Truth(truth)
    kps, detected, interp = dv.track(13, det, every=4, max_motion=0.25)
    assert det.calls == [[0, 4, 8, 12], [1, 2, 3, 5, 6, 7, 9, 10, 11]]
    assert detected.all() and not interp.any()
    np.testing.assert_array_equal(np.isnan(kps), np.isnan(truth))


def test_track_every_frame_and_known_first_frame():
    truth = np.stack([_shape(100 + t) for t in range(7)])
    det = _Truth(truth)
    kps, detected, interp = dv.track(7, det, every=1, max_motion=0.0)
    assert det.calls == [list(range(7))] and detected.all() and not interp.any()
    det = _Truth(truth)
    kps, detected, interp = dv.track(7, det, every=3, max_motion=0.25, first=truth[0])
    assert det.calls == [[3, 6]] and not detected[0] and not interp[0]
    np.testing.assert_allclose(kps, truth)


# ------------------------------------------------------------------------- streamed clips (fake MTCNN)


class _FakeDetector:
    """Stands in for FaceDetector: a frame's (uniform) grey value v says where its face is, in the pixels of
    the image it receives; v in ``no_face`` means no face."""

    def __init__(self, no_face=()):
        self.min_face_size = 20.0
        self.no_face = set(no_face)
        self.seen_sizes, self.n_images = set(), 0

    def detect(self, images, batch_size=64):
        n = len(images)
        self.n_images += n
        kps = np.full((n, 5, 2), np.nan, np.float32)
        for i, img in enumerate(images):
            self.seen_sizes.add(img.shape[:2])
            v = int(img[0, 0, 0])
            if v not in self.no_face:
                kps[i] = _shape(50 + v, 60)
        found = np.isfinite(kps[:, 0, 0])
        return Detections(boxes=np.where(found[:, None], 1.0, np.nan).astype(np.float32).repeat(4, 1),
                          keypoints=kps, scores=np.where(found, 0.99, np.nan).astype(np.float32))


def _frames(n: int, h: int = 576, w: int = 720):
    for t in range(n):
        yield np.full((h, w, 3), t + 1, np.uint8)


@pytest.mark.parametrize("n", [1, 2, 13, 49, 50, 51])
def test_detect_frames_streams_windows_and_maps_back(n):
    pol = dv.VideoPolicy(detect_every=3, window=12, min_face_fraction=0.1, face_px=40)
    det = _FakeDetector(no_face={19})  # frame 18, a key frame, has no face
    out = dv.detect_frames(_frames(n), det, pol)
    assert len(out) == n and out.frame_size == (576, 720) and out.detection_size == (400, 500)
    assert det.seen_sizes == {(400, 500)} and det.min_face_size == 40
    want = np.stack([_shape(50 + t + 1, 60) for t in range(n)])
    if n >= 19:
        want[18] = np.nan
    want = dv.to_frame_pixels(want, (400, 500), (576, 720))
    np.testing.assert_allclose(out.keypoints, want, atol=1e-3)
    assert not (out.detected & out.interpolated).any() and (out.detected | out.interpolated).all()
    c = out.counts()
    assert c["frames"] == n and c["detected"] + c["interpolated"] == n == det.n_images + c["interpolated"]
    assert c["with_face"] == n - (n >= 19)
    if n == 51:  # key frames 0, 3, ..., 48, 50 (17 + 1) + frames 16, 17, 19, 20 around the lost face
        assert c["detected"] == 22


def test_detect_frames_rejects_bad_frames():
    det = _FakeDetector()
    with pytest.raises(ValueError, match="no frame"):
        dv.detect_frames([], det)
    with pytest.raises(ValueError, match="one size"):
        dv.detect_frames([np.zeros((60, 80, 3), np.uint8), np.zeros((60, 81, 3), np.uint8)], det)
    with pytest.raises(ValueError, match="RGB"):
        dv.detect_frames([np.zeros((60, 80), np.uint8)], det)


def test_small_frames_search_faces_from_pnet_size():
    det = _FakeDetector()
    dv.detect_frames(_frames(3, 48, 64), det, dv.VideoPolicy())
    assert det.seen_sizes == {(48, 64)} and det.min_face_size == 12.0


# --------------------------------------------------------------------------------- worker processes


def _write_clip(path: Path, n: int = 6) -> Path:
    from emotiw_utils.datasets.video import write_clip

    write_clip(path, np.full((n, 48, 64, 3), 90, np.uint8), fps=10)
    return path


def _cheap_init(device, policy):
    dv._WORKER.update(detector=_FakeDetector(), policy=policy)


def _failing_detect_clip(path, detector, policy):
    if Path(path).name.startswith("boom"):
        raise KeyError("the worker's own error")
    return dv.detect_frames(iter_frames(Path(path)), detector, policy)


@pytest.mark.parametrize("workers", [1, 2])
def test_detect_clips_counts_unreadable_and_raises_worker_errors_intact(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(dv, "_START_METHOD", "fork")  # the stand-ins below reach forked workers only
    monkeypatch.setattr(dv, "SMALL_JOB_ITEMS", 0)  # a pool however small the job (choose_workers)
    monkeypatch.setattr(dv, "_init_worker", _cheap_init)
    monkeypatch.setattr(dv, "_init_here", _cheap_init)
    good = _write_clip(tmp_path / "good.avi")
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    text = tmp_path / "text.avi"
    text.write_text("not a video")
    res = dv.detect_clips([good, empty, text, tmp_path / "missing.avi"], workers=workers)
    assert isinstance(res[0], dv.VideoKeypoints) and len(res[0]) == 6
    for r, p in zip(res[1:], [empty, text, tmp_path / "missing.avi"]):
        assert isinstance(r, DataFormatError) and r.path == p
    # any other error crosses the process boundary with its type and message, the clip named
    monkeypatch.setattr(dv, "detect_clip", _failing_detect_clip)
    boom = _write_clip(tmp_path / "boom.avi")
    with pytest.raises(KeyError, match="the worker's own error") as info:
        dv.detect_clips([good, boom, good], workers=workers)
    assert any(str(boom) in note for note in getattr(info.value, "__notes__", []))


def test_detect_clips_spawned_workers_run_mtcnn(tmp_path, monkeypatch):
    """The real path: spawned workers load MTCNN and return one result per clip, in order (this process
    ran multi-threaded MTCNN first, after which forked workers could hang)."""
    from emotiw_utils.detect import FaceDetector

    monkeypatch.setattr(dv, "SMALL_JOB_ITEMS", 0)  # a pool however small the job (choose_workers)

    FaceDetector().detect(np.zeros((2, 40, 40, 3), np.uint8))
    clips = [_write_clip(tmp_path / f"c{i}.avi", n=4 + i) for i in range(3)]
    res = dv.detect_clips([clips[0], tmp_path / "missing.avi", clips[1], clips[2]], workers=2)
    assert [len(r) if isinstance(r, dv.VideoKeypoints) else None for r in res] == [4, None, 5, 6]
    assert isinstance(res[1], DataFormatError)


# ------------------------------------------------------------------------------ real CREMA-D clips

needs_cremad = pytest.mark.skipif(not CREMAD.is_dir() or not list(CREMAD.glob("*.flv")),
                                  reason=f"real CREMA-D sample not available at {CREMAD}")


@needs_cremad
def test_real_clips_fast_path_matches_full_resolution_mtcnn():
    """The fast path on a real clip against MTCNN on every full-size frame (min_face_size 20): same frames
    with a face, keypoints within 5 % of the eye distance."""
    from emotiw_utils.datasets.video import read_frames
    from emotiw_utils.detect import FaceDetector

    clip = min(CREMAD.glob("*.flv"))
    detector = FaceDetector(min_face_size=20)
    fast = dv.detect_clip(clip, detector, dv.VideoPolicy())
    frames = read_frames(clip)
    ref = FaceDetector(min_face_size=20).detect(frames, batch_size=16)
    assert len(fast) == len(frames) and fast.frame_size == frames.shape[1:3]
    assert abs(fast.found.mean() - ref.detection_rate) <= 0.01
    both = fast.found & ref.found
    err = np.linalg.norm(fast.keypoints[both] - ref.keypoints[both], axis=-1).mean(axis=1)
    assert (err / dv.eye_distance(ref.keypoints[both])).mean() < 0.05
    assert fast.counts()["interpolated"] > 0  # the policy did skip frames


@needs_cremad
@pytest.mark.parametrize("pool", [True, False])
def test_real_clips_detected_and_aligned_end_to_end(tmp_path, monkeypatch, pool):
    """The six CREMA-D clips as an AFEW tree (Train: four, Val: two), no sidecars: MTCNN in two spawned worker
    processes (``pool``) or in this process (the job is small: choose_workers), alignment onto a FER-like mean
    shape, 48x48 faces with a face in most frames; every face, flag and count as stage 01's former two passes
    (detect on one decode, align the gray frames of another) have them, bit for bit."""
    from emotiw_utils import aligned, faces
    from emotiw_utils.datasets.afew import scan_afew
    from emotiw_utils.datasets.video import read_video
    from emotiw_utils.detect import FaceDetector

    clips = sorted(CREMAD.glob("*.flv"))
    emotion = {"ANG": "Angry", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"}
    for i, c in enumerate(clips):
        split = "Train" if i < 4 else "Val"
        d = tmp_path / split / emotion[c.stem.split("_")[2]]
        d.mkdir(parents=True)
        (d / f"{c.stem}.avi").symlink_to(c)  # the container is probed from the content, not the suffix
    # a FER2013-like mean shape in a 48x48 crop (eyes at a third of the height)
    fer_mean = np.array([[15.0, 18], [33, 18], [24, 27], [17, 35], [31, 35]])
    if pool:
        monkeypatch.setattr(dv, "SMALL_JOB_ITEMS", 0)
    assert dv.choose_workers(2, clips[:4]) == (2 if pool else 1)  # the Train clips: detected first
    out, aligner, info = aligned.align_afew(tmp_path, fer_mean, seed=0, workers=2, splits=("Train", "Val"))
    kp = info["keypoints"]
    assert kp["detected"] == 6 and kp["sidecar"] == 0 and kp["unreadable"] == 0 and not info["unreadable"]
    assert kp["decoded_twice"] == 4  # Train: detected before AFEW's transform exists; Val: one decode
    n_frames = sum(len(a.faces) for a in out.values())
    assert kp["frames_detected"] + kp["frames_interpolated"] == n_frames
    assert 0 < kp["frames_interpolated"] < n_frames
    for split, n in (("Train", 4), ("Val", 2)):
        a = out[split]
        assert len(a) == n and a.faces.shape[1:] == (faces.FACE_SIZE, faces.FACE_SIZE) == (48, 48)
        assert a.faces.dtype == np.uint8 and a.has_face.mean() > 0.9 and not a.clip_no_face.any()
        assert all(50 <= len(a.clip(i)) <= 80 for i in range(n))
    if pool:
        return
    # the former two passes, clip by clip: keypoints from one decode, faces from the gray frames of another
    records = scan_afew(tmp_path, ("Train", "Val"))
    det = FaceDetector(min_face_size=dv.VideoPolicy().face_px)
    train = [dv.detect_clip(r.path, det).keypoints for r in records if r.split == "Train"]
    want = aligned.AfewAligner(aligned.fit_afew_alignment(train, fer_mean),
                               aligned.fallback_keypoints(train, [(360, 480)] * len(train)))
    np.testing.assert_array_equal(aligner.alignment.transform, want.alignment.transform)
    np.testing.assert_array_equal(aligner.fallback, want.fallback)
    index = {"Train": 0, "Val": 0}
    for r in records:
        i = index[r.split]
        index[r.split] += 1
        kps = dv.detect_clip(r.path, det).keypoints
        f, has, _ = want.align(read_video(r.path, gray=True).frames, kps, aligned.clip_noise(0, r.split, i))
        np.testing.assert_array_equal(out[r.split].clip(i), f)
        np.testing.assert_array_equal(out[r.split].has_face[out[r.split].offsets[i]:out[r.split].offsets[i + 1]], has)


def test_choose_workers_runs_small_jobs_in_this_process(monkeypatch):
    """A pool only when its workers, once started, end the work sooner than this process's threads would
    (the frames from the headers); from SMALL_JOB_ITEMS clips per worker on, always."""
    frames = {}
    monkeypatch.setattr(dv, "_probe_frames", lambda paths: sum(frames[p] for p in paths))
    frames.update({f"c{i}": 65 for i in range(32)}, big=3000)
    assert dv.choose_workers(2, ["c0", "c1"]) == 1  # 130 frames, 1.4 s of MTCNN: 0.9 s in 2 threads, 3.2 in a pool
    assert dv.choose_workers(2, [f"c{i}" for i in range(8)]) == 1  # 5.5 s: 3.7 s in threads, 5.2 s in a pool
    assert dv.choose_workers(2, ["c0", "big"]) == 2  # 32 s: 21.5 s in threads, 18.6 s in a pool
    assert dv.choose_workers(2, [f"c{i}" for i in range(32)]) == 2  # 16 clips per worker: not even counted
    assert dv.choose_workers(2, [], [f"c{i}" for i in range(6)]) == 1  # alignment alone: 0.8 s of work
    assert dv.choose_workers(2, [], ["big", "c0"]) == 2
    assert dv.choose_workers(1, ["big"]) == 1 and dv.choose_workers(4, ["big"]) == 1  # one clip, one process
    assert dv.choose_workers(0, ["big", "c0"]) == min(2, os.cpu_count())
    assert dv.in_process_threads(0, 5) == min(2, os.cpu_count()) and dv.in_process_threads(1, 5) == 1


def test_clips_in_this_process_run_in_threads_with_errors_named(tmp_path, monkeypatch):
    """A small job runs in threads of this process (torch and OpenCV on one thread each meanwhile, restored
    after): the results in order, an unreadable clip a result, any other error raised with the clip named."""
    import cv2
    import torch

    monkeypatch.setattr(dv, "_init_here", _cheap_init)
    good = [_write_clip(tmp_path / f"good{i}.avi", n=3 + i) for i in range(4)]
    threads = torch.get_num_threads(), cv2.getNumThreads()
    seen = []

    def spy(path, detector, policy):
        seen.append((torch.get_num_threads(), cv2.getNumThreads(), threading.current_thread().name))
        if Path(path).name.startswith("boom"):
            raise KeyError("the worker's own error")
        return dv.detect_frames(iter_frames(Path(path)), detector, policy)

    monkeypatch.setattr(dv, "detect_clip", spy)
    res = dv.detect_clips([*good, tmp_path / "missing.avi"], workers=2)
    assert [len(r) for r in res[:4]] == [3, 4, 5, 6] and isinstance(res[4], DataFormatError)
    assert {s[:2] for s in seen} == {(1, 1)} and (torch.get_num_threads(), cv2.getNumThreads()) == threads
    assert len({s[2] for s in seen}) == min(2, os.cpu_count())
    boom = _write_clip(tmp_path / "boom.avi")
    with pytest.raises(KeyError, match="the worker's own error") as info:
        dv.detect_clips([good[0], boom, good[1]], workers=2)
    assert any(str(boom) in note for note in getattr(info.value, "__notes__", []))
