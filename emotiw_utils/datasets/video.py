"""Video clips with an audio track (AFEW format): write, probe and decode with PyAV.

Clips are AVI files with an MPEG-4 Part 2 video stream (encoded at a fixed, high quality) and an
optional mono 16-bit PCM audio stream. Frames are handled as RGB uint8 arrays ``(T, H, W, 3)``
(or grayscale ``(T, H, W)``), audio as float32 ``(S,)`` in [-1, 1].

Every failure to open or decode a file raises :class:`~emotiw_utils.errors.DataFormatError` naming
the file; a file without an audio stream raises :class:`NoAudioError` from :func:`read_audio`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from emotiw_utils.constants import AFEW_FPS, AUDIO_SR
from emotiw_utils.atomic import atomic_path
from emotiw_utils.errors import DataFormatError

__all__ = [
    "ClipInfo",
    "DecodeReport",
    "DecodedVideo",
    "NoAudioError",
    "audio_short",
    "frames_missing",
    "iter_frames",
    "probe_clip",
    "read_audio",
    "read_frames",
    "read_frames_and_fps",
    "read_video",
    "write_clip",
]

#: Fixed quantiser of the MPEG-4 encoder (1 best .. 31 worst); 2 keeps pixels close to the input.
DEFAULT_QSCALE: int = 2
_AUDIO_CHUNK = 1024  # samples per encoded audio frame


class NoAudioError(DataFormatError):
    """The clip has no audio stream."""


@dataclass(frozen=True)
class ClipInfo:
    """What the container says about a clip (no frame is decoded).

    Attributes:
        n_frames: number of video frames.
        fps: frame rate (frames per second).
        width, height: frame size in pixels.
        duration_s: ``n_frames / fps``.
        has_audio: whether there is an audio stream.
        audio_sr: its sample rate (None without audio).
        audio_samples: its length in samples at ``audio_sr``, when the container tells it exactly
            (always for PCM audio), else None.
        header_frames: the frame count the container header states (0 when it states none).
        stream_frames: video packets actually in the file (counted by demuxing, no decoding), or None
            when they were not counted (no header count to check against and no PCM audio to sum).
    """

    n_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    has_audio: bool
    audio_sr: int | None
    audio_samples: int | None
    header_frames: int = 0
    stream_frames: int | None = None

    def problems(self) -> list[tuple[str, str]]:
        """``(status, message)`` for what the container shows is wrong: ``truncated`` (fewer video packets in
        the file than the header states) and ``audio_short`` (the audio track ends well before the video,
        :func:`audio_short`)."""
        out = []
        if self.stream_frames is not None and self.header_frames and frames_missing(self.header_frames,
                                                                                    self.stream_frames):
            out.append(("truncated", f"the header states {self.header_frames} frames, the file holds "
                                     f"{self.stream_frames}"))
        if self.audio_sr and self.audio_samples is not None:
            a = self.audio_samples / self.audio_sr
            if audio_short(a, self.duration_s):
                out.append(("audio_short", f"{a:.2f} s of audio for {self.duration_s:.2f} s of video"))
        return out


#: A clip is truncated when fewer frames than the header states are present or decoded, by more than
#: this fraction of the header count (and at least one frame): containers and decoders may disagree by a frame.
FRAME_TOLERANCE: float = 0.02
#: Audio is short when it ends this many seconds, and this fraction of the video, before the video does.
AUDIO_TOLERANCE_S: float = 0.25
AUDIO_TOLERANCE_FRACTION: float = 0.1


def frames_missing(header_frames: int, got: int) -> bool:
    """Whether ``got`` frames (decoded, or packets in the file) fall short of the header's count."""
    return header_frames > 0 and header_frames - got > max(1, int(FRAME_TOLERANCE * header_frames))


def audio_short(audio_s: float, video_s: float) -> bool:
    """Whether ``audio_s`` seconds of audio end well before ``video_s`` seconds of video."""
    gap = video_s - audio_s
    return gap > AUDIO_TOLERANCE_S and gap > AUDIO_TOLERANCE_FRACTION * video_s


def _av():
    import av  # imported lazily: keeps `import emotiw_utils.datasets` light

    return av


# ----------------------------------------------------------------------------------------------- write


