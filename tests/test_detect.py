"""MTCNN face/keypoint detection (paper 2.1.2 step 1): torchvision stand-ins, detector, real FER2013."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from emotiw_utils import detect
from emotiw_utils.constants import KEYPOINTS
from emotiw_utils.detect import Detections, FaceDetector, batched_nms, detect_static_faces, to_tensor

REPO = Path(__file__).resolve().parents[1]
FER_GZ = REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
LE, RE, NOSE, ML, MR = (KEYPOINTS.index(k) for k in KEYPOINTS)

# --------------------------------------------------------------------------------- batched_nms, to_tensor


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, thr: float) -> list[int]:
    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(idxs[j] != idxs[i] or _iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


def _random_boxes(rng: np.random.Generator, n: int, n_cat: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xy = rng.uniform(0, 100, size=(n, 2))
    wh = rng.uniform(2, 40, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.permutation(n).astype(np.float64) / n  # distinct: no ties
    return boxes, scores, rng.integers(0, n_cat, size=n)


@pytest.mark.parametrize("block", [None, 16])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_batched_nms_matches_bruteforce(monkeypatch, thr, block):
    if block is not None:  # exercise the path across blocks (kept boxes of earlier blocks suppress later ones)
        monkeypatch.setattr(detect, "_NMS_BLOCK", block)
    rng = np.random.default_rng(int(thr * 10))
    for n, n_cat in [(1, 1), (7, 1), (150, 4), (300, 3)]:
        boxes, scores, idxs = _random_boxes(rng, n, n_cat)
        want = _reference_nms(boxes, scores, idxs, thr)
        for dtype in (torch.float64, torch.float32):
            got = batched_nms(torch.tensor(boxes, dtype=dtype), torch.tensor(scores, dtype=dtype),
                              torch.tensor(idxs), thr)
            assert got.dtype == torch.int64
            assert got.tolist() == want, (n, n_cat, dtype)
        assert list(np.sort(scores[want])[::-1]) == list(scores[want])  # decreasing score


def test_batched_nms_categories_are_independent():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0, 0]), 0.5).tolist() == [0, 1, 3]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0, 0]), 0.5).tolist() == [0, 3]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 2, 3]), 0.5).tolist() == [0, 1, 2, 3]


def test_batched_nms_empty():
    got = batched_nms(torch.zeros((0, 4)), torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64), 0.5)
    assert got.dtype == torch.int64 and got.shape == (0,)


def test_to_tensor():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    t = to_tensor(img)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), img.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    f = rng.uniform(0, 300, size=(4, 6, 3)).astype(np.float32)  # float: kept as is, not scaled
    np.testing.assert_array_equal(to_tensor(f).numpy(), f.transpose(2, 0, 1))
    assert to_tensor(img[:, :, 0]).shape == (1, 5, 7)
    from PIL import Image

    np.testing.assert_allclose(to_tensor(Image.fromarray(img)).numpy(), t.numpy())


# ------------------------------------------------------------------------------------ importing lazily


def test_import_has_no_side_effects_and_no_torchvision_leaks():
    code = textwrap.dedent("""
        import importlib.util, sys
        import emotiw_utils.detect as d
        assert "facenet_pytorch" not in sys.modules, "importing emotiw_utils.detect imported facenet"
        assert "torchvision" not in sys.modules
        had_torchvision = importlib.util.find_spec("torchvision") is not None
        det = d.FaceDetector()
        assert "facenet_pytorch" in sys.modules
        if not had_torchvision:
            assert not [m for m in sys.modules if m.split(".")[0] == "torchvision"], "stub torchvision left behind"
            from facenet_pytorch.models.utils import detect_face
            assert detect_face.batched_nms is d.batched_nms and detect_face.F.to_tensor is d.to_tensor
            assert importlib.util.find_spec("torchvision") is None
        print("ok", had_torchvision)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_installed_torchvision_is_used_as_is(tmp_path):
    # a stand-in "installed" torchvision on PYTHONPATH: facenet must be imported against it, untouched
    for rel, body in [("__init__.py", "from . import ops, transforms\nINSTALLED = True\n"),
                      ("ops/__init__.py", "from . import boxes\n"),
                      ("ops/boxes.py", "from emotiw_utils.detect import batched_nms\n"),
                      ("transforms/__init__.py", "from . import functional\n"),
                      ("transforms/functional.py", "from emotiw_utils.detect import to_tensor\n")]:
        (tmp_path / "torchvision" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "torchvision" / rel).write_text(body)
    code = textwrap.dedent("""
        import sys
        import emotiw_utils.detect as d
        d.FaceDetector()
        from facenet_pytorch.models.utils import detect_face
        assert sys.modules["torchvision"].INSTALLED
        assert detect_face.F is sys.modules["torchvision.transforms.functional"]
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_missing_facenet_gives_install_hint(monkeypatch):
    monkeypatch.setattr(detect, "_FACENET", None)
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # find_spec() -> None, as if not installed
    with pytest.raises(ImportError, match=r"--no-deps facenet-pytorch==2\.6\.0"):
        FaceDetector()


# --------------------------------------------------------------------------------------------- detector


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    # facenet-pytorch must be installed (make install does it); a missing package fails here with the command
    return FaceDetector(device="cpu")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()  # (512, 512, 3) uint8 RGB, one face


def _assert_face_geometry(kp: np.ndarray) -> None:
    """Image coordinates (y down): eyes above the nose above the mouth corners, left = smaller x."""
    assert kp[LE, 0] < kp[RE, 0] and kp[ML, 0] < kp[MR, 0]
    assert kp[LE, 0] < kp[NOSE, 0] < kp[RE, 0]
    assert max(kp[LE, 1], kp[RE, 1]) < kp[NOSE, 1] < min(kp[ML, 1], kp[MR, 1])


@pytest.fixture(scope="module")
def astronaut_result(detector, astronaut) -> Detections:
    return detector.detect(astronaut[None])


def test_astronaut_one_face(astronaut_result, astronaut):
    r = astronaut_result
    assert len(r) == 1 and r.found.tolist() == [True] and r.detection_rate == 1.0
    assert r.boxes.shape == (1, 4) and r.keypoints.shape == (1, 5, 2) and r.scores.shape == (1,)
    assert r.boxes.dtype == r.keypoints.dtype == r.scores.dtype == np.float32
    x1, y1, x2, y2 = r.boxes[0]
    h, w = astronaut.shape[:2]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert 0.9 < r.scores[0] <= 1.0
    kp = r.keypoints[0]
    _assert_face_geometry(kp)
    assert ((kp[:, 0] > x1) & (kp[:, 0] < x2) & (kp[:, 1] > y1) & (kp[:, 1] < y2)).all()


def test_pick_score_and_largest_agree_on_one_face(astronaut, astronaut_result):
    r = FaceDetector(pick="score").detect(astronaut[None])
    np.testing.assert_allclose(r.keypoints, astronaut_result.keypoints, atol=1e-3)


def test_gray_astronaut_nearly_same_keypoints(detector, astronaut, astronaut_result):
    gray = np.round(astronaut @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    r = detector.detect(gray[None])
    assert r.found.all()
    np.testing.assert_allclose(r.keypoints, astronaut_result.keypoints, atol=4.0)


def test_list_of_sizes_and_upsampling_map_back(detector, astronaut, astronaut_result):
    import cv2

    half = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    blank = np.full((60, 80, 3), 128, np.uint8)
    r = detector.detect([half, blank, astronaut, blank[:, :, 0]])
    assert r.found.tolist() == [True, False, True, False]
    np.testing.assert_allclose(r.keypoints[2], astronaut_result.keypoints[0], atol=1e-3)
    full = astronaut_result.keypoints[0]
    np.testing.assert_allclose(r.keypoints[0], (full + 0.5) / 2 - 0.5, atol=3.0)  # pixel-centre scaling
    # a small copy, upsampled for detection and padded: coordinates come back in the small image's pixels
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    r = FaceDetector(upsample_to=512, pad=0.1).detect(small[None])
    assert r.found.all()
    np.testing.assert_allclose(r.keypoints[0], (full + 0.5) / 4 - 0.5, atol=2.0)


def test_noise_and_blank_find_nothing(detector):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8), np.zeros((120, 160, 3), np.uint8),
              np.full((120, 160, 3), 255, np.uint8), np.zeros((8, 8, 3), np.uint8)]
    r = detector.detect(images)
    assert not r.found.any() and r.detection_rate == 0.0
    assert np.isnan(r.boxes).all() and np.isnan(r.keypoints).all() and np.isnan(r.scores).all()
    r = detect_static_faces(rng.integers(0, 256, size=(3, 48, 48), dtype=np.uint8))
    assert r.keypoints.shape == (3, 5, 2) and not r.found.any()


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 48, 48), np.float32), "uint8"),
        (np.zeros((48, 48), np.uint8), r"\(N, H, W\)"),
        (np.zeros((2, 48, 48, 4), np.uint8), "shape"),
        (np.zeros((0, 48, 48), np.uint8), "no images"),
        ([], "empty"),
        ([np.zeros((48, 48), np.uint8), np.zeros((48, 48), np.int64)], "image 1 .*int64"),
        ([np.zeros((0, 48), np.uint8)], "empty"),
    ],
)
def test_bad_input_is_a_clear_value_error(detector, images, match):
    with pytest.raises(ValueError, match=match):
        detector.detect(images)


def test_not_an_array_is_a_type_error(detector):
    with pytest.raises(TypeError, match="got str"):
        detector.detect("face.png")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="image 0 .*got list"):
        detector.detect([[[0, 0], [0, 0]]])  # type: ignore[list-item]


def test_bad_options():
    with pytest.raises(ValueError, match="pick"):
        FaceDetector(pick="first")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upsample_to"):
        FaceDetector(upsample_to=4)
    with pytest.raises(ValueError, match="thresholds"):
        FaceDetector(thresholds=(0.6, 0.7))


def test_detections_container():
    nan = np.nan
    d = Detections(boxes=np.array([[0, 0, 1, 1], [nan] * 4], np.float32),
                   keypoints=np.stack([np.zeros((5, 2)), np.full((5, 2), nan)]).astype(np.float32),
                   scores=np.array([0.9, nan], np.float32))
    assert d.found.tolist() == [True, False] and d.detection_rate == 0.5 and len(d) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.scores = d.scores  # type: ignore[misc]
    with pytest.raises(ValueError, match="inconsistent"):
        Detections(boxes=np.zeros((2, 4)), keypoints=np.zeros((1, 5, 2)), scores=np.zeros(2))


# ------------------------------------------------------------------------------------------ real FER2013

FER_SAMPLE = 300
#: detect_static_faces found a face in 0.930 of these 300 images (and of the first 3,000) when its settings
#: were chosen.
FER_MIN_RATE = 0.85


def _first_fer_rows(path: Path, n: int) -> np.ndarray:
    images = []
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["emotion", "pixels", "Usage"]
        for row in reader:
            images.append(np.array(row[1].split(), dtype=np.uint8).reshape(48, 48))
            if len(images) == n:
                break
    return np.stack(images)


@pytest.mark.realdata
def test_real_fer2013_detection_rate():
    if not FER_GZ.is_file():
        pytest.skip(f"real FER2013 not available at {FER_GZ}")
    images = _first_fer_rows(FER_GZ, FER_SAMPLE)
    r = detect_static_faces(images)
    print(f"\nFER2013, first {FER_SAMPLE} images: detection rate {r.detection_rate:.3f}")
    assert r.detection_rate > FER_MIN_RATE
    kp = r.keypoints[r.found]
    assert ((kp > -12) & (kp < 60)).all()  # on or near the 48x48 crop
    _assert_face_geometry(kp.mean(axis=0))
    # per face too, for the large majority (a few faces are strongly turned or tilted)
    le, re, no, ml, mr = (kp[:, i] for i in range(5))
    sane = ((le[:, 0] < re[:, 0]) & (np.maximum(le[:, 1], re[:, 1]) < no[:, 1])
            & (no[:, 1] < np.minimum(ml[:, 1], mr[:, 1])))
    assert sane.mean() > 0.95
