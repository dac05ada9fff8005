"""The frame CNN (paper section 2.1.3): shapes, augmentation, normalisation, training, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotiw_utils import cnn
from emotiw_utils.cnn import ARCHITECTURES, CnnConfig, CnnHistory, FrameCNN
from emotiw_utils.errors import DataFormatError
from emotiw_utils.metrics import accuracy

# A small configuration for the training tests: 24x24 faces, 20x20 crops (same code path, ~5x cheaper).
SMALL = CnnConfig(image_size=24, crop=20)
TIMING_KEYS = ("seconds", "eval_seconds")


def gratings(n: int, size: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """7-class toy task: noisy sinusoidal gratings whose orientation (0, 15, ..., 90 degrees) is the class.

    Orientation survives random crops; horizontal flips map them to 180 - theta, distinct from all classes.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 7
    rng.shuffle(y)
    theta = np.deg2rad(y * 15.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    proj = np.cos(theta)[:, None, None] * xx + np.sin(theta)[:, None, None] * yy
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    img = 128 + 50 * np.sin(2 * np.pi * proj / 6.0 + phase) + rng.normal(0, 40, (n, size, size))
    return np.clip(img, 0, 255).astype(np.uint8), y.astype(np.int64)


@pytest.fixture(scope="module")
def toy():
    x, y = gratings(700, seed=0)
    mx, my = gratings(210, seed=1)
    return x, y, mx, my


def _train(toy, seed=0, epochs=4, **kw):
    x, y, mx, my = toy
    model = FrameCNN(SMALL, *cnn.mean_std_images(x), seed=seed)
    kw.setdefault("monitors", {"mon": (mx, my)})
    hist = cnn.train_cnn(model, x, y, epochs=epochs, batch_size=64, lr=3e-3, seed=seed, progress=False, **kw)
    return model, hist


def _strip_timing(hist: CnnHistory) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in hist.epochs]


# ---- structure ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_logits_shape_every_arch(arch):
    model = FrameCNN(CnnConfig(arch=arch), seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(4, 1, 42, 42))
    assert out.shape == (4, 7) and out.dtype == torch.float32
    for layer in model.layer_names:
        with torch.no_grad():
            a = model.forward_features(torch.randn(2, 1, 42, 42), layer)
        assert tuple(a.shape[1:]) == model.feature_shape(layer)


def test_feature_dims_of_the_paper_net():
    model = FrameCNN(seed=0)
    assert model.config.arch == "cnn9x9" and model.config.crop == 42
    assert model.layer_names == ("conv1", "conv2", "conv3", "logits")
    assert model.feature_shape("conv2") == (32, 10, 10)
    assert model.feature_dim("conv2") == 3200
    assert model.feature_dim("conv1") == 32 * 21 * 21 and model.feature_dim("conv3") == 64 * 5 * 5
    assert FrameCNN(CnnConfig(arch="vgg3x3")).layer_names == ("conv1", "conv2", "conv3", "conv4", "fc", "logits")


