"""Submission protocols of Table 2 (paper 6.3) and the decision-fusion inputs, on a fake run folder."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import artifacts, records, stages
from emotiw_utils import submissions as subs
from emotiw_utils.decision import load_decision_inputs

STAGES = [*subs.SHARED_STAGES, *subs.CHAIN]
IRNN, KAVG, AUDIO, ACTIVITY, FUSION, SEARCH = (s.name for s in (stages.IRNN, stages.KAVG, stages.AUDIO,
                                                                 stages.ACTIVITY, stages.FUSION, stages.SEARCH))
# What each chain stage chose on its select split, as its record holds it.
CHOSEN = {
    IRNN: {"best_epoch": 17},
    KAVG: {"C": 3.0, "gamma": 0.003},
    AUDIO: {"n_components": 20, "C": 10, "gamma": "scale"},
    ACTIVITY: {"C": 1, "gamma": "scale"},
    FUSION: {"best_epochs": {"original": 4, "stable": 40}},
    SEARCH: {"modalities": ("rnn", "kavg"), "weights": ((0.25,) * 7, (0.75,) * 7)},
}


def _stage(folder, stage, params, chosen=None):
    sdir = artifacts.stage_dir(folder, stage)
    artifacts.write_manifest(sdir, stage=stage, parameters={"profile": "smoke", "seed": 0, "stage": stage,
                                                            "run_dir": str(folder), "device": "cpu", **params},
                             input_hash="h", status="ok", wall_time_s=1.0, device="cpu", started="s", finished="f")
    partition = records.PartitionRecord(tuple(params.get("train_splits", ["Train"])), params.get("select_split"))
    st = stages.get(stage)
    if st.record is not None:
        records.record_class(st)(partition=partition, **(chosen or CHOSEN.get(stage, {}))).write(sdir)
    return sdir


@pytest.fixture()
def run(tmp_path):
    run = tmp_path / "run"
    for st in STAGES:
        _stage(run, st, {"epochs": 99, "train_splits": ["Train"], "select_split": "Val"})
    stages.AUDIO.path(run, "is10", split="Val").write_bytes(b"cache")
    return run


def test_the_seven_protocols_match_table_2():
    assert sorted(subs.SUBMISSIONS) == list(range(1, 8))
    assert subs.SUBMISSIONS[4].train_splits == ("Val",) and subs.SUBMISSIONS[4].select_split == "Train"
    assert subs.SUBMISSIONS[3].retrain_of == 2 and subs.SUBMISSIONS[6].retrain_of == 4
    assert subs.SUBMISSIONS[3].train_splits == subs.SUBMISSIONS[6].train_splits == ("Train", "Val")
    assert [subs.SUBMISSIONS[n].fusion_regime for n in (1, 2, 4, 5)] == ["original", "stable", "original", "stable"]
    assert subs.SUBMISSIONS[7].combine == (3, 6) and not subs.SUBMISSIONS[7].is_chain
    assert [n for n, s in subs.SUBMISSIONS.items() if s.retrained] == [3, 6, 7]


def test_the_chain_and_its_caches_come_from_the_registry():
    assert subs.SHARED_STAGES == (stages.DATASETS.name, stages.ALIGNMENT.name, stages.CNN.name)
    assert subs.CHAIN == (IRNN, KAVG, AUDIO, ACTIVITY, FUSION, SEARCH) and subs.MODEL_STAGES == subs.CHAIN[:-1]
    assert subs._CACHES == {AUDIO: (stages.AUDIO.artifact("is10").glob, stages.AUDIO.artifact("egemaps").glob),
                            ACTIVITY: (stages.ACTIVITY.file("features"),)}


def test_dependencies_come_from_the_submissions():
    assert {n: s.depends_on for n, s in subs.SUBMISSIONS.items()} == {1: (), 2: (1,), 3: (2,), 4: (), 5: (4,),
                                                                      6: (4,), 7: (3, 6)}
    assert subs.check_selection([7, 3, 6, 2, 4, 1, 4]) == [1, 2, 3, 4, 6, 7]
    assert subs.check_selection([4, 1]) == [1, 4]
    with pytest.raises(ValueError, match="3 needs 2, 7 needs 6"):
        subs.check_selection([1, 3, 7])
    with pytest.raises(ValueError, match=r"unknown submissions \[8\]; Table 2 has 1-7"):
        subs.check_selection([1, 8])


def test_submissions_1_and_2_link_the_main_models_and_rerun_only_the_search(run):
    sdir, to_run = subs.prepare_submission(1, run)
    assert to_run == [SEARCH]
    for st in subs.SHARED_STAGES + subs.MODEL_STAGES:
        assert (sdir / st).is_symlink() and (sdir / st).resolve() == (run / st).resolve()
    over = subs.chain_overrides(2, run, to_run)
    assert over[f"{SEARCH}.fusion_regime"] == "stable" and over[f"{SEARCH}.fixed_weights"] is None
    assert not any(k.startswith(f"{IRNN}.") for k in over)
    assert not (sdir / SEARCH).is_symlink()  # the main run searched with no fusion_regime set


def test_a_submission_links_the_main_search_when_it_used_the_same_fusion_regime(run):
    _stage(run, SEARCH, {"train_splits": ["Train"], "select_split": "Val", "fusion_regime": "stable",
                         "fixed_weights": None})
    sdir, to_run = subs.prepare_submission(2, run)
    assert to_run == [] and (sdir / SEARCH).resolve() == (run / SEARCH).resolve()
    assert subs.run_submission(2, run, "smoke") == []
    assert subs.prepare_submission(1, run)[1] == [SEARCH]  # original regime: a search of its own
    assert subs.final_dir(run, 2).resolve() == (run / SEARCH).resolve()


def test_swapped_partition_reruns_the_chain_with_the_main_parameters(run):
    sdir, to_run = subs.prepare_submission(4, run)
    assert to_run == list(subs.CHAIN)
    assert (sdir / stages.CNN.name).is_symlink() and not (sdir / IRNN).exists()
    assert stages.AUDIO.path(sdir, "is10", split="Val").read_bytes() == b"cache"  # the feature cache travels
    over = subs.chain_overrides(4, run, to_run, extra={f"{IRNN}.n_seeds": 1, f"{stages.ALIGNMENT.name}.workers": 2})
    assert over[f"{IRNN}.train_splits"] == ["Val"] and over[f"{FUSION}.select_split"] == "Train"
    assert over[f"{IRNN}.epochs"] == 99  # the main run's own value (a command-line override carries over)
    assert over[f"{IRNN}.n_seeds"] == 1 and f"{stages.ALIGNMENT.name}.workers" not in over  # only for stages run
    # every choice made on the select split is left to the chain again
    assert over[f"{IRNN}.fixed_epochs"] is None and over[f"{AUDIO}.n_components"] is None
    assert over[f"{KAVG}.svm_C"] is None and over[f"{ACTIVITY}.svm_gamma"] is None
    assert over[f"{FUSION}.fixed_epochs"] is None and over[f"{SEARCH}.fixed_weights"] is None
    assert f"{IRNN}.run_dir" not in over and f"{IRNN}.device" not in over  # injected ones stay the runner's
    with pytest.raises(FileNotFoundError, match="no successful stage run"):
        subs.prepare_submission(5, run)  # shares 4's models, which have not run yet
    for st in subs.MODEL_STAGES:
        _stage(sdir, st, {"train_splits": ["Val"], "select_split": "Train"})
    sdir5, to_run5 = subs.prepare_submission(5, run)
    assert to_run5 == [SEARCH]
    assert (sdir5 / IRNN).resolve() == (sdir / IRNN).resolve()


def test_retraining_keeps_every_choice_of_the_reference(run):
    sdir2, _ = subs.prepare_submission(2, run)
    # submission 2's own search (its 08 is not linked)
    _stage(sdir2, SEARCH, {"train_splits": ["Train"], "select_split": "Val"},
           {"modalities": ("rnn", "kavg"), "weights": ((0.1,) * 7, (0.9,) * 7)})
    ref = subs.retrain_overrides(sdir2)
    assert ref == {
        f"{IRNN}.fixed_epochs": 17, f"{KAVG}.svm_C": 3.0, f"{KAVG}.svm_gamma": 0.003,
        f"{AUDIO}.n_components": 20, f"{AUDIO}.svm_C": 10, f"{AUDIO}.svm_gamma": "scale",
        f"{ACTIVITY}.svm_C": 1, f"{ACTIVITY}.svm_gamma": "scale",
        f"{FUSION}.fixed_epochs": {"original": 4, "stable": 40},
        f"{SEARCH}.fixed_weights": {"modalities": ["rnn", "kavg"], "weights": [[0.1] * 7, [0.9] * 7]}}
    _, to_run = subs.prepare_submission(3, run)
    over = subs.chain_overrides(3, run, to_run)
    assert over[f"{IRNN}.train_splits"] == ["Train", "Val"] and over[f"{IRNN}.select_split"] is None
    assert all(over[k] == v for k, v in ref.items())
    assert over[f"{SEARCH}.fusion_regime"] == "stable"


def test_bad_requests(run, tmp_path):
    with pytest.raises(ValueError, match="1-7"):
        subs.prepare_submission(8, run)
    with pytest.raises(ValueError, match="combines"):
        subs.prepare_submission(7, run)
    with pytest.raises(FileNotFoundError, match="main chain"):
        subs.prepare_submission(4, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=f"no metrics.json; run stage {IRNN}"):
        subs.chain_overrides(6, run, list(subs.CHAIN))  # submission 4 has not run


def test_decision_inputs_align_the_classifiers_and_report_their_training_splits(tmp_path):
    ids = np.array(["a", "b", "c"])
    y = np.array([0, 1, -1])
    eye = np.eye(7)[[0, 1, 2]]
    for st in (IRNN, FUSION):
        _stage(tmp_path, st, {"train_splits": ["Train"]})
    for split in ("Train", "Val"):
        artifacts.save_clip_probs(stages.IRNN.path(tmp_path, "clip_probs", split=split), ids, eye, y)
        artifacts.save_clip_probs(stages.FUSION.path(tmp_path, "regime_probs", regime="stable", split=split),
                                  ids, eye, y)
    inp = load_decision_inputs(tmp_path, ["Train", "Val"], ["rnn", "fusion"], "stable")
    assert inp.probs["rnn"].shape == (6, 7) and list(inp.split_of) == ["Train"] * 3 + ["Val"] * 3
    assert inp.trained_on == {"rnn": ["Train"], "fusion": ["Train"]}
    assert list(inp.subset("Val").labels) == [0, 1, -1]
    with pytest.raises(FileNotFoundError, match=FUSION):
        load_decision_inputs(tmp_path, "Train", ["fusion"], "original")
    with pytest.raises(ValueError, match="unknown modalities"):
        load_decision_inputs(tmp_path, "Train", ["video"])
    artifacts.save_clip_probs(stages.FUSION.path(tmp_path, "regime_probs", regime="stable", split="Test"),
                              ids[::-1], eye, y)
    artifacts.save_clip_probs(stages.IRNN.path(tmp_path, "clip_probs", split="Test"), ids, eye, y)
    with pytest.raises(ValueError, match="differ"):
        load_decision_inputs(tmp_path, "Test", ["rnn", "fusion"], "stable")


def test_predictions_are_written_in_the_per_clip_format(tmp_path):
    probs = np.eye(7)[[3, 6]]
    assert subs.write_predictions(tmp_path, 6, ["c1", "c2"], probs) == 2
    assert stages.SUBMISSIONS.path(tmp_path, "emotiw", number=6, clip="c1").read_text() == "Happy\n"
    assert stages.SUBMISSIONS.path(tmp_path, "emotiw", number=6, clip="c2").read_text() == "Neutral\n"
    csv = stages.SUBMISSIONS.path(tmp_path, "predictions", number=6).read_text()
    assert csv.splitlines()[1].startswith("c1,Happy,")
    assert subs.final_dir(tmp_path, 7) == subs.submission_dir(tmp_path, 7)
    assert subs.final_dir(tmp_path, 3).name == SEARCH
    with pytest.raises(ValueError, match="probs"):
        subs.write_predictions(tmp_path, 6, ["c1"], probs)


def _expert(y, good, rng):
    """Probabilities that are right on the classes ``good`` and claim the others without knowing them."""
    logits = rng.normal(size=(len(y), 7))
    hit = np.isin(y, good)
    logits[hit, y[hit]] += 4.0
    logits[:, [c for c in range(7) if c not in good]] += 1.5
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


def _final_outputs(run, rng):
    """Final clip_probs of submissions 3 and 6: 3 knows classes 0-3, 6 knows 4-6."""
    sizes = {"Train": 120, "Val": 80, "Test": 60}
    for split, n in sizes.items():
        y = rng.integers(0, 7, n)
        if split == "Test":
            y[:5] = -1  # unknown labels are ignored by the search
        ids = np.array([f"{split}{i}" for i in range(n)])
        for number, good in ((3, [0, 1, 2, 3]), (6, [4, 5, 6])):
            path = subs.final_path(run, number, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            artifacts.save_clip_probs(path, ids, _expert(np.maximum(y, 0), good, rng), y)


def test_submission_7_searches_on_the_splits_that_trained_its_inputs_and_fuses_them(tmp_path):
    from emotiw_utils.decision import fuse_probs
    from emotiw_utils.random_search import SearchSpec

    run = tmp_path / "run"
    _final_outputs(run, np.random.default_rng(0))
    assert subs.combine_splits(7) == ("Train", "Val")
    spec = SearchSpec(n_uniform=400, per_round=100, decay=0.5, sigma_min=0.05)
    res = subs.combine(7, run, spec, seed=0)
    assert res.modalities == ("sub 3", "sub 6") and res.weights.shape == (2, 7)
    again = subs.combine(7, run, spec, seed=0)
    np.testing.assert_array_equal(again.weights, res.weights)
    trval = {}
    for split in ("Train", "Val", "Test"):
        ids, fused, y = subs.final_probs(run, 7, split)
        inputs = {f"sub {n}": subs.final_probs(run, n, split)[1] for n in (3, 6)}
        np.testing.assert_array_equal(fused, fuse_probs(inputs, res.modalities, res.weights))
        assert list(ids) == list(subs.final_probs(run, 3, split)[0])
        if split != "Test":
            trval[split] = (fused, inputs, y)
    y = np.concatenate([v[2] for v in trval.values()])
    acc = {m: np.mean(np.concatenate([v[1][m] for v in trval.values()]).argmax(1) == y) for m in res.modalities}
    fused_acc = np.mean(np.concatenate([v[0] for v in trval.values()]).argmax(1) == y)
    assert res.accuracy == pytest.approx(fused_acc) and fused_acc > max(acc.values()) + 0.1
    row = subs.scores(run, 7)
    assert row["train"] is None and row["val"] is None and 0 <= row["test_uar"] <= 1
    _, p, yt = subs.final_probs(run, 7, "Test")
    assert row["test"] == pytest.approx(np.mean(p[yt >= 0].argmax(1) == yt[yt >= 0]))
    with pytest.raises(ValueError, match="combines no submissions"):
        subs.combine(3, run, spec)


def test_scores_of_a_chain_submission_show_train_and_val(tmp_path):
    run = tmp_path / "run"
    y = np.array([0, 1, 2, 3])
    for split, right in (("Train", 4), ("Val", 2), ("Test", 1)):
        probs = np.eye(7)[[c if i < right else 6 for i, c in enumerate(y)]]
        path = subs.final_path(run, 4, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        artifacts.save_clip_probs(path, np.array(list("abcd")), probs, y)
    row = subs.scores(run, 4)
    assert (row["train"], row["val"], row["test"]) == (1.0, 0.5, 0.25)


def _fake_chain_runs(monkeypatch, fail=None):
    import os
    import threading
    import time

    log, lock, active = [], threading.Lock(), [0]
    peak = [0]

    def fake(n, run_dir, profile, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            log.append(("start", n, os.environ.get("OMP_NUM_THREADS")))
        time.sleep(0.05)
        with lock:
            active[0] -= 1
            log.append(("end", n, None))
        if n == fail:
            raise RuntimeError(f"submission {n} failed")
        return [f"results of {n}"]

    monkeypatch.setattr(subs, "run_submission", fake)
    return log, peak


def test_run_submissions_in_parallel_respects_what_each_builds_on(monkeypatch, tmp_path):
    import os

    log, peak = _fake_chain_runs(monkeypatch)
    monkeypatch.setenv("OMP_NUM_THREADS", "sentinel")
    done = []
    out = subs.run_submissions([1, 2, 3, 4, 5, 6, 7], tmp_path, "smoke", parallel=2, on_done=lambda n, r: done.append(n))
    assert out == {n: [f"results of {n}"] for n in range(1, 7)}  # 7 is no chain
    assert sorted(done) == list(range(1, 7)) and peak[0] == 2
    order = [(ev, n) for ev, n, _ in log]
    for child, parent in ((2, 1), (3, 2), (5, 4), (6, 4)):
        assert order.index(("start", child)) > order.index(("end", parent))
    assert order[:2] == [("start", 4), ("start", 1)]  # 4 first: it unlocks 5 and 6
    assert {threads for ev, _, threads in log if ev == "start"} == {str(max(1, (os.cpu_count() or 1) // 2))}
    assert os.environ["OMP_NUM_THREADS"] == "sentinel"  # restored for the rest of the chapter


def test_run_submissions_one_at_a_time_and_failures(monkeypatch, tmp_path):
    log, peak = _fake_chain_runs(monkeypatch)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert list(subs.run_submissions([6, 4, 1], tmp_path, "smoke")) == [1, 4, 6]
    assert peak[0] == 1 and {threads for ev, _, threads in log if ev == "start"} == {None}  # env untouched

    log, _ = _fake_chain_runs(monkeypatch, fail=4)
    with pytest.raises(RuntimeError, match="submission 4 failed"):
        subs.run_submissions([1, 2, 3, 4, 5, 6], tmp_path, "smoke", parallel=2)
    started = {n for ev, n, _ in log if ev == "start"}
    assert 5 not in started and 6 not in started
    with pytest.raises(ValueError, match="parallel"):
        subs.run_submissions([1], tmp_path, "smoke", parallel=0)
