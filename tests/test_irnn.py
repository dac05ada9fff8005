"""Tests for emotiw_utils.irnn (Kahou et al. 2015, section 2.2): fast, CPU, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotiw_utils.errors import DataFormatError
from emotiw_utils.irnn import (InputScaler, SeqHistory, SequenceClassifier, last_hidden_states, load_irnn,
                               predict_proba, save_irnn, split_sequences, train_sequence_model)


def order_task(n: int, seed: int, dim: int = 8, amp: float = 2.0, noise: float = 0.2):
    """Sequences of length 10-30 with events A (feature 0) and B (feature 1) at random times among Gaussian
    noise: label 0 if A comes before B, 1 otherwise. The time-averaged input is the same for both labels."""
    rng = np.random.default_rng(seed)
    seqs, ys = [], []
    for _ in range(n):
        t = int(rng.integers(10, 31))
        x = rng.normal(0.0, noise, (t, dim)).astype(np.float32)
        t1, t2 = sorted(rng.choice(t, 2, replace=False))
        y = int(rng.integers(2))
        a, b = (t1, t2) if y == 0 else (t2, t1)
        x[a, 0] += amp
        x[b, 1] += amp
        seqs.append(x)
        ys.append(y)
    return seqs, np.array(ys)


@pytest.fixture(scope="module")
def order_data():
    torch.set_num_threads(1)
    return order_task(400, 0), order_task(200, 1)


# ------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_identity_init_exact(scale):
    m = SequenceClassifier(16, hidden=20, identity_scale=scale, seed=0)
    assert torch.equal(m.rnn.weight_hh_l0.data, scale * torch.eye(20))
    assert torch.equal(m.rnn.bias_hh_l0.data, torch.zeros(20))
    assert m.rnn.nonlinearity == "relu"
    assert m.out.out_features == 7
    assert float(m.rnn.weight_ih_l0.detach().std()) < 0.01  # Le et al. 2015: N(0, 0.001^2)


def test_seed_reproducible_and_rng_untouched():
    state = torch.random.get_rng_state()
    a, b = SequenceClassifier(5, hidden=8, cell="lstm", seed=3), SequenceClassifier(5, hidden=8, cell="lstm", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError):
        SequenceClassifier(5, cell="tanh")


@pytest.mark.parametrize("cell", ["irnn", "lstm", "gru"])
def test_padding_does_not_change_prediction(cell):
    gen = torch.Generator().manual_seed(0)
    short, long = torch.randn(4, 6, generator=gen), torch.randn(40, 6, generator=gen)
    m = SequenceClassifier(6, hidden=12, cell=cell, seed=1, input_std=None).eval()
    with torch.no_grad():
        alone = m(short[None], torch.tensor([4]))
        h_alone = m.last_hidden(short[None], torch.tensor([4]))
        padded = torch.nn.utils.rnn.pad_sequence([long, short], batch_first=True)
        # garbage in the padding must be ignored too
        padded[1, 4:] = 1e3
        both = m(padded, torch.tensor([40, 4]))
        h_both = m.last_hidden(padded, torch.tensor([40, 4]))
    assert torch.allclose(alone[0], both[1], atol=1e-6, rtol=0)
    assert torch.allclose(h_alone[0], h_both[1], atol=1e-6, rtol=0)
    # the same through the numpy-level inference helpers (batches of 1 vs a padded batch)
    p1 = predict_proba(m, [short.numpy(), long.numpy()], batch_size=1)
    p2 = predict_proba(m, [short.numpy(), long.numpy()], batch_size=2)
    np.testing.assert_allclose(p1, p2, atol=1e-6, rtol=0)
    np.testing.assert_allclose(p1.sum(1), 1.0, atol=1e-6)
    assert p1.shape == (2, 7)
    assert last_hidden_states(m, [short, long]).shape == (2, 12)


def test_split_sequences():
    feats = np.arange(20, dtype=np.float32).reshape(10, 2)
    parts = split_sequences(feats, [0, 3, 3, 10])
    assert [p.shape for p in parts] == [(3, 2), (0, 2), (7, 2)]
    assert np.shares_memory(parts[2], feats)
    with pytest.raises(ValueError):
        split_sequences(feats, [0, 3, 9])


# ------------------------------------------------------------------------------------- training


def test_order_task_irnn_beats_order_invariant_baseline(order_data):
    from sklearn.linear_model import LogisticRegression

    (xs, ys), (xv, yv) = order_data
    m = SequenceClassifier(8, hidden=32, cell="irnn", identity_scale=0.8, seed=0, input_std=None)
    # higher lr + momentum than the paper's defaults, so the test converges in ~1 s
    hist = train_sequence_model(m, xs, ys, select=(xv, yv), epochs=40, lr=0.02, momentum=0.9, batch_size=32, seed=0)
    acc = float((predict_proba(m, xv).argmax(1) == yv).mean())
    assert acc > 0.9, hist.to_frame()
    baseline = LogisticRegression(max_iter=1000).fit(np.stack([x.mean(0) for x in xs]), ys)
    base_acc = baseline.score(np.stack([x.mean(0) for x in xv]), yv)
    assert base_acc < 0.65


def test_selection_fixed_epochs_and_determinism(order_data):
    (xs, ys), (xv, yv) = order_data
    xs, ys, xv, yv = xs[:200], ys[:200], xv[:100], yv[:100]
    kw = dict(lr=0.02, momentum=0.9, batch_size=32, seed=5)

    m = SequenceClassifier(8, hidden=16, identity_scale=0.8, seed=2, input_std=None)
    logged = []
    hist = train_sequence_model(m, xs, ys, select=(xv, yv), epochs=12, log=logged.append, **kw)
    assert len(hist.epochs) == 12 and len(logged) == 12
    assert 1 <= hist.best_epoch <= 12
    accs = hist.metric("val_acc")
    assert hist.best_epoch == int(np.argmax(accs)) + 1  # argmax: ties -> earliest
    acc = float((predict_proba(m, xv).argmax(1) == yv).mean())
    assert acc == pytest.approx(hist.best["val_acc"], abs=1e-12)
    assert set(hist.to_frame().columns) >= {"train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    assert hist.to_frame().index.name == "epoch"

    # same seed twice -> identical history (timings aside)
    m2 = SequenceClassifier(8, hidden=16, identity_scale=0.8, seed=2, input_std=None)
    hist2 = train_sequence_model(m2, xs, ys, select=(xv, yv), epochs=12, **kw)
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h.epochs]  # noqa: E731
    assert strip(hist) == strip(hist2) and hist2.best_epoch == hist.best_epoch

    # retraining for best_epoch epochs without a select split reproduces the selected weights
    m3 = SequenceClassifier(8, hidden=16, identity_scale=0.8, seed=2, input_std=None)
    hist3 = train_sequence_model(m3, xs, ys, fixed_epochs=hist.best_epoch, epochs=999, **kw)
    assert len(hist3.epochs) == hist.best_epoch == hist3.best_epoch
    assert np.isnan(hist3.epochs[-1]["val_acc"])
    for (k, p), q in zip(m.state_dict().items(), m3.state_dict().values()):
        assert torch.equal(p, q), k

    back = SeqHistory.from_dict(hist.to_dict())
    assert back.best_epoch == hist.best_epoch and back.epochs == hist.epochs



def test_eval_every_evaluates_and_selects_only_the_evaluated_epochs(order_data):
    (xs, ys), (xv, yv) = order_data
    xs, ys, xv, yv = xs[:120], ys[:120], xv[:60], yv[:60]
    kw = dict(lr=0.02, momentum=0.9, batch_size=32, seed=3)
    every = train_sequence_model(SequenceClassifier(8, hidden=16, identity_scale=0.8, seed=1, input_std=None),
                                 xs, ys, select=(xv, yv), epochs=11, **kw)
    m = SequenceClassifier(8, hidden=16, identity_scale=0.8, seed=1, input_std=None)
    hist = train_sequence_model(m, xs, ys, select=(xv, yv), epochs=11, eval_every=4, **kw)
    evaluated = [e["epoch"] for e in hist.epochs if not np.isnan(e["val_acc"])]
    assert evaluated == [4, 8, 11]  # every 4th epoch and the last
    assert all(np.isnan(e["val_loss"]) for e in hist.epochs if e["epoch"] not in evaluated)
    # training is untouched by the evaluations: the same train curves, the same values where both evaluated
    for a, b in zip(every.epochs, hist.epochs):
        assert (a["train_loss"], a["train_acc"]) == (b["train_loss"], b["train_acc"])
        if b["epoch"] in evaluated:
            assert (a["val_loss"], a["val_acc"]) == (b["val_loss"], b["val_acc"])
    # the kept epoch is the best evaluated one (ties -> earliest), and the model holds its weights
    accs = {e["epoch"]: e["val_acc"] for e in hist.epochs if e["epoch"] in evaluated}
    assert hist.best_epoch == max(evaluated, key=lambda ep: (accs[ep], -ep))
    assert float((predict_proba(m, xv).argmax(1) == yv).mean()) == pytest.approx(accs[hist.best_epoch], abs=1e-12)
    assert hist.config["eval_every"] == 4
    fixed = train_sequence_model(SequenceClassifier(8, hidden=16, seed=1), xs, ys, select=(xv, yv), fixed_epochs=5,
                                 eval_every=2, **kw)
    assert fixed.best_epoch == 5 and [e["epoch"] for e in fixed.epochs if not np.isnan(e["val_acc"])] == [2, 4, 5]
    for bad in (0, 1.5, -2):
        with pytest.raises(ValueError, match="eval_every"):
            train_sequence_model(SequenceClassifier(8, hidden=4), xs[:4], ys[:4], epochs=1, eval_every=bad)


def test_mean_curves_and_flat_from():
    from emotiw_utils.irnn import flat_from, mean_curves

    def hist(vals, every=1):
        return SeqHistory(epochs=[{"epoch": i + 1, "train_loss": 1.0 - v, "train_acc": v, "seconds": 0.1,
                                   "val_loss": 1.0 - v if (i + 1) % every == 0 else float("nan"),
                                   "val_acc": v if (i + 1) % every == 0 else float("nan")}
                                  for i, v in enumerate(vals)], best_epoch=1)
    a, b = hist([0.2, 0.4, 0.6, 0.8]), hist([0.4, 0.6, 0.8, 1.0], every=2)
    m = mean_curves([a, b])
    assert list(m.index) == [1, 2, 3, 4] and list(m["n_seeds"]) == [2, 2, 2, 2]
    np.testing.assert_allclose(m["train_acc"], [0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(m["val_acc"], [0.2, 0.5, 0.6, 0.9])  # epochs 1 and 3: seed a only
    assert list(mean_curves([a, hist([0.5, 0.5])])["n_seeds"]) == [2, 2, 1, 1]
    with pytest.raises(ValueError):
        mean_curves([])

    import pandas as pd

    epochs = np.arange(1, 201)
    rising = pd.Series(np.minimum(epochs, 100) / 100.0, index=epochs)  # rises until epoch 100, then flat
    assert 95 <= flat_from(rising, window=1, tol=0.02) <= 100
    assert flat_from(pd.Series(np.full(50, 0.5), index=np.arange(1, 51)), window=5) == 5  # flat from the start
    assert flat_from(pd.Series(epochs / 200.0, index=epochs), window=1, tol=0.02) >= 195  # still rising at the end
    sparse = rising.where(epochs % 5 == 0)  # evaluated every 5th epoch: the window counts epochs, not points
    assert 95 <= flat_from(sparse, window=10, tol=0.02) <= 110
    peak = pd.Series(np.where(epochs <= 100, epochs / 100.0, 1.0 - (epochs - 100) / 1000.0), index=epochs)
    assert 95 <= flat_from(peak, window=1, tol=0.02, level="max") <= 100  # rises to epoch 100, then sinks by 0.1
    assert flat_from(peak, window=1, tol=0.02, level="final") >= 175
    with pytest.raises(ValueError):
        flat_from(pd.Series([np.nan, np.nan]))
    with pytest.raises(ValueError, match="level"):
        flat_from(rising, level="best")


def test_stratified_subset():
    from emotiw_utils.irnn import stratified_subset

    y = np.repeat(np.arange(7), [10, 20, 4, 1, 30, 6, 9])
    keep = stratified_subset(y, 0.5, seed=0)
    assert np.all(np.diff(keep) > 0) and np.array_equal(np.bincount(y[keep], minlength=7), [5, 10, 2, 1, 15, 3, 4])
    assert np.array_equal(keep, stratified_subset(y, 0.5, seed=0))
    assert not np.array_equal(keep, stratified_subset(y, 0.5, seed=1))
    assert np.array_equal(stratified_subset(y, 1.0, seed=3), np.arange(len(y)))
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            stratified_subset(y, bad, seed=0)

def test_bad_input():
    m = SequenceClassifier(3, hidden=4, seed=0)
    seqs = [np.zeros((5, 3), np.float32), np.zeros((2, 3), np.float32)]
    with pytest.raises(ValueError, match="entries"):
        train_sequence_model(m, seqs, [0, 1, 2], epochs=1)
    with pytest.raises(ValueError, match="empty"):
        train_sequence_model(m, [], [], epochs=1)
    with pytest.raises(ValueError, match="zero length"):
        train_sequence_model(m, [seqs[0], np.zeros((0, 3), np.float32)], [0, 1], epochs=1)
    with pytest.raises(ValueError, match="feature size"):
        train_sequence_model(m, [np.zeros((4, 5), np.float32)], [0], epochs=1)
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        train_sequence_model(m, seqs, [0, 7], epochs=1)
    with pytest.raises(ValueError, match="zero length"):
        predict_proba(m, [np.zeros((0, 3), np.float32)])


# ------------------------------------------------------------------------------- scaler, checkpoint


def test_input_scaler_standardises_and_floors_dead_units():
    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(5.0, 3.0, (500, 3)), np.zeros((500, 1))], axis=1)  # last unit never fires
    sc = InputScaler.fit(f)
    z = sc(f)
    assert z.dtype == np.float32 and z.shape == f.shape
    np.testing.assert_allclose(z[:, :3].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z[:, :3].std(0), 1, atol=1e-3)
    assert np.all(z[:, 3] == 0) and np.isfinite(z).all()
    np.testing.assert_array_equal(InputScaler.identity(4)(f), f.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(F, 4\)"):
        sc(f[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        InputScaler.fit(np.array([[np.nan, 1.0]]))


def test_irnn_checkpoint_round_trip(tmp_path, order_data):
    (seqs, y), _ = order_data
    m = SequenceClassifier(8, hidden=16, seed=3)
    hist = train_sequence_model(m, seqs[:64], y[:64], epochs=1, seed=0)
    sc = InputScaler.fit(np.concatenate(seqs[:64]))
    path = save_irnn(tmp_path / "irnn.pt", m, sc, hist, extra={"feature_layer": "conv2"})
    ck = load_irnn(path)
    np.testing.assert_allclose(predict_proba(ck.model, seqs[:10]), predict_proba(m, seqs[:10]), rtol=1e-6)
    np.testing.assert_array_equal(ck.scaler.mean, sc.mean)
    assert ck.history.best_epoch == hist.best_epoch and ck.extra == {"feature_layer": "conv2"}
    assert (ck.model.cell, ck.model.hidden, ck.model.identity_scale) == ("irnn", 16, 1.0)
    with pytest.raises(FileNotFoundError):
        load_irnn(tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(DataFormatError, match="not a sequence-model checkpoint"):
        load_irnn(tmp_path / "other.pt")


# ------------------------------------------------------------------- chapter 03: seeds, layers, reapply


def _fake_run(root, splits=(("Train", 48, 0), ("Val", 24, 1), ("Test", 12, 2))):
    """A run folder holding only stage 02's per-frame outputs (7-d 'logits': the order task)."""
    from emotiw_utils import artifacts, stages

    data = {}
    for split, n, seed in splits:
        seqs, ys = order_task(n, 10 + seed, dim=7)
        labels = ys if split != "Test" else np.full(n, -1)
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in seqs])])
        artifacts.save_npz_atomic(stages.CNN.path(root, "frame_logits", split=split),
                                  clip_ids=np.array([f"{split}{i:03d}" for i in range(n)]), labels=labels,
                                  offsets=offsets, logits=np.concatenate(seqs))
        data[split] = (seqs, labels)
    return data


