"""ActivityFeatures: learning once, the cache key, and what a cache hit must (not) reuse."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import stages
from emotiw_utils.activity_features import (
    ActivityFeatures,
    ActivityModel,
    ActivitySettings,
    features_key,
    reapply,
)
from emotiw_utils.artifacts import save_clip_probs
from emotiw_utils.datasets.video import write_clip
from emotiw_utils.svm import fit_svm, predict_proba_full

SETTINGS = ActivitySettings(frame_scale=1.0, n_train_blocks=300, n_components=40, n_hidden=16, sae_epochs=2,
                            batch_size=64, stride=(5, 16, 16), vocabulary_size=4)


def _moving_bars(t: int, shift: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.arange(32)
    frames = np.empty((t, 32, 32, 3), np.uint8)
    for i in range(t):
        bars = 128 + 100 * np.sin(2 * np.pi * (x[None, :] + shift * i) / 8.0)
        frames[i] = np.clip(bars + rng.normal(0, 5, (32, 32)), 0, 255)[..., None].astype(np.uint8)
    return frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("activity_clips")
    paths = {"Train": [write_clip(d / f"tr{i}.avi", _moving_bars(12, i % 3, i)) for i in range(4)],
             "Val": [write_clip(d / f"va{i}.avi", _moving_bars(12, i % 3, 10 + i)) for i in range(2)]}
    ids = {s: [p.stem for p in ps] for s, ps in paths.items()}
    return paths, ids


def test_learn_shapes_and_histograms(clips):
    paths, ids = clips
    f = ActivityFeatures.learn(paths, ids, ["Train"], SETTINGS, seed=0, workers=1)
    assert not f.from_cache
    assert set(f.histograms) == {"Train", "Val"}
    assert f.histograms["Train"].shape == (4, 4) and f.histograms["Val"].shape == (2, 4)
    for h in f.histograms.values():
        np.testing.assert_allclose(h.sum(1), 1.0)
    assert f.weight.shape == (16, 40) and f.centres.shape == (4, 16)
    assert f.filters().shape == (16, 10, 16, 16)
    assert len(f.history) == 2 and f.n_blocks == 300
    assert f.n_frames == {"Train": 48, "Val": 24} and f.frame_shape == (32, 32)
    assert f.active_fraction.shape == (16,) and 0 <= f.dead_units <= 16


def test_cache_round_trip_and_key(clips, tmp_path):
    paths, ids = clips
    cache = tmp_path / "activity_features.npz"
    first = ActivityFeatures.learn(paths, ids, ["Train"], SETTINGS, seed=0, workers=1, cache=cache)
    again = ActivityFeatures.learn(paths, ids, ["Train"], SETTINGS, seed=0, workers=1, cache=cache)
    assert again.from_cache and again.key == first.key
    for s in paths:
        np.testing.assert_array_equal(again.histograms[s], first.histograms[s])
        assert list(again.clip_ids[s]) == ids[s]
    np.testing.assert_array_equal(again.weight, first.weight)
    np.testing.assert_allclose(again.filters(), first.filters(), rtol=1e-5, atol=1e-6)
    assert again.history == first.history and again.sae_splits == ("Train",)
    assert again.settings == first.settings == SETTINGS

    # A different seed, SAE split or setting is a different learning: the cache is not used.
    other_seed = ActivityFeatures.learn(paths, ids, ["Train"], SETTINGS, seed=1, workers=1, cache=cache)
    assert not other_seed.from_cache
    assert not ActivityFeatures.learn(paths, ids, ["Val"], SETTINGS, seed=1, workers=1, cache=cache).from_cache
    k = features_key(paths, ["Train"], SETTINGS, 0, "cpu")
    assert k != features_key(paths, ["Train"], ActivitySettings(**{**SETTINGS.__dict__, "n_hidden": 8}), 0, "cpu")
    assert k == first.key

    # An unreadable cache file (e.g. an older layout) is learned again and overwritten.
    np.savez(cache, something=np.zeros(3))
    relearned = ActivityFeatures.learn(paths, ids, ["Train"], SETTINGS, seed=0, workers=1, cache=cache)
    assert not relearned.from_cache and ActivityFeatures.load(cache).key == first.key


def test_learn_is_deterministic_on_cpu(clips):
    paths, ids = clips
    a = ActivityFeatures.learn(paths, ids, ["Train"], SETTINGS, seed=3, workers=1)
    b = ActivityFeatures.learn(paths, ids, ["Train"], SETTINGS, seed=3, workers=1)
    for s in paths:
        np.testing.assert_array_equal(a.histograms[s], b.histograms[s])


def test_errors(clips):
    paths, ids = clips
    with pytest.raises(ValueError, match="sae_splits"):
        ActivityFeatures.learn(paths, ids, ["Test"], SETTINGS)
    with pytest.raises(ValueError, match="sae_splits"):
        ActivityFeatures.learn(paths, ids, [], SETTINGS)
    with pytest.raises(ValueError, match="clip ids"):
        ActivityFeatures.learn(paths, {"Train": ids["Train"][:1], "Val": ids["Val"]}, ["Train"], SETTINGS)
    with pytest.raises(ValueError, match="no clips"):
        ActivityFeatures.learn({"Train": [], "Val": paths["Val"]}, {"Train": [], "Val": ids["Val"]}, ["Train"],
                               SETTINGS)
    with pytest.raises(ValueError, match="stride"):
        ActivitySettings(stride=(5, 0, 16))
    with pytest.raises(ValueError, match="frame_scale"):
        ActivitySettings(frame_scale=0)



@pytest.fixture(scope="module")
def learned(clips, tmp_path_factory):
    """Features learned once into the features file of a run folder: ``(run_dir, features)``."""
    paths, ids = clips
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, ActivityFeatures.learn(paths, ids, ["Train"], SETTINGS, seed=0, workers=1,
                                           cache=stages.ACTIVITY.path(run_dir, "features"))


def test_a_new_clip_is_described_as_the_learned_ones(clips, learned):
    # What a finished run keeps (the features file) describes a clip exactly as learning did, clip by clip.
    paths, _ = clips
    run_dir, features = learned
    loaded = ActivityFeatures.load(stages.ACTIVITY.path(run_dir, "features"))
    for s in paths:
        for i, p in enumerate(paths[s]):
            for f in (features, loaded):
                np.testing.assert_array_equal(f.histograms_of([f.read_clip(p)])[0], features.histograms[s][i])
    np.testing.assert_array_equal(loaded.vocabulary().cluster_centers_, features.centres)


def test_load_never_unpickles(learned, tmp_path):
    with np.load(stages.ACTIVITY.path(learned[0], "features"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta"] = np.array([{"a pickled": "object"}], dtype=object)
    np.savez(tmp_path / "features.npz", **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        ActivityFeatures.load(tmp_path / "features.npz")


def test_activity_model_round_trip_and_reapply(clips, learned):
    paths, ids = clips
    run_dir, features = learned
    svm = fit_svm(features.histograms["Train"], np.array([0, 1, 0, 1]), 1.0, "scale", seed=0)
    ActivityModel(features, svm).save(run_dir)
    for key in stages.ACTIVITY.models:
        assert stages.ACTIVITY.path(run_dir, key).is_file()
    probs = predict_proba_full(svm, features.histograms["Val"])
    save_clip_probs(stages.ACTIVITY.path(run_dir, "clip_probs", split="Val"), ids["Val"], probs, [1, 0])

    back = ActivityModel.load(run_dir)
    np.testing.assert_array_equal(back.probs(features.histograms["Val"]), probs)
    np.testing.assert_array_equal(reapply(run_dir, "Val"), probs)
    np.testing.assert_array_equal(back.predict_clip(paths["Val"][1]), probs[1])
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.ACTIVITY.name}"):
        reapply(run_dir, "Test")
    save_clip_probs(stages.ACTIVITY.path(run_dir, "clip_probs", split="Val"), ids["Val"][::-1], probs, [0, 1])
    with pytest.raises(ValueError, match="other Val clips"):
        reapply(run_dir, "Val")
    stages.ACTIVITY.path(run_dir, "svm").unlink()
    with pytest.raises(FileNotFoundError, match="SVM"):
        ActivityModel.load(run_dir)