def test_layer_activations_every_layer_and_unknown_layer():
    model = FrameCNN(seed=0)
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    model.train()
    for layer in model.layer_names:
        a = cnn.layer_activations(model, faces, layer, batch_size=2)
        assert isinstance(a, torch.Tensor) and a.shape == (5, model.feature_dim(layer)) and a.dtype == torch.float32
        assert model.training  # previous mode restored
    a4 = cnn.layer_activations(model, torch.from_numpy(faces)[:, None], "conv2", flatten=False)
    assert a4.shape == (5, 32, 10, 10)
    assert torch.equal(a4.reshape(5, -1), cnn.layer_activations(model, faces, "conv2"))
    batches = list(cnn.iter_layer_activations(model, faces, "conv3", batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    # logits through layer_activations equal the model's forward on normalised centre crops
    model.eval()
    with torch.no_grad():
        ref = model(cnn.centre_crop(model.normalise(faces), 42))
    np.testing.assert_allclose(cnn.predict_logits(model, faces), ref.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*conv1, conv2, conv3, logits"):
        cnn.layer_activations(model, faces, "conv9")
    with pytest.raises(ValueError, match="unknown layer"):
        model.forward_features(torch.zeros(1, 1, 42, 42), "fc")
    with pytest.raises(ValueError, match="unknown layer"):
        model.feature_dim("pool2")


def test_config_validation_and_roundtrip():
    with pytest.raises(ValueError, match="cnn9x9, cnn5x5, vgg3x3"):
        CnnConfig(arch="resnet")
    with pytest.raises(ValueError, match="crop"):
        CnnConfig(crop=50)
    with pytest.raises(ValueError, match="unknown CnnConfig keys: colour"):
        CnnConfig.from_dict({"colour": 1})
    c = CnnConfig(arch="cnn5x5", crop=40, dropout=0.5, batch_norm=False, fc_units=128)
    assert CnnConfig.from_dict(c.to_dict()) == c
    m = FrameCNN(c)
    assert m.layer_names[-2:] == ("fc", "logits") and m.feature_dim("fc") == 128
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())


def test_predict_logits_flip_average_and_empty_input():
    model = FrameCNN(seed=1)
    faces = np.random.default_rng(1).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    plain = cnn.predict_logits(model, faces)
    mirrored = cnn.predict_logits(model, faces[:, :, ::-1].copy())  # 48 -> 42 centre crop is symmetric
    both = cnn.predict_logits(model, faces, flip_average=True)
    assert both.shape == (6, 7) and both.dtype == np.float32
    np.testing.assert_allclose(both, (plain + mirrored) / 2, rtol=1e-5, atol=1e-5)
    assert cnn.predict_logits(model, np.zeros((0, 48, 48), np.uint8)).shape == (0, 7)


# ---- augmentation -------------------------------------------------------------------------------

def test_augment_outputs_are_crops_maybe_flipped():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 48, 48)
    out = cnn.augment(x, 42, g)
    assert out.shape == (6, 1, 42, 42)
    for n in range(6):
        matches = [(oy, ox, f) for oy in range(7) for ox in range(7) for f in (False, True)
                   if torch.equal(out[n, 0], (x[n, 0, oy:oy + 42, ox:ox + 42].flip(-1) if f
                                              else x[n, 0, oy:oy + 42, ox:ox + 42]))]
        assert len(matches) == 1


def test_augment_covers_offsets_and_flips_and_is_seeded():
    n, size, crop = 4000, 48, 42
    pos = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size).expand(n, 1, size, size)
    out = cnn.augment(pos, crop, torch.Generator().manual_seed(3))
    first, second = out[:, 0, 0, 0], out[:, 0, 0, 1]
    flipped = (second - first) == -1
    assert torch.all(flipped | ((second - first) == 1))
    assert 0.45 < flipped.float().mean().item() < 0.55
    left = torch.where(flipped, first - (crop - 1), first).long()  # top-left pixel of the unflipped crop
    oy, ox = left // size, left % size
    assert set(oy.tolist()) == set(range(7)) and set(ox.tolist()) == set(range(7))
    assert len(set((oy * 7 + ox).tolist())) == 49
    again = cnn.augment(pos, crop, torch.Generator().manual_seed(3))
    other = cnn.augment(pos, crop, torch.Generator().manual_seed(4))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_affine_crops_without_rotation_or_zoom_are_the_plain_crops():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 48, 48)
    oy, ox, flip = cnn._draw_crops(64, 48, 48, 42, g, torch.device("cpu"))
    plain = torch.gather(x.reshape(64, -1), 1, cnn._crop_index(oy, ox, flip, 48, 42)).view(64, 1, 42, 42)
    out = cnn.affine_crops(x, oy, ox, flip, torch.zeros(64), torch.ones(64), 42)
    torch.testing.assert_close(out, plain, atol=1e-4, rtol=0)