SMALL = {"hidden": 16, "identity_scale": 0.8, "epochs": 3, "lr": 0.02, "momentum": 0.9, "batch_size": 16}


def test_training_sets_follow_the_partition():
    from emotiw_utils.irnn import training_sets
    from emotiw_utils.protocol import check_partition

    seqs = {s: [np.full((2, 3), i, np.float32) for i in range(4)] for s in ("Train", "Val", "Test")}
    labels = {"Train": np.array([0, 1, 2, 3]), "Val": np.array([4, -1, 5, -1]), "Test": np.full(4, -1)}
    xs, ys, select = training_sets(seqs, labels, check_partition(["Train", "Val"], "Test", fixed=True))
    assert len(xs) == 8 and list(ys) == [0, 1, 2, 3, 4, -1, 5, -1] and select is None  # Test has no labels
    xs, ys, (xv, yv) = training_sets(seqs, labels, check_partition(["Train"], "Val"))
    assert len(xs) == 4 and list(yv) == [4, 5] and [float(x[0, 0]) for x in xv] == [0.0, 2.0]


def _fake_sequences(tmp_path):
    """A fake run's standardised logits sequences and labels per split (one thread: deterministic, fast)."""
    from emotiw_utils.frame_features import load_frame_features
    from emotiw_utils.irnn import fit_scaler

    torch.set_num_threads(1)
    _fake_run(tmp_path)
    frames = {s: load_frame_features(tmp_path, s, "logits") for s in ("Train", "Val", "Test")}
    scaler = fit_scaler(frames, ["Train"])
    return {s: f.sequences(scaler) for s, f in frames.items()}, {s: f.labels for s, f in frames.items()}


