"""Decision-level fusion of a run (emotiw_utils.decision): the modalities from the registry, fusing with a search
record's weights, and reapplying chapter 08 from its record."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import artifacts, decision, records, stages
from emotiw_utils.random_search import fuse

PARTITION = records.PartitionRecord(("Train",), "Val")


def test_modalities_are_the_registry_stages():
    assert {m: src.stage for m, src in decision.MODALITIES.items()} == stages.modality_stages()
    assert list(decision.MODALITIES) == ["rnn", "kavg", "audio", "activity", "fusion"]
    assert [m for m, src in decision.MODALITIES.items() if src.by_regime] == ["fusion"]
    assert decision.MODALITIES["fusion"].key == "regime_probs" and decision.MODALITIES["rnn"].key == "clip_probs"
    assert decision.modality_label("kavg") == "Aggregated CNN" and decision.modality_label("geometry") == "geometry"


def test_fuse_probs_weights_each_class_then_rescales():
    rng = np.random.default_rng(0)
    probs = {m: rng.dirichlet(np.ones(7), 5) for m in ("a", "b", "c")}
    w = rng.uniform(size=(2, 7))
    out = decision.fuse_probs(probs, ["c", "a"], w)  # the weights' row order, whatever the dict's
    expect = w[0] * probs["c"] + w[1] * probs["a"]
    np.testing.assert_allclose(out, expect / expect.sum(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(out.sum(1), 1.0)
    one = decision.fuse_probs({m: p[:1] for m, p in probs.items()}, ["c", "a"], w)  # a single new clip
    np.testing.assert_array_equal(one, out[:1])
    with pytest.raises(KeyError, match=r"\['b'\]"):
        decision.fuse_probs({"a": probs["a"]}, ["a", "b"], w)
    with pytest.raises(ValueError, match="weights must be"):
        decision.fuse_probs(probs, ["a", "b"], w[:, :5])


def _run(tmp_path, rng, regime="original"):
    """A run with 03, 06 and 07's ``regime`` probabilities of every split and an 08 that fused them."""
    run = tmp_path / "run"
    ids = {s: np.array([f"{s}{i}" for i in range(n)]) for s, n in (("Train", 9), ("Val", 6), ("Test", 4))}
    labels = {s: rng.integers(0, 7, len(v)) for s, v in ids.items()}
    for st in (stages.IRNN, stages.ACTIVITY, stages.FUSION):
        records.record_class(st)(partition=PARTITION).write(artifacts.stage_dir(run, st.name))
    for s, cids in ids.items():
        for m in ("rnn", "activity", "fusion"):
            src = decision.MODALITIES[m]
            path = src.stage.path(run, src.key, split=s, **({"regime": regime} if src.by_regime else {}))
            artifacts.save_clip_probs(path, cids, rng.dirichlet(np.ones(7), len(cids)), labels[s])
    weights = rng.dirichlet(np.ones(3), 7).T  # (3, 7), columns sum to 1
    rec = records.SearchRecord(partition=PARTITION, fusion_regime=regime, modalities=("fusion", "rnn", "activity"),
                               weights=tuple(tuple(r) for r in weights.tolist()))
    rec.write(artifacts.stage_dir(run, stages.SEARCH.name))
    return run, ids, weights


def test_reapply_reproduces_the_search_stage_from_its_record(tmp_path):
    rng = np.random.default_rng(1)
    run, ids, weights = _run(tmp_path, rng)
    for s in ids:  # what chapter 08 writes
        inp = decision.load_decision_inputs(run, s, ["fusion", "rnn", "activity"], "original")
        scores = fuse([inp.probs[m] for m in ("fusion", "rnn", "activity")], weights)
        artifacts.save_clip_probs(stages.SEARCH.path(run, "clip_probs", split=s), inp.clip_ids,
                                  scores / scores.sum(1, keepdims=True), inp.labels)
    for s in ids:
        _, stored, _ = artifacts.load_clip_probs(stages.SEARCH.path(run, "clip_probs", split=s))
        np.testing.assert_array_equal(decision.reapply(run, s), stored)
    rec = records.read(run, stages.SEARCH)
    assert rec.fusion_regime == "original" and list(rec.modalities) == ["fusion", "rnn", "activity"]
    inp = decision.load_decision_inputs(run, "Test", rec.modalities, rec.fusion_regime)
    np.testing.assert_array_equal(decision.fuse_with_record(inp.probs, rec), decision.reapply(run, "Test"))


def test_reapply_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.SEARCH.name}"):
        decision.reapply(tmp_path, "Test")
    run, _, _ = _run(tmp_path, np.random.default_rng(2), regime="stable")
    stages.ACTIVITY.path(run, "clip_probs", split="Val").unlink()
    with pytest.raises(FileNotFoundError, match=f"run stage {stages.ACTIVITY.name}"):
        decision.reapply(run, "Val")