def _pcm16(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono, shape (S,), got {a.shape}")
    if a.dtype == np.int16:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"audio must be float in [-1, 1] or int16, got dtype {a.dtype}")
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError("audio contains NaN or infinite values")
    return np.clip(np.round(a.astype(np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def write_clip(
    path: str | Path,
    frames: np.ndarray,
    fps: float = AFEW_FPS,
    audio: np.ndarray | None = None,
    sr: int = AUDIO_SR,
    *,
    qscale: int = DEFAULT_QSCALE,
) -> Path:
    """Write an AVI clip (MPEG-4 video, optional mono PCM s16 audio), atomically.

    Args:
        path: destination ``.avi`` (the container is AVI whatever the suffix).
        frames: ``(T, H, W, 3)`` uint8 RGB, ``T >= 1``, ``H`` and ``W`` even (4:2:0 chroma).
        fps: frame rate; frame ``t`` is shown at ``t / fps`` seconds.
        audio: ``(S,)`` float in [-1, 1] (clipped) or int16 samples at ``sr``; None writes no
            audio stream.
        sr: audio sample rate in Hz.
        qscale: MPEG-4 quantiser, 1 (best) .. 31.

    Exactly ``T`` frames and ``S`` samples are written: :func:`read_frames` returns ``T`` frames and
    :func:`read_audio` (at the same ``sr``) returns ``S`` samples, equal to the input after int16
    quantisation. Pixels come back close but not identical: the codec is lossy and colour is stored
    at half resolution (4:2:0); on smooth, saturated test content the mean absolute error is about
    1.5 grey levels in luminance and about 3 per RGB channel at ``qscale=2``.

    Raises:
        ValueError: frames or audio of the wrong shape, dtype or range (nothing is written).
    """
    av = _av()
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (T, H, W, 3) with T >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
    n, h, w, _ = frames.shape
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise ValueError(f"frame height and width must be even, got {h}x{w} (H x W)")
    if not 1 <= qscale <= 31:
        raise ValueError(f"qscale must be 1..31, got {qscale}")
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, int) else Fraction(fps)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    pcm = None if audio is None else _pcm16(audio)
    if pcm is not None and (not isinstance(sr, (int, np.integer)) or sr <= 0):
        raise ValueError(f"sr must be a positive integer, got {sr!r}")

    with atomic_path(path, suffix=".avi") as tmp:
        with av.open(str(tmp), mode="w", format="avi") as container:
            vstream = container.add_stream("mpeg4", rate=rate)
            vstream.width, vstream.height, vstream.pix_fmt = w, h, "yuv420p"
            ctx = vstream.codec_context
            # constant quantiser instead of a bit-rate target: with the QSCALE flag the encoder takes
            # each frame's quality (0 from PyAV), clamped to [qmin, qmax], i.e. exactly `qscale`
            ctx.qscale = True
            ctx.qmin = ctx.qmax = qscale
            ctx.max_b_frames = 0  # one packet per frame, in order
            astream = None
            if pcm is not None:
                astream = container.add_stream("pcm_s16le", rate=int(sr), layout="mono")
            written = 0  # audio samples muxed so far; interleaved with the video
            for t in range(n):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[t]), format="rgb24")
                frame.pts = t
                container.mux(vstream.encode(frame))
                if astream is not None:
                    until = min(len(pcm), int((t + 1) * sr / rate))
                    written = _mux_audio(container, astream, pcm, written, until, int(sr))
            container.mux(vstream.encode(None))
            if astream is not None:
                _mux_audio(container, astream, pcm, written, len(pcm), int(sr))
                container.mux(astream.encode(None))
    return path


def _mux_audio(container, stream, pcm: np.ndarray, start: int, stop: int, sr: int) -> int:
    av = _av()
    while start < stop:
        end = min(stop, start + _AUDIO_CHUNK)
        frame = av.AudioFrame.from_ndarray(pcm[None, start:end], format="s16", layout="mono")
        frame.sample_rate = sr
        frame.pts = start
        container.mux(stream.encode(frame))
        start = end
    return start


# ------------------------------------------------------------------------------------------------ read


