"""AVI clip writer/reader: exact frame and sample counts, pixel closeness, error handling."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils.datasets.video import (
    ClipInfo,
    DecodeReport,
    NoAudioError,
    iter_frames,
    probe_clip,
    read_audio,
    read_frames,
    read_frames_and_fps,
    read_video,
    write_clip,
)
from emotiw_utils.errors import DataFormatError

T, H, W, FPS, SR = 17, 48, 64, 25, 16000


def smooth_frames(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    """Moving colour gradients: natural-image-like content an MPEG-4 encoder keeps well."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = 128 + 90 * np.sin((xx + 2 * i) / 9.0)
        out[i, ..., 1] = 128 + 90 * np.cos((yy - i) / 7.0)
        out[i, ..., 2] = 128 + 90 * np.sin((xx + yy + 3 * i) / 15.0)
    return out


@pytest.fixture
def pcm():
    # length not a multiple of the encoder's chunk nor of samples per frame
    s = int(T / FPS * SR) + 123
    rng = np.random.default_rng(3)
    return (rng.normal(0, 6000, s).clip(-32768, 32767)).astype(np.int16)


def test_round_trip_frames_and_audio(tmp_path, pcm):
    frames = smooth_frames()
    path = write_clip(tmp_path / "clip.avi", frames, fps=FPS, audio=pcm, sr=SR)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.avi"]  # no temporary file left behind

    info = probe_clip(path)
    assert info == ClipInfo(
        n_frames=T, fps=25.0, width=W, height=H, duration_s=T / FPS,
        has_audio=True, audio_sr=SR, audio_samples=len(pcm), header_frames=T, stream_frames=T,
    )
    assert info.problems() == []

    got = read_frames(path)
    assert got.shape == frames.shape and got.dtype == np.uint8  # exactly T frames
    # lossy: mostly 4:2:0 chroma subsampling of these saturated colours; luminance survives better
    err = np.abs(got.astype(np.int16) - frames)
    assert err.mean() < 3.5, err.mean()
    assert np.percentile(err, 99) < 16
    luma = np.array([0.299, 0.587, 0.114])
    assert np.abs(got @ luma - frames @ luma).mean() < 2.0

    audio = read_audio(path, sr=SR)
    assert audio.dtype == np.float32 and audio.shape == (len(pcm),)  # exactly S samples
    np.testing.assert_array_equal(audio, pcm.astype(np.float32) / 32768.0)  # bit-exact at the file's rate


def test_float_audio_and_resampling(tmp_path):
    s = 9000
    audio = (0.5 * np.sin(np.arange(s) * 2 * np.pi * 440 / SR)).astype(np.float32)
    path = write_clip(tmp_path / "c.avi", smooth_frames(8), audio=audio, sr=SR)
    back = read_audio(path)
    assert back.shape == (s,)
    assert np.abs(back - audio).max() <= 1.5 / 32767  # int16 quantisation only
    half = read_audio(path, sr=8000)
    assert abs(len(half) - s / 2) <= 2
    assert np.abs(half).max() <= 1.0


def test_gray_and_fps(tmp_path):
    frames = smooth_frames(5)
    path = write_clip(tmp_path / "g.avi", frames, fps=30)
    gray, fps = read_frames_and_fps(path, gray=True)
    assert gray.shape == (5, H, W) and gray.dtype == np.uint8 and fps == 30.0
    expected = (frames @ np.array([0.299, 0.587, 0.114])).round()
    assert np.abs(gray - expected).mean() < 2.0
    assert probe_clip(path).fps == 30.0


def test_no_audio(tmp_path):
    path = write_clip(tmp_path / "silent.avi", smooth_frames(4))
    info = probe_clip(path)
    assert not info.has_audio and info.audio_sr is None and info.audio_samples is None and info.n_frames == 4
    with pytest.raises(NoAudioError, match="no audio stream") as e:
        read_audio(path)
    assert isinstance(e.value, DataFormatError) and e.value.path == path


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF garbage " * 50)
    for reader in (probe_clip, read_frames, read_audio, lambda p: list(iter_frames(p))):
        with pytest.raises(DataFormatError, match="cannot open video") as e:
            reader(bad)
        assert e.value.path == bad and str(bad) in str(e.value)
        with pytest.raises(DataFormatError, match="file not found"):
            reader(tmp_path / "missing.avi")


def test_truncated_file_decodes_what_it_can_or_raises(tmp_path, pcm):
    data = write_clip(tmp_path / "full.avi", smooth_frames(), audio=pcm).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    try:
        frames = read_frames(cut)
    except DataFormatError as e:  # either a clear error...
        assert e.path == cut
    else:  # ...or the frames before the cut
        assert 0 < len(frames) < T


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_clip(tmp_path / "x.avi", np.zeros((2, 47, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_clip(tmp_path / "x.avi", np.zeros((2, 48, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_clip(tmp_path / "x.avi", np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="mono"):
        write_clip(tmp_path / "x.avi", smooth_frames(2), audio=np.zeros((100, 2), np.float32))
    assert not list(tmp_path.iterdir())


def test_streamed_frames_equal_the_whole_clip(tmp_path):
    path = write_clip(tmp_path / "clip.avi", smooth_frames(), fps=FPS)
    it = iter_frames(path)
    first = next(it)  # one frame at a time
    assert first.shape == (H, W, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(np.stack([first, *it]), read_frames(path))


def test_streamed_gray_frames_and_report(tmp_path):
    """iter_frames in gray gives read_frames' gray frames; its report states the rate and header count."""
    path = write_clip(tmp_path / "clip.avi", smooth_frames(), fps=FPS)
    report = DecodeReport()
    gray = np.stack(list(iter_frames(path, gray=True, report=report)))
    np.testing.assert_array_equal(gray, read_frames(path, gray=True))
    assert gray.shape == (T, H, W) and report.fps == FPS and report.header_frames == T and report.frames == T
    assert report.problem is None


def test_read_video_is_the_tolerant_stream_stacked(tmp_path, pcm):
    """A clip cut part-way: read_video keeps what decoded and says why, exactly as iter_frames with a report
    does (one decoder for both)."""
    data = write_clip(tmp_path / "full.avi", smooth_frames(), audio=pcm).read_bytes()
    for frac in (0.3, 0.5, 0.8):
        cut = tmp_path / f"cut{frac}.avi"
        cut.write_bytes(data[: int(frac * len(data))])
        try:
            video = read_video(cut)
        except DataFormatError as e:
            assert e.path == cut
            continue
        report = DecodeReport()
        frames = list(iter_frames(cut, report=report))
        np.testing.assert_array_equal(np.stack(frames), video.frames)
        assert (report.problem, report.header_frames, report.fps) == (video.problem, video.header_frames, video.fps)
        assert len(frames) < T and video.problem is not None