def test_train_seeds_is_the_build_train_predict_loop(tmp_path):
    from emotiw_utils.irnn import SequenceSettings, train_seeds
    from emotiw_utils.protocol import check_partition

    seqs, labels = _fake_sequences(tmp_path)
    partition = check_partition(["Train"], "Val")
    settings = SequenceSettings(**SMALL)
    runs = train_seeds(seqs, labels, partition, settings, [4, 5])
    assert list(runs) == [4, 5] and all(r.selected for r in runs.values())

    # by hand, as chapter 03 used to do it
    m = SequenceClassifier(7, 16, "irnn", identity_scale=0.8, seed=5)
    keep = labels["Val"] >= 0
    hist = train_sequence_model(m, seqs["Train"], labels["Train"], select=([x for x, k in zip(seqs["Val"], keep) if k],
                                labels["Val"][keep]), epochs=3, lr=0.02, momentum=0.9, batch_size=16, seed=5)
    r = runs[5]
    assert r.history.best_epoch == hist.best_epoch and len(r.history.epochs) == 3 and r.seconds_per_epoch > 0
    for split in ("Train", "Val", "Test"):
        np.testing.assert_array_equal(r.probs[split], predict_proba(m, seqs[split]))
    assert r.accuracy["Train"] == r.accuracy["train"] == float((r.probs["Train"].argmax(1) == labels["Train"]).mean())
    assert np.isnan(r.accuracy["Test"])
    assert not np.array_equal(runs[4].probs["Val"], r.probs["Val"])  # another seed, another network

    fixed = train_seeds(seqs, labels, check_partition(["Train", "Val"], None, fixed=True),
                        SequenceSettings(**{**SMALL, "fixed_epochs": 2}), [0])[0]
    assert not fixed.selected and len(fixed.history.epochs) == 2 and set(fixed.probs) == {"Train", "Val", "Test"}
    with pytest.raises(ValueError, match="at least one seed"):
        train_seeds(seqs, labels, partition, settings, [])


