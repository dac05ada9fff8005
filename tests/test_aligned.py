"""The aligned datasets of stage 01 on a tiny generated synthetic dataset."""

from __future__ import annotations

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
