"""Tests for emotiw_utils.fusion (Kahou et al. 2015, sections 5.1 and 6.2): fast, CPU, deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotiw_utils.errors import DataFormatError
from emotiw_utils.fusion import (ACTIVATIONS, COMMON_UNITS, MODALITY_UNITS, REGIMES, FeatureScaler, FusionHistory,
                                 FusionNet, RectTanh, first_layer_sparsity, fusion_penalty, load_fusion,
                                 make_activation, predict_proba, regime_parameters, save_fusion, train_fusion,
                                 unit_sharing)

DIMS = {"kavg": 8, "audio": 6}


def combo_task(n: int, seed: int, noise: float = 0.3):
    """4 classes, label = 2 * a + b: bit ``a`` is visible (noisily) only in feature 0 of "kavg", bit ``b``
    only in feature 0 of "audio"; the other features are noise. One modality alone caps accuracy at 1/2."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(2, size=n), rng.integers(2, size=n)
    x_a = rng.normal(0.0, 1.0, (n, DIMS["kavg"])).astype(np.float32)
    x_b = rng.normal(0.0, 1.0, (n, DIMS["audio"])).astype(np.float32)
    x_a[:, 0] = (2 * a - 1) + rng.normal(0.0, noise, n)
    x_b[:, 0] = (2 * b - 1) + rng.normal(0.0, noise, n)
    return {"kavg": x_a, "audio": x_b}, 2 * a + b


@pytest.fixture(scope="module")
def combo():
    torch.set_num_threads(1)
    return combo_task(600, 0), combo_task(300, 1)


@pytest.fixture(scope="module")
def trained(combo):
    (x, y), sel = combo
    model = FusionNet(DIMS, activation="relu", n_classes=4, seed=0)
    hist = train_fusion(model, x, y, select=sel, epochs=20, **regime_parameters("original"))
    return model, hist


def _same_curves(h1: FusionHistory, h2: FusionHistory) -> bool:
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in h1.epochs]
    return strip == [{k: v for k, v in e.items() if k != "seconds"} for e in h2.epochs] \
        and h1.best_epoch == h2.best_epoch


# ------------------------------------------------------------------------------------- model


def test_default_sizes_and_groups():
    m = FusionNet({"kavg": 105, "audio": 10, "rnn": 200})
    assert m.units == {"kavg": 100, "audio": 10, "rnn": 50} and MODALITY_UNITS["rnn"] == 50
    assert m.groups == {"kavg": (0, 100), "audio": (100, 110), "rnn": (110, 160)}
    assert m.common == COMMON_UNITS == 70
    assert tuple(m.common_weight.shape) == (70, 160)
    assert tuple(m.first_weight("rnn").shape) == (50, 200)
    assert tuple(m.output.weight.shape) == (7, 70)
    assert list(m.modality_layers) == ["kavg", "audio", "rnn"]
    x = {"rnn": torch.randn(5, 200), "kavg": torch.randn(5, 105), "audio": torch.randn(5, 10)}
    assert m(x).shape == (5, 7)
    # unknown modality names get min(100, D) units; explicit units override
    m2 = FusionNet({"video": 300, "extra": 4}, units={"extra": 3}, common=9, n_classes=3)
    assert m2.units == {"video": 100, "extra": 3} and m2.groups["extra"] == (100, 103)
    assert tuple(m2.common_weight.shape) == (9, 103)


def test_recttanh_values():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.3, 2.0])
    out = RectTanh()(x)
    assert torch.equal(out[:3], torch.zeros(3))
    assert torch.allclose(out[3:], torch.tanh(x[3:]))
    assert isinstance(make_activation("recttanh"), RectTanh)
    assert isinstance(make_activation("relu"), torch.nn.ReLU)
    assert isinstance(make_activation("sigmoid"), torch.nn.Sigmoid)
    zeros = {k: torch.zeros(2, d) for k, d in DIMS.items()}
    for act in ACTIVATIONS:  # every activation builds a working net
        assert FusionNet(DIMS, activation=act, dropout=0.2)(zeros).shape == (2, 7)