def test_layer_run_trains_on_the_train_and_select_splits_only(tmp_path):
    from emotiw_utils.irnn import SequenceSettings, layer_run
    from emotiw_utils.protocol import check_partition

    torch.set_num_threads(1)
    _fake_run(tmp_path, splits=(("Train", 32, 0), ("Val", 16, 1)))  # no Test: the experiment must not read it
    r = layer_run(tmp_path, "logits", check_partition(["Train"], "Val"), SequenceSettings(**SMALL, fixed_epochs=1),
                  seed=1, epochs=2)
    assert set(r.probs) == {"Train"} and r.model.input_dim == 7
    assert len(r.history.epochs) == 2 and r.selected  # fixed_epochs of the main run is not applied here
    assert 0 <= r.history.best["val_acc"] <= 1 and 0 <= r.accuracy["train"] <= 1


def test_fit_and_predict_on_a_fraction_of_the_training_clips(tmp_path):
    from emotiw_utils.irnn import SequenceSettings, data_size_row, fit_and_predict, stratified_subset
    from emotiw_utils.protocol import check_partition

    seqs, labels = _fake_sequences(tmp_path)
    settings = SequenceSettings(**{**SMALL, "eval_every": 2})
    half = fit_and_predict(seqs, labels, check_partition(["Train"], "Val"), settings, 3, train_fraction=0.5)
    keep = stratified_subset(labels["Train"], 0.5, 3)
    assert half.history.config["n_train"] == len(keep) < len(labels["Train"])
    assert [e["epoch"] for e in half.history.epochs if not np.isnan(e["val_acc"])] == [2, 3]
    # the same network as training on that subset by hand
    m = settings.build(7, 3)
    keep_val = labels["Val"] >= 0
    train_sequence_model(m, [seqs["Train"][i] for i in keep], labels["Train"][keep], eval_every=2,
                         select=([x for x, k in zip(seqs["Val"], keep_val) if k], labels["Val"][keep_val]),
                         epochs=3, lr=0.02, momentum=0.9, batch_size=16, seed=3)
    np.testing.assert_array_equal(half.probs["Val"], predict_proba(m, seqs["Val"]))
    assert half.accuracy["train"] == float((half.probs["Train"].argmax(1) == labels["Train"]).mean())  # all clips
    row = data_size_row(half, 0.5, "Val")
    assert row["training clips"] == len(keep) and row["epoch kept"] == half.history.best_epoch
    assert row["Val, second half (%)"] == round(100 * np.mean([e["val_acc"] for e in half.history.epochs[1:]]), 1)


