"""Activity features: a Synchrony Autoencoder on spatio-temporal video blocks (paper section 4).

Section 4 ("Activity") of Kahou et al. (2015): "A Synchrony Autoencoder (SAE) [20] trained on cropped
3D video blocks of size 16 x 16 x 10 (space x space x time) is used for local motion feature
extraction", followed by k-means quantisation (a bag of words per clip) and an SVM classifier
(:func:`emotiw_utils.svm.fit_svm_grid`). Reference [20] is K. R. Konda, R. Memisevic and
V. Michalski, "Learning to encode motion using spatio-temporal synchrony", ICLR 2014.

The pipeline implemented here:

1. :func:`sample_blocks` draws random ``(depth, size, size)`` blocks from training clips (each block
   lies inside one clip); :func:`dense_blocks` cuts one clip into blocks on a regular grid.
2. :class:`BlockWhitener` contrast-normalises every block (subtract its mean, divide by its standard
   deviation plus a small constant) and PCA-whitens it to ``n_components`` values.
3. :class:`SynchronyAutoencoder` (tied weights ``W``, ``K`` filters): responses ``f = W x``, hidden
   units ``h = f**2 if f**2 > threshold else 0`` (a truncated quadratic: the squared response of a
   spatio-temporal filter is a sum of products of its per-frame responses, so it fires on
   synchronous, i.e. multiplicative, structure across frames), reconstruction
   ``r = W^T (h * f)``. :func:`train_sae` trains it as a denoising autoencoder (mean squared error
   between the clean input and the reconstruction from a corrupted input).
4. :func:`encode_blocks` gives the hidden codes of blocks; :func:`fit_vocabulary` runs k-means on
   training-block codes and :func:`bag_of_words` turns each clip's codes into an L1-normalised
   histogram of nearest-centre assignments. :func:`clip_histograms` chains steps 1-4 for whole clips.

:func:`filters` maps the learned filters back to block space (the paper's Figure 2 shows frames
1, 3, 5, 7 and 9 of such filters; see :func:`emotiw_utils.plots.sae_filters`).

Shapes: a clip is a ``(T, H, W)`` grayscale array (uint8 or float); a block is ``(depth, size, size)``
(time first); the block arrays returned here are float32 in the value range of the input frames.

scikit-learn and tqdm are imported inside the functions; importing this module (numpy, torch) has no
side effects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from emotiw_utils.device import torch_device

__all__ = [
    "BLOCK_DEPTH",
    "BLOCK_SIZE",
    "CHUNK_BLOCKS",
    "DEFAULT_STRIDE",
    "BlockWhitener",
    "SynchronyAutoencoder",
    "Vocabulary",
    "bag_of_words",
    "clip_histograms",
    "dense_blocks",
    "encode_blocks",
    "filters",
    "fit_vocabulary",
    "iter_dense_blocks",
    "sample_blocks",
    "train_sae",
]

#: Spatial side of a block in pixels (paper: 16 x 16 x 10).
BLOCK_SIZE = 16
#: Temporal depth of a block in frames (paper: 16 x 16 x 10).
BLOCK_DEPTH = 10
#: Default (t, y, x) stride of :func:`dense_blocks`: half a block in time, half a block in space.
DEFAULT_STRIDE = (5, 8, 8)
#: :func:`clip_histograms` whitens and encodes at most this many blocks of a clip at once (rounded to a multiple
#: of its batch size): 4,096 16x16x10 blocks are 42 MB as float32, 84 MB per float64 copy the whitening makes.
CHUNK_BLOCKS = 4096


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


def _check_block_shape(size: int, depth: int) -> None:
    if int(size) != size or int(depth) != depth or size < 1 or depth < 1:
        raise ValueError(f"block size and depth must be positive integers, got size={size!r}, depth={depth!r}")


def _as_clip(clip: Any, index: int | None = None) -> np.ndarray:
    a = np.asarray(clip)
    where = f"clip {index}" if index is not None else "clip"
    if a.ndim != 3:
        hint = " (convert colour frames to grayscale first)" if a.ndim == 4 else ""
        raise ValueError(f"{where} must be a (T, H, W) grayscale array, got shape {a.shape}{hint}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{where} must hold integer or float pixel values, got dtype {a.dtype}")
    return a


def sample_blocks(clips: Sequence[Any], n_blocks: int, size: int = BLOCK_SIZE, depth: int = BLOCK_DEPTH,
                  seed: int = 0) -> np.ndarray:
    """Random ``(depth, size, size)`` blocks from a set of clips, for training the whitener and the SAE.

    Args:
        clips: sequence of ``(T_i, H_i, W_i)`` grayscale arrays (uint8 or float), one per clip.
        n_blocks: number of blocks to draw (>= 1).
        size, depth: block side (pixels) and depth (frames).
        seed: seed of the ``numpy.random.Generator``; the result is a deterministic function of the
            inputs and the seed.

    Returns:
        ``(n_blocks, depth, size, size)`` float32 array (values in the range of the input frames).

    Every block is cut from ONE clip, from ``depth`` consecutive frames of that clip. A clip is chosen
    with probability proportional to its number of block positions
    ``(T - depth + 1) * (H - size + 1) * (W - size + 1)``, then a position uniformly at random inside it
    (so every position of every clip is equally likely; sampling is with replacement). Clips shorter
    than ``depth`` frames or smaller than ``size`` pixels are skipped. ValueError if no clip can give a
    block, or on bad arguments.
    """
    _check_block_shape(size, depth)
    if int(n_blocks) != n_blocks or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer, got {n_blocks!r}")
    if isinstance(clips, np.ndarray) and clips.ndim == 3:
        raise ValueError("clips must be a sequence of (T, H, W) clips; wrap a single clip in a list")
    arrays = [_as_clip(c, i) for i, c in enumerate(clips)]
    positions = np.array([max(0, t - depth + 1) * max(0, h - size + 1) * max(0, w - size + 1)
                          for t, h, w in (a.shape for a in arrays)], dtype=np.float64)
    usable = np.flatnonzero(positions > 0)
    if usable.size == 0:
        raise ValueError(f"no clip can give a {depth}x{size}x{size} block: all {len(arrays)} clips are shorter "
                         f"than {depth} frames or smaller than {size}x{size} pixels")
    rng = np.random.default_rng(seed)
    p = positions[usable] / positions[usable].sum()
    which = usable[rng.choice(usable.size, size=int(n_blocks), p=p)]
    out = np.empty((int(n_blocks), depth, size, size), dtype=np.float32)
    for j, ci in enumerate(which):
        a = arrays[ci]
        t0 = rng.integers(0, a.shape[0] - depth + 1)
        y0 = rng.integers(0, a.shape[1] - size + 1)
        x0 = rng.integers(0, a.shape[2] - size + 1)
        out[j] = a[t0:t0 + depth, y0:y0 + size, x0:x0 + size]
    return out


def dense_blocks(clip: Any, size: int = BLOCK_SIZE, depth: int = BLOCK_DEPTH,
                 stride: tuple[int, int, int] = DEFAULT_STRIDE) -> np.ndarray:
    """All blocks of one clip on a regular ``(t, y, x)`` grid.

    Args:
        clip: ``(T, H, W)`` grayscale array (uint8 or float), ``H, W >= size``, ``T >= 1``.
        size, depth: block side (pixels) and depth (frames).
        stride: ``(st, sy, sx)`` steps of the grid, each >= 1.

    Returns:
        ``(n, depth, size, size)`` float32 array, blocks in t-major, then y, then x order, with
        ``n = ((T' - depth) // st + 1) * ((H - size) // sy + 1) * ((W - size) // sx + 1)``; the grid starts
        at 0 and blocks that would reach past the clip's end are left out.

    A clip shorter than ``depth`` frames is padded at the end by repeating its last frame up to
    ``T' = depth`` frames (a still ending rather than a jump back to the first frame, so no spurious
    motion is added); it then gives one block per spatial position. ValueError for an empty clip or
    frames smaller than ``size``.
    """
    win = _block_grid(clip, size, depth, stride)
    return np.ascontiguousarray(win.reshape(-1, depth, size, size), dtype=np.float32)


def iter_dense_blocks(clip: Any, size: int = BLOCK_SIZE, depth: int = BLOCK_DEPTH,
                      stride: tuple[int, int, int] = DEFAULT_STRIDE, chunk: int = 4096):
    """:func:`dense_blocks` of one clip in consecutive pieces of at most ``chunk`` blocks (their concatenation
    is :func:`dense_blocks`'s array, bit for bit): a long clip's blocks are never all in memory at once."""
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    win = _block_grid(clip, size, depth, stride)
    nt, ny, nx = win.shape[:3]
    n = nt * ny * nx
    for start in range(0, n, int(chunk)):
        ti, rest = np.divmod(np.arange(start, min(start + int(chunk), n)), ny * nx)
        yi, xi = np.divmod(rest, nx)
        yield np.ascontiguousarray(win[ti, yi, xi], dtype=np.float32)


def _block_grid(clip: Any, size: int, depth: int, stride: tuple[int, int, int]) -> np.ndarray:
    """The ``(n_t, n_y, n_x, depth, size, size)`` view of :func:`dense_blocks`'s grid (no copy but the padding
    of a clip shorter than ``depth``)."""
    _check_block_shape(size, depth)
    st = tuple(int(s) for s in stride)
    if len(st) != 3 or any(s < 1 for s in st) or any(s != v for s, v in zip(st, stride)):
        raise ValueError(f"stride must be three positive integers (t, y, x), got {stride!r}")
    a = _as_clip(clip)
    t, h, w = a.shape
    if t == 0:
        raise ValueError("clip has no frames")
    if h < size or w < size:
        raise ValueError(f"clip frames are {h}x{w} pixels, smaller than the {size}x{size} block")
    if t < depth:
        a = np.concatenate([a, np.repeat(a[-1:], depth - t, axis=0)], axis=0)
    return np.lib.stride_tricks.sliding_window_view(a, (depth, size, size))[::st[0], ::st[1], ::st[2]]


# --------------------------------------------------------------------------------------------------
# Contrast normalisation + PCA whitening
# --------------------------------------------------------------------------------------------------


class BlockWhitener:
    """Per-block contrast normalisation followed by PCA whitening.

    Contrast normalisation: each flattened block ``b`` becomes ``(b - mean(b)) / (std(b) + eps)``, with
    ``eps = contrast_eps * median block std of the fitting blocks`` (so the constant does not depend on
    whether pixels are 0..255 or 0..1; near-flat blocks are not blown up into noise).

    PCA whitening: ``z = ((c - mean) @ components.T) / sqrt(eigenvalues + reg)`` keeps the
    ``n_components`` leading principal directions of the contrast-normalised fitting blocks and gives
    them unit variance. ``n_components`` is capped at ``D - 1`` (``D = depth * size * size``: the mean
    subtraction leaves no variance along the constant direction) and at ``n_blocks - 1``.

    Attributes (numpy arrays, see :meth:`to_dict`): ``mean (D,)``, ``components (n_components, D)``,
    ``eigenvalues (n_components,)``, plus ``depth``, ``size``, ``eps`` (absolute contrast constant)
    and ``reg``.
    """

    def __init__(self, mean: np.ndarray, components: np.ndarray, eigenvalues: np.ndarray, depth: int, size: int,
                 eps: float, reg: float):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)
        self.eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
        self.depth = int(depth)
        self.size = int(size)
        self.eps = float(eps)
        self.reg = float(reg)
        d = self.depth * self.size * self.size
        if self.mean.shape != (d,) or self.components.ndim != 2 or self.components.shape[1] != d \
                or self.eigenvalues.shape != (self.components.shape[0],):
            raise ValueError(f"inconsistent whitener arrays: mean {self.mean.shape}, components "
                             f"{self.components.shape}, eigenvalues {self.eigenvalues.shape}, block "
                             f"{self.depth}x{self.size}x{self.size}")

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        """Flattened block dimension ``D = depth * size * size``."""
        return self.depth * self.size * self.size

    @classmethod
    def fit(cls, blocks: np.ndarray, n_components: int = 300, seed: int = 0, contrast_eps: float = 0.1,
            reg: float = 1e-2, max_blocks: int = 100_000) -> "BlockWhitener":
        """Fit on ``(n, depth, size, size)`` blocks (n >= 2).

        ``n_components``: principal directions kept (capped at ``D - 1`` and ``n - 1``);
        ``contrast_eps``: contrast constant relative to the median block std; ``reg``: added to the
        eigenvalues before dividing (eigenvalues sum to about ``D``, so ``1e-2`` only matters for
        near-empty directions); ``max_blocks``: at most this many blocks, drawn with ``seed``, are used
        (the fit is deterministic given the seed).
        """
        b = _as_blocks(blocks)
        n, depth, size, _ = b.shape
        if n < 2:
            raise ValueError(f"need at least 2 blocks to fit the whitener, got {n}")
        if int(n_components) != n_components or n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
        if contrast_eps < 0 or reg < 0:
            raise ValueError(f"contrast_eps and reg must be >= 0, got {contrast_eps!r}, {reg!r}")
        if n > max_blocks:
            idx = np.sort(np.random.default_rng(seed).choice(n, size=int(max_blocks), replace=False))
            b = b[idx]
            n = b.shape[0]
        flat = b.reshape(n, -1).astype(np.float64)
        std = flat.std(axis=1)
        eps = float(contrast_eps * np.median(std))
        if eps <= 0:
            eps = 1e-8  # most blocks are flat: any positive constant keeps the division finite
        c = _contrast(flat, eps)
        d = c.shape[1]
        k = int(min(n_components, d - 1, n - 1))
        if k < 1:
            raise ValueError(f"blocks of {d} values leave no principal direction to keep")
        mean = c.mean(axis=0)
        c -= mean
        cov = (c.T @ c) / (n - 1)
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1][:k]
        evals = np.clip(evals[order], 0.0, None)
        comps = evecs[:, order].T
        # fix each eigenvector's sign (largest-magnitude entry positive) so the fit is reproducible
        flip = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        comps *= flip[:, None]
        return cls(mean, comps, evals, depth, size, eps, reg)

    def _scale(self) -> np.ndarray:
        return np.sqrt(self.eigenvalues + self.reg)

    def contrast_normalise(self, blocks: np.ndarray) -> np.ndarray:
        """``(n, depth, size, size)`` -> contrast-normalised ``(n, D)`` float64."""
        b = self._check(blocks)
        return _contrast(b.reshape(b.shape[0], -1).astype(np.float64), self.eps)

    def transform(self, blocks: np.ndarray) -> np.ndarray:
        """``(n, depth, size, size)`` blocks -> ``(n, n_components)`` float32 whitened vectors."""
        c = self.contrast_normalise(blocks)
        z = ((c - self.mean) @ self.components.T) / self._scale()
        return z.astype(np.float32)

    def inverse(self, vectors: np.ndarray, add_mean: bool = True) -> np.ndarray:
        """``(n, n_components)`` whitened vectors -> ``(n, depth, size, size)`` float32 in contrast-normalised
        block space (``add_mean=False`` leaves out the mean block: use it for filters, which are
        directions, not points)."""
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[1] != self.n_components:
            raise ValueError(f"expected (n, {self.n_components}) vectors, got shape {np.shape(vectors)}")
        x = (v * self._scale()) @ self.components
        if add_mean:
            x = x + self.mean
        return x.reshape(-1, self.depth, self.size, self.size).astype(np.float32)

    def to_dict(self) -> dict[str, np.ndarray]:
        """The whitener as a dict of numpy arrays (for ``np.savez(path, **w.to_dict())`` or torch.save)."""
        return {
            "mean": self.mean.copy(),
            "components": self.components.copy(),
            "eigenvalues": self.eigenvalues.copy(),
            "depth": np.array(self.depth),
            "size": np.array(self.size),
            "eps": np.array(self.eps),
            "reg": np.array(self.reg),
        }

    @classmethod
    def from_dict(cls, d: Any) -> "BlockWhitener":
        """Inverse of :meth:`to_dict`; also accepts an ``np.load`` result."""
        missing = [k for k in ("mean", "components", "eigenvalues", "depth", "size", "eps", "reg") if k not in d]
        if missing:
            raise ValueError(f"whitener dict lacks {', '.join(missing)}")
        return cls(np.asarray(d["mean"]), np.asarray(d["components"]), np.asarray(d["eigenvalues"]),
                   int(np.asarray(d["depth"])), int(np.asarray(d["size"])), float(np.asarray(d["eps"])),
                   float(np.asarray(d["reg"])))

    def _check(self, blocks: np.ndarray) -> np.ndarray:
        b = _as_blocks(blocks)
        if b.shape[1:] != (self.depth, self.size, self.size):
            raise ValueError(f"whitener was fitted on {self.depth}x{self.size}x{self.size} blocks, got blocks "
                             f"of shape {b.shape[1:]}")
        return b


def _as_blocks(blocks: Any) -> np.ndarray:
    b = np.asarray(blocks)
    if b.ndim != 4 or b.shape[2] != b.shape[3]:
        raise ValueError(f"blocks must be an (n, depth, size, size) array, got shape {b.shape}")
    if not (np.issubdtype(b.dtype, np.integer) or np.issubdtype(b.dtype, np.floating)):
        raise ValueError(f"blocks must hold numbers, got dtype {b.dtype}")
    return b


def _contrast(flat: np.ndarray, eps: float) -> np.ndarray:
    c = flat - flat.mean(axis=1, keepdims=True)
    return c / (c.std(axis=1, keepdims=True) + eps)


# --------------------------------------------------------------------------------------------------
# Synchrony autoencoder
# --------------------------------------------------------------------------------------------------


class SynchronyAutoencoder(nn.Module):
    """Synchrony autoencoder with tied weights (Konda, Memisevic & Michalski, ICLR 2014).

    Args:
        input_dim: length ``D`` of the (whitened) input vectors.
        n_hidden: number of filters / hidden units ``K``.
        threshold: ``theta`` of the truncated quadratic ``h = f**2 if f**2 > theta else 0``. The default
            0.1 is meant for whitened input (unit variance per dimension) and the default
            initialisation, where responses start with a standard deviation of about ``init_scale``
            (0.5), so roughly half the units are active at the start.
        seed: seed of the private ``torch.Generator`` used for the initial weights (the global torch RNG
            is not touched); ``None``: a non-reproducible seed.
        init_scale: initial weights are ``N(0, (init_scale / sqrt(D))**2)``, so the responses to a
            whitened input (squared norm about ``D``) have a standard deviation of about ``init_scale``
            and the initial reconstruction is small (initial loss close to 1, the loss of predicting 0).

    Parameter ``weight``: ``(K, D)``; row ``k`` is filter ``k``.
    """

    def __init__(self, input_dim: int, n_hidden: int = 256, threshold: float = 0.1, seed: int | None = None,
                 init_scale: float = 0.5):
        super().__init__()
        if int(input_dim) != input_dim or input_dim < 1:
            raise ValueError(f"input_dim must be a positive integer, got {input_dim!r}")
        if int(n_hidden) != n_hidden or n_hidden < 1:
            raise ValueError(f"n_hidden must be a positive integer, got {n_hidden!r}")
        if not threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {threshold!r}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
        self.input_dim = int(input_dim)
        self.n_hidden = int(n_hidden)
        self.threshold = float(threshold)
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        w = torch.randn(self.n_hidden, self.input_dim, generator=gen) * (init_scale / math.sqrt(self.input_dim))
        self.weight = nn.Parameter(w)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected input of shape (B, {self.input_dim}), got {tuple(x.shape)}")

    def responses(self, x: torch.Tensor) -> torch.Tensor:
        """Filter responses ``f = x W^T``: ``(B, D)`` -> ``(B, K)``."""
        self._check(x)
        return x @ self.weight.t()

    def _hidden(self, f: torch.Tensor) -> torch.Tensor:
        f2 = f * f
        return f2 * (f2 > self.threshold).to(f2.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden units ``h = f**2 * [f**2 > threshold]``: ``(B, D)`` -> ``(B, K)``, non-negative."""
        return self._hidden(self.responses(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``r = (h * f) W``: ``(B, D)`` -> ``(B, D)``."""
        f = self.responses(x)
        return (self._hidden(f) * f) @ self.weight

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, n_hidden={self.n_hidden}, threshold={self.threshold}"


def _as_tensor(x: Any, device):
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device=device, dtype=torch.float32)
    else:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    if t.ndim != 2:
        raise ValueError(f"expected an (n, D) array of whitened blocks, got shape {tuple(t.shape)}")
    return t


def train_sae(model, x: Any, epochs: int = 30, batch_size: int = 256, lr: float = 1e-3, noise: float = 0.3,
              seed: int = 0, device: Any = "cpu", progress: bool = False, noise_kind: str = "mask") -> list[dict]:
    """Train a :class:`SynchronyAutoencoder` as a denoising autoencoder with Adam.

    Args:
        model: the SAE (moved to ``device`` in place).
        x: ``(n, D)`` whitened blocks (numpy or torch), ``D == model.input_dim``; moved to the device once.
        epochs, batch_size, lr: Adam training schedule (the last batch of an epoch may be smaller).
        noise: corruption level: with ``noise_kind="mask"`` each input value is set to 0 with
            probability ``noise``; with ``"gaussian"`` Gaussian noise of standard deviation ``noise`` is
            added. The loss is always the mean squared error against the clean input. 0: no corruption.
        seed: seeds the batch order and the corruption (private generators: the global torch RNG is
            not touched); on CPU two runs with the same seed and model initialisation are identical.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a torch device.
        progress: show a tqdm bar over epochs.

    Returns:
        One dict per epoch: ``{"epoch": 1.., "loss": mean training loss over the epoch's samples,
        "seconds": wall time of the epoch}``.
    """
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if noise_kind not in ("mask", "gaussian"):
        raise ValueError(f"noise_kind must be 'mask' or 'gaussian', got {noise_kind!r}")
    if noise < 0 or (noise_kind == "mask" and noise >= 1):
        raise ValueError(f"noise must be in [0, 1) for masking and >= 0 for Gaussian noise, got {noise!r}")
    dev = torch_device(device)
    data = _as_tensor(x, dev)
    if data.shape[1] != model.input_dim:
        raise ValueError(f"x has {data.shape[1]} values per row, the model expects {model.input_dim}")
    n = data.shape[0]
    if n == 0:
        raise ValueError("x has no rows")
    model.to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order_gen = torch.Generator().manual_seed(int(seed))
    noise_gen = torch.Generator(device=dev).manual_seed(int(seed) + 1)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(epochs), desc="SAE", unit="epoch")
    history = []
    try:
        for epoch in range(1, int(epochs) + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=order_gen).to(dev)
            total = torch.zeros((), device=dev, dtype=torch.float64)
            for i in range(0, n, int(batch_size)):
                clean = data[perm[i:i + int(batch_size)]]
                if noise > 0 and noise_kind == "mask":
                    keep = torch.rand(clean.shape, generator=noise_gen, device=dev) >= noise
                    inp = clean * keep
                elif noise > 0:
                    inp = clean + noise * torch.randn(clean.shape, generator=noise_gen, device=dev)
                else:
                    inp = clean
                loss = torch.mean((model(inp) - clean) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach().double() * clean.shape[0]
            mean_loss = float(total) / n
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"SAE loss became {mean_loss} in epoch {epoch}; lower lr or the init scale")
            history.append({"epoch": epoch, "loss": mean_loss, "seconds": time.perf_counter() - t0})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return history


def encode_blocks(model, x: Any, batch_size: int = 4096, device: Any = None) -> np.ndarray:
    """Hidden codes of whitened blocks: ``(n, D)`` -> ``(n, K)`` float32 (no corruption, no gradients).

    ``device``: where to compute (the model is moved there); ``None``: the model's current device.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dev = torch_device(device, model)
    model.to(dev)
    xs = x if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if xs.ndim != 2 or xs.shape[1] != model.input_dim:
        raise ValueError(f"expected (n, {model.input_dim}) whitened blocks, got shape {tuple(xs.shape)}")
    out = np.empty((xs.shape[0], model.n_hidden), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, xs.shape[0], int(batch_size)):
            h = model.encode(_as_tensor(xs[i:i + int(batch_size)], dev))
            out[i:i + h.shape[0]] = h.cpu().numpy()
    model.train(was_training)
    return out


def filters(model, whitener: BlockWhitener) -> np.ndarray:
    """The SAE's filters in block space: ``(K, depth, size, size)`` float32.

    Each row of ``W`` (a direction in whitened space) is mapped back with
    ``whitener.inverse(W, add_mean=False)`` (de-whitening), the usual way to show filters learned on
    whitened data (paper Figure 2).
    """
    w = model.weight.detach().cpu().double().numpy()
    if w.shape[1] != whitener.n_components:
        raise ValueError(f"the model has {w.shape[1]} inputs but the whitener gives {whitener.n_components} values")
    return whitener.inverse(w, add_mean=False)


# --------------------------------------------------------------------------------------------------
# Bag of words
# --------------------------------------------------------------------------------------------------


def fit_vocabulary(features: Any, k: int = 256, seed: int = 0, max_samples: int = 200_000, batch_size: int = 4096,
                   n_init: int = 1):
    """k-means vocabulary on training-block codes.

    Args:
        features: ``(n, K)`` codes (e.g. :func:`encode_blocks` of training blocks), ``n >= k``.
        k: number of visual words.
        seed: seeds the subsample and k-means (deterministic).
        max_samples: at most this many rows (drawn with ``seed``) are clustered.
        batch_size: MiniBatchKMeans batch size.
        n_init: k-means++ initialisations tried (the costly part: about 25 s for 20,000 x 256 codes and
            k = 256 on 2 CPU cores; 3 initialisations gave the same inertia to 0.05 % in a trial).

    Returns:
        A fitted ``sklearn.cluster.MiniBatchKMeans`` (``n_clusters=k``).
    """
    from sklearn.cluster import MiniBatchKMeans

    f = np.asarray(features, dtype=np.float32)
    if f.ndim != 2:
        raise ValueError(f"features must be an (n, K) array, got shape {f.shape}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if f.shape[0] > max_samples:
        f = f[np.sort(np.random.default_rng(seed).choice(f.shape[0], size=int(max_samples), replace=False))]
    if f.shape[0] < k:
        raise ValueError(f"need at least k={k} feature rows to fit the vocabulary, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or infinite values")
    km = MiniBatchKMeans(n_clusters=int(k), random_state=seed, n_init=int(n_init), batch_size=int(batch_size))
    return km.fit(f)


class Vocabulary:
    """A k-means vocabulary as a plain array: ``cluster_centers_`` ``(k, K)`` (e.g. saved from
    :func:`fit_vocabulary`'s k-means). :meth:`predict` gives each code its nearest centre computed as
    scikit-learn's k-means ``predict`` does (the centre's squared norm minus twice the dot product, in the
    centres' dtype; ties to the lower index), so a vocabulary rebuilt from saved centres assigns the words
    the fitted k-means assigned."""

    def __init__(self, centres: Any) -> None:
        c = np.asarray(centres)
        if c.ndim != 2 or c.shape[0] < 1 or c.dtype.kind != "f":
            raise ValueError(f"centres must be a (k, K) float array, got shape {c.shape} and dtype {c.dtype}")
        self.cluster_centers_ = c

    def predict(self, codes: Any, batch_size: int = 4096) -> np.ndarray:
        """``(n,)`` int64 index of the nearest centre of each row of ``codes`` ``(n, K)``."""
        c = self.cluster_centers_
        x = np.asarray(codes, dtype=c.dtype)
        if x.ndim != 2 or x.shape[1] != c.shape[1]:
            raise ValueError(f"codes must be an (n, {c.shape[1]}) array, got shape {x.shape}")
        norms = np.einsum("ij,ij->i", c, c)
        out = np.empty(len(x), dtype=np.int64)
        for i in range(0, len(x), int(batch_size)):
            out[i:i + int(batch_size)] = (norms[None, :] - 2 * (x[i:i + int(batch_size)] @ c.T)).argmin(axis=1)
        return out


def bag_of_words(codes_per_clip: Sequence[Any], vocabulary) -> np.ndarray:
    """L1-normalised histograms of nearest-centre assignments, one per clip.

    Args:
        codes_per_clip: list of ``(n_i, K)`` code arrays, one per clip.
        vocabulary: a fitted k-means or a :class:`Vocabulary` (anything with ``cluster_centers_`` and
            ``predict``).

    Returns:
        ``(n_clips, k)`` float64, each row sums to 1. A clip with no blocks (``n_i == 0``) gets the
        uniform row ``1 / k`` (no evidence for any word), so every clip has a valid feature vector.
    """
    centres = np.asarray(vocabulary.cluster_centers_)
    k, dim = centres.shape
    codes = [np.asarray(c, dtype=centres.dtype) for c in codes_per_clip]
    for i, c in enumerate(codes):
        if c.ndim != 2 or (c.shape[0] > 0 and c.shape[1] != dim):
            raise ValueError(f"clip {i}: codes must be an (n, {dim}) array, got shape {c.shape}")
    out = np.full((len(codes), k), 1.0 / k, dtype=np.float64)
    lengths = [c.shape[0] for c in codes]
    if sum(lengths):
        words = vocabulary.predict(np.concatenate([c for c in codes if c.shape[0] > 0], axis=0))
        start = 0
        for i, n in enumerate(lengths):
            if n:
                counts = np.bincount(words[start:start + n], minlength=k).astype(np.float64)
                out[i] = counts / n
                start += n
    return out


def clip_histograms(clips: Sequence[Any], model, whitener: BlockWhitener, vocabulary,
                    stride: tuple[int, int, int] = DEFAULT_STRIDE, device: Any = None, batch_size: int = 4096,
                    progress: bool = False) -> np.ndarray:
    """Bag-of-words histograms of whole clips: :func:`dense_blocks` -> :meth:`BlockWhitener.transform`
    -> :func:`encode_blocks` -> :func:`bag_of_words`.

    ``clips``: sequence of ``(T_i, H_i, W_i)`` grayscale arrays. Returns ``(n_clips, k)`` float64. A clip
    with no frames or frames smaller than the block gives no blocks, hence the uniform row.

    A clip's blocks are whitened and encoded :data:`CHUNK_BLOCKS` at a time (:func:`iter_dense_blocks`; a
    multiple of ``batch_size``, so the encoder sees the same batches), so memory does not grow with a clip's
    length; a clip with fewer blocks goes through in one piece, as it always did.
    """
    chunk = max(1, CHUNK_BLOCKS // int(batch_size)) * int(batch_size)
    codes = []
    it = clips
    if progress:
        from tqdm import tqdm

        it = tqdm(clips, desc="activity BoW", unit="clip")
    for clip in it:
        a = _as_clip(clip)
        if a.shape[0] == 0 or a.shape[1] < whitener.size or a.shape[2] < whitener.size:
            codes.append(np.zeros((0, model.n_hidden), dtype=np.float32))
            continue
        parts = [encode_blocks(model, whitener.transform(blocks), batch_size=batch_size, device=device)
                 for blocks in iter_dense_blocks(a, whitener.size, whitener.depth, stride, chunk)]
        codes.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
    return bag_of_words(codes, vocabulary)


def _read_gray(args: tuple[str, float, bool]) -> tuple[np.ndarray, str | None, str | None]:
    """``(frames, error, truncated)``: the frames, why none could be read (or None) and why the clip is
    ``truncated`` (its decoded frames are used; or None), as :func:`emotiw_utils.datasets.video.read_video`
    finds them."""
    from emotiw_utils.datasets.video import read_video
    from emotiw_utils.errors import DataFormatError

    path, scale, keep_going = args
    try:
        video = read_video(path, gray=True)
    except DataFormatError as e:
        if not keep_going:
            raise
        return np.zeros((0, 1, 1), dtype=np.uint8), str(e), None
    frames, truncated = video.frames, (f"{path}: {video.problem}" if video.problem is not None else None)
    if scale == 1.0 or len(frames) == 0:
        return frames, None, truncated
    import cv2

    h, w = frames.shape[1:]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]), None, truncated


def load_clip_frames(paths: Sequence[Any], scale: float = 0.5, workers: int = 0, progress: bool = False,
                     desc: str = "decode", errors: dict[int, str] | None = None,
                     truncated: dict[int, str] | None = None) -> list[np.ndarray]:
    """Grayscale frames of every video in ``paths``: one ``(T_i, H', W')`` uint8 array per clip.

    ``scale`` resizes the frames (area interpolation) before any block is cut: at 0.5 a 16 x 16 block of a
    144 x 176 SynthAFEW frame (or a 720 x 576 AFEW frame scaled to 0.2) covers a face-sized region.
    ``workers`` processes decode in parallel (0: all cores; :func:`emotiw_utils.workers.process_map`: a
    crashed worker fails with the clip named, never a hang).

    Unreadable files raise :class:`~emotiw_utils.errors.DataFormatError` naming the file, unless ``errors``
    is a dict: then an unreadable clip gives a ``(0, 1, 1)`` array (no frame, hence no block and the uniform
    histogram) and ``errors[i]`` its message (the clip policy, :mod:`emotiw_utils.clip_policy`). A clip cut
    off or failing to decode part-way gives the frames that decoded, and, given a ``truncated`` dict,
    ``truncated[i]`` why (its status ``truncated``, as the other stages call it).
    """
    from emotiw_utils.workers import process_map

    if not 0 < float(scale) <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    tasks = [(str(p), float(scale), errors is not None) for p in paths]
    out = []
    for i, (frames, problem, cut) in enumerate(process_map(_read_gray, tasks, workers, names=[t[0] for t in tasks],
                                                           progress=progress, desc=desc)):
        if problem is not None:
            errors[i] = problem
        if cut is not None and truncated is not None:
            truncated[i] = cut
        out.append(frames)
    return out
