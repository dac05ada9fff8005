"""Tests of emotiw_utils.random_search (paper 5.2): schedule, search quality, determinism, partition guard."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils.random_search import PAPER_SPEC, SearchSpec, all_subsets, fuse, random_search

SMALL = SearchSpec(n_uniform=3000, per_round=1000, sigma=0.5, decay=0.5, sigma_min=0.01)


def test_paper_schedule_is_8_2_million_candidates():
    assert PAPER_SPEC.rounds == 81  # 0.5 * 0.9**80 >= 1e-4 > 0.5 * 0.9**81
    assert 0.5 * 0.9 ** 80 >= 1e-4 > 0.5 * 0.9 ** 81
    assert PAPER_SPEC.candidates == 100_000 + 81 * 100_000
    assert SMALL.rounds == 6 and SMALL.candidates == 9000
    with pytest.raises(ValueError, match="local"):
        SearchSpec(local="cauchy")


def _two_experts(n: int = 700, seed: int = 0):
    """Modality A is informative on classes 0-3 only, B on 4-6 only, C is noise: the best fusion trusts A on 0-3
    and B on 4-6, which needs per-class weights."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    def expert(good):
        logits = rng.normal(size=(n, 7))
        hit = np.isin(y, good)
        logits[hit, y[hit]] += 3.0
        logits[:, [c for c in range(7) if c not in good]] += 1.0  # claims its bad classes too
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)
    noise = rng.dirichlet(np.ones(7), n)
    return {"A": expert([0, 1, 2, 3]), "B": expert([4, 5, 6]), "C": noise}, y


def test_search_finds_per_class_weights_that_beat_every_modality():
    probs, y = _two_experts()
    res = random_search(probs, y, SMALL, seed=0)
    single = {m: float(np.mean(p.argmax(1) == y)) for m, p in probs.items()}
    assert res.accuracy > max(single.values()) + 0.15
    np.testing.assert_allclose(res.weights.sum(0), 1.0, rtol=1e-6)
    assert (res.weights >= 0).all() and res.weights.shape == (3, 7)
    assert res.accuracy == pytest.approx(np.mean(fuse(probs, res.weights).argmax(1) == y), abs=1e-9)
    assert res.weights[0, :4].mean() > res.weights[1, :4].mean()  # A trusted on its classes
    assert res.weights[1, 4:].mean() > res.weights[0, 4:].mean()  # B on its classes
    accs = [t["best_accuracy"] for t in res.trace]
    assert accs == sorted(accs) and res.candidates == SMALL.candidates


def test_deterministic_and_uniform_variant():
    probs, y = _two_experts(300, seed=1)
    a = random_search(probs, y, SMALL, seed=3, batch_size=512)
    b = random_search(probs, y, SMALL, seed=3, batch_size=512)
    np.testing.assert_array_equal(a.weights, b.weights)
    u = random_search(probs, y, SearchSpec(**{**SMALL.__dict__, "local": "uniform"}), seed=3)
    assert u.accuracy >= u.trace[1]["best_accuracy"] > 0.3


def test_unlabelled_clips_are_ignored_and_bad_input_refused():
    probs, y = _two_experts(200, seed=2)
    y2 = y.copy()
    y2[:50] = -1
    res = random_search(probs, y2, SearchSpec(n_uniform=500, per_round=0), seed=0)
    assert res.accuracy == pytest.approx(np.mean(fuse(probs, res.weights)[50:].argmax(1) == y[50:]))
    with pytest.raises(ValueError, match="over-fit"):
        random_search(probs, y, SMALL, trained_on={"A": ["Train"], "B": ["Val"], "C": ["Train"]}, search_split="Val")
    random_search(probs, y, SearchSpec(n_uniform=10, per_round=0), trained_on={"A": ["Train"]}, search_split="Val")
    seen = random_search(probs, y, SearchSpec(n_uniform=10, per_round=0), trained_on={"A": ["Val"]},
                         search_split="Val", allow_trained_split=True)  # submission 7's deliberate exception
    assert seen.weights.shape == (3, 7)
    with pytest.raises(ValueError, match="labels"):
        random_search(probs, y[:-1])
    with pytest.raises(ValueError, match="no labelled"):
        random_search(probs, np.full_like(y, -1))
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        random_search({"A": probs["A"], "B": probs["B"][:, :5]}, y)


def test_all_subsets():
    subs = all_subsets(["rnn", "kavg", "audio", "activity"])
    assert len(subs) == 15 and subs[0] == ("rnn",) and subs[-1] == ("rnn", "kavg", "audio", "activity")
    assert len(all_subsets(["a", "b", "c"], min_size=2)) == 4