def test_reapply_gives_back_the_stage_probabilities_exactly(tmp_path):
    from emotiw_utils import artifacts, records, stages
    from emotiw_utils.frame_features import load_frame_features
    from emotiw_utils.irnn import IrnnCheckpoint, SequenceSettings, fit_and_predict, fit_scaler, predict_frames, reapply
    from emotiw_utils.protocol import check_partition

    torch.set_num_threads(1)
    _fake_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="run stage 03_irnn first"):
        reapply(tmp_path, "Test")
    frames = {s: load_frame_features(tmp_path, s, "logits") for s in ("Train", "Val", "Test")}
    scaler = fit_scaler(frames, ["Train"])
    seqs = {s: f.sequences(scaler) for s, f in frames.items()}
    r = fit_and_predict(seqs, {s: f.labels for s, f in frames.items()}, check_partition(["Train"], "Val"),
                        SequenceSettings(**SMALL), seed=0)
    save_irnn(stages.IRNN.path(tmp_path, "irnn"), r.model, scaler, r.history, extra={"feature_layer": "logits"})
    records.IrnnRecord(partition=records.PartitionRecord.of(check_partition(["Train"], "Val")),
                       feature_layer="logits").write(stages.IRNN.dir(tmp_path))
    for split in ("Train", "Val", "Test"):  # what chapter 03 writes, read back
        artifacts.save_clip_probs(stages.IRNN.path(tmp_path, "clip_probs", split=split), frames[split].clip_ids,
                                  r.probs[split], frames[split].labels)
        _, stored, _ = artifacts.load_clip_probs(stages.IRNN.path(tmp_path, "clip_probs", split=split))
        again = reapply(tmp_path, split)
        assert again.shape == (len(frames[split]), 7)
        np.testing.assert_array_equal(again, stored)
    with pytest.raises(ValueError, match="reads CNN layer 'conv2'"):
        predict_frames(IrnnCheckpoint(r.model, scaler, None, {"feature_layer": "conv2"}), frames["Test"])


