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
