"""Chapter 07 on a run (emotiw_utils.fusion): its inputs, the regimes x seeds training, the persisted networks and
reapplying them, on a tiny fake run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotiw_utils import artifacts, fusion, stages

SPLITS = {"Train": 60, "Val": 30, "Test": 20}
DIMS = {"rnn": 6, "kavg": 5, "audio": 3}
SETTINGS = fusion.FusionSettings(units={"rnn": 4, "kavg": 4, "audio": 2}, common=5, batch_size=16)
EPOCHS = {"original": 3, "stable": 4}


def _fake_run(root, seed=0):
    """03, 04 and 05's fusion_features (the class shows in feature 0 of each) and 03's clip_probs."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    for s, n in SPLITS.items():
        ids = np.array([f"{s}{i:03d}" for i in range(n)])
        y = rng.integers(0, 7, n)
        for m, st in fusion.feature_stages().items():
            x = rng.normal(size=(n, DIMS[m])) * 3.0 + 10.0
            x[:, 0] += 2.0 * y
            artifacts.save_fusion_features(artifacts.stage_dir(run, st.name) / st.file("fusion_features", split=s),
                                           ids, **{m: x})
        artifacts.save_clip_probs(stages.IRNN.path(run, "clip_probs", split=s), ids, np.full((n, 7), 1 / 7), y)
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    run = _fake_run(tmp_path_factory.mktemp("fusion_stage"))
    clip_ids, features, labels = {}, {}, {}
    for s in SPLITS:
        clip_ids[s], features[s], labels[s] = fusion.read_features(run, s)
    inputs = fusion.FusionInputs.standardise(clip_ids, features, labels, ["Train"], "Val")
    runs = fusion.train_regimes(inputs, SETTINGS, EPOCHS, seeds=[0, 1])
    return run, inputs, runs


def test_inputs_come_from_the_feature_stages_in_block_order(trained):
    run, inputs, _ = trained
    assert {m: st.name for m, st in fusion.feature_stages().items()} == {
        "rnn": stages.IRNN.name, "kavg": stages.KAVG.name, "audio": stages.AUDIO.name}
    _, feats, labels = fusion.read_features(run, "Val")
    assert list(feats) == ["rnn", "kavg", "audio"] and feats["kavg"].shape == (30, 5) and labels.shape == (30,)
    assert inputs.dims == DIMS and inputs.y_train.shape == (60,)
    np.testing.assert_allclose(inputs.x_train["rnn"].mean(0), 0.0, atol=1e-5)  # standardised on Train
    np.testing.assert_array_equal(inputs.x_train["audio"], inputs.x["Train"]["audio"])
    x_sel, y_sel = inputs.select
    assert x_sel is inputs.x["Val"] and y_sel is inputs.labels["Val"]
    assert fusion.FusionInputs.standardise(inputs.clip_ids, {s: feats for s in SPLITS}, inputs.labels, ["Train"],
                                           None).select is None


def test_every_regime_with_every_seed(trained):
    _, inputs, runs = trained
    assert list(runs) == [("original", 0), ("original", 1), ("stable", 0), ("stable", 1)]
    for (regime, seed), r in runs.items():
        assert (r.regime, r.seed) == (regime, seed)
        cfg = r.history.config
        assert cfg["lr"] == fusion.REGIMES[regime]["lr"] and cfg["momentum"] == fusion.REGIMES[regime]["momentum"]
        assert cfg["epochs"] == EPOCHS[regime] and cfg["seed"] == seed and cfg["batch_size"] == 16
        assert r.model.units == {"rnn": 4, "kavg": 4, "audio": 2} and r.model.common == 5
        assert set(r.probs) == set(SPLITS) and r.probs["Test"].shape == (20, 7)
        assert 1 <= r.history.best_epoch <= EPOCHS[regime]
        acc = np.mean(r.probs["Val"].argmax(1) == inputs.labels["Val"])
        assert r.accuracy["Val"] == pytest.approx(acc) and "train" in r.accuracy
    # the same seed and regime train the same network
    again = fusion.train_run(inputs, SETTINGS, "stable", 1, EPOCHS["stable"])
    np.testing.assert_array_equal(again.probs["Test"], runs[("stable", 1)].probs["Test"])
    assert not np.array_equal(runs[("stable", 0)].probs["Test"], runs[("stable", 1)].probs["Test"])


def test_fixed_epochs_and_bad_settings(trained):
    _, inputs, _ = trained
    runs = fusion.train_regimes(inputs, SETTINGS, EPOCHS, seeds=[3], fixed_epochs={"original": 1, "stable": 2})
    assert runs[("original", 3)].history.best_epoch == 1 and runs[("stable", 3)].history.best_epoch == 2
    with pytest.raises(ValueError, match="epochs must give the epochs of every regime"):
        fusion.train_regimes(inputs, SETTINGS, {"stable": 2}, seeds=[0])
    with pytest.raises(ValueError, match="fixed_epochs must give"):
        fusion.train_regimes(inputs, SETTINGS, EPOCHS, seeds=[0], fixed_epochs={"original": 1})
    with pytest.raises(ValueError, match="unknown regime"):
        fusion.train_run(inputs, SETTINGS, "fast", 0, 1)


def test_persisted_networks_reproduce_the_probabilities_exactly(trained):
    run, inputs, runs = trained
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.FUSION.name}"):
        fusion.reapply(run, "Test", "stable")
    for regime in fusion.REGIMES:
        path = fusion.save_regime(run, runs[(regime, 0)], inputs)
        assert path == stages.FUSION.path(run, "fusion", regime=regime)
    for regime in fusion.REGIMES:
        ck = fusion.load_regime(run, regime)
        assert ck.extra == {"regime": regime, "seed": 0, "train_splits": ["Train"], "select_split": "Val"}
        assert ck.history.best_epoch == runs[(regime, 0)].history.best_epoch
        for s in SPLITS:
            ids, stored, labels = artifacts.load_clip_probs(stages.FUSION.path(run, "regime_probs", regime=regime,
                                                                                split=s))
            np.testing.assert_array_equal(stored, runs[(regime, 0)].probs[s])
            np.testing.assert_array_equal(fusion.reapply(run, s, regime), stored)
            assert list(ids) == list(inputs.clip_ids[s]) and list(labels) == list(inputs.labels[s])
        # one new clip, given by its raw input vectors
        _, feats, _ = fusion.read_features(run, "Test")
        one = fusion.predict_clips(ck, {m: v[4:5] for m, v in feats.items()})
        np.testing.assert_allclose(one, runs[(regime, 0)].probs["Test"][4:5], rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="unknown regime"):
        fusion.load_regime(run, "fast")


def test_inputs_that_disagree_are_refused(tmp_path):
    run = _fake_run(tmp_path)
    st = stages.KAVG
    path = st.path(run, "fusion_features", split="Val")
    ids, feats = artifacts.load_fusion_features(path)
    artifacts.save_fusion_features(path, ids[::-1], **feats)
    with pytest.raises(ValueError, match=f"{st.name}: its Val clips differ from those of {stages.IRNN.name}"):
        fusion.read_features(run, "Val")
    artifacts.save_fusion_features(path, ids, other=feats["kavg"])
    with pytest.raises(ValueError, match="holds no 'kavg' block"):
        fusion.read_features(run, "Val")
    stages.AUDIO.path(run, "fusion_features", split="Test").unlink()
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.AUDIO.name}"):
        fusion.read_features(run, "Test")