# ------------------------------------------------------------------------------------- long clips


def _mixed_lengths(seed: int = 0, dim: int = 5, long: int = 400) -> list[np.ndarray]:
    """Clips of AFEW-like lengths (ties included) and one much longer clip."""
    rng = np.random.default_rng(seed)
    lengths = [7, 30, 30, 12, long, 1, 30, 25, 3, 12]
    return [rng.normal(size=(t, dim)).astype(np.float32) for t in lengths]


def test_packed_batch_is_what_pack_padded_sequence_makes_of_the_padded_batch():
    from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

    from emotiw_utils.irnn import _Packed

    seqs = _mixed_lengths()
    data = _Packed(seqs, torch.device("cpu"), 5)
    for idx in (torch.arange(len(seqs)), torch.tensor([4, 1, 2, 6]), torch.tensor([9, 3]), torch.tensor([5])):
        got = data.batch(idx)
        chosen = [torch.from_numpy(seqs[int(i)]) for i in idx]
        ref = pack_padded_sequence(pad_sequence(chosen, batch_first=True), torch.tensor([len(c) for c in chosen]),
                                   batch_first=True, enforce_sorted=False)
        assert got.data.shape[0] == sum(len(c) for c in chosen)  # no padding: one row per frame
        assert torch.equal(got.data, ref.data) and torch.equal(got.batch_sizes, ref.batch_sizes)
        assert torch.equal(got.sorted_indices, ref.sorted_indices)
        assert torch.equal(got.unsorted_indices, ref.unsorted_indices)


