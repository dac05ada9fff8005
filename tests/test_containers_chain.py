"""Clips in other containers and codecs, and bad clips, through stages 00-05 of ``emotiw run`` (issue 14).

A small SynthAFEW tree has seven of its clips re-encoded with PyAV (mp4 H.264 + AAC, mkv VP9 + Opus, webm VP8 +
Opus, AVI MJPEG + PCM, a GIF without audio, an odd frame size, a variable frame rate; stereo 48 kHz audio where
the container has audio) and their keypoint sidecars removed, so stage 01 finds their faces with MTCNN, as it
does for a real clip; a Val clip is emptied (zero bytes) and a Test clip cut to 30 % of its bytes. One run of
stages 00-05 on the smoke profile (shrunk with ``-p``) is shared by the tests, which check the status every
stage reports for every such clip and that every stage's per-clip files of a split hold every clip of the
dataset (01 and 02: every readable one), in the same order, with every frame decoded.
"""

from __future__ import annotations

import fractions
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import die_with_the_test, fail_after, tiny_synth

from emotiw_utils import artifacts, clip_policy, stages
from emotiw_utils.aligned import AfewFaces
from emotiw_utils.constants import AFEW_SPLITS
from emotiw_utils.datasets import afew
from emotiw_utils.datasets.keypoints import read_keypoints, write_keypoints
from emotiw_utils.datasets.video import read_audio, read_frames, write_clip
from emotiw_utils.errors import DataFormatError

EMOTIW = Path(sys.executable).with_name("emotiw")
STAGES = [stages.DATASETS, stages.ALIGNMENT, stages.CNN, stages.IRNN, stages.KAVG, stages.AUDIO]
#: What shrinks stages 02-05 of the smoke profile (about a minute on 2 idle cores, the six stages).
SHRINK = ["00_datasets.n_examples=1", "02_cnn.epochs=1", "03_irnn.epochs=2", "03_irnn.n_seeds=1", "03_irnn.compare_layers=[]",
          "04_kavg_svm.n_seeds=1", "04_kavg_svm.svm_Cs=[1]", "04_kavg_svm.svm_gammas=[scale]",
          "05_audio.n_seeds=1", "05_audio.compare_models=[]", "05_audio.pca_dims=[5]", "05_audio.svm_Cs=[1]",
          "05_audio.svm_gammas=[scale]"]

#: clip re-encoded: (its split, suffix, container, video codec, audio codec, options). The clips are ones of the
#: tiny SynthAFEW below on whose frames MTCNN finds the face (it misses it on a few synthetic clips).
CASES = {
    "mp4 H.264 + AAC": ("Train", "tr00004", ".mp4", "mp4", "libx264", "aac", {}),
    "AVI MJPEG + PCM": ("Train", "tr00008", ".avi", "avi", "mjpeg", "pcm_s16le", {"pix": "yuvj420p",
                                                                                 "sample_fmt": "s16"}),
    "variable frame rate": ("Train", "tr00010", ".mkv", "matroska", "libx264", "aac", {"vfr": True}),
    "mkv VP9 + Opus": ("Val", "va00001", ".mkv", "matroska", "libvpx-vp9", "libopus", {}),
    "GIF": ("Val", "va00005", ".gif", "gif", "gif", None, {"pix": "rgb8"}),
    "webm VP8 + Opus": ("Test", "te00000", ".webm", "webm", "libvpx", "libopus", {}),
    "odd frame size (203x157)": ("Test", "te00002", ".mkv", "matroska", "libx264", "flac",
                                 {"size": (203, 157), "pix": "yuv444p", "sample_fmt": "s16"}),
}

#: what each clip of CASES and FAULTS gets from stage 01 (faces, also what 03 and 04 use) and 05 (audio)
EXPECTED = {name: {"faces": "ok", "audio": "ok" if case[5] else "no_audio"} for name, case in CASES.items()}
#: odd and bad clips: (split, clip id, what is done to it)
FAULTS = {"zero bytes": ("Val", "va00003", "empty"), "truncated": ("Test", "te00004", "cut"),
          "one frame": ("Train", "tr00011", "one_frame"), "all black": ("Val", "va00002", "black"),
          "unicode name": ("Train", "tr00012", "unicode")}
