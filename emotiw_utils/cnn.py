"""The frame-level CNN of Kahou et al. (ICMI 2015), sections 2.1.2-2.1.3, and its feature extraction for 2.2.

Paper recipe (section 2.1.3): a CNN trained on static faces of FER2013 + TFD ("FER+TFD"), aligned to
FER2013 and histogram-equalised (section 2.1.2, done in :mod:`emotiw_utils.faces`), normalised with
the mean and standard-deviation image of FER+TFD (section 2.1.2), with data augmentation (horizontal
flip with probability 0.5 and random cropping) and dropout 0.25. Three structures were explored
(:data:`ARCHITECTURES`):

* ``"cnn9x9"`` -- three conv layers of 9x9 filters, 32-32-64 filters: the paper's final choice, default;
* ``"cnn5x5"`` -- three conv layers of 5x5 filters, 64-64-128 filters;
* ``"vgg3x3"`` -- a very deep VGG-like structure of 3x3 filters (the paper found it over-fits FER+TFD).

Early stopping (section 2.1.3) is done on the challenge data: frame accuracy of AFEW-faces Train+Val
against the clip labels; :func:`train_cnn` supports this with ``monitors=`` and ``select_on=``.
The layer after the second conv block (``"conv2"``, after max-pooling) feeds the IRNN (section 2.2):
:func:`layer_activations` computes it on the fly, on the device.

Shapes: input faces are ``(N, 48, 48)`` uint8 (or ``(N, 1, 48, 48)``); the network sees
``(N, 1, crop, crop)`` float crops (``crop`` = 42 by default: random crops in training, the centre crop
in evaluation). For ``cnn9x9`` with 42x42 crops: conv1 ``(32, 21, 21)``, conv2 ``(32, 10, 10)`` = 3200-d
flattened, conv3 ``(64, 5, 5)`` = 1600-d, logits 7 (see :meth:`CnnConfig.feature_shape`).

Deviations from the paper (it does not state most training details):

* BatchNorm after every convolution (``CnnConfig.batch_norm``, default on) is our addition, for stable
  training within a few epochs; the paper does not mention it.
* Optimiser, learning rate, schedule, weight decay, batch size and the crop size (42 of 48) are our
  choices: every profile trains with SGD (Nesterov momentum 0.9), a one-cycle schedule to lr 0.05, weight
  decay 5e-4 on weights only, batch 128 (``params/base.yaml``, 02_cnn; why: ``bench/RESULTS.md``); the
  defaults of :func:`train_cnn` are Adam 1e-3, cosine, 1e-4, batch 256.
* Random rotation and zoom of the crops (:func:`affine_crops`) and label smoothing are options of
  :func:`train_cnn`, off by default and in every profile.
* ``vgg3x3`` is our reading of "a very deep structure with small 3x3 filter size" (refs [26, 29]): four
  blocks of two 3x3 convolutions (64, 128, 256, 512 filters) each followed by max-pooling, then a hidden
  fully connected layer of 1024 units (``fc_units`` overrides it), as in VGG-style FER2013 nets.
* The mean/std images live inside the model as buffers (``mean_image``, ``std_image``), so a saved
  checkpoint is self-contained; the std image is floored at 1 grey level.

Everything runs on one device without a CPU data loader: the training set is moved to the device once,
shuffling and augmentation are vectorised tensor ops drawn from a seeded ``torch.Generator`` on that
device, and losses/accuracies are accumulated on the device and read once per epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emotiw_utils.checkpoints import read_model, write_model
from emotiw_utils.constants import FER_SIZE, NUM_CLASSES, UNKNOWN_LABEL
from emotiw_utils.device import torch_device
from emotiw_utils.history import BestWeights, EpochCurves

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_FORMAT",
    "CnnCheckpoint",
    "CnnConfig",
    "CnnHistory",
    "FrameCNN",
    "INFERENCE_BATCH",
    "affine_crops",
    "augment",
    "centre_crop",
    "iter_layer_activations",
    "layer_activations",
    "load_checkpoint",
    "load_cnn",
    "mean_std_images",
    "predict_logits",
    "save_cnn",
    "set_normalisation",
    "train_cnn",
]

#: The three CNN structures of section 2.1.3; ``"cnn9x9"`` is the paper's choice.
ARCHITECTURES: tuple[str, ...] = ("cnn9x9", "cnn5x5", "vgg3x3")

#: Conv blocks per architecture: ``(kernel size, filters of each conv in the block)``; every block
#: ends with 2x2 max-pooling and is one addressable layer ``conv1``, ``conv2``, ...
_BLOCKS: dict[str, tuple[tuple[int, tuple[int, ...]], ...]] = {
    "cnn9x9": ((9, (32,)), (9, (32,)), (9, (64,))),
    "cnn5x5": ((5, (64,)), (5, (64,)), (5, (128,))),
    "vgg3x3": ((3, (64, 64)), (3, (128, 128)), (3, (256, 256)), (3, (512, 512))),
}
#: Hidden fully connected units of ``vgg3x3`` when ``fc_units`` is 0.
VGG_FC_UNITS = 1024

#: Marker stored in every checkpoint written by :func:`save_cnn`.
CHECKPOINT_FORMAT = "emotiw-frame-cnn"
_CHECKPOINT_VERSION = 1

#: Default normalisation when no mean/std image is given: (x - 128) / 64.
_DEFAULT_MEAN = 128.0
_DEFAULT_STD = 64.0
_STD_FLOOR = 1.0
#: Default inference batch sizes: large on a GPU; small on a CPU, where big activations cost page faults.
INFERENCE_BATCH = {"cuda": 4096, "cpu": 256}


# ---- configuration ------------------------------------------------------------------------------

@dataclass
class CnnConfig:
    """Structure of a :class:`FrameCNN` (section 2.1.3).

    ``arch``: one of :data:`ARCHITECTURES`; ``image_size``: side of the input faces (48, FER2013);
    ``crop``: side of the random (training) / centre (evaluation) crop the network sees; ``dropout``:
    rate before the classifier (and after the hidden FC layer), 0.25 in the paper; ``batch_norm``:
    BatchNorm after every convolution (our addition); ``fc_units``: hidden fully connected layer before
    the classifier (0 = none; ``vgg3x3`` uses 1024 when 0); ``n_classes``: 7 (FER2013 order).
    """

    arch: str = "cnn9x9"
    image_size: int = FER_SIZE
    crop: int = 42
    dropout: float = 0.25
    batch_norm: bool = True
    fc_units: int = 0
    n_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown CNN architecture {self.arch!r}; expected one of {', '.join(ARCHITECTURES)}")
        self.image_size, self.crop, self.fc_units = int(self.image_size), int(self.crop), int(self.fc_units)
        self.n_classes, self.dropout, self.batch_norm = int(self.n_classes), float(self.dropout), bool(self.batch_norm)
        if self.crop > self.image_size:
            raise ValueError(f"crop ({self.crop}) must not exceed image_size ({self.image_size})")
        if self.crop < 1:
            raise ValueError(f"crop must be positive; got {self.crop}")
        min_crop = 2 ** len(_BLOCKS[self.arch])
        if self.crop < min_crop:
            raise ValueError(f"crop {self.crop} is too small for {self.arch}: at least {min_crop} (one pixel "
                             f"left after {len(_BLOCKS[self.arch])} max-poolings)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")
        if self.fc_units < 0:
            raise ValueError(f"fc_units must be >= 0; got {self.fc_units}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2; got {self.n_classes}")

    @property
    def hidden_units(self) -> int:
        """Units of the hidden FC layer actually built (0 = none)."""
        if self.fc_units:
            return self.fc_units
        return VGG_FC_UNITS if self.arch == "vgg3x3" else 0

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Addressable layers: ``conv1``..``convK`` (after max-pooling), ``fc`` (if a hidden FC), ``logits``."""
        names = tuple(f"conv{i + 1}" for i in range(len(_BLOCKS[self.arch])))
        return names + (("fc",) if self.hidden_units else ()) + ("logits",)

    def feature_shape(self, layer: str) -> tuple[int, ...]:
        """Shape of one sample's activation of ``layer``: ``(C, H, W)`` for conv layers, ``(D,)`` otherwise.

        Every conv keeps the spatial size (padding k//2, odd k), every max-pooling floors it by 2:
        ``cnn9x9`` at crop 42 gives conv1 (32, 21, 21), conv2 (32, 10, 10), conv3 (64, 5, 5).
        """
        self._check_layer(layer)
        if layer == "logits":
            return (self.n_classes,)
        if layer == "fc":
            return (self.hidden_units,)
        size = self.crop
        channels = 1
        for i, (_, filters) in enumerate(_BLOCKS[self.arch]):
            size //= 2
            channels = filters[-1]
            if layer == f"conv{i + 1}":
                break
        return (channels, size, size)

    def feature_dim(self, layer: str) -> int:
        """Flattened size of ``layer``'s activation per sample (``cnn9x9``, crop 42: conv2 -> 3200)."""
        return int(np.prod(self.feature_shape(layer)))

    def _check_layer(self, layer: str) -> None:
        if layer not in self.layer_names:
            raise ValueError(f"unknown layer {layer!r} for {self.arch}; expected one of {', '.join(self.layer_names)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON- and ``torch.load(weights_only=True)``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CnnConfig:
        """Inverse of :meth:`to_dict`; ValueError naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CnnConfig keys: {', '.join(unknown)}")
        return cls(**dict(d))


# ---- the network --------------------------------------------------------------------------------

def _image_tensor(images: Any) -> torch.Tensor:
    """``images`` (numpy or tensor, ``(N, H, W)``, ``(N, 1, H, W)`` or one ``(H, W)``) -> tensor ``(N, H, W)``.

    No copy for numpy input (read-only arrays are accepted: they are never written to).
    """
    if isinstance(images, torch.Tensor):
        t = images
    else:
        a = np.asarray(images)
        if a.dtype not in (np.uint8, np.float32, np.float64, np.int16, np.int32, np.int64, np.float16):
            raise TypeError(f"images must be uint8 (or float pixel values); got dtype {a.dtype}")
        a = np.ascontiguousarray(a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # non-writable arrays: we only read them
            t = torch.from_numpy(a)
    if t.ndim == 2:
        t = t[None]
    elif t.ndim == 4:
        if t.shape[1] != 1:
            raise ValueError(f"images must be grayscale (N, 1, H, W); got shape {tuple(t.shape)}")
        t = t[:, 0]
    elif t.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W) or (N, 1, H, W); got {tuple(t.shape)}")
    return t


def _image_buffer(img: Any, size: int, default: float, name: str) -> torch.Tensor:
    if img is None:
        return torch.full((size, size), default, dtype=torch.float32)
    t = torch.as_tensor(np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img, dtype=np.float32))
    if t.shape != (size, size):
        raise ValueError(f"{name} must have shape ({size}, {size}); got {tuple(t.shape)}")
    return t.clone()


class FrameCNN(nn.Module):
    """Frame-level CNN of section 2.1.3, with the FER+TFD normalisation of section 2.1.2 as buffers.

    ``config``: the structure (:class:`CnnConfig`); ``mean_image``/``std_image``: ``(image_size,
    image_size)`` float images of the training set (section 2.1.2; :func:`mean_std_images`), default a
    constant 128 / 64; ``seed``: if given, the weights are initialised from this seed without touching
    the global RNG (else from the global torch RNG, as any ``nn.Module``).

    Layers: conv blocks ``conv1``..``convK`` (conv -> [BatchNorm] -> ReLU, repeated per conv of the block,
    then 2x2 max-pooling), then flatten -> Dropout -> [Linear(hidden) -> ReLU -> Dropout] -> Linear(7).
    """

    def __init__(self, config: CnnConfig | None = None, mean_image: Any = None, std_image: Any = None,
                 seed: int | None = None):
        super().__init__()
        self.config = config = CnnConfig() if config is None else config
        s = config.image_size
        self.register_buffer("mean_image", _image_buffer(mean_image, s, _DEFAULT_MEAN, "mean_image"))
        self.register_buffer("std_image", _image_buffer(std_image, s, _DEFAULT_STD, "std_image").clamp_min(_STD_FLOOR))
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with rng:
            if seed is not None:
                torch.manual_seed(int(seed))
            self._build()

    def _build(self) -> None:
        cfg = self.config
        blocks = []
        cin = 1
        for kernel, filters in _BLOCKS[cfg.arch]:
            layers: list[nn.Module] = []
            for cout in filters:
                layers.append(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=not cfg.batch_norm))
                if cfg.batch_norm:
                    layers.append(nn.BatchNorm2d(cout))
                layers.append(nn.ReLU(inplace=True))
                cin = cout
            layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        flat = cfg.feature_dim(f"conv{len(blocks)}")
        self.dropout = nn.Dropout(cfg.dropout)
        hidden = cfg.hidden_units
        if hidden:
            self.fc: nn.Module | None = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True))
            self.fc_dropout: nn.Module | None = nn.Dropout(cfg.dropout)
            flat = hidden
        else:
            self.fc = self.fc_dropout = None
        self.classifier = nn.Linear(flat, cfg.n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- properties --
    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Addressable layers (see :attr:`CnnConfig.layer_names`)."""
        return self.config.layer_names

    def feature_shape(self, layer: str) -> tuple[int, ...]:
        """Per-sample shape of ``layer``'s activation (see :meth:`CnnConfig.feature_shape`)."""
        return self.config.feature_shape(layer)

    def feature_dim(self, layer: str) -> int:
        """Flattened per-sample size of ``layer`` (``cnn9x9``, crop 42: conv1 14112, conv2 3200, conv3 1600)."""
        return self.config.feature_dim(layer)

    # -- normalisation (section 2.1.2) --
    def normalise(self, x: Any) -> torch.Tensor:
        """Dataset normalisation: ``(N, H, W)`` or ``(N, 1, H, W)`` uint8/float pixels (numpy or tensor) ->
        ``(N, 1, H, W)`` float32 ``(x - mean_image) / std_image`` on the model's device (H = W = image_size).
        """
        t = _image_tensor(x)
        s = self.config.image_size
        if tuple(t.shape[1:]) != (s, s):
            raise ValueError(f"images must be {s}x{s}; got {tuple(t.shape[1:])}")
        t = t.to(self.mean_image.device, non_blocking=True).float()
        return ((t - self.mean_image) / self.std_image).unsqueeze(1)

    # -- forward --
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes)`` (pre-softmax) of normalised crops ``x`` ``(N, 1, crop, crop)`` float."""
        for block in self.blocks:
            x = block(x)
        return self._head(x, "logits")

    def _head(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        x = self.dropout(torch.flatten(x, 1))
        if self.fc is not None:
            x = self.fc(x)
            if layer == "fc":
                return x
            x = self.fc_dropout(x)
        return self.classifier(x)

    def forward_features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Activation of ``layer`` for normalised crops ``x`` ``(N, 1, crop, crop)``; stops after that layer.

        ``convK`` -> ``(N, C, H, W)`` after max-pooling; ``fc`` -> ``(N, hidden)`` after ReLU; ``logits`` ->
        ``(N, n_classes)``. ValueError for an unknown layer name.
        """
        self.config._check_layer(layer)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if layer == f"conv{i + 1}":
                return x
        return self._head(x, layer)