def test_affine_crops_rotate_and_zoom_about_the_crop_centre():
    """On a linear ramp (bilinear sampling is exact) every output pixel reads the predicted input point."""
    size, crop, angle, zoom = 48, 42, np.deg2rad(10.0), 1.1
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                                indexing="ij")
    ramps = torch.stack([cols, rows])[:, None]  # (2, 1, H, W): column and row index images
    oy = torch.tensor([2, 2]); ox = torch.tensor([4, 4]); no = torch.zeros(2, dtype=torch.bool)
    out = cnn.affine_crops(ramps, oy, ox, no, torch.full((2,), angle, dtype=torch.float64),
                           torch.full((2,), zoom, dtype=torch.float64), crop)
    dy, dx = torch.meshgrid(torch.arange(crop) - (crop - 1) / 2, torch.arange(crop) - (crop - 1) / 2, indexing="ij")
    cx, cy = 4 + (crop - 1) / 2, 2 + (crop - 1) / 2
    want_x = cx + zoom * (np.cos(angle) * dx - np.sin(angle) * dy)
    want_y = cy + zoom * (np.sin(angle) * dx + np.cos(angle) * dy)
    inner = slice(11, 31)  # away from the corners that fall outside the image
    torch.testing.assert_close(out[0, 0, inner, inner], want_x[inner, inner].double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1, 0, inner, inner], want_y[inner, inner].double(), atol=1e-4, rtol=0)
    flipped = cnn.affine_crops(ramps, oy, ox, ~no, torch.zeros(2, dtype=torch.float64),
                               torch.ones(2, dtype=torch.float64), crop)
    torch.testing.assert_close(flipped[0, 0], (cx - dx).double())  # mirrored: columns run right to left
    outside = cnn.affine_crops(torch.ones(1, 1, size, size), oy[:1], ox[:1], no[:1], torch.tensor([np.pi / 4]),
                               torch.tensor([1.0]), crop)
    assert outside[0, 0, 0, 0] == 0 and outside[0, 0, 21, 21] == 1  # outside the image: 0, the mean face


def test_centre_crop():
    x = torch.arange(48 * 48.0).reshape(1, 1, 48, 48)
    c = cnn.centre_crop(x, 42)
    assert c.shape == (1, 1, 42, 42) and c[0, 0, 0, 0].item() == 3 * 48 + 3


# ---- normalisation and persistence ----------------------------------------------------------------

def test_mean_std_images_and_normalise():
    faces = np.random.default_rng(2).integers(0, 256, (50, 48, 48), dtype=np.uint8)
    faces[:, 0, 0] = 7  # a constant pixel: std floored at 1
    mean, std = cnn.mean_std_images(faces)
    assert mean.shape == std.shape == (48, 48) and mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(mean, faces.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std[1:], faces.std(0)[1:], rtol=1e-4)
    assert std[0, 0] == 1.0
    model = FrameCNN(mean_image=mean, std_image=std)
    z = model.normalise(model.mean_image)
    assert z.shape == (1, 1, 48, 48) and torch.count_nonzero(z) == 0
    a = model.normalise(faces)
    assert a.shape == (50, 1, 48, 48) and a.dtype == torch.float32
    assert torch.equal(a, model.normalise(torch.from_numpy(faces)[:, None]))
    np.testing.assert_allclose(a[:, 0].mean(0).numpy(), 0, atol=1e-4)
    default = FrameCNN()
    assert torch.equal(default.normalise(np.full((1, 48, 48), 192, np.uint8)), torch.ones(1, 1, 48, 48))
    other = cnn.set_normalisation(FrameCNN(), faces)
    assert torch.equal(other.mean_image, model.mean_image) and torch.equal(other.std_image, model.std_image)
    with pytest.raises(ValueError, match="48x48"):
        model.normalise(np.zeros((2, 40, 40), np.uint8))


