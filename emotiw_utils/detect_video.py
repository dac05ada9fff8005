"""Fast face and keypoint detection in video frames (paper section 2.1.2, step 1, on AFEW's frames).

MTCNN (:class:`emotiw_utils.detect.FaceDetector`) on every full-size frame, searching faces from 20 pixels
up, is the slow part of stage 01 on real video. Its cost grows with the image it sees and with the
smallest face it searches for, and AFEW's faces are large. :class:`VideoPolicy` states what is done
instead, per clip:

1. **Detection resolution.** The smallest face worth finding is ``min_face_fraction`` of the frame's
   shorter side. Each frame is downscaled (``cv2.INTER_AREA``; never upscaled) so that this face is
   ``face_px`` pixels (:func:`detection_scale`), and MTCNN searches faces from ``face_px`` up in the
   downscaled frame. Boxes and keypoints are mapped back to the frame's pixels (:func:`to_frame_pixels`).
2. **Key frames and interpolation.** MTCNN runs on every ``detect_every``-th frame and on the last one
   (:func:`key_frames`), in batches. A frame between two detected frames gets its keypoints linearly
   interpolated between theirs when both found a face and no keypoint moved more than ``max_motion``
   eye distances from one to the other (:func:`interpolable`); otherwise (a face lost or found, a fast
   move, a cut) every frame in between is detected as well. ``detect_every=1`` detects every frame.
3. **One decode, many processes.** Each clip is decoded once, streamed, and its frames downscaled as
   they come (:class:`FrameTracker`: at most ``window`` frames in memory; stage 01 aligns each frame in
   the same decode as soon as its keypoints are known, :func:`emotiw_utils.aligned.align_clip_stream`);
   clips are spread over worker processes (:func:`detect_clips`, with
   :func:`emotiw_utils.workers.process_map`: a worker's error reaches the caller intact, naming the clip,
   and the pool is always shut down), unless the job is too small to pay for starting them
   (:func:`choose_workers`: the clips then go to threads of this process, :func:`map_clips`).

Each clip's :class:`VideoKeypoints` counts its frames detected and interpolated.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotiw_utils.constants import KEYPOINTS
from emotiw_utils.datasets.video import DecodeReport, iter_frames
from emotiw_utils.errors import DataFormatError

__all__ = [
    "FrameTracker",
    "VideoKeypoints",
    "VideoPolicy",
    "borrowed_detector",
    "choose_workers",
    "detect_clip",
    "detect_clips",
    "detect_frames",
    "detection_scale",
    "detection_size",
    "eye_distance",
    "in_process_threads",
    "interpolable",
    "key_frames",
    "map_clips",
    "to_frame_pixels",
    "track",
]

_N_KP = len(KEYPOINTS)
_LE, _RE = KEYPOINTS.index("left_eye"), KEYPOINTS.index("right_eye")
#: P-Net's input size: MTCNN cannot search for faces smaller than this in the image it sees.
_PNET_PX = 12


@dataclass(frozen=True)
class VideoPolicy:
    """How faces are found in video frames (the module docstring describes each step).

    Attributes:
        min_face_fraction: smallest face worth finding, as a fraction of the frame's shorter side.
        face_px: that face's side in the downscaled frame MTCNN sees (frames are never upscaled).
        detect_every: MTCNN on every k-th frame (and the last); 1: on every frame.
        max_motion: largest keypoint move between two detected frames, in eye distances, that still
            lets the frames in between be interpolated.
        batch_size: frames per MTCNN forward pass.
        window: most decoded frames held at once per clip (rounded down to a multiple of ``detect_every``).
    """

    min_face_fraction: float = 0.1
    face_px: float = 32.0
    detect_every: int = 3
    max_motion: float = 0.25
    batch_size: int = 32
    window: int = 96

    def __post_init__(self) -> None:
        if not 0.0 < self.min_face_fraction <= 1.0:
            raise ValueError(f"min_face_fraction must be in (0, 1]; got {self.min_face_fraction!r}")
        if self.face_px < _PNET_PX:
            raise ValueError(f"face_px must be >= {_PNET_PX} (P-Net's input size); got {self.face_px!r}")
        if int(self.detect_every) != self.detect_every or self.detect_every < 1:
            raise ValueError(f"detect_every must be an integer >= 1; got {self.detect_every!r}")
        if not self.max_motion >= 0.0:
            raise ValueError(f"max_motion must be >= 0 eye distances; got {self.max_motion!r}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1; got {self.batch_size!r}")
        if int(self.window) != self.window or self.window < self.detect_every:
            raise ValueError(f"window must be an integer >= detect_every ({self.detect_every}); got {self.window!r}")

    @property
    def span(self) -> int:
        """Frames per streamed window: the largest multiple of ``detect_every`` not above ``window``."""
        return self.window - self.window % self.detect_every

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------- geometry


def detection_scale(height: int, width: int, min_face_fraction: float, face_px: float) -> float:
    """Factor (<= 1) by which an ``height x width`` frame is downscaled before MTCNN, so that a face of
    ``min_face_fraction`` of its shorter side becomes ``face_px`` pixels; 1 when that face is smaller."""
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive; got {height}x{width}")
    return float(min(1.0, face_px / (min_face_fraction * min(height, width))))


def detection_size(height: int, width: int, policy: VideoPolicy) -> tuple[int, int]:
    """``(height, width)`` of the image MTCNN sees for an ``height x width`` frame under ``policy``."""
    s = detection_scale(height, width, policy.min_face_fraction, policy.face_px)
    return max(1, round(height * s)), max(1, round(width * s))


def to_frame_pixels(points: np.ndarray, detection_hw: tuple[int, int], frame_hw: tuple[int, int]) -> np.ndarray:
    """``(..., 2)`` pixel ``(x, y)`` in the downscaled image of size ``detection_hw`` -> the same points in the
    frame of size ``frame_hw`` (pixel ``i`` centred at ``i`` in both, as MTCNN and ``cv2.resize`` have it)."""
    pts = np.asarray(points, dtype=np.float64)
    ratio = np.array([frame_hw[1] / detection_hw[1], frame_hw[0] / detection_hw[0]])
    return ((pts + 0.5) * ratio - 0.5).astype(np.float32)


def eye_distance(keypoints: np.ndarray) -> np.ndarray:
    """``(...)`` distance between the two eyes of ``(..., 5, 2)`` keypoints (NaN where there is no face)."""
    k = np.asarray(keypoints, dtype=np.float64)
    return np.linalg.norm(k[..., _LE, :] - k[..., _RE, :], axis=-1)


# ------------------------------------------------------------------------------ key frames, tracking


def key_frames(n: int, every: int) -> np.ndarray:
    """Indices of the frames MTCNN runs on first: ``0, every, 2 every, ...`` and the last frame."""
    if n < 0 or every < 1:
        raise ValueError(f"need n >= 0 and every >= 1; got n={n}, every={every}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.append(np.arange(0, n, every), n - 1)).astype(np.int64)


def interpolable(a: np.ndarray, b: np.ndarray, max_motion: float) -> bool:
    """Whether the frames between two detected frames with keypoints ``a`` and ``b`` (``(5, 2)``, NaN: no
    face) may be interpolated: both have a face and no keypoint moved more than ``max_motion`` times the
    mean of their two eye distances."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    scale = 0.5 * (eye_distance(a) + eye_distance(b))
    if not scale > 0:
        return False
    return bool(np.linalg.norm(np.asarray(b, np.float64) - np.asarray(a, np.float64), axis=-1).max()
                <= max_motion * scale)


