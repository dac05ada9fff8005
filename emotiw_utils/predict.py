"""``emotiw predict``: a finished run applied to any video, with a per-frame emotion timeline.

Nothing is retrained: :class:`RunModels` loads what the run's stages persisted (stage 01's AFEW aligner, the
frame CNN, the IRNN, the k-average SVM, the audio model, the activity model, the feature-fusion network of the
regime decision fusion used, and the decision-fusion weights of stage 08's record) and :func:`predict_video`
pushes one video through the whole chain with the one-clip pieces of each stage's module:

* frames decoded with PyAV (any container and codec it reads), converted to gray as the dataset reader does;
  five keypoints per frame from the video's keypoint sidecar when it has one (the synthetic clips do), else
  from MTCNN under the run's own video detection policy (:func:`emotiw_utils.detect_video.detect_frames` with
  stage 01's ``min_face_fraction`` and ``detect_every``), as stage 01 finds them;
* aligned with the run's AFEW aligner (:meth:`emotiw_utils.aligned.AfewAligner.align`), the border noise drawn
  from :func:`emotiw_utils.aligned.clip_noise`;
* the CNN's per-frame logits (and the layer the IRNN reads), then :func:`emotiw_utils.irnn.predict_frames`,
  :func:`emotiw_utils.kavg.predict_clips`, :meth:`emotiw_utils.audio.AudioModel.probs`, the activity model's
  histogram and SVM, :func:`emotiw_utils.fusion.predict_clips` and :func:`emotiw_utils.decision.fuse_with_record`.

The run's own Test clips, predicted this way with their own noise stream, give back the run's Test
``clip_probs`` of every modality (``tests/test_predict_smoke.py``).

Clip policy, stated in every output: a video without an audio track (or with a silent, too short or
undecodable one) gets the audio model's class prior and the fusion network's zero audio input, as the audio
stage gives its clips without audio (status ``no_audio``; ``audio_short`` for a track that ends well before
the video); a track longer than the run's audio bound is described by its central window, as the audio stage
does (``audio_long``); a video in which no frame has a face is aligned with
the run's fallback face box, as stage 01 keeps such clips, and the vision modalities predict from those crops
(status ``no_face``); a file that cannot be opened or decoded is reported (status ``unreadable``) and the other
videos are still processed.

Long videos: frames are decoded as a stream and predicted window by window (``window`` seconds each), so at
most one window of frames is in memory (the audio track, 64 kB per second, is decoded whole). Without a
window, a video up to :data:`LONG_VIDEO_S` long is one clip, as an AFEW clip is; a longer one is cut into
:data:`LONG_VIDEO_WINDOW_S` windows and says so. A video-level probability is the frame-weighted mean of its
windows'.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import stages
from .constants import AUDIO_SR, EMOTIONS

__all__ = ["FUSED", "LONG_VIDEO_S", "LONG_VIDEO_WINDOW_S", "RunModels", "Segment", "VIDEO_SUFFIXES",
           "VideoPrediction", "find_videos", "iter_frame_chunks", "model_dir", "output_names", "predict_paths",
           "predict_segment", "predict_video", "save_timeline", "summary_table", "timeline_figure", "write_outputs"]

#: Name of the decision-level fusion in every output (beside the modality names of the registry).
FUSED = "fused"
#: Without ``window``, a video longer than this (seconds) is predicted in windows.
LONG_VIDEO_S: float = 60.0
#: The window (seconds) of such a video: about an AFEW clip's length.
LONG_VIDEO_WINDOW_S: float = 5.0
#: Files a folder argument contributes (any file named on the command line is tried).
VIDEO_SUFFIXES: tuple[str, ...] = (".avi", ".mp4", ".mkv", ".mov", ".flv", ".webm", ".mpg", ".mpeg", ".m4v",
                                   ".wmv", ".ogv", ".3gp", ".ts")
#: Aligned faces kept per window for the timeline's strip, and in all.
STRIP_FACES: int = 12
#: Points of the waveform envelope kept for the timeline.
WAVE_POINTS: int = 2000
#: Split name of a new video in :func:`emotiw_utils.aligned.clip_noise`.
NOISE_SPLIT = "Predict"


# ----------------------------------------------------------------------------------------------- the models

def model_dir(run_dir: str | Path, submission: int | None = None) -> Path:
    """The folder whose stages hold the models: ``run_dir`` itself, or submission ``submission``'s chain
    (1-6: ``{run_dir}/submissions/subN``, which links the stages it shares). Submission 7 keeps no model of
    its own (a search over 3 and 6 whose weights are not persisted): ValueError saying so."""
    run_dir = Path(run_dir)
    if submission is None:
        return run_dir
    from . import submissions

    sub = submissions.SUBMISSIONS.get(int(submission))
    if sub is None:
        raise ValueError(f"unknown submission {submission}; choose one of {sorted(submissions.SUBMISSIONS)}")
    if not sub.is_chain:
        raise ValueError(f"submission {submission} is a random search over the outputs of submissions "
                         f"{list(sub.combine)}, whose weights the run does not keep; predict with "
                         + " or ".join(f"--submission {n}" for n in sub.combine))
    d = submissions.submission_dir(run_dir, sub.number)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: submission {submission} has not run; run stage {stages.SUBMISSIONS.name} "
                                f"first (emotiw run --stages {stages.SUBMISSIONS.name})")
    return d


@dataclass
class RunModels:
    """Every persisted model of a finished run, loaded once (:meth:`load`), on ``device``."""

    run_dir: Path
    seed: int
    aligner: Any
    cnn: Any
    irnn: Any
    irnn_layer: str
    kavg_svm: Any
    kavg_k: int
    audio: Any
    activity: Any
    fusion: Any
    search: Any
    device: str = "cpu"
    submission: int | None = None
    #: stage 01's face detection in video frames (:class:`emotiw_utils.detect_video.VideoPolicy`; None: a run
    #: made before it had one, which ran MTCNN on every full-size frame)
    detect_policy: Any = None
    _detector: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | Path, submission: int | None = None, device: str = "cpu") -> RunModels:
        """Load the run's models (``submission``: that submission's chain, :func:`model_dir`).
        FileNotFoundError naming the stage to run when a model is missing; DataFormatError for a file that is
        not what its stage writes."""
        from . import activity_features, aligned, artifacts, audio, cnn, fusion, irnn, kavg, records
        from .device import torch_device
        from .errors import DataFormatError

        device = str(torch_device(device))
        run_dir = Path(run_dir)
        mdir = model_dir(run_dir, submission)
        manifest = artifacts.read_manifest(stages.ALIGNMENT.dir(mdir))
        if manifest is None:
            raise FileNotFoundError(f"{stages.ALIGNMENT.dir(mdir)}: no successful run; run stage "
                                    f"{stages.ALIGNMENT.name} first (emotiw run --stages {stages.ALIGNMENT.name})")
        al_path = stages.ALIGNMENT.require(mdir, "alignments")
        try:
            _, aligner = aligned.load_alignments(al_path)
        except DataFormatError as e:
            raise DataFormatError(al_path, f"{e.problem}; run stage {stages.ALIGNMENT.name} again (emotiw run "
                                           f"--stages {stages.ALIGNMENT.name} --recompute)") from e
        irnn_path = stages.IRNN.require(mdir, "irnn")
        irnn_ck = irnn.load_irnn(irnn_path, device=device)
        layer = (irnn_ck.extra or {}).get("feature_layer")
        if layer is None:
            raise DataFormatError(irnn_path, "the checkpoint does not say which CNN layer the network reads")
        search = records.read(mdir, stages.SEARCH)
        params = manifest.get("parameters", {})
        policy = None
        if "min_face_fraction" in params and "detect_every" in params:
            from .detect_video import VideoPolicy

            policy = VideoPolicy(min_face_fraction=params["min_face_fraction"], detect_every=params["detect_every"])
        return cls(run_dir=mdir, seed=int(manifest["seed"]), aligner=aligner,
                   cnn=cnn.load_cnn(stages.CNN.require(mdir, "cnn"), device=device), irnn=irnn_ck,
                   irnn_layer=str(layer), kavg_svm=kavg.load_svm(mdir), kavg_k=int(records.read(mdir, stages.KAVG).k),
                   audio=audio.AudioModel.load(mdir), activity=activity_features.ActivityModel.load(mdir),
                   fusion=fusion.load_regime(mdir, search.fusion_regime, device=device), search=search,
                   device=device, submission=submission, detect_policy=policy)

    @property
    def modalities(self) -> list[str]:
        """The modalities every prediction reports, in the registry's order."""
        return list(stages.modality_stages())

    @property
    def fusion_regime(self) -> str:
        """The training regime of the fusion network decision fusion combines (stage 08's record)."""
        return self.search.fusion_regime

    def keypoints(self, rgb: np.ndarray) -> np.ndarray:
        """``(T, 5, 2)`` MTCNN keypoints of ``(T, H, W, 3)`` RGB frames (NaN rows: no face), as stage 01 finds
        them for a clip without a sidecar: under its :attr:`detect_policy`, or on every full-size frame."""
        from .detect import FaceDetector

        if self.detect_policy is None:
            if self._detector is None:
                self._detector = FaceDetector(device=self.device)
            return self._detector.detect(rgb).keypoints
        from .detect_video import detect_frames

        if self._detector is None:
            self._detector = FaceDetector(device=self.device, min_face_size=self.detect_policy.face_px)
        return detect_frames(list(rgb), self._detector, self.detect_policy).keypoints


