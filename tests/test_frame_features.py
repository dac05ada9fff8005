"""Tests of emotiw_utils.frame_features: per-frame CNN features of a split, from stage 01/02 artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import artifacts, cnn, stages
from emotiw_utils.aligned import AfewFaces
from emotiw_utils.frame_features import load_frame_features


@pytest.fixture()
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    offsets = np.array([0, 3, 8])
    faces = AfewFaces("Val", np.array(["a", "b"]), np.array([2, -1]), offsets,
                      rng.integers(0, 255, (8, 48, 48), dtype=np.uint8), np.ones(8, bool), np.zeros(2, bool))
    faces.save(stages.ALIGNMENT.path(tmp_path, "afew_faces", split="Val"))
    model = cnn.FrameCNN(cnn.CnnConfig(arch="cnn9x9"), seed=0)
    cnn.save_cnn(stages.CNN.path(tmp_path, "cnn"), model)
    logits = cnn.predict_logits(model, faces.faces)
    artifacts.save_npz_atomic(stages.CNN.path(tmp_path, "frame_logits", split="Val"),
                              clip_ids=faces.clip_ids, labels=faces.labels, offsets=offsets, logits=logits)
    return tmp_path, faces, model


def test_conv2_is_computed_from_the_checkpoint(run_dir):
    root, faces, model = run_dir
    f = load_frame_features(root, "Val", "conv2")
    assert f.features.shape == (8, model.config.feature_dim("conv2")) and f.features.dtype == np.float32
    np.testing.assert_array_equal(f.offsets, faces.offsets)
    assert list(f.clip_ids) == ["a", "b"] and list(f.labels) == [2, -1]
    seqs = f.sequences()
    assert [len(s) for s in seqs] == [3, 5]
    np.testing.assert_allclose(seqs[1], cnn.layer_activations(model, faces.clip(1), "conv2").numpy(), rtol=1e-5, atol=1e-6)
    doubled = f.sequences(lambda x: 2 * x)
    np.testing.assert_allclose(doubled[0], 2 * seqs[0])


def test_logits_come_from_stage_02_and_agree_with_the_model(run_dir):
    root, faces, model = run_dir
    f = load_frame_features(root, "Val", "logits")
    assert f.features.shape == (8, 7)
    g = load_frame_features(root, "Val", "conv3")
    assert g.features.shape == (8, model.config.feature_dim("conv3"))


def test_clear_errors(run_dir, tmp_path_factory):
    root, _, _ = run_dir
    with pytest.raises(ValueError, match="not a layer"):
        load_frame_features(root, "Val", "conv7")
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.CNN.name}"):
        load_frame_features(empty, "Val", "logits")
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.CNN.name}"):
        load_frame_features(empty, "Val", "conv2")
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.ALIGNMENT.name}"):
        load_frame_features(root, "Train", "conv2")