def track(n: int, detect: Callable[[np.ndarray], np.ndarray], every: int, max_motion: float,
          first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keypoints of ``n`` consecutive frames, detecting as few as the policy allows.

    Args:
        n: number of frames.
        detect: ``detect(indices)`` -> ``(len(indices), 5, 2)`` keypoints of those frames (NaN rows: no face).
            Called at most twice: the key frames (:func:`key_frames`), then every frame of the gaps that
            could not be interpolated (:func:`interpolable`).
        every: detect every ``every``-th frame first.
        max_motion: see :func:`interpolable`.
        first: keypoints of frame 0 when they are known already (it is then not detected again).

    Returns:
        (keypoints ``(n, 5, 2)`` float64, detected ``(n,)`` bool: MTCNN ran on the frame, interpolated
        ``(n,)`` bool). Every frame is either detected or interpolated (frame 0 neither when ``first``
        is given).
    """
    kps = np.full((n, _N_KP, 2), np.nan)
    detected = np.zeros(n, dtype=bool)
    interpolated = np.zeros(n, dtype=bool)
    if n == 0:
        return kps, detected, interpolated
    keys = key_frames(n, every)
    todo = keys[1:] if first is not None else keys
    if first is not None:
        kps[0] = first
    if len(todo):
        kps[todo] = detect(todo)
        detected[todo] = True
    redo = []
    for a, b in itertools.pairwise(keys):
        if b - a < 2:
            continue
        if interpolable(kps[a], kps[b], max_motion):
            t = (np.arange(a + 1, b) - a) / (b - a)
            kps[a + 1:b] = kps[a][None] + t[:, None, None] * (kps[b] - kps[a])[None]
            interpolated[a + 1:b] = True
        else:
            redo.extend(range(a + 1, b))
    if redo:
        idx = np.asarray(redo, dtype=np.int64)
        kps[idx] = detect(idx)
        detected[idx] = True
    return kps, detected, interpolated


# ------------------------------------------------------------------------------------------ one clip


@dataclass(frozen=True)
class VideoKeypoints:
    """One clip's keypoints and how they were obtained.

    Attributes:
        keypoints: ``(T, 5, 2)`` float32 pixel ``(x, y)`` in the frame (``constants.KEYPOINTS`` order); NaN
            rows where no face was found.
        detected: ``(T,)`` bool: MTCNN ran on the frame.
        interpolated: ``(T,)`` bool: keypoints interpolated between two detected frames.
        frame_size: ``(height, width)`` of the frames.
        detection_size: ``(height, width)`` of the downscaled frames MTCNN saw.
    """

    keypoints: np.ndarray
    detected: np.ndarray
    interpolated: np.ndarray
    frame_size: tuple[int, int]
    detection_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def found(self) -> np.ndarray:
        """``(T,)`` bool: the frame has keypoints (detected or interpolated)."""
        return np.isfinite(self.keypoints).all(axis=(1, 2))

    def counts(self) -> dict[str, int]:
        """Frames, frames detected by MTCNN, frames interpolated, frames with a face."""
        return {"frames": len(self), "detected": int(self.detected.sum()),
                "interpolated": int(self.interpolated.sum()), "with_face": int(self.found.sum())}


class _FrameError(ValueError):
    """Frames that :func:`detect_frames` cannot work on (none, or of different sizes)."""


def _downscale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if frame.shape[:2] == size:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


class FrameTracker:
    """:class:`VideoPolicy` detection on a clip's frames as they are decoded: :meth:`push` one ``(H, W, 3)``
    uint8 RGB frame at a time, :meth:`finish` after the last. Frames are downscaled as they come and taken in
    windows of ``policy.span + 1`` (the last frame of a window, a key frame, starts the next one), so at most
    ``policy.span + 1`` downscaled frames are held, whatever the clip's length.

    Each call returns the frames whose keypoints became known, as ``(keypoints, detected, interpolated)``
    chunks (:class:`VideoKeypoints`' fields, keypoints in the frame's pixels), in frame order: every frame
    pushed comes back exactly once, at most ``policy.span + 1`` frames after it was pushed.

    Args:
        detector: an :class:`emotiw_utils.detect.FaceDetector`; its ``min_face_size`` is set here to the
            policy's face size in the downscaled frame (at least P-Net's 12 pixels).
        policy: the detection policy.

    Raises (from :meth:`push` / :meth:`finish`):
        ValueError: a frame that is not ``(H, W, 3)`` uint8, frames of different sizes, or no frame at all.
    """

    def __init__(self, detector: Any, policy: VideoPolicy = VideoPolicy()) -> None:
        self.detector, self.policy = detector, policy
        self.frame_hw: tuple[int, int] | None = None
        self.det_hw: tuple[int, int] = (0, 0)
        self.n = 0
        self._carry: np.ndarray | None = None  # keypoints (detection pixels) of the frame starting the window
        self._buf: list[np.ndarray] = []

    def push(self, frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        frame = np.asarray(frame)
        i, pol = self.n, self.policy
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise _FrameError(f"frame {i} must be an (H, W, 3) uint8 RGB array; got {frame.shape} {frame.dtype}")
        if self.frame_hw is None:
            self.frame_hw = frame.shape[:2]
            self.det_hw = detection_size(*self.frame_hw, pol)
            min_face = pol.min_face_fraction * min(self.frame_hw) * (self.det_hw[0] / self.frame_hw[0])
            self.detector.min_face_size = max(float(_PNET_PX), min(float(pol.face_px), min_face))
        elif frame.shape[:2] != self.frame_hw:
            h, w = self.frame_hw
            raise _FrameError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, the first frame "
                              f"{w}x{h}: a clip's frames must all have one size")
        self.n += 1
        self._buf.append(_downscale(frame, self.det_hw))
        return [self._flush(final=False)] if len(self._buf) == pol.span + 1 else []

    def finish(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if self.frame_hw is None:
            raise _FrameError("no frame to detect faces in")
        if self._buf and (self._carry is None or len(self._buf) > 1):
            return [self._flush(final=True)]
        return []

    def _flush(self, final: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        buf, pol = self._buf, self.policy

        def run(idx: np.ndarray) -> np.ndarray:
            images = [buf[i] for i in idx]
            return self.detector.detect(images, batch_size=pol.batch_size).keypoints.astype(np.float64)

        k, det, interp = track(len(buf), run, pol.detect_every, pol.max_motion, first=self._carry)
        if self._carry is not None:  # frame 0 of this window is the last frame of the previous one: emitted there
            k, det, interp = k[1:], det[1:], interp[1:]
        self._carry, self._buf = (None, []) if final else (k[-1], [buf[-1]])
        return to_frame_pixels(k, self.det_hw, self.frame_hw), det, interp

    def result(self, chunks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> VideoKeypoints:
        """The clip's :class:`VideoKeypoints` from every chunk :meth:`push` and :meth:`finish` returned."""
        return VideoKeypoints(keypoints=np.concatenate([c[0] for c in chunks]),
                              detected=np.concatenate([c[1] for c in chunks]),
                              interpolated=np.concatenate([c[2] for c in chunks]),
                              frame_size=tuple(self.frame_hw), detection_size=self.det_hw)


