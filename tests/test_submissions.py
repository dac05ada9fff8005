"""Submission protocols of Table 2 (paper 6.3) and the decision-fusion inputs, on a fake run folder."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import artifacts, paths
from emotiw_utils import submissions as subs
from emotiw_utils.decision import load_decision_inputs

STAGES = ["00_datasets", "01_alignment", "02_cnn", *subs.CHAIN]
METRICS = {
    "03_irnn": {"best_epoch": 17},
    "04_kavg_svm": {"svm": {"C": 3.0, "gamma": 0.003}},
    "05_audio": {"chosen": {"n_components": 20, "C": 10, "gamma": "scale"}},
    "06_activity_sae": {"svm": {"C": 1, "gamma": "scale"}},
    "07_fusion": {"regimes": {"original": {"best_epoch": 4}, "stable": {"best_epoch": 40}}},
    "08_random_search": {"final": {"modalities": ["rnn", "kavg"], "weights": [[0.25] * 7, [0.75] * 7]}},
}


def _stage(folder, stage, params, metrics=None):
    sdir = artifacts.stage_dir(folder, stage)
    artifacts.write_manifest(sdir, stage=stage, parameters={"profile": "smoke", "seed": 0, "stage": stage,
                                                            "run_dir": str(folder), "device": "cpu", **params},
                             input_hash="h", status="ok", wall_time_s=1.0, device="cpu", started="s", finished="f")
    artifacts.write_metrics(sdir, {"partition": {"train_splits": params.get("train_splits", ["Train"])},
                                   **(metrics or METRICS.get(stage, {}))})
    return sdir


@pytest.fixture()
def run(tmp_path):
    run = tmp_path / "run"
    for st in STAGES:
        _stage(run, st, {"epochs": 99, "train_splits": ["Train"], "select_split": "Val"})
    (run / "05_audio" / "is10_Val.npz").write_bytes(b"cache")
    return run


def test_the_seven_protocols_match_table_2():
    assert sorted(subs.SUBMISSIONS) == list(range(1, 8))
    assert subs.SUBMISSIONS[4].train_splits == ("Val",) and subs.SUBMISSIONS[4].select_split == "Train"
    assert subs.SUBMISSIONS[3].retrain_of == 2 and subs.SUBMISSIONS[6].retrain_of == 4
    assert subs.SUBMISSIONS[3].train_splits == subs.SUBMISSIONS[6].train_splits == ("Train", "Val")
    assert [subs.SUBMISSIONS[n].fusion_regime for n in (1, 2, 4, 5)] == ["original", "stable", "original", "stable"]
    assert subs.SUBMISSIONS[7].combine == (3, 6) and not subs.SUBMISSIONS[7].is_chain


def test_submissions_1_and_2_link_the_main_models_and_rerun_only_the_search(run):
    sdir, stages = subs.prepare_submission(1, run)
    assert stages == ["08_random_search"]
    for st in subs.SHARED_STAGES + subs.MODEL_STAGES:
        assert (sdir / st).is_symlink() and (sdir / st).resolve() == (run / st).resolve()
    over = subs.chain_overrides(2, run, stages)
    assert over["08_random_search.fusion_regime"] == "stable" and over["08_random_search.fixed_weights"] is None
    assert not any(k.startswith("03_irnn.") for k in over)
    assert not (sdir / "08_random_search").is_symlink()  # the main run searched with no fusion_regime set


def test_a_submission_links_the_main_search_when_it_used_the_same_fusion_regime(run):
    _stage(run, "08_random_search", {"train_splits": ["Train"], "select_split": "Val", "fusion_regime": "stable",
                                     "fixed_weights": None})
    sdir, stages = subs.prepare_submission(2, run)
    assert stages == [] and (sdir / "08_random_search").resolve() == (run / "08_random_search").resolve()
    assert subs.run_submission(2, run, "smoke") == []
    assert subs.prepare_submission(1, run)[1] == ["08_random_search"]  # original regime: a search of its own
    assert subs.final_dir(run, 2).resolve() == (run / "08_random_search").resolve()


def test_swapped_partition_reruns_the_chain_with_the_main_parameters(run):
    sdir, stages = subs.prepare_submission(4, run)
    assert stages == list(subs.CHAIN)
    assert (sdir / "02_cnn").is_symlink() and not (sdir / "03_irnn").exists()
    assert (sdir / "05_audio" / "is10_Val.npz").read_bytes() == b"cache"  # the feature cache travels
    over = subs.chain_overrides(4, run, stages, extra={"03_irnn.n_seeds": 1, "01_alignment.workers": 2})
    assert over["03_irnn.train_splits"] == ["Val"] and over["07_fusion.select_split"] == "Train"
    assert over["03_irnn.epochs"] == 99  # the main run's own value (a command-line override carries over)
    assert over["03_irnn.n_seeds"] == 1 and "01_alignment.workers" not in over  # extra only for stages run
    assert over["03_irnn.fixed_epochs"] is None and over["05_audio.n_components"] is None
    assert "03_irnn.run_dir" not in over and "03_irnn.device" not in over  # injected ones stay the runner's
    with pytest.raises(FileNotFoundError, match="no successful stage run"):
        subs.prepare_submission(5, run)  # shares 4's models, which have not run yet
    for st in subs.MODEL_STAGES:
        _stage(sdir, st, {"train_splits": ["Val"], "select_split": "Train"})
    sdir5, stages5 = subs.prepare_submission(5, run)
    assert stages5 == ["08_random_search"]
    assert (sdir5 / "03_irnn").resolve() == (sdir / "03_irnn").resolve()


def test_retraining_keeps_every_choice_of_the_reference(run):
    sdir2, _ = subs.prepare_submission(2, run)
    # submission 2's own search (its 08 is not linked)
    _stage(sdir2, "08_random_search", {"train_splits": ["Train"], "select_split": "Val"},
           {"final": {"modalities": ["rnn", "kavg"], "weights": [[0.1] * 7, [0.9] * 7]}})
    ref = subs.retrain_overrides(sdir2)
    assert ref["03_irnn.fixed_epochs"] == 17 and ref["07_fusion.fixed_epochs"] == {"original": 4, "stable": 40}
    assert ref["04_kavg_svm.svm_C"] == 3.0 and ref["05_audio.n_components"] == 20
    assert ref["08_random_search.fixed_weights"]["weights"][1] == [0.9] * 7
    sdir3, stages = subs.prepare_submission(3, run)
    over = subs.chain_overrides(3, run, stages)
    assert over["03_irnn.train_splits"] == ["Train", "Val"] and over["03_irnn.select_split"] is None
    assert over["03_irnn.fixed_epochs"] == 17 and over["06_activity_sae.svm_gamma"] == "scale"
    assert over["08_random_search.fixed_weights"] == ref["08_random_search.fixed_weights"]


def test_bad_requests(run, tmp_path):
    with pytest.raises(ValueError, match="1-7"):
        subs.prepare_submission(8, run)
    with pytest.raises(ValueError, match="combines"):
        subs.prepare_submission(7, run)
    with pytest.raises(FileNotFoundError, match="main chain"):
        subs.prepare_submission(4, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no metrics"):
        subs.chain_overrides(6, run, list(subs.CHAIN))  # submission 4 has not run


def test_decision_inputs_align_the_classifiers_and_report_their_training_splits(tmp_path):
    ids = np.array(["a", "b", "c"])
    y = np.array([0, 1, -1])
    eye = np.eye(7)[[0, 1, 2]]
    for st, tr in (("03_irnn", ["Train"]), ("07_fusion", ["Train"])):
        sdir = _stage(tmp_path, st, {"train_splits": tr})
        variant = "stable" if st == "07_fusion" else None
        for split in ("Train", "Val"):
            artifacts.save_clip_probs(sdir / paths.clip_probs_name(split, variant), ids, eye, y)
    inp = load_decision_inputs(tmp_path, ["Train", "Val"], ["rnn", "fusion"], "stable")
    assert inp.probs["rnn"].shape == (6, 7) and list(inp.split_of) == ["Train"] * 3 + ["Val"] * 3
    assert inp.trained_on == {"rnn": ["Train"], "fusion": ["Train"]}
    assert list(inp.subset("Val").labels) == [0, 1, -1]
    with pytest.raises(FileNotFoundError, match="07_fusion"):
        load_decision_inputs(tmp_path, "Train", ["fusion"], "original")
    with pytest.raises(ValueError, match="unknown modalities"):
        load_decision_inputs(tmp_path, "Train", ["video"])
    artifacts.save_clip_probs(tmp_path / "07_fusion" / paths.clip_probs_name("Test", "stable"), ids[::-1], eye, y)
    artifacts.save_clip_probs(tmp_path / "03_irnn" / paths.clip_probs_name("Test"), ids, eye, y)
    with pytest.raises(ValueError, match="differ"):
        load_decision_inputs(tmp_path, "Test", ["rnn", "fusion"], "stable")


def test_predictions_are_written_in_the_per_clip_format(tmp_path):
    probs = np.eye(7)[[3, 6]]
    assert subs.write_predictions(tmp_path, 6, ["c1", "c2"], probs) == 2
    assert (tmp_path / "emotiw" / "sub6" / "c1.txt").read_text() == "Happy\n"
    assert (tmp_path / "emotiw" / "sub6" / "c2.txt").read_text() == "Neutral\n"
    assert (tmp_path / "sub6_predictions.csv").read_text().splitlines()[1].startswith("c1,Happy,")
    assert subs.final_dir(tmp_path, 7) == subs.submission_dir(tmp_path, 7)
    assert subs.final_dir(tmp_path, 3).name == "08_random_search"
    with pytest.raises(ValueError, match="probs"):
        subs.write_predictions(tmp_path, 6, ["c1"], probs)


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