UNICODE_ID = "tr_ünï_日本"
EXPECTED.update({"zero bytes": {"faces": "unreadable", "audio": "unreadable"},
                 "truncated": {"faces": "truncated", "audio": "audio_short"},
                 "one frame": {"faces": "ok", "audio": "audio_short"},  # 40 ms of audio
                 "all black": {"faces": "no_face", "audio": "ok"},
                 "unicode name": {"faces": "ok", "audio": "ok"}})
#: what stage 00's probe counts for a clip (the others: ok)
PROBED = {"zero bytes": "unreadable", "truncated": "truncated", "GIF": "no_audio"}


def reencode(src: Path, dst: Path, fmt: str, vcodec: str, acodec: str | None, *, size=None, pix="yuv420p",
             sr=48000, layout="stereo", sample_fmt="fltp", vfr=False) -> int:
    """Write the frames and the audio of ``src`` to ``dst`` in another container and codecs; returns the number
    of frames. ``vfr``: frames of 40 and 80 ms in turn (the audio stretched to the same length)."""
    import av
    import cv2

    frames, track = read_frames(src), read_audio(src)
    h, w = frames.shape[1:3]
    if size is not None:
        w, h = size
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    ms = [80 if vfr and i % 2 else 40 for i in range(len(frames))]
    with av.open(str(dst), "w", format=fmt) as c:
        v = c.add_stream(vcodec, rate=25)
        v.width, v.height, v.pix_fmt = w, h, pix
        if vfr:
            v.time_base = fractions.Fraction(1, 1000)
        a = c.add_stream(acodec, rate=sr, layout=layout) if acodec else None
        t = 0
        for i, frame in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            f.pts = t if vfr else i
            t += ms[i]
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        if a is not None:
            n = round(sum(ms) / 1000 * sr)
            step = a.codec_context.frame_size or 1024
            x = np.interp(np.linspace(0, len(track) - 1, n), np.arange(len(track)), track).astype(np.float32)
            x = np.concatenate([x, np.zeros(step, np.float32)])
            ch = 2 if layout == "stereo" else 1
            for pos in range(0, n, step):
                chunk = x[pos:pos + step]
                arr = np.tile(chunk, (ch, 1)) if sample_fmt.endswith("p") else np.repeat(chunk, ch)[None]
                if sample_fmt.startswith("s16"):
                    arr = (np.clip(arr, -1, 1) * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=sample_fmt, layout=layout)
                af.sample_rate, af.pts = sr, pos
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return len(frames)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The tiny dataset with its re-encoded clips and one ``emotiw run`` of stages 00-05 on it."""
    import av

    root = tmp_path_factory.mktemp("containers")
    data = tiny_synth(root)

    written, skipped = {}, {}
    for name, (split, clip_id, suffix, fmt, vcodec, acodec, opts) in CASES.items():
        missing = [c for c in (vcodec, acodec) if c is not None and c not in av.codecs_available]
        if missing:  # this PyAV build cannot write it: the clip stays as it was
            skipped[name] = f"this PyAV build has no encoder {', '.join(missing)}"
            continue
        src = next((data["afew"] / split).rglob(f"{clip_id}.avi"))
        dst = src.with_suffix(suffix) if suffix != ".avi" else src.with_name(f"{clip_id}.tmp.avi")
        n = reencode(src, dst, fmt, vcodec, acodec, **opts)
        src.unlink()
        afew.keypoints_path_for(src).unlink()  # no sidecar: MTCNN finds the face, as in a real clip
        if dst.name.endswith(".tmp.avi"):
            dst = dst.rename(src)
        written[name] = (split, clip_id, dst, n)

    for name, (split, clip_id, fault) in FAULTS.items():
        src = next((data["afew"] / split).rglob(f"{clip_id}.avi"))
        frames, track, kps = read_frames(src), read_audio(src), read_keypoints(afew.keypoints_path_for(src))
        if fault in ("empty", "cut"):
            src.write_bytes(b"" if fault == "empty" else src.read_bytes()[: int(0.3 * src.stat().st_size)])
        elif fault in ("one_frame", "black"):
            if fault == "one_frame":
                frames, track, kps = frames[:1], track[:640], kps[:1]
            else:
                frames, kps = np.zeros_like(frames), np.full_like(kps, np.nan)
            write_clip(src, frames, audio=track)
            write_keypoints(afew.keypoints_path_for(src), kps)
        elif fault == "unicode":
            dst = src.with_name(f"{UNICODE_ID}.avi")
            afew.keypoints_path_for(src).rename(afew.keypoints_path_for(dst))
            src, clip_id = src.rename(dst), UNICODE_ID
        written[name] = (split, clip_id, src, len(frames))

    run = root / "run"
    cmd = [str(EMOTIW), "run", "--profile", "smoke", "--stages", *[s.name for s in STAGES], "--run-dir", str(run),
           "--executed-dir", str(root / "executed"), "--device", "cpu", "--quiet"]
    for key, path in data.items():
        cmd += [f"--{key}", str(path)]
    for p in SHRINK:
        cmd += ["-p", p]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, preexec_fn=die_with_the_test)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    records = afew.scan_afew(data["afew"])
    ids = {s: [r.clip_id for r in records if r.split == s] for s in AFEW_SPLITS}
    return dict(run=run, afew=data["afew"], records=records, ids=ids, written=written, skipped=skipped,
                stdout=done.stdout)


@pytest.fixture(autouse=True)
def _no_hang():
    """A test fails after 60 s instead of hanging (the shared run, in the module fixture, has its own limit)."""
    with fail_after(60, "test_containers_chain"):
        yield


def _case(chain, name):
    if name in chain["skipped"]:
        pytest.skip(chain["skipped"][name])
    return chain["written"][name]


def test_every_stage_ran(chain):
    table = {line.split()[0]: line.split()[1] for line in chain["stdout"].splitlines()
             if line.split() and line.split()[0] in [s.name for s in STAGES]}
    assert table == {s.name: "ran" for s in STAGES}
    for s in STAGES:
        assert artifacts.read_manifest(s.dir(chain["run"]))["status"] == "ok"


@pytest.mark.parametrize("split", AFEW_SPLITS)
def test_the_probe_counts_each_problem(chain, split):
    """00: every clip probed and counted; the GIF has no audio track, the emptied clip cannot be read, the cut
    one is truncated; the re-encoded clips have no keypoint sidecar (counted, not a problem)."""
    probe = artifacts.read_metrics(stages.DATASETS.dir(chain["run"]))["afew_probe"][split]
    here = [name for name, c in chain["written"].items() if c[0] == split]
    for kind in set(PROBED.values()):
        assert probe[kind] == sum(PROBED.get(name) == kind for name in here), kind
    assert probe["total"] == len(chain["ids"][split])
    assert probe["ok"] == probe["total"] - sum(name in PROBED for name in here)
    assert probe["keypoints_missing"] == sum(name in CASES for name in here)


@pytest.mark.parametrize("name", [*CASES, *FAULTS])
def test_each_stage_reports_the_clip_s_status(chain, name):
    split, clip_id, path, n_frames = _case(chain, name)
    run, want = chain["run"], EXPECTED[name]
    # 01: its status; the readable clips aligned, every frame decoded kept (MTCNN's keypoints for the
    # re-encoded ones, which have no sidecar)
    status = artifacts.read_metrics(stages.ALIGNMENT.dir(run))[clip_policy.ALIGNMENT_STATUS_KEY]
    assert status[split][clip_id] == want["faces"]
    faces = AfewFaces.load(stages.ALIGNMENT.path(run, "afew_faces", split=split))
    if want["faces"] == "unreadable":
        assert clip_id not in faces.clip_ids
        with pytest.raises(DataFormatError):
            read_frames(path)
    else:
        i = list(faces.clip_ids).index(clip_id)
        decoded = len(read_frames(path))
        assert faces.lengths[i] == decoded > 0 and (decoded < n_frames) == (want["faces"] == "truncated")
        found = faces.has_face[faces.frame_clip_index() == i]
        if want["faces"] == "no_face":
            assert faces.clip_no_face[i] and not found.any()
        else:
            assert not faces.clip_no_face[i] and found.mean() > 0.5
    # 03, 04: the face models take 01's status (clip_policy.face_clips); a clip they cannot use gets the class
    # prior of the training clips
    clips = clip_policy.face_clips(chain["afew"], run, {s: AfewFaces.load(stages.ALIGNMENT.path(
        run, "afew_faces", split=s)).clip_ids for s in AFEW_SPLITS})
    assert dict(zip(clips[split].clip_ids, clips[split].status))[clip_id] == want["faces"]
    prior = clip_policy.training_prior(clips, ["Train"])
    for stage in (stages.IRNN, stages.KAVG):
        with np.load(stage.path(run, "clip_probs", split=split)) as z:
            row = z["probs"][list(z["clip_ids"]).index(clip_id)]
        if want["faces"] == "unreadable":
            np.testing.assert_allclose(row, prior, err_msg=stage.name)
        else:
            assert not np.allclose(row, prior), stage.name
    # 05: its audio track read (stereo 48 kHz decoded to mono 16 kHz), or its status and the class prior
    with np.load(stages.AUDIO.path(run, "is10", split=split)) as z:
        j = list(z["clip_ids"]).index(clip_id)
        audio_status, feats = str(z["status"][j]), z["features"][j]
    with np.load(stages.AUDIO.path(run, "fusion_features", split=split)) as z:
        assert list(z["clip_ids"]).index(clip_id) == j
        missing = z["audio_missing"][j, 0]
    assert audio_status == want["audio"]
    if want["audio"] == "ok":
        assert np.isfinite(feats).all() and missing == 0
    else:
        assert not np.isfinite(feats).any() and missing == 1
        with np.load(stages.AUDIO.path(run, "prior")) as p, np.load(stages.AUDIO.path(run, "clip_probs",
                                                                                      split=split)) as z:
            np.testing.assert_allclose(z["probs"][j], p["prior"])


def test_the_detected_clips_are_counted(chain):
    sources = artifacts.read_metrics(stages.ALIGNMENT.dir(chain["run"]))["keypoint_sources"]["AFEW"]
    n = sum(name in CASES for name in chain["written"])
    assert (sources["detected"], sources["sidecar"], sources["unreadable"]) == (n, len(chain["records"]) - n, 0)


@pytest.mark.parametrize("split", AFEW_SPLITS)
def test_every_stage_holds_every_clip_in_dataset_order(chain, split):
    """03's, 04's and 05's clip probabilities and fusion features, 05's IS10 features: the clips of the dataset,
    in scan order; 01's faces and 02's frame logits: its readable clips, in the same order, every frame decoded
    of each."""
    run, ids = chain["run"], chain["ids"][split]
    frames = {}
    for r in chain["records"]:
        if r.split == split:
            try:
                frames[r.clip_id] = len(read_frames(r.path, gray=True))
            except DataFormatError:
                pass  # unreadable
    readable = [c for c in ids if c in frames]
    assert len(readable) == len(ids) - sum(EXPECTED[n]["faces"] == "unreadable" for n, c in chain["written"].items()
                                           if c[0] == split)
    faces = AfewFaces.load(stages.ALIGNMENT.path(run, "afew_faces", split=split))
    assert list(faces.clip_ids) == readable
    assert list(faces.lengths) == [frames[c] for c in readable]
    with np.load(stages.CNN.path(run, "frame_logits", split=split)) as z:
        assert list(z["clip_ids"]) == readable and list(np.diff(z["offsets"])) == list(faces.lengths)
        assert len(z["logits"]) == faces.lengths.sum() and np.isfinite(z["logits"]).all()
    files = [stages.AUDIO.path(run, "is10", split=split)]
    for s in (stages.IRNN, stages.KAVG, stages.AUDIO):
        files += [s.path(run, "clip_probs", split=split), s.path(run, "fusion_features", split=split)]
    files.append(stages.KAVG.path(run, "frame_average", split=split))
    for f in files:
        with np.load(f) as z:
            assert list(z["clip_ids"]) == ids, f
            for k in ("probs", "features", "rnn", "kavg", "audio"):
                if k in z.files:
                    assert len(z[k]) == len(ids), (f, k)
            if "probs" in z.files:
                assert np.isfinite(z["probs"]).all() and np.allclose(z["probs"].sum(1), 1), f