def detect_frames(frames: Iterator[np.ndarray] | Sequence[np.ndarray], detector: Any,
                  policy: VideoPolicy = VideoPolicy()) -> VideoKeypoints:
    """:class:`VideoPolicy` detection on a clip's ``(H, W, 3)`` uint8 RGB frames, given as a sequence or
    streamed from an iterator (:class:`FrameTracker`: memory does not grow with the clip).

    Args:
        frames: the clip's frames, all of one size.
        detector: an :class:`emotiw_utils.detect.FaceDetector`; its ``min_face_size`` is set here to the
            policy's face size in the downscaled frame (at least P-Net's 12 pixels).
        policy: the detection policy.

    Raises:
        ValueError: no frame, or frames of different sizes.
    """
    tracker = FrameTracker(detector, policy)
    chunks = []
    for frame in frames:
        chunks.extend(tracker.push(frame))
    chunks.extend(tracker.finish())
    return tracker.result(chunks)


def detect_clip(path: str | Path, detector: Any, policy: VideoPolicy = VideoPolicy()) -> VideoKeypoints:
    """Decode the video at ``path`` once (streamed) and run :func:`detect_frames` on it. A decode error
    part-way keeps the frames decoded before it, as :func:`emotiw_utils.datasets.video.read_video` and the
    alignment do (the clip then has keypoints for those frames; its alignment reports it ``truncated``).

    Raises:
        DataFormatError: the file is missing, cannot be opened or decoded, has no video stream or no frame.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, "file not found")
    try:
        return detect_frames(iter_frames(p, report=DecodeReport()), detector, policy)
    except _FrameError as e:
        raise DataFormatError(p, str(e)) from e


# ------------------------------------------------------------------------------------------ many clips

_WORKER: dict = {}
#: How detection workers start: ``spawn``, because a process that has run multi-threaded torch (MTCNN on
#: FER2013 in the same stage, say) cannot safely fork workers that run torch again (they can wait for ever).
_START_METHOD = "spawn"

#: CPU seconds a spawned worker takes to start (Python and this package; plus torch and the MTCNN weights when
#: it detects faces), and frames one process handles per CPU second on one thread: decoded, detected (default
#: policy, 720x576 frames, 400x320 detection images) and aligned; decoded and aligned alone. Measured on the
#: 2-core AMD EPYC of ``bench/RESULTS.md`` (2026-12-01). :func:`choose_workers` weighs them to start a pool only
#: when it pays (a busy machine slows both sides alike).
START_S, START_TORCH_S = 0.5, 2.5
DETECT_FPS, ALIGN_FPS = 95.0, 500.0
#: Threads at most when clips are processed in this process, and their throughput relative to as many worker
#: processes (decoding, OpenCV and torch release the GIL, MTCNN's Python glue does not): 2 threads ran
#: detection 1.5 times as fast as one, measured as above.
IN_PROCESS_THREADS, THREAD_EFFICIENCY = 2, 0.75
#: Items from which on a pool is started without counting frames (``SMALL_JOB_ITEMS`` per worker).
SMALL_JOB_ITEMS = 16


def _probe_frames(paths: Sequence[str | Path]) -> int:
    """Frames the containers of ``paths`` state (an unreadable clip counts 0)."""
    from emotiw_utils.datasets.video import probe_clip

    n = 0
    for p in paths:
        try:
            n += probe_clip(p).n_frames
        except (DataFormatError, OSError):
            pass
    return n


def choose_workers(workers: int | None, detect_paths: Sequence[str | Path], align_paths: Sequence[str | Path] = (),
                   device: str = "cpu") -> int:
    """Processes for a job of clips to detect faces in (``detect_paths``) and clips to align only
    (``align_paths``): ``workers`` (0 or None: all cores, at most one per clip), except 1, meaning this
    process (:func:`map_clips`: in :func:`in_process_threads` threads),

    * when clips are detected on an accelerator (CUDA does not survive in spawned copies of this process,
      and the accelerator batches anyway);
    * when the job is small: fewer than :data:`SMALL_JOB_ITEMS` clips per worker, and the work their headers'
      frame counts predict (:data:`DETECT_FPS`, :data:`ALIGN_FPS`) ends sooner in this process's threads
      (:data:`THREAD_EFFICIENCY`) than in worker processes that first have to start (:data:`START_TORCH_S`
      with detection, :data:`START_S` without).
    """
    from emotiw_utils.workers import resolve_workers

    n_items = len(detect_paths) + len(align_paths)
    if detect_paths:
        from emotiw_utils.device import torch_device

        if torch_device(device).type != "cpu":
            return 1
    n = resolve_workers(workers, n_items)
    if n == 1 or n_items >= SMALL_JOB_ITEMS * n:
        return n
    work_s = _probe_frames(detect_paths) / DETECT_FPS + _probe_frames(align_paths) / ALIGN_FPS
    start_s = START_TORCH_S if detect_paths else START_S
    threads = min(n, IN_PROCESS_THREADS)
    return n if start_s + work_s / n < work_s / (threads * THREAD_EFFICIENCY) else 1


def in_process_threads(workers: int | None, n_items: int, device: str = "cpu") -> int:
    """Threads :func:`map_clips` runs in this process: as many as ``workers`` allows, at most
    :data:`IN_PROCESS_THREADS`; one on an accelerator."""
    from emotiw_utils.workers import resolve_workers

    if device != "cpu":
        from emotiw_utils.device import torch_device

        if torch_device(device).type != "cpu":
            return 1
    return min(IN_PROCESS_THREADS, resolve_workers(workers, n_items))


class _OneThreadEach:
    """Torch and OpenCV on one thread each (restored after) while clips are processed in this process, its
    threads (:func:`map_clips`) being the parallelism: MTCNN's small convolutions gain little from more and
    lose several-fold when the cores are busy; worker processes run them on one thread too, so the
    keypoints do not depend on where they ran."""

    def __enter__(self):
        import cv2

        # torch only when imported already (detection imports it choosing the workers; alignment needs none)
        self._torch = sys.modules.get("torch")
        self._threads = self._torch.get_num_threads() if self._torch else None, cv2.getNumThreads()
        if self._torch:
            self._torch.set_num_threads(1)
        cv2.setNumThreads(1)
        return self

    def __exit__(self, *exc) -> None:
        import cv2

        if self._torch:
            self._torch.set_num_threads(self._threads[0])
        cv2.setNumThreads(self._threads[1])


_FREE_DETECTORS: dict[str, list] = {}  # device -> MTCNNs loaded in this process and not in use
_DETECTORS_LOCK = threading.Lock()


@contextmanager
def borrowed_detector(device: str, policy: VideoPolicy) -> Iterator[Any]:
    """An MTCNN of this process for the duration of the block (one per thread at a time: :class:`FrameTracker`
    sets its ``min_face_size`` per clip), loaded on first use and kept for the next, per device."""
    with _DETECTORS_LOCK:
        free = _FREE_DETECTORS.setdefault(device, [])
        det = free.pop() if free else None
    if det is None:
        from emotiw_utils.detect import FaceDetector

        det = FaceDetector(device=device, min_face_size=policy.face_px)
    try:
        yield det
    finally:
        with _DETECTORS_LOCK:
            _FREE_DETECTORS.setdefault(device, []).append(det)


def _thread_map(fn: Callable[[Any], Any], items: Sequence[Any], threads: int, names: Sequence[str],
                progress: bool, desc: str, unit: str) -> list:
    """``fn(item)`` of every item, in order, in ``threads`` threads of this process; an error is raised again
    with its item named (as :func:`emotiw_utils.workers.process_map` does), the items not started cancelled."""
    from concurrent.futures import ThreadPoolExecutor

    from emotiw_utils.workers import _call

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=desc, unit=unit)
    out = []
    try:
        if threads <= 1:
            for item, name in zip(items, names):
                out.append(_call(fn, item, name))
                if bar is not None:
                    bar.update(1)
            return out
        with ThreadPoolExecutor(threads, thread_name_prefix="clips") as ex:
            futures = [ex.submit(_call, fn, item, name) for item, name in zip(items, names)]
            try:
                for f in futures:
                    out.append(f.result())
                    if bar is not None:
                        bar.update(1)
            finally:
                for f in futures:
                    f.cancel()
        return out
    finally:
        if bar is not None:
            bar.close()


def map_clips(fn: Callable[[Any], Any], items: Sequence[Any], processes: int, threads: int, *,
              names: Sequence[str], initializer: Callable, initargs: tuple, init_here: Callable,
              progress: bool = False, desc: str = "", unit: str = "clip") -> list:
    """``fn(item)`` of every item, in order: in ``processes`` spawned worker processes (each first running
    ``initializer(*initargs)``; :func:`emotiw_utils.workers.process_map`) when ``processes`` > 1, else in
    ``threads`` threads of this process (``init_here(*initargs)`` first; torch and OpenCV on one thread each,
    restored after). Errors are raised again with the item named, either way."""
    from emotiw_utils.workers import process_map

    if processes > 1:
        return list(process_map(fn, items, processes, names=names, initializer=initializer, initargs=initargs,
                                progress=progress, desc=desc, unit=unit, start_method=_START_METHOD))
    init_here(*initargs)
    with _OneThreadEach():
        return _thread_map(fn, items, threads, names, progress, desc, unit)


def _init_worker(device: str, policy: VideoPolicy) -> None:
    """Once per worker process: one thread for torch and OpenCV (the processes are the parallelism) and the
    MTCNN weights loaded once."""
    import cv2
    import torch

    from emotiw_utils.detect import FaceDetector

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _WORKER.update(detector=FaceDetector(device=device, min_face_size=policy.face_px), policy=policy)


def _init_here(device: str, policy: VideoPolicy) -> None:
    """The variant of :func:`_init_worker` for threads of this process: each clip borrows an MTCNN of this
    process (:func:`borrowed_detector`, loaded once and kept)."""
    _WORKER.update(detector=None, device=device, policy=policy)


def _detect_task(path: str) -> VideoKeypoints | DataFormatError:
    try:
        if _WORKER["detector"] is not None:  # a worker process's own
            return detect_clip(path, _WORKER["detector"], _WORKER["policy"])
        with borrowed_detector(_WORKER["device"], _WORKER["policy"]) as det:
            return detect_clip(path, det, _WORKER["policy"])
    except DataFormatError as e:  # an unreadable clip is a result (counted by the caller), not a failure
        return e


def detect_clips(paths: Sequence[str | Path], policy: VideoPolicy = VideoPolicy(), workers: int | None = 0,
                 device: str = "cpu", progress: bool = False) -> list[VideoKeypoints | DataFormatError]:
    """:func:`detect_clip` of every clip, in the order of ``paths``, over ``workers`` processes (0 or None:
    all cores; 1: in this process), or in this process's threads on an accelerator and for a small job
    (:func:`choose_workers`, :func:`map_clips`).

    Returns:
        One entry per path: its :class:`VideoKeypoints`, or the :class:`DataFormatError` saying why it could
        not be read (the caller counts and reports it).

    Raises:
        Any other error of a worker, intact, with the clip named; ``WorkerCrashed`` when a worker process
        died (:func:`emotiw_utils.workers.process_map`).
    """
    paths = [str(p) for p in paths]
    if not paths:
        return []
    return map_clips(_detect_task, paths, choose_workers(workers, paths, device=device),
                     in_process_threads(workers, len(paths), device), names=paths, initializer=_init_worker,
                     initargs=(device, policy), init_here=_init_here, progress=progress, desc="detecting faces")
