"""Tests of emotiw_utils.activity: blocks, whitening, the synchrony autoencoder and bag of words (section 4)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from emotiw_utils import activity as A
from emotiw_utils import plots


def _coded_clip(index: int, t: int, h: int, w: int) -> np.ndarray:
    """Pixel value encodes (clip, frame, y, x) exactly in float32: clip*1e6 + frame*1e4 + y*100 + x."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    return (index * 1_000_000 + tt * 10_000 + yy * 100 + xx).astype(np.float64)


def _decode(block: np.ndarray) -> tuple[int, int, int, int]:
    v = int(round(float(block[0, 0, 0])))
    return v // 1_000_000, (v // 10_000) % 100, (v // 100) % 100, v % 100


def _moving_gratings(n: int, size: int = 8, depth: int = 5, seed: int = 0) -> np.ndarray:
    """Oriented sine gratings translating with a random velocity, (n, depth, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, depth, size, size), np.float32)
    for i in range(n):
        theta, freq = rng.uniform(0, np.pi), rng.uniform(0.5, 1.2)
        v, phase = rng.uniform(-1.5, 1.5), rng.uniform(0, 2 * np.pi)
        u = np.cos(theta) * xx + np.sin(theta) * yy
        for t in range(depth):
            out[i, t] = np.sin(freq * (u - v * t) + phase)
    return out + 0.05 * rng.normal(size=out.shape).astype(np.float32)


# ---------------------------------------------------------------- sample_blocks


def test_sample_blocks_stay_inside_one_clip_on_consecutive_frames():
    shapes = [(12, 20, 24), (30, 16, 16), (10, 40, 18), (5, 30, 30), (20, 12, 40)]  # last two: unusable
    clips = [_coded_clip(i, *s) for i, s in enumerate(shapes)]
    blocks = A.sample_blocks(clips, 400, size=16, depth=10, seed=3)
    assert blocks.shape == (400, 10, 16, 16) and blocks.dtype == np.float32
    seen = set()
    for b in blocks:
        ci, t0, y0, x0 = _decode(b)
        assert ci in (0, 1, 2)  # clips 3 (too short) and 4 (too small) are skipped
        t, h, w = shapes[ci]
        assert t0 + 10 <= t and y0 + 16 <= h and x0 + 16 <= w
        np.testing.assert_array_equal(b, clips[ci][t0:t0 + 10, y0:y0 + 16, x0:x0 + 16].astype(np.float32))
        seen.add(ci)
    assert seen == {0, 1, 2}


def test_sample_blocks_picks_clips_in_proportion_to_positions():
    clips = [np.zeros((10, 16, 16), np.uint8), np.ones((19, 16, 16), np.uint8)]  # 1 vs 10 positions
    blocks = A.sample_blocks(clips, 2000, seed=0)
    frac = float((blocks[:, 0, 0, 0] == 1).mean())
    assert abs(frac - 10 / 11) < 0.03


def test_sample_blocks_deterministic_in_seed_and_uint8():
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (14, 20, 20), dtype=np.uint8) for _ in range(3)]
    a = A.sample_blocks(clips, 50, seed=1)
    np.testing.assert_array_equal(a, A.sample_blocks(clips, 50, seed=1))
    assert not np.array_equal(a, A.sample_blocks(clips, 50, seed=2))
    assert a.dtype == np.float32 and a.max() <= 255 and a.min() >= 0


def test_sample_blocks_errors():
    with pytest.raises(ValueError, match="no clip can give"):
        A.sample_blocks([np.zeros((9, 32, 32)), np.zeros((20, 15, 32))], 5)
    with pytest.raises(ValueError, match="no clip can give"):
        A.sample_blocks([], 5)
    with pytest.raises(ValueError, match="n_blocks"):
        A.sample_blocks([np.zeros((10, 16, 16))], 0)
    with pytest.raises(ValueError, match="grayscale"):
        A.sample_blocks([np.zeros((10, 16, 16, 3))], 2)
    with pytest.raises(ValueError, match="wrap a single clip"):
        A.sample_blocks(np.zeros((10, 16, 16)), 2)


# ---------------------------------------------------------------- dense_blocks


@pytest.mark.parametrize("shape,stride", [((30, 48, 48), (5, 8, 8)), ((10, 16, 16), (5, 8, 8)),
                                          ((23, 37, 50), (3, 7, 5)), ((11, 20, 17), (1, 1, 1))])
def test_dense_blocks_grid_count_and_content(shape, stride):
    clip = _coded_clip(0, *shape)
    blocks = A.dense_blocks(clip, stride=stride)
    t, h, w = shape
    n = ((t - 10) // stride[0] + 1) * ((h - 16) // stride[1] + 1) * ((w - 16) // stride[2] + 1)
    assert blocks.shape == (n, 10, 16, 16) and blocks.dtype == np.float32
    starts = [_decode(b)[1:] for b in blocks]
    assert starts[0] == (0, 0, 0)
    assert all(s[0] % stride[0] == 0 and s[1] % stride[1] == 0 and s[2] % stride[2] == 0 for s in starts)
    assert len(set(starts)) == n
    t0, y0, x0 = starts[-1]
    np.testing.assert_array_equal(blocks[-1], clip[t0:t0 + 10, y0:y0 + 16, x0:x0 + 16].astype(np.float32))


def test_dense_blocks_short_clip_repeats_last_frame():
    clip = _coded_clip(0, 4, 16, 24)
    blocks = A.dense_blocks(clip, stride=(5, 8, 8))
    assert blocks.shape == (2, 10, 16, 16)
    np.testing.assert_array_equal(blocks[0, :4], clip[:, :, :16])
    for t in range(4, 10):
        np.testing.assert_array_equal(blocks[0, t], clip[3, :, :16])
    assert A.dense_blocks(np.zeros((1, 16, 16), np.uint8)).shape == (1, 10, 16, 16)


def test_dense_blocks_errors():
    with pytest.raises(ValueError, match="no frames"):
        A.dense_blocks(np.zeros((0, 16, 16)))
    with pytest.raises(ValueError, match="smaller than the 16x16"):
        A.dense_blocks(np.zeros((12, 15, 40)))
    with pytest.raises(ValueError, match="stride"):
        A.dense_blocks(np.zeros((12, 16, 16)), stride=(0, 8, 8))
    with pytest.raises(ValueError, match="grayscale"):
        A.dense_blocks(np.zeros((12, 16)))


# ---------------------------------------------------------------- BlockWhitener


def _small_blocks(n=2000, seed=0):
    # smooth-ish correlated random blocks 3x4x4 (D = 48)
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 3, 4, 4))
    return (base + np.roll(base, 1, axis=3) + 0.5 * np.roll(base, 1, axis=1)) * 40 + 128


def test_whitener_gives_identity_covariance():
    blocks = _small_blocks()
    w = A.BlockWhitener.fit(blocks, n_components=20, reg=0.0)
    z = w.transform(blocks)
    assert z.shape == (2000, 20) and z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(20), atol=1e-3)
    assert np.all(np.diff(w.eigenvalues) <= 0)


def test_whitener_inverse_recovers_contrast_normalised_blocks():
    blocks = _small_blocks(500)
    w = A.BlockWhitener.fit(blocks, n_components=10_000)  # capped at D - 1 = 47
    assert w.n_components == 47
    back = w.inverse(w.transform(blocks))
    assert back.shape == (500, 3, 4, 4)
    cn = w.contrast_normalise(blocks).reshape(back.shape)
    np.testing.assert_allclose(back, cn, atol=1e-4)
    # contrast normalisation: zero mean, std s / (s + eps) per block (eps = 0.1 x median block std)
    s = blocks.reshape(500, -1).std(axis=1)
    assert w.eps == pytest.approx(0.1 * np.median(s))
    np.testing.assert_allclose(cn.reshape(500, -1).mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(cn.reshape(500, -1).std(axis=1), s / (s + w.eps), rtol=1e-9)


def test_whitener_round_trips_through_dict_and_is_scale_free(tmp_path):
    blocks = _small_blocks(300)
    w = A.BlockWhitener.fit(blocks, n_components=8)
    np.savez(tmp_path / "w.npz", **w.to_dict())
    w2 = A.BlockWhitener.from_dict(np.load(tmp_path / "w.npz"))
    np.testing.assert_array_equal(w.transform(blocks), w2.transform(blocks))
    w3 = A.BlockWhitener.fit(blocks / 255.0, n_components=8)  # same blocks in 0..1 units
    np.testing.assert_allclose(w3.transform(blocks / 255.0), w.transform(blocks), atol=1e-4)


def test_whitener_errors():
    blocks = _small_blocks(50)
    with pytest.raises(ValueError, match="at least 2 blocks"):
        A.BlockWhitener.fit(blocks[:1])
    with pytest.raises(ValueError, match="n_components"):
        A.BlockWhitener.fit(blocks, n_components=0)
    with pytest.raises(ValueError, match=r"\(n, depth, size, size\)"):
        A.BlockWhitener.fit(blocks.reshape(50, -1))
    w = A.BlockWhitener.fit(blocks, n_components=5)
    with pytest.raises(ValueError, match="fitted on 3x4x4"):
        w.transform(np.zeros((2, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"\(n, 5\)"):
        w.inverse(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="lacks"):
        A.BlockWhitener.from_dict({"mean": w.mean})


# ---------------------------------------------------------------- SynchronyAutoencoder


def test_sae_shapes_activation_and_private_rng():
    state = torch.random.get_rng_state()
    m = A.SynchronyAutoencoder(20, n_hidden=7, threshold=0.5, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert torch.equal(m.weight, A.SynchronyAutoencoder(20, n_hidden=7, seed=1).weight)
    assert not torch.equal(m.weight, A.SynchronyAutoencoder(20, n_hidden=7, seed=2).weight)
    x = torch.randn(5, 20, generator=torch.Generator().manual_seed(0))
    f = m.responses(x)
    h = m.encode(x)
    assert f.shape == h.shape == (5, 7) and m(x).shape == (5, 20)
    expected = torch.where(f * f > 0.5, f * f, torch.zeros_like(f))
    torch.testing.assert_close(h, expected)
    torch.testing.assert_close(m(x), (h * f) @ m.weight)
    with pytest.raises(ValueError, match=r"\(B, 20\)"):
        m(torch.zeros(3, 21))
    with pytest.raises(ValueError, match="n_hidden"):
        A.SynchronyAutoencoder(20, n_hidden=0)
    with pytest.raises(ValueError, match="threshold"):
        A.SynchronyAutoencoder(20, threshold=-1.0)


def test_sae_learns_moving_gratings_and_is_deterministic():
    blocks = _moving_gratings(1500)
    w = A.BlockWhitener.fit(blocks, n_components=48)
    z = w.transform(blocks)

    def run():
        m = A.SynchronyAutoencoder(z.shape[1], n_hidden=48, seed=0)
        with torch.no_grad():
            before = float(torch.mean((m(torch.from_numpy(z)) - torch.from_numpy(z)) ** 2))
        hist = A.train_sae(m, z, epochs=12, batch_size=64, lr=3e-3, noise=0.1, seed=0)
        return m, before, hist

    m, before, hist = run()
    assert [h["epoch"] for h in hist] == list(range(1, 13))
    assert all(set(h) >= {"epoch", "loss", "seconds"} for h in hist)
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    with torch.no_grad():
        after = float(torch.mean((m(torch.from_numpy(z)) - torch.from_numpy(z)) ** 2))
    assert after < 0.6 * before
    m2, _, hist2 = run()
    assert [h["loss"] for h in hist] == [h["loss"] for h in hist2]
    assert torch.equal(m.weight, m2.weight)

    fil = A.filters(m, w)
    assert fil.shape == (48, 5, 8, 8) and fil.dtype == np.float32
    flat = fil.reshape(48, -1)
    dists = np.linalg.norm(flat[:, None] - flat[None], axis=-1)[np.triu_indices(48, 1)]
    assert dists.min() > 1e-3 * np.linalg.norm(flat, axis=1).mean()

    codes = A.encode_blocks(m, z, batch_size=100)
    assert codes.shape == (1500, 48) and codes.dtype == np.float32 and codes.min() >= 0
    np.testing.assert_allclose(codes[:10], m.encode(torch.from_numpy(z[:10])).detach().numpy(), rtol=1e-6)
    assert 0.01 < (codes > 0).mean() < 0.99  # neither dead nor saturated


def test_train_sae_gaussian_noise_and_errors():
    z = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)
    m = A.SynchronyAutoencoder(10, n_hidden=4, seed=0)
    hist = A.train_sae(m, z, epochs=2, batch_size=16, noise=0.2, noise_kind="gaussian")
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    with pytest.raises(ValueError, match="expects 10"):
        A.train_sae(m, z[:, :9], epochs=1)
    with pytest.raises(ValueError, match="noise"):
        A.train_sae(m, z, epochs=1, noise=1.0)
    with pytest.raises(ValueError, match="noise_kind"):
        A.train_sae(m, z, epochs=1, noise_kind="salt")
    with pytest.raises(ValueError, match="epochs"):
        A.train_sae(m, z, epochs=0)
    with pytest.raises(ValueError, match=r"\(n, 10\)"):
        A.encode_blocks(m, z[:, :3])
    w = A.BlockWhitener.fit(_small_blocks(50), n_components=5)
    with pytest.raises(ValueError, match="whitener gives 5"):
        A.filters(m, w)


# ---------------------------------------------------------------- bag of words


def test_bag_of_words_histograms():
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.normal(loc=c, size=(60, 3)) for c in (0.0, 5.0, 10.0, 15.0)])
    voc = A.fit_vocabulary(train, k=4, seed=0)
    codes = [rng.normal(loc=0.0, size=(7, 3)), rng.normal(loc=10.0, size=(3, 3)), np.zeros((0, 3)),
             np.concatenate([rng.normal(loc=5.0, size=(2, 3)), rng.normal(loc=15.0, size=(2, 3))])]
    hist = A.bag_of_words(codes, voc)
    assert hist.shape == (4, 4) and hist.dtype == np.float64
    np.testing.assert_allclose(hist.sum(axis=1), 1.0)
    np.testing.assert_allclose(hist[2], 0.25)  # empty clip -> uniform
    assert hist[0].max() == 1.0 and hist[1].max() == 1.0 and sorted(hist[3]) == [0, 0, 0.5, 0.5]
    np.testing.assert_array_equal(hist, A.bag_of_words(codes, A.fit_vocabulary(train, k=4, seed=0)))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        A.bag_of_words([np.zeros((2, 4))], voc)
    with pytest.raises(ValueError, match="at least k=300"):
        A.fit_vocabulary(train, k=300)


def test_clip_histograms_end_to_end():
    rng = np.random.default_rng(1)
    clips = [rng.integers(0, 256, (t, 12, 12), dtype=np.uint8) for t in (6, 9, 3)] + [np.zeros((5, 4, 4), np.uint8)]
    blocks = A.sample_blocks(clips, 200, size=8, depth=4, seed=0)
    w = A.BlockWhitener.fit(blocks, n_components=16)
    m = A.SynchronyAutoencoder(16, n_hidden=6, seed=0)
    voc = A.fit_vocabulary(A.encode_blocks(m, w.transform(blocks)), k=5, seed=0)
    hist = A.clip_histograms(clips, m, w, voc, stride=(2, 4, 4))
    assert hist.shape == (4, 5)
    np.testing.assert_allclose(hist.sum(axis=1), 1.0)
    np.testing.assert_allclose(hist[3], 0.2)  # frames smaller than the block -> uniform row


def test_vocabulary_from_saved_centres_assigns_as_the_fitted_k_means():
    rng = np.random.default_rng(2)
    train = (rng.normal(size=(3000, 32)) ** 2 * (rng.random((3000, 32)) > 0.5)).astype(np.float32)  # SAE-like codes
    km = A.fit_vocabulary(train, k=24, seed=0)
    voc = A.Vocabulary(km.cluster_centers_.copy())
    codes = (rng.normal(size=(5000, 32)) ** 2 * (rng.random((5000, 32)) > 0.5)).astype(np.float32)
    np.testing.assert_array_equal(voc.predict(codes), km.predict(codes))
    np.testing.assert_array_equal(voc.predict(codes, batch_size=7), km.predict(codes))
    np.testing.assert_array_equal(voc.predict(codes[:1]), km.predict(codes[:1]))  # one clip's block at a time
    split = [codes[:10], codes[10:10], codes[10:4000], codes[4000:]]
    np.testing.assert_array_equal(A.bag_of_words(split, voc), A.bag_of_words(split, km))
    assert voc.predict(np.array([km.cluster_centers_[3], km.cluster_centers_[3]])).tolist() == [3, 3]
    with pytest.raises(ValueError, match=r"\(n, 32\)"):
        voc.predict(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="float array"):
        A.Vocabulary(np.zeros(4))


# ---------------------------------------------------------------- plot


def test_sae_filters_figure():
    fil = np.random.default_rng(0).normal(size=(20, 10, 16, 16))
    fig = plots.sae_filters(fil, n_filters=6)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 6 * 5
    im = images[0].images[0]
    lo, hi = im.get_clim()
    assert lo == -hi and hi == pytest.approx(np.abs(fil[0][[0, 2, 4, 6, 8]]).max())
    np.testing.assert_array_equal(im.get_array(), fil[0, 0])
    assert len([ax for ax in plots.sae_filters(fil[:3], frames=(0, 9)).axes if ax.images]) == 3 * 2
    with pytest.raises(ValueError, match="frames"):
        plots.sae_filters(fil, frames=(0, 10))
    with pytest.raises(ValueError, match=r"\(K, depth, size, size\)"):
        plots.sae_filters(fil[0])
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("chunk", [1, 7, 40, 10_000])
def test_dense_blocks_in_chunks_are_the_dense_blocks(chunk):
    clip = np.random.default_rng(3).integers(0, 256, (23, 20, 28), dtype=np.uint8)
    pieces = list(A.iter_dense_blocks(clip, size=8, depth=4, stride=(3, 4, 5), chunk=chunk))
    assert all(0 < len(p) <= chunk for p in pieces)
    whole = A.dense_blocks(clip, size=8, depth=4, stride=(3, 4, 5))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert len(pieces) == -(-len(whole) // chunk)
    short = clip[:2]  # shorter than the block: padded with its last frame, as dense_blocks does
    np.testing.assert_array_equal(np.concatenate(list(A.iter_dense_blocks(short, 8, 4, (3, 4, 5), chunk=5))),
                                  A.dense_blocks(short, 8, 4, (3, 4, 5)))
    with pytest.raises(ValueError, match="chunk"):
        next(A.iter_dense_blocks(clip, chunk=0))


def test_clip_histograms_of_a_long_clip_in_chunks_equal_the_whole_clip_at_once(monkeypatch):
    rng = np.random.default_rng(4)
    clips = [rng.integers(0, 256, (t, 12, 12), dtype=np.uint8) for t in (6, 300, 9)]
    blocks = A.sample_blocks(clips, 200, size=8, depth=4, seed=0)
    w = A.BlockWhitener.fit(blocks, n_components=16)
    m = A.SynchronyAutoencoder(16, n_hidden=6, seed=0)
    voc = A.fit_vocabulary(A.encode_blocks(m, w.transform(blocks)), k=5, seed=0)
    whole = A.clip_histograms(clips, m, w, voc, stride=(2, 4, 4), batch_size=16)
    n_blocks = [len(A.dense_blocks(c, 8, 4, (2, 4, 4))) for c in clips]
    monkeypatch.setattr(A, "CHUNK_BLOCKS", 40)  # -> chunks of 32 blocks (two batches of 16)
    seen = []
    real = A.encode_blocks
    monkeypatch.setattr(A, "encode_blocks", lambda model, x, **kw: seen.append(len(x)) or real(model, x, **kw))
    chunked = A.clip_histograms(clips, m, w, voc, stride=(2, 4, 4), batch_size=16)
    np.testing.assert_array_equal(chunked, whole)
    assert max(seen) == 32 and sum(seen) == sum(n_blocks) and n_blocks[1] > 32