def _open(path: str | Path):
    """Open ``path`` for reading, turning every failure into a DataFormatError."""
    av = _av()
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, "file not found")
    try:
        return av.open(str(p), mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DataFormatError(p, f"cannot open video: {e}") from e


def probe_clip(path: str | Path) -> ClipInfo:
    """Read a clip's stream metadata (frame count, rate, size, audio) without decoding frames.

    The frame count comes from the container header when present, else from counting the video
    packets; the audio length of PCM tracks from their byte count (exact), else from the stream
    duration when known. Raises DataFormatError for a missing or unreadable file or one without
    video.
    """
    av = _av()
    p = Path(path)
    with _open(p) as container:
        try:
            if not container.streams.video:
                raise DataFormatError(p, "no video stream")
            v = container.streams.video[0]
            rate = v.average_rate or v.guessed_rate or v.base_rate
            if not rate:
                raise DataFormatError(p, "video stream has no frame rate")
            fps = float(rate)
            width, height = v.codec_context.width, v.codec_context.height
            a = container.streams.audio[0] if container.streams.audio else None
            audio_sr = int(a.codec_context.sample_rate) if a is not None else None
            pcm_audio = a is not None and a.codec_context.name.startswith("pcm_")
            header_frames = int(v.frames or 0)
            audio_samples = counted = None
            if header_frames <= 0 or pcm_audio:
                # demux (no decoding): count the video packets (the frame count when the header has none,
                # a truncation check when it has one) and sum PCM bytes (the exact number of samples)
                counted, audio_bytes = _count_packets(container, v, a if pcm_audio else None)
                if pcm_audio:
                    block = a.codec_context.format.bytes * a.codec_context.layout.nb_channels
                    audio_samples = audio_bytes // block
            if a is not None and not pcm_audio and a.duration is not None and a.time_base is not None:
                audio_samples = int(round(a.duration * a.time_base * audio_sr))
            n_frames = header_frames if header_frames > 0 else counted
        except av.FFmpegError as e:
            raise DataFormatError(p, f"cannot read video: {e}") from e
    return ClipInfo(
        n_frames=n_frames,
        fps=fps,
        width=int(width),
        height=int(height),
        duration_s=n_frames / fps,
        has_audio=a is not None,
        audio_sr=audio_sr,
        audio_samples=audio_samples,
        header_frames=max(header_frames, 0),
        stream_frames=counted,
    )


def _count_packets(container, video, audio) -> tuple[int, int]:
    """(number of non-empty packets of ``video``, total bytes of ``audio`` packets); either may be None."""
    streams = [st for st in (video, audio) if st is not None]
    n_video = audio_bytes = 0
    try:
        for packet in container.demux(streams):
            if packet.size == 0:  # flush packets carry no data
                continue
            if video is not None and packet.stream.index == video.index:
                n_video += 1
            else:
                audio_bytes += packet.size
    except _av().FFmpegError:  # a damaged tail: what came before it is what the file holds
        pass
    return n_video, audio_bytes


def read_frames(path: str | Path, gray: bool = False) -> np.ndarray:
    """Decode every video frame.

    Returns:
        ``(T, H, W, 3)`` uint8 RGB, or with ``gray=True`` ``(T, H, W)`` uint8 luminance
        (``cv2.COLOR_RGB2GRAY`` of the RGB frames, the same weights used for FER/TFD images).

    Raises:
        DataFormatError: missing, unreadable or corrupt file, no video stream, or no frame decoded.
    """
    return read_frames_and_fps(path, gray=gray)[0]


def read_frames_and_fps(path: str | Path, gray: bool = False) -> tuple[np.ndarray, float]:
    """:func:`read_frames` plus the stream's frame rate, from one opening of the file (a truncated file gives
    the frames it holds; :func:`read_video` says so)."""
    v = read_video(path, gray=gray)
    return v.frames, v.fps


@dataclass
class DecodedVideo:
    """The frames of a clip and what went wrong decoding them (:func:`read_video`).

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB or ``(T, H, W)`` gray, every frame that decoded.
        fps: the stream's frame rate.
        header_frames: the frame count the container header states (0: none stated).
        problem: None, or why the clip is ``truncated``: fewer frames decoded than the header states
            (:func:`frames_missing`), or a decode error after some frames (the frames before it are kept).
    """

    frames: np.ndarray
    fps: float
    header_frames: int
    problem: str | None = None

    @property
    def header_duration_s(self) -> float:
        """The video's duration by its header (by the decoded frames when the header states none)."""
        return (self.header_frames or len(self.frames)) / self.fps


@dataclass
class DecodeReport:
    """What :func:`iter_frames` found while streaming a clip, for a caller that keeps what decoded.

    Attributes:
        fps: the stream's frame rate (None: the container states none; set when the file is opened).
        header_frames: the frame count the container header states (0: none stated).
        frames: frames decoded so far.
        problem: None, or, once the stream is exhausted, why the clip is ``truncated``: a decode error
            after some frames (the frames before it were yielded), or fewer frames than the header states.
    """

    fps: float | None = None
    header_frames: int = 0
    frames: int = 0
    problem: str | None = None


def read_video(path: str | Path, gray: bool = False) -> DecodedVideo:
    """Decode every video frame and check the decode against the container header.

    A decode error part-way keeps the frames decoded before it and sets ``problem``; so does a frame count
    short of the header's (a file cut off). Raises DataFormatError for a missing or unreadable file, no
    video stream or no frame decoded at all. (:func:`iter_frames` with a :class:`DecodeReport`, stacked.)
    """
    p = Path(path)
    report = DecodeReport()
    frames = list(iter_frames(p, gray=gray, report=report))  # each frame converted as it comes
    if not frames:
        raise DataFormatError(p, "no video frame could be decoded")
    if not report.fps:
        raise DataFormatError(p, "video stream has no frame rate")
    return DecodedVideo(np.stack(frames), report.fps, report.header_frames, report.problem)


def iter_frames(path: str | Path, gray: bool = False, report: DecodeReport | None = None) -> Iterator[np.ndarray]:
    """The video frames of ``path`` as ``(H, W, 3)`` uint8 RGB (``gray=True``: ``(H, W)`` uint8 luminance,
    ``cv2.COLOR_RGB2GRAY`` of the RGB frame), decoded one at a time (streamed: memory does not grow with the
    clip).

    Without ``report``: a DataFormatError naming the file when it is missing, cannot be opened, holds no video
    stream, or fails to decode part-way (the message says after how many frames). With a
    :class:`DecodeReport`: a decode error after at least one frame ends the stream instead, and ``report``
    says so (``problem``), as it does a frame count short of the header's; the frame rate and header count
    are in ``report`` once the file is open. A clip without any frame yields nothing either way.
    """
    av = _av()
    p = Path(path)
    with _open(p) as container:
        if not container.streams.video:
            raise DataFormatError(p, "no video stream")
        stream = container.streams.video[0]
        header_frames = max(int(stream.frames or 0), 0)
        if report is not None:
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            report.fps = float(rate) if rate else None
            report.header_frames = header_frames
        stream.thread_type = "AUTO"
        if gray:
            import cv2
        n = 0
        try:
            for frame in container.decode(stream):
                f = frame.to_ndarray(format="rgb24")
                n += 1
                if report is not None:
                    report.frames = n
                yield cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if gray else f
        except (av.FFmpegError, ValueError) as e:
            if report is None:
                raise DataFormatError(p, f"cannot decode video after {n} frames: {e}") from e
            if not n:
                raise DataFormatError(p, f"cannot decode video: {e}") from e
            report.problem = f"decode error after {n} frames: {e}"
            return
    if report is not None and frames_missing(header_frames, n):
        report.problem = f"{n} frames decoded, the header states {header_frames}"


def read_audio(path: str | Path, sr: int = AUDIO_SR) -> np.ndarray:
    """Decode the first audio stream as mono float32 ``(S,)`` in [-1, 1], resampled to ``sr`` Hz.

    Channels are mixed down and the rate converted by ``av.AudioResampler``. At the file's own rate
    the samples are returned exactly (PCM int16 ``x`` comes back as ``x / 32768``).

    Raises:
        NoAudioError: the file has no audio stream.
        DataFormatError: missing, unreadable or corrupt file.
    """
    av = _av()
    p = Path(path)
    with _open(p) as container:
        if not container.streams.audio:
            raise NoAudioError(p, "no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sr))
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples itself (robust to odd timestamps)
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except (av.FFmpegError, ValueError) as e:
            raise DataFormatError(p, f"cannot decode audio: {e}") from e
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