def test_save_load_roundtrip(tmp_path):
    faces = np.random.default_rng(3).integers(0, 256, (9, 48, 48), dtype=np.uint8)
    model = FrameCNN(CnnConfig(fc_units=16), *cnn.mean_std_images(faces), seed=3)
    hist = CnnHistory(epochs=[{"epoch": 1, "train_loss": 1.5, "val_acc": 0.25}], best_epoch=1, select_on="val",
                      images_per_second=10.0)
    path = cnn.save_cnn(tmp_path / "02_cnn" / "cnn.pt", model, hist, extra={"note": "x", "n": 3})
    assert [p.name for p in path.parent.iterdir()] == ["cnn.pt"]
    ck = cnn.load_checkpoint(path)
    back = cnn.load_cnn(path)
    assert back.config == model.config and not back.training
    assert torch.equal(back.mean_image, model.mean_image) and torch.equal(back.std_image, model.std_image)
    np.testing.assert_array_equal(cnn.predict_logits(back, faces), cnn.predict_logits(model, faces))
    assert ck.history == hist and ck.extra == {"note": "x", "n": 3}
    assert ck.history.to_frame().loc[1, "val_acc"] == 0.25


def test_load_rejects_non_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(DataFormatError, match="junk.pt: not a CNN checkpoint"):
        cnn.load_cnn(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(DataFormatError, match="other.pt: not a CNN checkpoint"):
        cnn.load_cnn(other)
    with pytest.raises(FileNotFoundError):
        cnn.load_cnn(tmp_path / "missing.pt")


# ---- training -----------------------------------------------------------------------------------

def test_learns_toy_task_and_restores_best_epoch(toy):
    x, y, mx, my = toy
    model, hist = _train(toy, select_on="mon")
    accs = hist.metric("mon_acc")
    assert max(accs) > 0.9
    assert hist.best_epoch == 1 + int(np.argmax(accs))  # ties -> earliest
    assert hist.best["mon_acc"] == max(accs) and hist.select_on == "mon"
    assert [e["epoch"] for e in hist.epochs] == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "mon_acc", "mon_loss", "lr", "seconds"} <= set(hist.epochs[0])
    assert hist.epochs[0]["lr"] == pytest.approx(3e-3) and hist.epochs[-1]["lr"] < hist.epochs[0]["lr"]
    assert hist.images_per_second > 0 and not model.training
    # the returned weights are the best epoch's: predicting again reproduces its monitor accuracy
    acc = accuracy(my, cnn.predict_logits(model, mx))
    assert acc == pytest.approx(hist.best["mon_acc"], abs=1.5 / len(my))
    df = hist.to_frame()
    assert list(df.index) == [1, 2, 3, 4] and "mon_acc" in df.columns


def test_onecycle_sgd_warms_up_then_anneals_and_learns(toy):
    x, y, mx, my = toy
    model, hist = _train(toy, epochs=5, optimizer="sgd", schedule="onecycle", weight_decay=5e-4)
    lrs = hist.metric("lr")  # the learning rate of each epoch's first step
    assert lrs[0] == pytest.approx(3e-3 / 25)  # starts at lr / 25
    assert lrs[1] > lrs[0] and lrs[-1] < max(lrs) <= 3e-3  # up to the peak over 30 % of the steps, then down
    assert max(hist.metric("mon_acc")) > 0.6
    with pytest.raises(ValueError, match="schedule must be one of"):
        _train(toy, epochs=1, schedule="step")