def mean_std_images(images: Any, floor: float = _STD_FLOOR, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard-deviation image of a set of faces (section 2.1.2: of FER+TFD).

    ``images``: ``(N, H, W)`` uint8 (numpy or tensor). Returns ``(mean, std)``, each ``(H, W)`` float32;
    ``std`` is floored at ``floor`` (grey levels) so constant pixels do not blow up. Accumulated in float64.
    """
    t = _image_tensor(images)
    if len(t) == 0:
        raise ValueError("mean_std_images needs at least one image")
    s1 = torch.zeros(t.shape[1:], dtype=torch.float64, device=t.device)
    s2 = torch.zeros_like(s1)
    for i in range(0, len(t), batch_size):
        b = t[i:i + batch_size].to(torch.float64)
        s1 += b.sum(0)
        s2 += (b * b).sum(0)
    n = len(t)
    mean = s1 / n
    var = (s2 / n - mean * mean).clamp_min(0.0)
    std = var.sqrt().clamp_min(floor)
    return mean.float().cpu().numpy(), std.float().cpu().numpy()


def set_normalisation(model: FrameCNN, images: Any, floor: float = _STD_FLOOR) -> FrameCNN:
    """Set ``model``'s ``mean_image``/``std_image`` buffers from ``images`` (:func:`mean_std_images`); returns it."""
    mean, std = mean_std_images(images, floor=floor)
    with torch.no_grad():
        model.mean_image.copy_(torch.from_numpy(mean))
        model.std_image.copy_(torch.from_numpy(std))
    return model


# ---- augmentation (section 2.1.3) ---------------------------------------------------------------

def _crop_index(oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor, width: int, crop: int) -> torch.Tensor:
    """Flat pixel indices ``(B, crop*crop)`` into ``(H*W)`` images of crops at ``(oy, ox)``, mirrored where ``flip``."""
    ar = torch.arange(crop, device=oy.device)
    rows = oy[:, None] + ar  # (B, c)
    cols = torch.where(flip[:, None], ox[:, None] + (crop - 1 - ar), ox[:, None] + ar)  # (B, c)
    return (rows[:, :, None] * width + cols[:, None, :]).reshape(len(oy), crop * crop)


def _draw_crops(n: int, height: int, width: int, crop: int, generator: torch.Generator | None,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crop offsets (uniform over all valid ones) and flips (p = 0.5) for ``n`` samples, on ``device``."""
    oy = torch.randint(0, height - crop + 1, (n,), generator=generator, device=device)
    ox = torch.randint(0, width - crop + 1, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    return oy, ox, flip


def _draw_affine(n: int, rotate: float, scale: float, generator: torch.Generator | None,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample rotation angles (radians, uniform in +-``rotate`` degrees) and zoom factors (uniform in
    ``1 +- scale``) for ``n`` samples; both drawn (in this order) from ``generator`` on ``device``."""
    angle = (torch.rand(n, generator=generator, device=device) * 2 - 1) * math.radians(rotate)
    zoom = 1 + (torch.rand(n, generator=generator, device=device) * 2 - 1) * scale
    return angle, zoom


def affine_crops(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor, angle: torch.Tensor,
                 zoom: torch.Tensor, crop: int) -> torch.Tensor:
    """``crop x crop`` windows of ``x`` ``(B, 1, H, W)`` at offsets ``(oy, ox)``, mirrored where ``flip``,
    rotated by ``angle`` (radians) and zoomed by ``zoom`` (> 1 sees more of the face) about the window's
    centre: one ``affine_grid`` + bilinear ``grid_sample`` for the batch, outside the image -> 0 (the mean
    face, on normalised input). With ``angle`` 0 and ``zoom`` 1 it equals the plain crop (:func:`augment`).
    Returns ``(B, 1, crop, crop)``."""
    b, _, h, w = x.shape
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    sx = torch.where(flip, -1.0, 1.0).to(cos.dtype) * (crop / w)
    sy = torch.full_like(cos, crop / h)
    theta = torch.stack([
        torch.stack([cos * sx, -sin * sy, (2 * ox + crop).to(cos.dtype) / w - 1], 1),
        torch.stack([sin * sx, cos * sy, (2 * oy + crop).to(cos.dtype) / h - 1], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), [b, 1, crop, crop], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment(x: torch.Tensor, crop: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Section 2.1.3 augmentation of a normalised batch: per-sample random crop and horizontal flip (p = 0.5).

    ``x``: ``(N, 1, H, W)`` float (or ``(N, H, W)``) on any device; ``generator``: a ``torch.Generator`` on
    the same device (None: the global RNG). Returns ``(N, 1, crop, crop)``. Crop offsets are uniform over all
    ``(H - crop + 1) * (W - crop + 1)`` valid positions; one vectorised gather, no loop over samples.
    """
    if x.ndim == 3:
        x = x[:, None]
    n, _, h, w = x.shape
    if crop > min(h, w):
        raise ValueError(f"crop {crop} larger than the images ({h}x{w})")
    oy, ox, flip = _draw_crops(n, h, w, crop, generator, x.device)
    idx = _crop_index(oy, ox, flip, w, crop)
    return torch.gather(x.reshape(n, h * w), 1, idx).view(n, 1, crop, crop)


def centre_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """Centre ``crop x crop`` window of ``x`` ``(N, 1, H, W)`` or ``(N, H, W)`` (offset ``(H - crop) // 2``); a view."""
    h, w = x.shape[-2:]
    if crop > min(h, w):
        raise ValueError(f"crop {crop} larger than the images ({h}x{w})")
    oy, ox = (h - crop) // 2, (w - crop) // 2
    return x[..., oy:oy + crop, ox:ox + crop]


# ---- device helpers -----------------------------------------------------------------------------

def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _prepare_device(model: FrameCNN, device: torch.device, channels_last: bool | None) -> None:
    """Move ``model`` to ``device`` (in place); cuDNN autotuning on CUDA; channels_last unless ``False``
    (faster on CUDA, and on CPU too: cnn9x9 on 2 cores trains 18 % and infers 37 % faster with it)."""
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if channels_last is None or channels_last:
        model.to(memory_format=torch.channels_last)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _labels_tensor(labels: Any, n: int, what: str) -> torch.Tensor:
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.from_numpy(np.asarray(labels))
    y = y.reshape(-1).to(torch.int64)
    if len(y) != n:
        raise ValueError(f"{what}: {n} images but {len(y)} labels")
    return y


def _to_device_images(images: Any, device: torch.device, size: int, what: str) -> torch.Tensor:
    t = _image_tensor(images)
    if tuple(t.shape[1:]) != (size, size):
        raise ValueError(f"{what}: images must be {size}x{size}; got {tuple(t.shape[1:])}")
    return t.to(device, non_blocking=True)


def _normalised_crops(model: FrameCNN, xb: torch.Tensor, crop: int) -> torch.Tensor:
    """Centre crops of raw pixels ``xb`` ``(B, H, W)`` (on the model's device), normalised: ``(B, 1, c, c)``."""
    mean = centre_crop(model.mean_image, crop)
    std = centre_crop(model.std_image, crop)
    return ((centre_crop(xb, crop).float() - mean) / std).unsqueeze(1)


# ---- training -----------------------------------------------------------------------------------

@dataclass
class CnnHistory(EpochCurves):
    """Learning curves of :func:`train_cnn`.

    ``epochs``: one dict per epoch with ``epoch`` (1-based), ``train_loss``, ``train_acc`` (on the
    augmented training batches, in training mode), ``{monitor}_acc`` and ``{monitor}_loss`` for every
    monitor, ``lr`` (learning rate of the epoch's first step), ``seconds`` (training time of the epoch,
    without monitor evaluation) and ``eval_seconds``. ``best_epoch``: the epoch whose weights the model
    holds at the end (best ``select_on`` accuracy, ties -> earliest; last epoch if ``select_on`` is None).
    ``images_per_second``: training throughput over the run (monitor evaluation excluded).
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    select_on: str | None = None
    images_per_second: float = float("nan")
    stopped_early: bool = False
    device: str = ""
    #: ``{monitor: (best epoch, CPU state_dict)}`` for the monitors passed as ``train_cnn(snapshots=...)``
    #: (not part of :meth:`to_dict`).
    snapshots: dict[str, tuple[int, dict[str, torch.Tensor]]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (python floats/ints/strings only; safe for ``torch.load(weights_only=True)``)."""
        return {"epochs": [dict(e) for e in self.epochs], "best_epoch": int(self.best_epoch),
                "select_on": self.select_on, "images_per_second": float(self.images_per_second),
                "stopped_early": bool(self.stopped_early), "device": str(self.device)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CnnHistory:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: d[k] for k in ("epochs", "best_epoch", "select_on", "images_per_second",
                                         "stopped_early", "device") if k in d})


def _normalise_all(model: FrameCNN, x: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Raw pixels ``(N, H, W)`` on the device -> normalised float32 ``(N, H*W)`` (chunked, no float64 temporaries)."""
    out = torch.empty((len(x), x.shape[1] * x.shape[2]), dtype=torch.float32, device=x.device)
    mean = model.mean_image.reshape(-1)
    std = model.std_image.reshape(-1)
    for i in range(0, len(x), chunk):
        torch.div(x[i:i + chunk].reshape(-1, out.shape[1]).float() - mean, std, out=out[i:i + chunk])
    return out


def _evaluate(model: FrameCNN, x: torch.Tensor, y: torch.Tensor, batch_size: int, amp: bool,
              channels_last: bool) -> tuple[float, float]:
    """Centre-crop accuracy and mean cross-entropy of raw images ``x`` ``(M, H, W)`` against ``y`` (-1 ignored)."""
    device = x.device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    crop = model.config.crop
    with _eval_mode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = _normalised_crops(model, x[i:i + batch_size], crop)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = y[i:i + batch_size]
            with _autocast(device, amp):
                logits = model(xb)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, yb, ignore_index=UNKNOWN_LABEL, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
    n = int((y != UNKNOWN_LABEL).sum().item())
    if n == 0:
        return float("nan"), float("nan")
    return correct.item() / n, loss_sum.item() / n


def _make_optimizer(model: nn.Module, optimizer: str, lr: float, weight_decay: float,
                    device: torch.device) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = {"fused": True} if device.type == "cuda" else {}
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, **fused)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, **fused)
    raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {optimizer!r}")


#: Learning-rate schedules of :func:`train_cnn` (per step): ``cosine`` from ``lr`` to 0; ``onecycle`` warms up
#: from ``lr / 25`` to ``lr`` over the first 30 % of the steps, then anneals (cosine) to ``lr / 25e4``, with
#: momentum (SGD) or Adam's beta1 cycled inversely between 0.85 and 0.95 (Smith & Topin 2019,
#: ``torch.optim.lr_scheduler.OneCycleLR``'s defaults); ``none`` keeps ``lr``.
SCHEDULES: tuple[str, ...] = ("cosine", "onecycle", "none")


def _make_schedule(opt: torch.optim.Optimizer, schedule: str, lr: float,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / total_steps)))
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps)
    return None


def train_cnn(model: FrameCNN, images: Any, labels: Any, *,
              monitors: Mapping[str, tuple[Any, Any]] | None = None, select_on: str | None = None,
              epochs: int = 10, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
              optimizer: str = "adam", schedule: str = "cosine", seed: int = 0, device: Any = "cpu",
              patience: int | None = None, progress: bool = True, log: Callable[[str], None] | None = None,
              amp: bool = False, channels_last: bool | None = None, eval_batch_size: int | None = None,
              snapshots: Sequence[str] = (), rotate: float = 0.0, scale: float = 0.0,
              label_smoothing: float = 0.0) -> CnnHistory:
    """Train ``model`` on static faces (section 2.1.3) with flip/crop augmentation; early stopping on monitors.

    ``images``: ``(N, H, W)`` (or ``(N, 1, H, W)``) uint8 faces (numpy or tensor), H = W = image_size;
    ``labels``: ``(N,)`` ints in 0..6. Both are moved to ``device`` once and the images normalised once
    with the model's mean/std images into a float32 tensor (N * H * W * 4 bytes: 330 MB for FER2013) --
    no CPU data loader. Every epoch: a ``torch.randperm`` shuffle and per-sample random crop + flip
    (:func:`augment`'s draws) from a generator seeded with ``seed`` on the device. ``rotate`` (degrees) and
    ``scale`` (relative) add a random rotation in +-``rotate`` and zoom in ``1 +- scale`` about each crop's
    centre (:func:`affine_crops`; not in the paper); both 0 keeps the paper's crop + flip exactly.
    ``label_smoothing``: of the training cross-entropy (monitors are scored without it).

    ``monitors``: ``{name: (images (M, H, W) uint8, labels (M,))}``; each is evaluated after every epoch
    (centre crop, eval mode): ``{name}_acc`` and ``{name}_loss``; labels -1 are ignored (so frame copies of
    clip labels work, section 2.1.3's early stopping on AFEW-faces). ``select_on``: the monitor whose
    accuracy picks the best epoch (ties -> earliest); its weights (a CPU copy) are restored at the end.
    None -> the last epoch's weights. ``patience``: stop after that many epochs without improvement of
    ``select_on`` (requires ``select_on``). ``snapshots``: more monitors whose best-epoch weights are also
    kept (CPU copies, ties -> earliest) in ``history.snapshots``: several early-stopping criteria judged on
    one training run.

    ``device``: ``"cpu"``, ``"cuda"``, ``"auto"`` (:func:`~emotiw_utils.device.resolve_device`), a torch
    device, or None (the model's device). ``optimizer``: ``"adam"`` or ``"sgd"`` (momentum 0.9, Nesterov);
    ``weight_decay`` applies to weights, not to biases/BatchNorm. ``schedule``: one of :data:`SCHEDULES`
    (per step; ``onecycle`` peaks at ``lr``). ``amp``: bf16 autocast. ``channels_last``: None -> on
    (channels_last memory format; ``False`` keeps the default layout). ``eval_batch_size``: monitor batches (None -> 4096 on CUDA, 256 on CPU). On CUDA, sets
    ``torch.backends.cudnn.benchmark = True`` and uses fused optimisers. The model is moved to ``device``
    (in place) and left in eval mode after training (ready for extraction).

    Deterministic on CPU for a given ``seed`` and model initialisation (construct the model with
    ``FrameCNN(..., seed=s)``); the global torch RNG (dropout) is forked and seeded with ``seed``, so the
    caller's RNG state is untouched. ``progress``: a tqdm bar over all steps; ``log``: called with a
    one-line summary after every epoch. Returns the :class:`CnnHistory`.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if not 0 <= rotate < 180:
        raise ValueError(f"rotate must be in [0, 180) degrees; got {rotate}")
    if not 0 <= scale < 1:
        raise ValueError(f"scale must be in [0, 1); got {scale}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
    affine = rotate > 0 or scale > 0
    monitors = dict(monitors or {})
    if select_on is not None and select_on not in monitors:
        raise ValueError(f"select_on={select_on!r} is not a monitor; monitors: {', '.join(monitors) or 'none'}")
    if patience is not None and select_on is None:
        raise ValueError("patience needs select_on (the monitor whose accuracy must improve)")
    dev = torch_device(device, model)
    eval_batch_size = _batch_size(eval_batch_size, dev)
    cfg = model.config
    size, crop = cfg.image_size, cfg.crop

    _prepare_device(model, dev, channels_last)
    cl = channels_last is None or bool(channels_last)
    x_u8 = _to_device_images(images, dev, size, "training set")
    n = len(x_u8)
    if n == 0:
        raise ValueError("training set is empty")
    y_all = _labels_tensor(labels, n, "training set")
    if y_all.min() < 0 or y_all.max() >= cfg.n_classes:
        raise ValueError(f"training labels must be in 0..{cfg.n_classes - 1}; "
                         f"got {int(y_all.min())}..{int(y_all.max())}")
    y_all = y_all.to(dev)
    x_flat = _normalise_all(model, x_u8)  # (N, H*W) float32
    del x_u8
    mons = {}
    for name, (mx, my) in monitors.items():
        mxt = _to_device_images(mx, dev, size, f"monitor {name!r}")
        myt = _labels_tensor(my, len(mxt), f"monitor {name!r}").to(dev)
        mons[name] = (mxt, myt)
    if select_on is not None and not bool((mons[select_on][1] != UNKNOWN_LABEL).any()):
        raise ValueError(f"monitor {select_on!r} has no labelled sample (all labels are {UNKNOWN_LABEL})")

    opt = _make_optimizer(model, optimizer, lr, weight_decay, dev)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    sched = _make_schedule(opt, schedule, lr, total_steps)
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    hw = size * size
    unknown = [m for m in snapshots if m not in monitors]
    if unknown:
        raise ValueError(f"snapshots {unknown} are not monitors; monitors: {', '.join(monitors) or 'none'}")
    history = CnnHistory(select_on=select_on, device=str(dev))
    # The selected epoch's weights and each snapshot monitor's best, kept as CPU copies (ties -> earliest).
    best = BestWeights(select_on is not None, on_cpu=True)
    snaps = {m: BestWeights(on_cpu=True) for m in snapshots}
    since_best = 0
    train_images, train_seconds = 0, 0.0

    from tqdm import tqdm

    bar = tqdm(total=total_steps, disable=not progress, unit="batch", leave=True, dynamic_ncols=True)
    fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(int(seed))
            for epoch in range(1, epochs + 1):
                bar.set_description(f"epoch {epoch}/{epochs}")
                model.train()
                epoch_lr = opt.param_groups[0]["lr"]
                t0 = time.perf_counter()
                perm = torch.randperm(n, generator=gen, device=dev)
                oy, ox, flip = _draw_crops(n, size, size, crop, gen, dev)
                if affine:
                    angle, zoom = _draw_affine(n, rotate, scale, gen, dev)
                loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
                correct = torch.zeros((), dtype=torch.int64, device=dev)
                for i in range(0, n, batch_size):
                    sl = slice(i, i + batch_size)
                    bidx = perm[sl]
                    b = len(bidx)
                    if affine:
                        xb = affine_crops(x_flat[bidx].view(b, 1, size, size), oy[sl], ox[sl], flip[sl],
                                          angle[sl], zoom[sl], crop)
                    else:
                        idx = _crop_index(oy[sl], ox[sl], flip[sl], size, crop) + (bidx * hw)[:, None]
                        xb = x_flat.view(-1)[idx].view(b, 1, crop, crop)
                    if cl:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    yb = y_all[bidx]
                    with _autocast(dev, amp):
                        logits = model(xb)
                        loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    loss_sum += loss.detach() * b
                    correct += (logits.detach().argmax(1) == yb).sum()
                    bar.update(1)
                rec: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum.item() / n,
                                       "train_acc": correct.item() / n}
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                seconds = time.perf_counter() - t0
                train_images += n
                train_seconds += seconds
                t1 = time.perf_counter()
                for name, (mx, my) in mons.items():
                    acc, mloss = _evaluate(model, mx, my, eval_batch_size, amp, cl)
                    rec[f"{name}_acc"] = acc
                    rec[f"{name}_loss"] = mloss
                rec.update(lr=float(epoch_lr), seconds=seconds, eval_seconds=time.perf_counter() - t1)
                history.epochs.append(rec)

                for name, keeper in snaps.items():
                    keeper.update(model, epoch, rec[f"{name}_acc"])
                improved = select_on is not None and best.update(model, epoch, rec[f"{select_on}_acc"])
                since_best = 0 if improved else since_best + 1
                summary = f"epoch {epoch}/{epochs} " + " ".join(
                    f"{k}={v:.4g}" for k, v in rec.items() if k not in ("epoch", "eval_seconds"))
                bar.set_postfix_str(" ".join(f"{k}={rec[k]:.3f}" for k in rec
                                             if k.endswith("_acc") or k == "train_loss"), refresh=False)
                if log is not None:
                    log(summary + (" *" if improved else ""))
                if patience is not None and since_best >= patience and epoch < epochs:
                    history.stopped_early = True
                    break
    finally:
        bar.close()

    # The selected epoch's weights back into the model (the last epoch without select_on, or if select_on
    # never improved on -inf, which cannot happen with labelled monitors).
    history.best_epoch = best.finish(model, len(history.epochs))
    history.snapshots = {name: (keeper.epoch, keeper.state) for name, keeper in snaps.items()
                         if keeper.state is not None}
    history.images_per_second = train_images / train_seconds if train_seconds > 0 else float("nan")
    model.eval()
    return history


# ---- inference ----------------------------------------------------------------------------------

def _batch_size(batch_size: int | None, dev: torch.device) -> int:
    if batch_size is None:
        return INFERENCE_BATCH.get(dev.type, INFERENCE_BATCH["cpu"])
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    return int(batch_size)


def _iter_outputs(model: FrameCNN, images: Any, layer: str, batch_size: int | None, device: Any, flatten: bool,
                  amp: bool, flip_average: bool) -> Iterator[torch.Tensor]:
    """Shared batch loop of the inference functions (centre crop, eval mode, no grad, data moved once)."""
    model.config._check_layer(layer)
    dev = torch_device(device, model)
    batch_size = _batch_size(batch_size, dev)
    _prepare_device(model, dev, None)
    cl = True
    x = _to_device_images(images, dev, model.config.image_size, "images")
    crop = model.config.crop
    with _eval_mode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = _normalised_crops(model, x[i:i + batch_size], crop)
            if flip_average:
                xb = torch.cat([xb, xb.flip(-1)])
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, amp):
                a = model.forward_features(xb, layer)
            a = a.float()
            if flip_average:
                half = len(a) // 2
                a = (a[:half] + a[half:]) / 2
            yield a.reshape(len(a), -1) if flatten else a.contiguous()


def iter_layer_activations(model: FrameCNN, images: Any, layer: str = "conv2", batch_size: int | None = None,
                           device: Any = None, flatten: bool = True, amp: bool = False) -> Iterator[torch.Tensor]:
    """Yield ``layer``'s activations of consecutive batches of ``images``, on the device, without gradients.

    ``images``: ``(N, H, W)`` (or ``(N, 1, H, W)``) uint8 faces (numpy or tensor), moved to the device once;
    each batch is centre cropped and normalised on the device and run in eval mode (the previous mode is
    restored when the generator finishes). Yields ``(B, D)`` float32 (``flatten``; channel-major order,
    ``D = model.feature_dim(layer)``) or ``(B, C, H', W')`` for conv layers. ``device``: None -> the
    model's device, else the model is moved there (in place). ``amp``: bf16 autocast (outputs float32).
    Use it to stream features of many frames (section 2.2) without holding them all. ``batch_size``: None ->
    :data:`INFERENCE_BATCH` of the device type (4096 on CUDA, 256 on CPU).
    """
    yield from _iter_outputs(model, images, layer, batch_size, device, flatten, amp, flip_average=False)


def layer_activations(model: FrameCNN, images: Any, layer: str = "conv2", batch_size: int | None = None,
                      device: Any = None, flatten: bool = True, amp: bool = False) -> torch.Tensor:
    """Activations of ``layer`` for all ``images``, as one float32 tensor on the device (section 2.2 input).

    ``images``: ``(N, H, W)`` uint8 faces; returns ``(N, D)`` with ``D = model.feature_dim(layer)`` if
    ``flatten`` (``cnn9x9``, crop 42, ``"conv2"``: D = 3200 = 32 x 10 x 10, channel-major order), else
    ``(N, C, H', W')``. Centre crop, eval mode (previous mode restored), no gradients; the output is
    preallocated and filled batch by batch (see :func:`iter_layer_activations`).
    """
    dev = torch_device(device, model)
    shape = model.feature_shape(layer)
    n = len(_image_tensor(images))
    out = torch.empty((n, int(np.prod(shape))) if flatten else (n, *shape), dtype=torch.float32, device=dev)
    i = 0
    for a in _iter_outputs(model, images, layer, batch_size, dev, flatten, amp, flip_average=False):
        out[i:i + len(a)] = a
        i += len(a)
    return out


def predict_logits(model: FrameCNN, images: Any, batch_size: int | None = None, device: Any = None,
                   flip_average: bool = False, amp: bool = False) -> np.ndarray:
    """Pre-softmax outputs ``(N, n_classes)`` float32 (numpy) of ``images`` ``(N, H, W)`` uint8, centre crop.

    ``flip_average``: average the logits of each crop and its horizontal mirror (one pass, batches of
    ``2 * batch_size``). Eval mode (previous mode restored), no gradients; ``device``: None -> the model's
    device (else the model is moved there, in place); ``amp``: bf16 autocast.
    """
    dev = torch_device(device, model)
    n = len(_image_tensor(images))
    out = torch.empty((n, model.config.n_classes), dtype=torch.float32, device=dev)
    i = 0
    for a in _iter_outputs(model, images, "logits", batch_size, dev, True, amp, flip_average):
        out[i:i + len(a)] = a
        i += len(a)
    return out.cpu().numpy()


# ---- persistence --------------------------------------------------------------------------------

@dataclass
class CnnCheckpoint:
    """Everything :func:`save_cnn` wrote: the model, its learning curves (or None) and the ``extra`` dict."""

    model: FrameCNN
    history: CnnHistory | None
    extra: dict[str, Any] | None


def save_cnn(path: str | Path, model: FrameCNN, history: CnnHistory | None = None,
             extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``{"format", "version", "config", "state_dict", "history", "extra"}`` to ``path`` atomically.

    The state dict (weights and the ``mean_image``/``std_image`` buffers) is stored as contiguous CPU
    tensors, ``history`` as a plain dict; ``extra`` must hold plain python values / tensors only so that
    :func:`load_cnn` can read it with ``torch.load(weights_only=True)``.
    """
    return write_model(path, CHECKPOINT_FORMAT, _CHECKPOINT_VERSION, model, model.config.to_dict(), history=history,
                       extra=extra)


def load_checkpoint(path: str | Path, device: Any = "cpu") -> CnnCheckpoint:
    """Read a :func:`save_cnn` file: model (eval mode, on ``device``), history and extra.

    FileNotFoundError if ``path`` does not exist; :class:`~emotiw_utils.errors.DataFormatError` if it is not
    a CNN checkpoint of this project.
    """
    ck = read_model(path, CHECKPOINT_FORMAT, _CHECKPOINT_VERSION, "CNN checkpoint",
                    lambda config: FrameCNN(CnnConfig.from_dict(config)), device=device, history=CnnHistory.from_dict)
    return CnnCheckpoint(model=ck.model, history=ck.history, extra=ck.extra)


def load_cnn(path: str | Path, device: Any = "cpu") -> FrameCNN:
    """The :class:`FrameCNN` of a :func:`save_cnn` file, in eval mode on ``device`` (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, device).model