def test_errors():
    with pytest.raises(ValueError, match="sigmoid, relu, recttanh"):
        make_activation("tanh")
    with pytest.raises(ValueError, match="unknown activation"):
        FusionNet(DIMS, activation="softplus")
    with pytest.raises(ValueError, match="unknown modalities"):
        FusionNet(DIMS, units={"rnn": 5})
    with pytest.raises(ValueError, match="original"):
        regime_parameters("fast")
    m = FusionNet(DIMS)
    with pytest.raises(ValueError, match="missing modalities \\['audio'\\]"):
        m({"kavg": torch.zeros(2, 8)})
    with pytest.raises(ValueError, match="unexpected modalities \\['rnn'\\]"):
        m({"kavg": torch.zeros(2, 8), "audio": torch.zeros(2, 6), "rnn": torch.zeros(2, 200)})
    with pytest.raises(ValueError, match="audio"):
        m({"kavg": torch.zeros(2, 8), "audio": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="rows"):
        m({"kavg": torch.zeros(2, 8), "audio": torch.zeros(3, 6)})
    with pytest.raises(ValueError, match="audio"):
        predict_proba(m, {"kavg": np.zeros((2, 8)), "audio": np.zeros((2, 7))})


def test_regimes():
    assert REGIMES["original"] == {"lr": 0.1, "momentum": 0.0, "clip": 10.0}
    assert REGIMES["stable"] == {"lr": 0.001, "momentum": 0.9, "clip": 10.0}
    p = regime_parameters("stable")
    p["lr"] = 5.0
    assert REGIMES["stable"]["lr"] == 0.001  # a copy


def test_seed_reproducible_and_rng_untouched():
    state = torch.random.get_rng_state()
    a, b, c = FusionNet(DIMS, seed=3), FusionNet(DIMS, seed=3), FusionNet(DIMS, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.common_weight, c.common_weight)


# ------------------------------------------------------------------------------------- regulariser


def test_penalty_hand_computed():
    m = FusionNet({"a": 2, "b": 1}, units={"a": 2, "b": 1}, common=2, n_classes=2)
    with torch.no_grad():
        m.first_weight("a").copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        m.first_weight("b").copy_(torch.tensor([[-3.0]]))
        m.common_weight.copy_(torch.tensor([[3.0, 0.0, 4.0], [0.0, -1.0, 0.0]]))
        for layer in [*m.modality_layers.values(), m.common_layer]:
            layer[0].bias.fill_(7.0)  # biases are not penalised
    group, l1 = 0.5, 0.1
    expected = group * (5.0 + 1.0) + l1 * (1.0 + 2.0 + 0.5 + 3.0)
    assert math.isclose(float(fusion_penalty(m, group, l1).detach()), expected, rel_tol=1e-6)
    assert math.isclose(float(fusion_penalty(m, group, 0.0).detach()), 3.0, rel_tol=1e-6)
    assert float(fusion_penalty(m, 0.0, 0.0).detach()) == 0.0
    with torch.no_grad():
        m.common_weight.zero_()
        for k in m.modalities:
            m.first_weight(k).zero_()
    pen = fusion_penalty(m, group, l1)
    assert float(pen.detach()) == 0.0
    pen.backward()  # the l2 norm of a zero row has a finite (zero) subgradient
    assert torch.isfinite(m.common_weight.grad).all()


def test_unit_sharing_and_sparsity_hand_made():
    m = FusionNet({"a": 2, "b": 1}, units={"a": 2, "b": 1}, common=3, n_classes=2)
    with torch.no_grad():
        m.common_weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        m.first_weight("a").copy_(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
        m.first_weight("b").copy_(torch.tensor([[2.0]]))
    u = unit_sharing(m)
    assert (u["n_units"], u["n_zero"], u["n_alive"]) == (3, 1, 2)
    assert u["shared"] == {"a": 1.0, "b": 0.5} and u["all_modalities"] == 0.5
    assert first_layer_sparsity(m) == {"a": 0.75, "b": 0.0}


def test_group_penalty_prunes_common_rows(combo):
    (x, y), sel = combo
    out = {}
    for g in (0.0, 0.05):
        m = FusionNet(DIMS, activation="relu", n_classes=4, seed=0)
        h = train_fusion(m, x, y, select=sel, epochs=25, fixed_epochs=25, group=g, l1=0.0)
        out[g] = unit_sharing(m, tol=1e-2), h.epochs[-1]["val_acc"]
    (free, acc_free), (pruned, acc_pruned) = out[0.0], out[0.05]
    assert free["n_zero"] == 0 and free["all_modalities"] == 1.0
    assert pruned["n_zero"] >= 40  # most of the 70 common units are dropped ...
    assert pruned["n_alive"] >= 1 and pruned["all_modalities"] >= 0.8  # ... the survivors draw on both modalities
    assert acc_free >= 0.95 and acc_pruned >= 0.95  # ... and still solve the task
    assert len(pruned["row_norms"]) == 70


def test_l1_sparsifies_first_layer(combo):
    (x, y), _ = combo
    sp = {}
    for l1 in (0.0, 0.03):
        m = FusionNet(DIMS, activation="relu", n_classes=4, seed=0)
        train_fusion(m, x, y, epochs=10, group=0.0, l1=l1)
        sp[l1] = first_layer_sparsity(m, tol=1e-2)
    assert all(sp[0.0][k] < 0.1 for k in DIMS)
    assert all(sp[0.03][k] > 0.5 for k in DIMS)


# ------------------------------------------------------------------------------------- training


def test_learns_only_by_combining(combo, trained):
    (x, y), (xv, yv) = combo
    model, hist = trained
    assert hist.best["val_acc"] >= 0.95
    assert (predict_proba(model, xv).argmax(1) == yv).mean() == pytest.approx(hist.best["val_acc"])  # restored
    assert hist.best_epoch == int(np.argmax(hist.metric("val_acc"))) + 1  # first best epoch
    for k in DIMS:  # one modality alone cannot exceed ~1/2
        single = FusionNet({k: DIMS[k]}, activation="relu", n_classes=4, seed=0)
        h = train_fusion(single, {k: x[k]}, y, select=({k: xv[k]}, yv), epochs=20, **regime_parameters("original"))
        assert h.best["val_acc"] <= 0.65


def test_history_fields(trained):
    _, hist = trained
    assert len(hist.epochs) == 20
    e = hist.epochs[0]
    assert set(e) == {"epoch", "train_loss", "penalty", "train_acc", "val_loss", "val_acc", "seconds"}
    assert e["penalty"] > 0 and hist.config["group"] == 1e-3 and hist.config["lr"] == 0.1
    assert hist.config["model"]["activation"] == "relu"
    d = hist.to_dict()
    back = FusionHistory.from_dict(d)
    assert back.to_dict() == d and back.best == hist.best
    assert list(hist.to_frame().columns)[:2] == ["train_loss", "penalty"]


def test_training_deterministic_and_rng_untouched(combo):
    (x, y), sel = combo
    sub = {k: v[:200] for k, v in x.items()}
    state = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        m = FusionNet(DIMS, activation="sigmoid", dropout=0.3, n_classes=4, seed=1)
        h = train_fusion(m, sub, y[:200], select=sel, epochs=4, batch_size=32, seed=5)
        runs.append((m, h))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert _same_curves(runs[0][1], runs[1][1])
    assert all(torch.equal(p, q) for p, q in zip(runs[0][0].state_dict().values(), runs[1][0].state_dict().values()))


def test_fixed_epochs_keeps_last(combo):
    (x, y), sel = combo
    m = FusionNet(DIMS, n_classes=4, seed=0)
    h = train_fusion(m, x, y, select=sel, epochs=50, fixed_epochs=3)
    assert len(h.epochs) == 3 and h.best_epoch == 3
    assert not math.isnan(h.epochs[-1]["val_acc"])  # monitored
    assert (predict_proba(m, sel[0]).argmax(1) == sel[1]).mean() == pytest.approx(h.epochs[-1]["val_acc"])
    h2 = train_fusion(FusionNet(DIMS, n_classes=4), x, y, epochs=2, clip=None)
    assert h2.best_epoch == 2 and math.isnan(h2.epochs[0]["val_acc"]) and h2.config["clip"] is None


def test_bad_training_labels(combo):
    (x, y), _ = combo
    y_bad = y.copy()
    y_bad[3] = -1
    with pytest.raises(ValueError, match="unknown labels"):
        train_fusion(FusionNet(DIMS, n_classes=4), x, y_bad, epochs=1)
    with pytest.raises(ValueError, match="entries"):
        train_fusion(FusionNet(DIMS, n_classes=4), x, y[:10], epochs=1)
    with pytest.raises(ValueError, match="lie in"):
        train_fusion(FusionNet(DIMS, n_classes=3), x, y, epochs=1)
    with pytest.raises(ValueError, match="missing modalities"):
        train_fusion(FusionNet(DIMS, n_classes=4), {"kavg": x["kavg"]}, y, epochs=1)


# ------------------------------------------------------------------------------------- inference / io


def test_predict_proba_rows_sum_to_one(trained, combo):
    model, _ = trained
    (_, _), (xv, _) = combo
    p = predict_proba(model, xv, batch_size=64)
    assert p.shape == (300, 4) and p.dtype == np.float64
    assert np.allclose(p.sum(1), 1.0) and (p >= 0).all()
    assert np.array_equal(p, predict_proba(model, xv, batch_size=1024))


def test_save_load_roundtrip(tmp_path, trained, combo):
    model, hist = trained
    (x, _), (xv, _) = combo
    scaler = FeatureScaler.fit(x)
    path = save_fusion(tmp_path / "fusion.pt", model, scaler, hist, extra={"note": "t"})
    ck = load_fusion(path)
    assert ck.model.config == model.config and not ck.model.training
    assert np.array_equal(predict_proba(ck.model, xv), predict_proba(model, xv))
    assert ck.history.to_dict() == hist.to_dict() and ck.extra == {"note": "t"}
    for k in DIMS:
        assert np.array_equal(ck.scaler(xv)[k], scaler(xv)[k])
    with pytest.raises(FileNotFoundError):
        load_fusion(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(DataFormatError):
        load_fusion(tmp_path / "other.pt")


def test_feature_scaler(combo):
    (x, _), (xv, _) = combo
    raw = {k: v * 5.0 + 3.0 for k, v in x.items()}
    raw["kavg"][:, 2] = 1.5  # constant column -> 0, not inf
    s = FeatureScaler.fit(raw)
    z = s(raw)
    for k in DIMS:
        assert z[k].dtype == np.float32
        assert np.allclose(z[k].mean(0), 0.0, atol=1e-4)
    assert np.allclose(z["audio"].std(0), 1.0, atol=1e-4)
    assert np.allclose(np.delete(z["kavg"].std(0), 2), 1.0, atol=1e-4) and np.all(z["kavg"][:, 2] == 0)
    assert FeatureScaler.from_dict(s.to_dict()).to_dict() == s.to_dict()
    bad = {k: v.copy() for k, v in raw.items()}
    bad["audio"][0, 1] = np.nan
    with pytest.raises(ValueError, match="audio.*NaN"):
        FeatureScaler.fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        s(bad)
    with pytest.raises(ValueError, match="missing modalities"):
        s({"kavg": raw["kavg"]})