def test_rotation_zoom_and_label_smoothing_train_deterministically(toy):
    x, y, mx, my = toy
    small = (x[:256], y[:256], mx[:64], my[:64])
    aug = dict(rotate=3.0, scale=0.1, label_smoothing=0.1)
    m1, h1 = _train(small, epochs=2, seed=7, **aug)
    m2, h2 = _train(small, epochs=2, seed=7, **aug)
    _, plain = _train(small, epochs=2, seed=7)
    assert _strip_timing(h1) == _strip_timing(h2)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert h1.metric("train_loss") != plain.metric("train_loss")
    _, learnt = _train(toy, epochs=4, **aug)
    assert max(learnt.metric("mon_acc")) > 0.8  # 3 degrees keep the 15-degree classes apart
    # label smoothing 0.1 over 7 classes: the training loss cannot fall below the smoothed target's entropy
    q = np.array([0.9 + 0.1 / 7] + [0.1 / 7] * 6)
    assert min(learnt.metric("train_loss")) > -(q * np.log(q)).sum()
    for bad, match in ((dict(rotate=-1.0), "rotate must be"), (dict(scale=1.0), "scale must be"),
                       (dict(label_smoothing=1.0), "label_smoothing must be")):
        with pytest.raises(ValueError, match=match):
            _train(small, epochs=1, **bad)


def test_select_on_restores_an_earlier_epoch(toy):
    """With a monitor of random labels the best epoch is arbitrary; the returned weights are that epoch's."""
    x, y, mx, my = toy
    noise = np.random.default_rng(5).integers(0, 7, len(my))
    monitors = {"mon": (mx, my), "noise": (mx, noise)}
    model, hist = _train(toy, monitors=monitors, select_on="noise")
    last_model, last = _train(toy, monitors=monitors, select_on=None)
    assert last.best_epoch == 4 and _strip_timing(last) == _strip_timing(hist)
    assert hist.best_epoch == 1 + int(np.argmax(hist.metric("noise_acc")))  # epoch 1 on x86 CPUs
    if hist.best_epoch < 4:
        assert not torch.equal(model.classifier.weight, last_model.classifier.weight)
    logits = cnn.predict_logits(model, mx)
    assert accuracy(noise, logits) == pytest.approx(hist.best["noise_acc"], abs=1.5 / len(my))
    assert accuracy(my, logits) == pytest.approx(hist.best["mon_acc"], abs=1.5 / len(my))


def test_training_is_deterministic(toy):
    x, y, mx, my = toy
    small = (x[:256], y[:256], mx[:64], my[:64])
    m1, h1 = _train(small, epochs=2, seed=7)
    m2, h2 = _train(small, epochs=2, seed=7)
    _, h3 = _train(small, epochs=2, seed=8)
    assert _strip_timing(h1) == _strip_timing(h2)
    assert _strip_timing(h1) != _strip_timing(h3)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_patience_stops_early_and_labels_are_checked(toy):
    x, y, mx, my = toy
    one = (x[:128], y[:128], mx[:1], my[:1])  # a one-sample monitor can improve at most twice
    _, hist = _train(one, epochs=6, select_on="mon", patience=1)
    assert hist.stopped_early and len(hist.epochs) <= 3
    with pytest.raises(ValueError, match="patience needs select_on"):
        _train(one, epochs=1, patience=2)
    with pytest.raises(ValueError, match="select_on='val' is not a monitor"):
        _train(one, epochs=1, select_on="val")
    with pytest.raises(ValueError, match="training labels must be in 0..6"):
        cnn.train_cnn(FrameCNN(SMALL), x[:8], np.full(8, -1), epochs=1, progress=False)
    with pytest.raises(ValueError, match="has no labelled sample"):
        _train(one, epochs=1, monitors={"m": (mx[:4], np.full(4, -1))}, select_on="m")


def test_monitor_ignores_unknown_labels(toy):
    x, y, mx, my = toy
    partial = my.copy()
    partial[::2] = -1
    model, hist = _train((x[:128], y[:128], mx, my), epochs=1, monitors={"all": (mx, my), "half": (mx, partial)})
    logits = cnn.predict_logits(model, mx)
    assert hist.epochs[0]["half_acc"] == pytest.approx(accuracy(my[1::2], logits[1::2]), abs=1.5 / len(my))
    assert hist.epochs[0]["all_acc"] == pytest.approx(accuracy(my, logits), abs=1.5 / len(my))
    assert np.isfinite(hist.epochs[0]["half_loss"])