# ---------------------------------------------------------------------------------------- one window, one video

@dataclass
class Segment:
    """The prediction of one window of a video (the whole video when it is not windowed).

    ``probs``: modality (and :data:`FUSED`) -> ``(7,)``; ``frame_probs`` ``(T, 7)``: the CNN's softmax of every
    frame; ``has_face`` ``(T,)``: frames with their own face; ``no_face``: no frame had one (fallback box);
    ``audio_status``: one of :data:`emotiw_utils.audio.STATUSES` (the clip policy's names); ``strip``: up to
    :data:`STRIP_FACES` aligned faces and ``strip_frames`` their frame numbers (in the video); ``too_short``:
    fewer frames (or smaller ones) than one activity block, so the activity model classifies the uniform
    histogram."""

    start_frame: int
    n_frames: int
    probs: dict[str, np.ndarray]
    frame_probs: np.ndarray
    has_face: np.ndarray
    no_face: bool
    audio_status: str
    strip: np.ndarray
    strip_frames: np.ndarray
    too_short: bool = False

    @property
    def label(self) -> str:
        return EMOTIONS[int(np.argmax(self.probs[FUSED]))]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _gray(rgb: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` luminance of ``(T, H, W, 3)`` RGB frames (``cv2.COLOR_RGB2GRAY``, as the dataset reader)."""
    import cv2

    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])


def _activity_frames(gray: np.ndarray, scale: float) -> np.ndarray:
    """Gray frames resized by the activity features' ``frame_scale`` (area interpolation), as chapter 06
    resizes a decoded clip before cutting its blocks."""
    if scale == 1.0 or len(gray) == 0:
        return gray
    import cv2

    h, w = gray.shape[1:]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in gray])


def predict_segment(models: RunModels, rgb: np.ndarray, audio_signal: np.ndarray | None, audio_status: str,
                    keypoints: np.ndarray | None, rng: np.random.Generator, start_frame: int = 0) -> Segment:
    """Every modality's and the fused class probabilities of one clip (a window of a video).

    ``rgb`` ``(T, H, W, 3)`` uint8 frames; ``audio_signal``: its mono 16 kHz samples, or None with
    ``audio_status`` saying why (the audio model then gives its class prior); ``keypoints`` ``(T, 5, 2)`` (NaN
    rows: no face) or None to detect them; ``rng``: the alignment's border noise."""
    from . import audio, cnn, decision, fusion, irnn, kavg
    from .frame_features import ClipFrames

    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8 or len(rgb) == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    t = len(rgb)
    gray = _gray(rgb)
    if keypoints is None:
        keypoints = models.keypoints(rgb)
    faces, has_face, no_face = models.aligner.align(gray, keypoints, rng)

    logits = cnn.predict_logits(models.cnn, faces, device=models.device)
    if models.irnn_layer == "logits":
        feats = logits
    else:
        feats = cnn.layer_activations(models.cnn, faces, models.irnn_layer, device=models.device)
        feats = feats.detach().to("cpu").float().numpy()
    offsets = np.array([0, t], dtype=np.int64)
    frames = ClipFrames(NOISE_SPLIT, models.irnn_layer, np.array(["clip"]), np.array([-1]), offsets, feats)
    probs = {"rnn": irnn.predict_frames(models.irnn, frames, device=models.device)[0]}
    hidden = irnn.last_hidden_states(models.irnn.model, frames.sequences(models.irnn.scaler), device=models.device)
    probs["kavg"] = kavg.predict_clips(models.kavg_svm, logits, offsets, models.kavg_k)[0]
    pooled = kavg.k_average_clips(logits, offsets, models.kavg_k)

    status = audio_status
    row = np.full((1, audio.IS10_DIM), np.nan)
    if audio_signal is not None:
        status, f = audio.signal_features(audio_signal, max_seconds=models.audio.max_seconds)
        if f is not None:
            row[0] = f
    probs["audio"] = models.audio.probs(row)[0]

    act = models.activity
    scaled = _activity_frames(gray, act.features.settings.frame_scale)
    hist = act.features.histograms_of([scaled], device=models.device)
    block = act.features.whitener
    too_short = scaled.shape[0] < block.depth or min(scaled.shape[1:]) < block.size
    probs["activity"] = act.probs(hist)[0]

    inputs = {"rnn": hidden, "kavg": pooled, "audio": models.audio.fusion_inputs(row)}
    missing = [m for m in models.fusion.model.modalities if m not in inputs]
    if missing:
        raise ValueError(f"the fusion network reads modalities {missing}, which predict does not compute")
    probs["fusion"] = fusion.predict_clips(models.fusion, {m: inputs[m] for m in models.fusion.model.modalities},
                                           device=models.device)[0]
    probs[FUSED] = decision.fuse_with_record({m: p[None] for m, p in probs.items()}, models.search)[0]

    keep = np.unique(np.linspace(0, t - 1, min(STRIP_FACES, t)).round().astype(np.int64))
    return Segment(start_frame=int(start_frame), n_frames=t, probs=probs, frame_probs=_softmax(logits),
                   has_face=np.asarray(has_face, dtype=bool), no_face=bool(no_face), audio_status=status,
                   strip=faces[keep].copy(), strip_frames=keep + int(start_frame), too_short=bool(too_short))


@dataclass
class VideoPrediction:
    """What :func:`predict_video` found for one file. ``status``: ``ok``, ``unreadable`` (``error`` then says
    why), or the problems found joined by ``+`` (``no_audio``, ``audio_short``, ``audio_long``, ``no_face``,
    ``too_short``, e.g. ``no_audio+no_face``; the names of :mod:`emotiw_utils.clip_policy`); ``notes``: the clip policy applied, in words; ``window_s``: the window length (None:
    one clip)."""

    path: Path
    status: str
    error: str | None = None
    fps: float = 0.0
    n_frames: int = 0
    window_s: float | None = None
    segments: list[Segment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wave_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wave: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fusion_regime: str = ""
    submission: int | None = None

    @property
    def ok(self) -> bool:
        return self.status != "unreadable"

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps else 0.0

    @property
    def probs(self) -> dict[str, np.ndarray]:
        """Video-level probabilities: the frame-weighted mean over the windows, per modality and fused."""
        if not self.segments:
            return {}
        w = np.array([s.n_frames for s in self.segments], dtype=np.float64)
        return {m: np.average(np.stack([s.probs[m] for s in self.segments]), axis=0, weights=w)
                for m in self.segments[0].probs}

    @property
    def label(self) -> str | None:
        """The emotion of the fused decision (None when unreadable)."""
        p = self.probs
        return EMOTIONS[int(np.argmax(p[FUSED]))] if p else None

    def rows(self) -> list[dict[str, Any]]:
        """One row per modality and the fused decision of the video (``window`` ``"video"``), then, for a
        windowed video, of every window: the CSV's rows."""
        base = {"video": self.path.name, "status": self.status}
        if not self.ok:
            return [{**base, "window": "video", "start_s": None, "end_s": None, "modality": None, "emotion": None,
                     **{f"p_{e}": None for e in EMOTIONS}}]
        parts = [("video", 0, self.n_frames, self.probs)]
        if len(self.segments) > 1 or self.window_s is not None:
            parts += [(str(i), s.start_frame, s.start_frame + s.n_frames, s.probs) for i, s in enumerate(self.segments)]
        out = []
        for name, a, b, probs in parts:
            for m, p in probs.items():
                out.append({**base, "window": name, "start_s": round(a / self.fps, 3), "end_s": round(b / self.fps, 3),
                            "modality": m, "emotion": EMOTIONS[int(np.argmax(p))],
                            **{f"p_{e}": round(float(v), 6) for e, v in zip(EMOTIONS, p)}})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON output: the file, status and policy notes, the models, and the probabilities of every
        modality and the fused decision (video level and per window)."""
        def probs(p):
            return {m: {e: float(v) for e, v in zip(EMOTIONS, q)} for m, q in p.items()}

        return {"video": str(self.path), "status": self.status, "error": self.error, "notes": self.notes,
                "fps": self.fps, "frames": self.n_frames, "duration_s": round(self.duration_s, 3),
                "window_s": self.window_s, "fusion_regime": self.fusion_regime, "submission": self.submission,
                "emotion": self.label, "probs": probs(self.probs),
                "windows": [{"start_s": round(s.start_frame / self.fps, 3),
                             "end_s": round((s.start_frame + s.n_frames) / self.fps, 3), "emotion": s.label,
                             "frames_with_face": int(s.has_face.sum()), "no_face": s.no_face,
                             "audio": s.audio_status, "probs": probs(s.probs)} for s in self.segments]}


def iter_frame_chunks(path: str | Path, chunk: int | None) -> Iterator[np.ndarray]:
    """Decode a video's frames as ``(n, H, W, 3)`` uint8 RGB chunks of ``chunk`` frames (the last may be
    shorter; None: all frames in one chunk), holding one chunk at a time. DataFormatError naming the file when
    it cannot be opened or decoded, or holds no frame."""
    from .datasets.video import iter_frames
    from .errors import DataFormatError

    buf: list[np.ndarray] = []
    n = 0
    for frame in iter_frames(path):
        buf.append(frame)
        if chunk is not None and len(buf) == chunk:
            n += len(buf)
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)
    elif n == 0:
        raise DataFormatError(Path(path), "no video frame could be decoded")


def _audio_track(path: Path, video_s: float | None = None) -> tuple[np.ndarray | None, str]:
    """The whole audio track at 16 kHz and ``"ok"``, or None and why not (:data:`emotiw_utils.audio.STATUSES`).
    ``video_s``: the video's length, when the track is used as one clip: a track that ends well before the
    video (:func:`emotiw_utils.datasets.video.audio_short`) is ``"audio_short"``, as the audio stage has it (the
    track is returned for the timeline, not used)."""
    from .datasets.video import NoAudioError, audio_short, read_audio
    from .errors import DataFormatError

    try:
        x = read_audio(path, AUDIO_SR)
    except NoAudioError:
        return None, "no_audio"
    except (DataFormatError, OSError):
        return None, "unreadable"
    if video_s is not None and audio_short(len(x) / AUDIO_SR, video_s):
        return x, "audio_short"
    return x, "ok"


def _envelope(signal: np.ndarray | None, points: int = WAVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(times in s, peak amplitude)`` of ``points`` equal bins of the signal (empty without audio)."""
    if signal is None or len(signal) == 0:
        return np.zeros(0), np.zeros(0)
    n = min(points, len(signal))
    edges = np.linspace(0, len(signal), n + 1).astype(np.int64)
    peak = np.maximum.reduceat(np.abs(signal), edges[:-1])
    return (edges[:-1] + edges[1:]) / 2 / AUDIO_SR, peak.astype(np.float32)


def _status(segments: Sequence[Segment]) -> tuple[str, list[str]]:
    """The clip-policy status of a predicted video and its notes."""
    flags, notes = [], []
    from .audio import missing

    lost = [s for s in segments if missing([s.audio_status])[0]]
    bad_audio = sorted({s.audio_status for s in lost})
    if bad_audio:
        # the clip policy's names (emotiw_utils.clip_policy): a track that ends early or lasts under 0.1 s is
        # audio_short, any other unusable track (none, silent, undecodable) leaves the clip without audio
        flags.append("audio_short" if bad_audio == ["audio_short"] else "no_audio")
        where = "" if len(segments) == 1 else f" in {len(lost)} of {len(segments)} windows"
        notes.append(f"audio: {', '.join(bad_audio)}{where}: the audio model gives the class prior of its "
                     "training clips and the fusion network a zero audio input (as the audio stage does)")
    long = [s for s in segments if s.audio_status == "audio_long"]
    if long:
        flags.append("audio_long")
        where = "" if len(segments) == 1 else f" in {len(long)} of {len(segments)} windows"
        notes.append(f"audio longer than the run's bound{where}: described by its central window (as the audio "
                     "stage does)")
    no_face = [s for s in segments if s.no_face]
    if no_face:
        flags.append("no_face")
        where = "" if len(segments) == 1 else f" in {len(no_face)} of {len(segments)} windows"
        notes.append(f"no face found in any frame{where}: aligned with the run's fallback face box (as stage "
                     f"{stages.ALIGNMENT.name} keeps such clips); the vision modalities predict from those crops")
    short = [s for s in segments if s.too_short]
    if short:
        flags.append("too_short")
        where = "" if len(segments) == 1 else f" ({len(short)} of {len(segments)} windows)"
        notes.append(f"fewer frames than one activity block{where}: the activity model classifies the uniform "
                     "histogram (as the activity stage does)")
    missing = sum(int((~s.has_face).sum()) for s in segments if not s.no_face)
    if missing:
        notes.append(f"{missing} frames without a face took the keypoints of the nearest frame with one")
    return ("+".join(flags) or "ok"), notes


def predict_video(path: str | Path, models: RunModels, window: float | None = None,
                  noise: np.random.Generator | None = None) -> VideoPrediction:
    """Predict one video (see the module docstring): never raises for a bad file, which comes back with
    status ``unreadable`` and the error. ``window``: seconds per window (None: one clip, or
    :data:`LONG_VIDEO_WINDOW_S` windows beyond :data:`LONG_VIDEO_S`); ``noise``: the alignment's border noise
    (default: :func:`emotiw_utils.aligned.clip_noise` of the run's seed for a new video)."""
    from .aligned import clip_noise
    from .datasets.keypoints import keypoints_path_for, read_keypoints
    from .datasets.video import probe_clip
    from .errors import DataFormatError

    path = Path(path)
    if window is not None and not float(window) > 0:
        raise ValueError(f"window must be a positive number of seconds, got {window!r}")
    out = VideoPrediction(path=path, status="unreadable", fusion_regime=models.fusion_regime,
                          submission=models.submission)
    try:
        info = probe_clip(path)
        out.fps = float(info.fps)
        if window is None and info.duration_s > LONG_VIDEO_S:
            window = LONG_VIDEO_WINDOW_S
            out.notes.append(f"{info.duration_s:.0f} s long (over {LONG_VIDEO_S:.0f} s): predicted in "
                             f"{LONG_VIDEO_WINDOW_S:g} s windows (set --window to choose)")
        out.window_s = None if window is None else float(window)
        chunk = None if window is None else max(1, int(round(float(window) * out.fps)))
        sidecar = keypoints_path_for(path)
        kps_all = read_keypoints(sidecar) if sidecar.is_file() else None
        if kps_all is not None:
            out.notes.append(f"keypoints from the sidecar {sidecar.name} (not detected)")
        signal, audio_status = _audio_track(path, info.duration_s if chunk is None else None)
        rng = noise if noise is not None else clip_noise(models.seed, NOISE_SPLIT, 0)
        start = 0
        for rgb in iter_frame_chunks(path, chunk):
            n = len(rgb)
            kps = None
            if kps_all is not None:
                kps = np.full((n, *kps_all.shape[1:]), np.nan)
                part = kps_all[start:start + n]
                kps[:len(part)] = part
            seg_signal = signal if audio_status == "ok" else None
            if seg_signal is not None and chunk is not None:
                a = int(round(start / out.fps * AUDIO_SR))
                b = len(signal) if n < chunk else int(round((start + n) / out.fps * AUDIO_SR))
                seg_signal = signal[a:b]
            out.segments.append(predict_segment(models, rgb, seg_signal, audio_status, kps, rng, start))
            start += n
        out.n_frames = start
    except DataFormatError as e:
        out.segments, out.error = [], str(e)
        return out
    out.status, notes = _status(out.segments)
    out.notes += notes
    out.wave_t, out.wave = _envelope(signal)
    return out


# ---------------------------------------------------------------------------------------------- many videos

def find_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """The videos of ``inputs``: a file is taken as it is (a broken or missing one is then reported); a folder
    gives its files with a video suffix (:data:`VIDEO_SUFFIXES`), recursively, sorted."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        else:
            out.append(p)
    return out


def output_names(videos: Sequence[Path]) -> list[str]:
    """A distinct output name per video: its file stem, with ``_2``, ``_3``... for repeated stems."""
    seen: dict[str, int] = {}
    names = []
    for v in videos:
        stem = v.stem or "video"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def write_outputs(pred: VideoPrediction, out_dir: str | Path, name: str, timeline: bool = True) -> dict[str, Path]:
    """Write one video's outputs into ``out_dir``: ``{name}.csv`` (one row per modality and the fused decision,
    per window), ``{name}.json``, ``{name}.txt`` (EmotiW's per-clip label file: one line, the fused emotion)
    and ``{name}.png`` (the timeline, :func:`emotiw_utils.plots.prediction_timeline`). An unreadable video
    gets its CSV and JSON (status and error) only. Returns the paths by kind."""
    import pandas as pd

    from .artifacts import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": atomic_write_text(out_dir / f"{name}.csv", pd.DataFrame(pred.rows()).to_csv(index=False)),
             "json": atomic_write_json(out_dir / f"{name}.json", pred.to_dict())}
    if pred.ok:
        paths["label"] = atomic_write_text(out_dir / f"{name}.txt", f"{pred.label}\n")
        if timeline:
            paths["png"] = save_timeline(pred, out_dir / f"{name}.png")
    return paths


def timeline_figure(pred: VideoPrediction, title: str | None = None):
    """:func:`emotiw_utils.plots.prediction_timeline` of a prediction."""
    from . import plots
    from .decision import modality_label

    segs = pred.segments
    strip_frames = np.concatenate([s.strip_frames for s in segs])
    strip = np.concatenate([s.strip for s in segs])
    keep = np.unique(np.linspace(0, len(strip) - 1, min(STRIP_FACES, len(strip))).round().astype(np.int64))
    windows = [(s.start_frame / pred.fps, (s.start_frame + s.n_frames) / pred.fps, s.label) for s in segs] \
        if len(segs) > 1 or pred.window_s is not None else []
    labels = {modality_label(m) if m != FUSED else "Fused (decision)": p for m, p in pred.probs.items()}
    title = title if title is not None else f"{pred.path.name}: {pred.label} ({pred.status})"
    return plots.prediction_timeline(
        np.arange(pred.n_frames) / pred.fps, np.concatenate([s.frame_probs for s in segs]),
        strip[keep], strip_frames[keep] / pred.fps, pred.wave_t, pred.wave, labels, windows=windows, title=title)


def save_timeline(pred: VideoPrediction, path: str | Path) -> Path:
    """Draw :func:`timeline_figure` into a PNG at ``path`` (atomically) and close it."""
    import matplotlib.pyplot as plt

    from .atomic import atomic_path

    fig = timeline_figure(pred)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
    return Path(path)


def summary_table(preds: Sequence[VideoPrediction]):
    """One row per video: status, length, windows, the fused emotion and its probability, each modality's
    emotion (pandas DataFrame, for the terminal)."""
    import pandas as pd

    rows = []
    modalities = next((list(p.probs) for p in preds if p.ok), [])
    for p in preds:
        row = {"video": p.path.name, "status": p.status,
               **dict.fromkeys(["seconds", "windows", "emotion", "p", *[m for m in modalities if m != FUSED]], "")}
        if p.ok:
            probs = p.probs
            row.update({"seconds": round(p.duration_s, 1), "windows": len(p.segments), "emotion": p.label,
                        "p": round(float(probs[FUSED].max()), 3),
                        **{m: EMOTIONS[int(np.argmax(q))] for m, q in probs.items() if m != FUSED}})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("video")
    errors = [p.error for p in preds]
    if any(e is not None for e in errors):
        table["error"] = [e or "" for e in errors]
    return table


def predict_paths(inputs: Sequence[str | Path], models: RunModels, out_dir: str | Path, window: float | None = None,
                  progress: bool = True, timeline: bool = True) -> list[VideoPrediction]:
    """:func:`predict_video` every video of ``inputs`` (:func:`find_videos`) and :func:`write_outputs` each,
    plus ``predictions.csv`` with every video's rows; a tqdm bar over the videos. ValueError when ``inputs``
    hold no video."""
    import pandas as pd
    from tqdm import tqdm

    from .artifacts import atomic_write_text

    videos = find_videos(inputs)
    if not videos:
        raise ValueError(f"no video in {', '.join(map(str, inputs))} (video suffixes: {', '.join(VIDEO_SUFFIXES)})")
    preds = []
    for video, name in tqdm(list(zip(videos, output_names(videos))), desc="predict", unit="video",
                            disable=not progress):
        pred = predict_video(video, models, window=window)
        write_outputs(pred, out_dir, name, timeline=timeline)
        preds.append(pred)
    rows = [r for p in preds for r in p.rows()]
    atomic_write_text(Path(out_dir) / "predictions.csv", pd.DataFrame(rows).to_csv(index=False))
    return preds