@pytest.mark.parametrize("cell", ["irnn", "lstm"])
def test_packed_batches_give_the_padded_batches_logits_and_gradients_bit_for_bit(cell):
    from emotiw_utils.irnn import _Packed

    seqs = _mixed_lengths(1)
    idx = torch.tensor([0, 4, 2, 5, 7])
    lens = torch.tensor([len(seqs[int(i)]) for i in idx])
    padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(seqs[int(i)]) for i in idx], batch_first=True)
    y = torch.tensor([0, 3, 6, 1, 2])
    grads = []
    for packed in (False, True):
        m = SequenceClassifier(5, hidden=16, cell=cell, seed=2)
        logits = m.packed_forward(_Packed(seqs, torch.device("cpu"), 5).batch(idx)) if packed else m(padded, lens)
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads.append((logits.detach(), [p.grad.clone() for p in m.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))


def test_batched_predictions_equal_per_clip_predictions():
    seqs = _mixed_lengths(2, long=1500)
    m = SequenceClassifier(5, hidden=16, seed=0).eval()
    batched = predict_proba(m, seqs, batch_size=64)
    alone = np.concatenate([predict_proba(m, [s], batch_size=1) for s in seqs])
    np.testing.assert_allclose(batched, alone, atol=1e-6, rtol=0)
    h_batched = last_hidden_states(m, seqs, batch_size=4)
    h_alone = np.concatenate([last_hidden_states(m, [s]) for s in seqs])
    np.testing.assert_allclose(h_batched, h_alone, atol=1e-5, rtol=1e-5)


def test_training_with_a_long_clip_is_deterministic():
    seqs = _mixed_lengths(3, long=1500) * 3
    y = np.arange(len(seqs)) % 7
    runs = []
    for _ in range(2):
        m = SequenceClassifier(5, hidden=16, seed=4)
        h = train_sequence_model(m, seqs, y, select=(seqs[:6], y[:6]), epochs=3, batch_size=8, seed=5)
        runs.append((m.state_dict(), [(e["train_loss"], e["val_loss"]) for e in h.epochs], h.best_epoch))
    assert all(torch.equal(runs[0][0][k], runs[1][0][k]) for k in runs[0][0])
    assert runs[0][1:] == runs[1][1:]


def test_capped_frames_are_uniform_and_keep_both_ends():
    from emotiw_utils.irnn import capped_frames

    np.testing.assert_array_equal(capped_frames(40, 300), np.arange(40))
    np.testing.assert_array_equal(capped_frames(300, 300), np.arange(300))
    np.testing.assert_array_equal(capped_frames(5, None), np.arange(5))
    idx = capped_frames(3000, 300)
    assert len(idx) == 300 and idx[0] == 0 and idx[-1] == 2999 and np.all(np.diff(idx) >= 9)
    assert np.all(np.diff(idx) <= 11)
    np.testing.assert_array_equal(capped_frames(9, 3), [0, 4, 8])
    with pytest.raises(ValueError, match="max_frames"):
        SequenceClassifier(5, max_frames=1)


def test_a_capped_network_reads_a_long_clip_at_its_capped_frames(tmp_path):
    from emotiw_utils.irnn import capped_frames

    seqs = _mixed_lengths(4, long=1000)
    capped = SequenceClassifier(5, hidden=16, seed=0, max_frames=100).eval()
    whole = SequenceClassifier(5, hidden=16, seed=0).eval()
    p_capped, p_whole = predict_proba(capped, seqs), predict_proba(whole, seqs)
    short = [i for i, s in enumerate(seqs) if len(s) <= 100]
    np.testing.assert_array_equal(p_capped[short], p_whole[short])  # clips under the cap: untouched
    np.testing.assert_allclose(p_capped[4], predict_proba(whole, [seqs[4][capped_frames(1000, 100)]])[0],
                               atol=1e-6, rtol=0)
    path = save_irnn(tmp_path / "m.pt", capped, InputScaler.identity(5))
    back = load_irnn(path).model
    assert back.max_frames == 100
    np.testing.assert_array_equal(predict_proba(back, seqs), p_capped)


def _curves(train_acc, val_acc, n=100):
    import pandas as pd

    e = np.arange(1, n + 1)
    return pd.DataFrame({"train_acc": np.interp(e, [1, n], train_acc), "train_loss": np.linspace(2, 1, n),
                         "val_acc": np.interp(e, [1, n], val_acc), "val_loss": np.linspace(2, 1.5, n)},
                        index=pd.Index(e, name="epoch"))


def test_quarter_means_and_the_verdict_on_what_limits_the_irnn():
    from emotiw_utils.irnn import DATA_COST, quarter_means, what_limits

    q = quarter_means(_curves([0.2, 0.9], [0.2, 0.6]), "Val")
    assert list(q.columns) == ["epochs 1-25", "epochs 26-50", "epochs 51-75", "epochs 76-100"]
    assert list(q.index) == ["train accuracy (%)", "train loss", "Val accuracy (%)", "Val loss"]
    assert q.loc["Val accuracy (%)", "epochs 1-25"] == pytest.approx(100 * np.interp(13, [1, 100], [0.2, 0.6]), abs=0.01)
    rising = what_limits(q)  # Val still rises 10 points per quarter; train 30 points above Val: not capacity
    assert rising.budget == "rising" and not rising.capacity and rising.data is None
    assert rising.limited == ["the training budget"] and len(rising.checked) == 2
    flat = what_limits(quarter_means(_curves([0.5, 0.5], [0.45, 0.45])))  # nothing moves, train ~ Val
    assert flat.budget == "converged" and flat.capacity and flat.limited == ["the network's capacity"]
    fitting = what_limits(quarter_means(_curves([0.5, 0.95], [0.5, 0.5])))
    assert fitting.budget == "fitting" and not fitting.capacity and fitting.limited == []
    rows = [{"training clips": 300, "Val, second half (%)": 60.0}, {"training clips": 150, "Val, second half (%)": 60.0 - DATA_COST}]
    data = what_limits(q, rows)
    assert data.data and data.limited[-1] == "the number of training clips" and data.figures["small_n"] == 150
    assert what_limits(q, [rows[0], {**rows[1], "Val, second half (%)": 59.0}]).data is False
