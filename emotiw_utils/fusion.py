"""Feature-level fusion network of Kahou et al. 2015, sections 5.1 and 6.2.

What is implemented
-------------------
* :class:`FusionNet`: one fully connected layer per modality, their outputs concatenated, one common
  layer, a softmax read-out (paper section 5.1). Default sizes are the paper's (:data:`MODALITY_UNITS`,
  :data:`COMMON_UNITS`):

  - ``"kavg"``: the 105-d aggregated-CNN vector (section 2.1) -> 100 units;
  - ``"audio"``: the 10 PCA-whitened audio components (section 4) -> 10 units;
  - ``"rnn"``: the 200-d last hidden state of the IRNN (section 2.2) -> 50 units;

  so the common layer sees 160 inputs and has 70 units, followed by ``Linear(70, 7)``. The activation is
  one of :data:`ACTIVATIONS` (``"recttanh"`` is ``max(0, tanh(x))``, :class:`RectTanh`), optionally with
  dropout after each hidden layer.
* :func:`fusion_penalty`: the "regularized feature fusion" of Wu et al. 2015 (arXiv 1504.01561), adapted
  to Kahou's architecture (see below). :func:`unit_sharing` and
  :func:`first_layer_sparsity` are the diagnostics of what it did.
* :func:`train_fusion`: SGD with momentum, cross-entropy + penalty, gradient-norm clipping, best-epoch
  selection on a selection split (or ``fixed_epochs``), with the same semantics as
  :func:`emotiw_utils.irnn.train_sequence_model`. :data:`REGIMES` holds the two settings of section 6.2:
  ``"original"`` (SGD, lr 0.1, clipping at 10) and ``"stable"`` (lr 0.001, momentum 0.9, clipping at 10),
  the latter being the paper's fix for the instability of the former.
* :class:`FeatureScaler` (per-modality standardisation), :func:`predict_proba`, :func:`save_fusion` /
  :func:`load_fusion`.

Where the regulariser sits, and why
-----------------------------------
Wu et al. put their two norms on the weights of the first *fused* layer, whose units see the
concatenation of all feature types: an l2,1 norm over the rows (one row = one hidden unit, its l2 norm
taken across the inputs of all feature types) makes every unit either vanish or -- because an l2 norm
inside a row does not favour zeros -- draw on all feature types at once, i.e. the surviving units are
*shared* across modalities; an l1 norm on the same weights lets individual input features keep (or lose)
their own discriminative weights. Kahou's network has no such layer at its input: its first layer is
modality-specific (block diagonal), so no first-layer unit sees two modalities and a row norm there would
only prune units within one modality. The modalities first meet in the common layer, so

    penalty = group * sum_p ||W_common[p, :]||_2  +  l1 * sum_m ||W_m||_1

where ``W_common`` is the ``(70, 160)`` weight of ``common_layer`` (row ``p`` = common unit ``p``, its
columns the concatenated modality units, see :attr:`FusionNet.groups`) and ``W_m`` the ``(units_m, D_m)``
weight of modality ``m``'s first layer: the sharing (l2,1) term acts where sharing can happen, the l1
term acts on the first layer as the paper states, so that each modality keeps only its discriminative
inputs. Biases are not penalised. With plain (sub)gradient SGD the penalised weights do not become exactly
zero: a pruned row hovers at a norm of about ``lr * group``, which is what ``tol`` in the diagnostics is for.

Deviations and choices the paper leaves open
--------------------------------------------
* The penalty weights (``group``, ``l1``), the dropout rate and the number of epochs are not reported;
  the defaults here are small values, to be chosen on the validation split.
* Inputs are standardised per modality (:class:`FeatureScaler`), which the paper does not mention.
* Initialisation: PyTorch's default ``nn.Linear`` init, drawn under a private RNG seeded with ``seed``.
* ``train_loss`` (cross-entropy only), ``penalty`` and ``train_acc`` are running averages over the epoch's
  training batches, computed before each update in training mode (with dropout, if any).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emotiw_utils import artifacts, metrics, stages
from emotiw_utils.checkpoints import read_model, write_model
from emotiw_utils.device import torch_device
from emotiw_utils.history import BestWeights, EpochCurves, report_epoch

__all__ = ["ACTIVATIONS", "COMMON_UNITS", "MAIN_REGIME", "MODALITY_UNITS", "REGIMES", "FeatureScaler",
           "FusionCheckpoint", "FusionHistory", "FusionInputs", "FusionNet", "FusionRun", "FusionSettings", "RectTanh",
           "feature_stages", "first_layer_sparsity", "fusion_penalty", "load_fusion", "load_regime",
           "make_activation", "predict_clips", "predict_proba", "read_features", "reapply", "regime_parameters",
           "save_fusion", "save_regime", "train_fusion", "train_regimes", "train_run", "unit_sharing"]

#: Hidden units of each modality's first layer (section 5.1): 105-d kavg -> 100, 10-d audio -> 10,
#: 200-d IRNN state -> 50.
MODALITY_UNITS: dict[str, int] = {"rnn": 50, "kavg": 100, "audio": 10}
#: Units of the common layer where the modalities meet (section 5.1).
COMMON_UNITS = 70
ACTIVATIONS: tuple[str, ...] = ("sigmoid", "relu", "recttanh")
#: Optimiser settings of section 6.2: the original SGD (lr 0.1, gradient clipping at 10) and the
#: stabilised one (lr 0.001 with momentum 0.9; clipping kept at 10).
REGIMES: dict[str, dict[str, float]] = {"original": dict(lr=0.1, momentum=0.0, clip=10.0),
                                        "stable": dict(lr=0.001, momentum=0.9, clip=10.0)}
N_CLASSES = 7


def regime_parameters(name: str) -> dict[str, float]:
    """The ``lr``/``momentum``/``clip`` of regime ``name`` (a copy), for ``train_fusion(..., **params)``."""
    if name not in REGIMES:
        raise ValueError(f"unknown regime {name!r}; expected one of {', '.join(REGIMES)}")
    return dict(REGIMES[name])


# ----------------------------------------------------------------------------- model


class RectTanh(nn.Module):
    """``max(0, tanh(x))``, elementwise (the "rectified tanh" of section 5.1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.tanh(x), min=0.0)


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` in :data:`ACTIVATIONS`."""
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "relu":
        return nn.ReLU()
    if name == "recttanh":
        return RectTanh()
    raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")


def _default_units(name: str, dim: int) -> int:
    return MODALITY_UNITS.get(name, min(100, int(dim)))


class FusionNet(nn.Module):
    """Feature-level fusion network (Kahou et al. 2015, section 5.1).

    ``input_dims``: modality name -> ``D_m`` (feature size); its order is the order of the modality
    blocks in the concatenation. ``units``: modality name -> hidden units of its first layer (missing
    names: :data:`MODALITY_UNITS`, or ``min(100, D_m)`` for other names). ``common``: units of the common
    layer (70). ``activation``: one of :data:`ACTIVATIONS`, used after every hidden layer; ``dropout``:
    rate of the dropout after every hidden layer (0: none). ``seed``: the parameters are drawn under a
    private RNG seeded with it (the global RNG state is left untouched).

    Layers: ``modality_layers[m]`` = ``Linear(D_m, units_m)`` + activation (+ dropout); concatenation
    ``(N, sum units)``; ``common_layer`` = ``Linear(sum units, common)`` + activation (+ dropout);
    ``output`` = ``Linear(common, n_classes)``.
    """

    def __init__(self, input_dims: Mapping[str, int], units: Mapping[str, int] | None = None,
                 common: int = COMMON_UNITS, activation: str = "sigmoid", dropout: float = 0.0,
                 n_classes: int = N_CLASSES, seed: int = 0) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError("input_dims is empty: need at least one modality")
        for m in input_dims:
            if not isinstance(m, str) or not m or "." in m:
                raise ValueError(f"modality names must be non-empty strings without '.', got {m!r}")
        units = dict(units or {})
        extra = sorted(set(units) - set(input_dims))
        if extra:
            raise ValueError(f"units given for unknown modalities {extra}; input_dims has {list(input_dims)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.input_dims = {m: int(d) for m, d in input_dims.items()}
        self.units = {m: int(units.get(m, _default_units(m, d))) for m, d in self.input_dims.items()}
        bad = {m: v for m, v in {**self.input_dims, **self.units}.items() if v < 1}
        if bad or int(common) < 1 or int(n_classes) < 2:
            raise ValueError(f"need input dims and units >= 1, common >= 1, n_classes >= 2; got "
                             f"input_dims={self.input_dims}, units={self.units}, common={common}, "
                             f"n_classes={n_classes}")
        self.common, self.activation, self.dropout = int(common), activation, float(dropout)
        self.n_classes, self.seed = int(n_classes), int(seed)

        def block(layer: nn.Linear) -> nn.Sequential:
            mods: list[nn.Module] = [layer, make_activation(activation)]
            if self.dropout > 0:
                mods.append(nn.Dropout(self.dropout))
            return nn.Sequential(*mods)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.modality_layers = nn.ModuleDict(
                {m: block(nn.Linear(d, self.units[m])) for m, d in self.input_dims.items()})
            self.common_layer = block(nn.Linear(sum(self.units.values()), self.common))
            self.output = nn.Linear(self.common, self.n_classes)

    @property
    def modalities(self) -> list[str]:
        """Modality names, in concatenation order."""
        return list(self.input_dims)

    @property
    def groups(self) -> dict[str, tuple[int, int]]:
        """Modality -> ``(start, stop)``: its columns in the concatenation (= in ``common_layer``'s weight)."""
        out, start = {}, 0
        for m, u in self.units.items():
            out[m] = (start, start + u)
            start += u
        return out

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (to rebuild the model)."""
        return {"input_dims": dict(self.input_dims), "units": dict(self.units), "common": self.common,
                "activation": self.activation, "dropout": self.dropout, "n_classes": self.n_classes,
                "seed": self.seed}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def first_weight(self, modality: str) -> torch.Tensor:
        """``(units_m, D_m)`` weight of ``modality``'s first layer."""
        return self.modality_layers[modality][0].weight

    @property
    def common_weight(self) -> torch.Tensor:
        """``(common, sum units)`` weight of the common layer."""
        return self.common_layer[0].weight

    def check_inputs(self, keys: Any, dims: Mapping[str, int] | None = None, what: str = "inputs") -> None:
        """ValueError naming the missing/extra modality, or one whose feature size differs from input_dims."""
        keys = set(keys)
        missing = [m for m in self.input_dims if m not in keys]
        extra = sorted(str(k) for k in keys - set(self.input_dims))
        if missing or extra:
            raise ValueError(f"{what}: missing modalities {missing}, unexpected modalities {extra}; "
                             f"the model expects {self.modalities}")
        for m, d in (dims or {}).items():
            if d != self.input_dims[m]:
                raise ValueError(f"{what}[{m!r}] has feature size {d}, the model expects {self.input_dims[m]}")

    def hidden(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{m: (N, D_m)}`` -> ``(N, common)``: the common layer's activations."""
        shapes = {m: tuple(x.shape) for m, x in inputs.items()}
        self.check_inputs(inputs.keys())
        for m, s in shapes.items():
            if len(s) != 2 or s[1] != self.input_dims[m]:
                raise ValueError(f"inputs[{m!r}] must be (N, {self.input_dims[m]}), got {s}")
        if len({s[0] for s in shapes.values()}) != 1:
            raise ValueError(f"inputs have differing numbers of rows: { {m: s[0] for m, s in shapes.items()} }")
        h = torch.cat([self.modality_layers[m](inputs[m]) for m in self.input_dims], dim=1)
        return self.common_layer(h)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{m: (N, D_m)}`` -> logits ``(N, n_classes)``."""
        return self.output(self.hidden(inputs))


# ----------------------------------------------------------------------------- regulariser


def fusion_penalty(model: FusionNet, group: float, l1: float) -> torch.Tensor:
    """``group * sum_p ||W_common[p, :]||_2 + l1 * sum_m ||W_m||_1`` (scalar; see the module docstring).

    ``W_common``: ``(common, sum units)``; ``W_m``: ``(units_m, D_m)``. Biases are not penalised.
    """
    zero = model.common_weight.new_zeros(())
    pen = zero
    if group:
        pen = pen + float(group) * torch.linalg.vector_norm(model.common_weight, ord=2, dim=1).sum()
    if l1:
        pen = pen + float(l1) * sum((model.first_weight(m).abs().sum() for m in model.modalities), zero)
    return pen


@torch.no_grad()
def unit_sharing(model: FusionNet, tol: float = 1e-3) -> dict[str, Any]:
    """How the common layer's units use the modalities (the l2,1 term's effect).

    Returns ``n_units`` (common units), ``n_zero`` (rows of ``W_common`` with l2 norm <= ``tol``),
    ``n_alive``, ``row_norms`` (list of the ``common`` row norms), ``shared`` (modality -> fraction of the
    surviving units whose weight block from that modality has l2 norm > ``tol``) and ``all_modalities``
    (fraction of surviving units fed by every modality). Fractions are NaN when no unit survives.
    """
    w = model.common_weight.detach().float().cpu()
    norms = torch.linalg.vector_norm(w, dim=1)
    alive = norms > tol
    n_alive = int(alive.sum())
    fed = {m: torch.linalg.vector_norm(w[:, a:b], dim=1) > tol for m, (a, b) in model.groups.items()}
    nan = float("nan")
    shared = {m: (int((f & alive).sum()) / n_alive if n_alive else nan) for m, f in fed.items()}
    all_fed = torch.stack(list(fed.values())).all(0) & alive
    return {"n_units": int(w.shape[0]), "n_zero": int(w.shape[0]) - n_alive, "n_alive": n_alive,
            "row_norms": [float(v) for v in norms], "shared": shared,
            "all_modalities": int(all_fed.sum()) / n_alive if n_alive else nan}


@torch.no_grad()
def first_layer_sparsity(model: FusionNet, tol: float = 1e-3) -> dict[str, float]:
    """Modality -> fraction of its first-layer weights with ``|w| <= tol`` (the l1 term's effect)."""
    return {m: float((model.first_weight(m).detach().abs() <= tol).float().mean()) for m in model.modalities}


# ----------------------------------------------------------------------------- data


@dataclass
class FeatureScaler:
    """Per-modality, per-dimension standardisation, fitted on the training features.

    ``mean[m]``/``std[m]`` are ``(D_m,)`` float32; ``std`` is floored at ``floor`` so that constant
    dimensions map to 0. Not in the paper (its three inputs -- CNN class averages, whitened audio
    components, IRNN hidden states -- have different scales, and one learning rate must serve all).
    """

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def fit(cls, features: Mapping[str, Any], floor: float = 1e-3) -> FeatureScaler:
        """``features``: modality -> ``(N, D_m)`` training array."""
        if not features:
            raise ValueError("features is empty: need at least one modality")
        mean, std = {}, {}
        for m, x in features.items():
            f = np.asarray(x, dtype=np.float64)
            if f.ndim != 2 or f.shape[0] < 1:
                raise ValueError(f"features[{m!r}] must be a non-empty (N, D) array, got shape {f.shape}")
            if not np.isfinite(f).all():
                raise ValueError(f"features[{m!r}] contains NaN or inf")
            mean[m] = f.mean(0).astype(np.float32)
            std[m] = np.maximum(f.std(0), floor).astype(np.float32)
        return cls(mean, std)

    @property
    def dims(self) -> dict[str, int]:
        return {m: len(v) for m, v in self.mean.items()}

    def __call__(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """modality -> ``(N, D_m)`` ==> modality -> ``(N, D_m)`` float32 ``(x - mean) / std``."""
        missing = [m for m in self.mean if m not in features]
        extra = sorted(str(m) for m in features if m not in self.mean)
        if missing or extra:
            raise ValueError(f"features: missing modalities {missing}, unexpected modalities {extra}; "
                             f"the scaler was fitted on {list(self.mean)}")
        out = {}
        for m in self.mean:
            f = np.asarray(features[m], dtype=np.float32)
            if f.ndim != 2 or f.shape[1] != len(self.mean[m]):
                raise ValueError(f"features[{m!r}] must be (N, {len(self.mean[m])}), got shape {f.shape}")
            if not np.isfinite(f).all():
                raise ValueError(f"features[{m!r}] contains NaN or inf")
            out[m] = (f - self.mean[m]) / self.std[m]
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (lists of floats)."""
        return {"mean": {m: [float(v) for v in a] for m, a in self.mean.items()},
                "std": {m: [float(v) for v in a] for m, a in self.std.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureScaler:
        """Inverse of :meth:`to_dict` (values may also be arrays or tensors)."""
        def arr(v: Any) -> np.ndarray:
            v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
            return np.asarray(v, dtype=np.float32).reshape(-1)

        mean = {m: arr(v) for m, v in d["mean"].items()}
        std = {m: arr(v) for m, v in d["std"].items()}
        if list(mean) != list(std) or any(len(mean[m]) != len(std[m]) for m in mean):
            raise ValueError("scaler mean and std disagree in modalities or sizes")
        return cls(mean, std)


def _tensors(model: FusionNet, features: Mapping[str, Any], device: torch.device,
             name: str = "features") -> tuple[dict[str, torch.Tensor], int]:
    """Validate ``features`` against the model and move them to ``device`` once, as float32 tensors."""
    model.check_inputs(features.keys(), what=name)
    out = {}
    for m in model.input_dims:
        x = features[m]
        t = x.detach().to("cpu", torch.float32) if isinstance(x, torch.Tensor) \
            else torch.as_tensor(np.asarray(x, dtype=np.float32))
        if t.dim() != 2 or t.shape[1] != model.input_dims[m]:
            raise ValueError(f"{name}[{m!r}] must be (N, {model.input_dims[m]}), got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}[{m!r}] contains NaN or inf")
        out[m] = t.to(device)
    rows = {m: int(t.shape[0]) for m, t in out.items()}
    if len(set(rows.values())) != 1:
        raise ValueError(f"{name} have differing numbers of rows {rows}")
    n = next(iter(rows.values()))
    if n == 0:
        raise ValueError(f"{name} are empty")
    return out, n


def _labels(labels: Any, n: int, n_classes: int, device: torch.device, name: str = "labels") -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries for {n} feature rows")
    if bool((y == -1).any()):
        raise ValueError(f"{name} contains {int((y == -1).sum())} unknown labels (-1); "
                         "training and selection need known labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes})")
    return y.to(device)


# ----------------------------------------------------------------------------- history


@dataclass
class FusionHistory(EpochCurves):
    """Learning curves of :func:`train_fusion`.

    ``epochs``: one dict per epoch with ``epoch`` (1-based), ``train_loss`` (cross-entropy only),
    ``penalty`` (:func:`fusion_penalty`), ``train_acc`` (running averages over the epoch's batches),
    ``val_loss``, ``val_acc`` (on the selection split after the epoch; NaN without one) and ``seconds``.
    ``best_epoch``: the epoch whose weights the model holds at the end (best ``val_acc``, ties -> earliest;
    the last epoch without a selection split or with ``fixed_epochs``). ``config``: the training settings.
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    config: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- training


@torch.no_grad()
def _evaluate(model: FusionNet, x: Mapping[str, torch.Tensor], y: torch.Tensor, n: int,
              batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        logits = model({m: t[sl] for m, t in x.items()})
        loss_sum += float(F.cross_entropy(logits, y[sl], reduction="sum"))
        correct += int((logits.argmax(1) == y[sl]).sum())
    model.train(was_training)
    return loss_sum / n, correct / n


def _rng_scope(dev: torch.device):
    """Fork the RNGs that dropout draws from on ``dev``, so training leaves the global state untouched."""
    if dev.type == "cuda":
        return torch.random.fork_rng(devices=[dev.index if dev.index is not None else torch.cuda.current_device()])
    return torch.random.fork_rng(devices=[])


def train_fusion(model: FusionNet, features: Mapping[str, Any], labels: Any, *,
                 select: tuple[Mapping[str, Any], Any] | None = None, epochs: int = 100, lr: float = 0.1,
                 momentum: float = 0.0, clip: float | None = 10.0, batch_size: int = 64, group: float = 1e-3,
                 l1: float = 1e-4, seed: int = 0, device: Any = "cpu", fixed_epochs: int | None = None,
                 progress: bool = False, log: Callable[[str], None] | None = None) -> FusionHistory:
    """Train ``model`` in place: SGD on cross-entropy + :func:`fusion_penalty` (sections 5.1, 6.2).

    ``features``: modality -> ``(N, D_m)`` (standardised, see :class:`FeatureScaler`); ``labels``: ``(N,)``
    ints in ``[0, n_classes)`` (``-1``, unknown, is an error). Data are moved to ``device`` once. Every
    epoch the order is reshuffled by a ``torch.Generator`` seeded with ``seed``; dropout masks come from
    a forked RNG seeded with ``seed`` too, so runs are deterministic on CPU and the global RNG is untouched.
    ``lr``/``momentum``/``clip``: see :data:`REGIMES` (``**regime_parameters("stable")``); ``clip`` is the
    max gradient L2 norm (``None`` disables). ``group``/``l1``: the penalty weights.

    ``select=(val_features, val_labels)``: evaluated after every epoch; the weights of the best ``val_acc``
    epoch (ties -> earliest) are restored at the end. ``fixed_epochs``: train exactly that many epochs
    (overrides ``epochs``) and keep the last weights (``select``, if given, is only monitored).
    ``progress``: print a line per epoch; ``log``: called with that line. Returns a :class:`FusionHistory`.
    """
    dev = torch_device(device, model)
    n_epochs = int(fixed_epochs if fixed_epochs is not None else epochs)
    if n_epochs < 1:
        raise ValueError(f"need at least one epoch, got {n_epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = int(batch_size)
    if group < 0 or l1 < 0:
        raise ValueError(f"penalty weights must be >= 0, got group={group}, l1={l1}")
    x, n = _tensors(model, features, dev, "features")
    y = _labels(labels, n, model.n_classes, dev)
    xv = yv = None
    nv = 0
    if select is not None:
        val_features, val_labels = select
        xv, nv = _tensors(model, val_features, dev, "select features")
        yv = _labels(val_labels, nv, model.n_classes, dev, "select labels")
    restore = xv is not None and fixed_epochs is None

    model.to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(int(seed))
    hist = FusionHistory(config={
        "epochs": n_epochs, "lr": float(lr), "momentum": float(momentum),
        "clip": None if clip is None else float(clip), "batch_size": batch_size, "group": float(group),
        "l1": float(l1), "seed": int(seed), "fixed_epochs": None if fixed_epochs is None else int(fixed_epochs),
        "model": model.config, "n_train": n, "n_select": nv})
    keeper = BestWeights(restore)
    with _rng_scope(dev):
        torch.manual_seed(int(seed))
        for epoch in range(1, n_epochs + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=gen).to(dev)
            loss_sum, pen_sum, correct = 0.0, 0.0, 0
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                yb = y[idx]
                logits = model({m: t[idx] for m, t in x.items()})
                ce = F.cross_entropy(logits, yb)
                pen = fusion_penalty(model, group, l1)
                opt.zero_grad(set_to_none=True)
                (ce + pen).backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                loss_sum += float(ce.detach()) * len(idx)
                pen_sum += float(pen.detach()) * len(idx)
                correct += int((logits.detach().argmax(1) == yb).sum())
            rec: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / n, "penalty": pen_sum / n,
                                   "train_acc": correct / n, "val_loss": float("nan"), "val_acc": float("nan")}
            if xv is not None:
                rec["val_loss"], rec["val_acc"] = _evaluate(model, xv, yv, nv, max(256, batch_size))
                keeper.update(model, epoch, rec["val_acc"])
            rec["seconds"] = time.perf_counter() - t0
            hist.epochs.append(rec)
            if progress or log is not None:
                report_epoch(f"epoch {epoch}/{n_epochs} loss {rec['train_loss']:.4f} pen {rec['penalty']:.4f} "
                             f"acc {rec['train_acc']:.3f} val_loss {rec['val_loss']:.4f} "
                             f"val_acc {rec['val_acc']:.3f} ({rec['seconds']:.2f}s)", progress, log)
    hist.best_epoch = keeper.finish(model, n_epochs)
    model.eval()
    return hist


# ----------------------------------------------------------------------------- inference


@torch.no_grad()
def predict_proba(model: FusionNet, features: Mapping[str, Any], device: Any = "cpu",
                  batch_size: int = 1024) -> np.ndarray:
    """modality -> ``(N, D_m)`` ==> ``(N, n_classes)`` float64 softmax probabilities (rows sum to 1).

    ``device=None``: the model's device. The model is evaluated in eval mode (no dropout).
    """
    dev = torch_device(device, model)
    model.to(dev)
    was_training = model.training
    model.eval()
    x, n = _tensors(model, features, dev, "features")
    out = []
    for start in range(0, n, int(batch_size)):
        sl = slice(start, min(start + int(batch_size), n))
        out.append(torch.softmax(model({m: t[sl] for m, t in x.items()}).double(), dim=1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


# ----------------------------------------------------------------------------- checkpoint

FUSION_FORMAT = "emotiw-fusion-model"
_FUSION_VERSION = 1


@dataclass
class FusionCheckpoint:
    """What :func:`save_fusion` wrote: model (eval mode), feature scaler, learning curves, ``extra`` dict."""

    model: FusionNet
    scaler: FeatureScaler | None
    history: FusionHistory | None
    extra: dict[str, Any] | None


def save_fusion(path: str | Path, model: FusionNet, scaler: FeatureScaler | None,
                history: FusionHistory | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write the fusion network (constructor arguments + weights), scaler and history atomically (weights-only)."""
    stored = None if scaler is None else {
        "mean": {m: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for m, a in scaler.mean.items()},
        "std": {m: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for m, a in scaler.std.items()}}
    return write_model(path, FUSION_FORMAT, _FUSION_VERSION, model, model.config, history=history, extra=extra,
                       scaler=stored)


def load_fusion(path: str | Path, device: Any = "cpu") -> FusionCheckpoint:
    """Read a :func:`save_fusion` file. FileNotFoundError if missing; DataFormatError if not such a file."""
    ck = read_model(path, FUSION_FORMAT, _FUSION_VERSION, "fusion-model checkpoint",
                    lambda config: FusionNet(**config), device=device, history=FusionHistory.from_dict,
                    fields={"scaler": FeatureScaler.from_dict})
    return FusionCheckpoint(model=ck.model, scaler=ck.fields["scaler"], history=ck.history, extra=ck.extra)


# ----------------------------------------------------------------------------- chapter 07 on a run

#: The regime of chapter 07's main network (its ``clip_probs`` and Table 1's fusion row): the paper's fix.
MAIN_REGIME = "stable"


def feature_stages() -> dict[str, stages.Stage]:
    """Modality -> the stage whose ``fusion_features`` file holds its input vector (03 ``rnn``, 04 ``kavg``,
    05 ``audio``), in stage order, which is the order of the network's modality blocks."""
    return {st.modality: st for st in stages.STAGES if "fusion_features" in st.artifacts and st.modality}


def read_features(run_dir: str | Path, split: str) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The fusion network's inputs of one split of a run: ``(clip_ids (N,), {modality: (N, D_m)}, labels (N,))``,
    the labels from the first input stage's ``clip_probs``. ValueError when the stages list different clips;
    FileNotFoundError naming the stage to run when a file is missing."""
    ids, out, first = None, {}, None
    for m, st in feature_stages().items():
        path = st.require(run_dir, "fusion_features", split=split)
        cid, feats = artifacts.load_fusion_features(path)
        if m not in feats:
            raise ValueError(f"{path}: holds no {m!r} block (it has {sorted(feats)})")
        if ids is not None and not np.array_equal(cid, ids):
            raise ValueError(f"{st.name}: its {split} clips differ from those of {first.name}; were the stages run "
                             "on the same data?")
        ids, out[m], first = cid, feats[m], first or st
    if first is None:
        raise ValueError("no stage of the registry writes fusion_features")
    lab_ids, _, labels = artifacts.load_clip_probs(first.require(run_dir, "clip_probs", split=split))
    if not np.array_equal(lab_ids, ids):
        raise ValueError(f"{first.name}: its {split} clip_probs and fusion_features list different clips")
    return ids, out, labels


@dataclass(frozen=True)
class FusionSettings:
    """The network and training settings every regime and seed of chapter 07 shares: modality ``units``,
    ``common`` units, ``activation``, ``dropout``, the penalty weights ``group`` and ``l1``, ``batch_size``."""

    units: Mapping[str, int] | None = None
    common: int = COMMON_UNITS
    activation: str = "sigmoid"
    dropout: float = 0.0
    group: float = 1e-3
    l1: float = 1e-4
    batch_size: int = 64

    def build(self, input_dims: Mapping[str, int], seed: int) -> FusionNet:
        """A fresh :class:`FusionNet` with these settings, initialised under ``seed``."""
        return FusionNet(input_dims, self.units, common=self.common, activation=self.activation,
                         dropout=self.dropout, seed=seed)


@dataclass
class FusionInputs:
    """Chapter 07's data: per split the clip ids, the standardised features (modality -> ``(N, D_m)``) and the
    labels; the training features and labels (``train_splits`` together), the ``select_split`` (None: nothing
    held out) and the :class:`FeatureScaler` fitted on the training clips."""

    clip_ids: dict[str, np.ndarray]
    x: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]
    x_train: dict[str, np.ndarray]
    y_train: np.ndarray
    train_splits: tuple[str, ...]
    select_split: str | None
    scaler: FeatureScaler

    @classmethod
    def standardise(cls, clip_ids: Mapping[str, Any], features: Mapping[str, Mapping[str, Any]],
                    labels: Mapping[str, Any], train_splits: Sequence[str],
                    select_split: str | None) -> FusionInputs:
        """Fit the scaler on the clips of ``train_splits`` and standardise every split (``features``: split ->
        modality -> ``(N, D_m)``)."""
        train_splits = tuple(train_splits)
        if not train_splits:
            raise ValueError("need at least one training split")
        raw = {m: np.concatenate([features[s][m] for s in train_splits]) for m in features[train_splits[0]]}
        y_train = np.concatenate([labels[s] for s in train_splits])
        scaler = FeatureScaler.fit(raw)
        return cls(clip_ids={s: np.asarray(v) for s, v in clip_ids.items()},
                   x={s: scaler(features[s]) for s in features}, labels={s: np.asarray(v) for s, v in labels.items()},
                   x_train=scaler(raw), y_train=y_train, train_splits=train_splits, select_split=select_split,
                   scaler=scaler)

    @property
    def dims(self) -> dict[str, int]:
        """Modality -> feature size."""
        return {m: v.shape[1] for m, v in self.x_train.items()}

    @property
    def select(self) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
        """``(features, labels)`` of the select split, for :func:`train_fusion`'s early stopping."""
        return None if self.select_split is None else (self.x[self.select_split], self.labels[self.select_split])


@dataclass
class FusionRun:
    """One trained network: its ``regime`` and ``seed``, the ``model`` (best weights), its learning curves,
    its probabilities of every split (split -> ``(N, 7)``) and their accuracies
    (:func:`emotiw_utils.metrics.split_accuracies`)."""

    regime: str
    seed: int
    model: FusionNet
    history: FusionHistory
    probs: dict[str, np.ndarray]
    accuracy: dict[str, float]


def train_run(inputs: FusionInputs, settings: FusionSettings, regime: str, seed: int, epochs: int,
              fixed_epochs: int | None = None, device: Any = "cpu") -> FusionRun:
    """Build a network (``seed``), train it in ``regime`` (:data:`REGIMES`) for ``epochs`` with early stopping
    on the select split (``fixed_epochs``: exactly that many, no selection), and predict every split."""
    model = settings.build(inputs.dims, seed)
    hist = train_fusion(model, inputs.x_train, inputs.y_train, select=inputs.select, epochs=int(epochs),
                        batch_size=settings.batch_size, group=settings.group, l1=settings.l1, seed=seed,
                        device=device, fixed_epochs=None if fixed_epochs is None else int(fixed_epochs),
                        **regime_parameters(regime))
    probs = {sp: predict_proba(model, x, device=device) for sp, x in inputs.x.items()}
    return FusionRun(regime, int(seed), model, hist, probs,
                     metrics.split_accuracies(probs, inputs.labels, inputs.train_splits))


def train_regimes(inputs: FusionInputs, settings: FusionSettings, epochs: Mapping[str, int], seeds: Sequence[int],
                  fixed_epochs: Mapping[str, int] | None = None, device: Any = "cpu",
                  progress: bool = False) -> dict[tuple[str, int], FusionRun]:
    """:func:`train_run` for every regime of :data:`REGIMES` (in order) and every seed: ``{(regime, seed): run}``.

    ``epochs`` (and ``fixed_epochs``, when retraining with a reference run's epochs) give every regime's
    value; ValueError otherwise. ``progress``: a progress bar per regime.
    """
    for what, given in (("epochs", epochs), ("fixed_epochs", fixed_epochs)):
        if given is not None and set(given) != set(REGIMES):
            raise ValueError(f"{what} must give the epochs of every regime {list(REGIMES)}, got {dict(given)}")
    from tqdm import tqdm

    runs = {}
    for regime in REGIMES:
        for s in tqdm(list(seeds), desc=f"{regime} regime", unit="seed", disable=not progress):
            runs[(regime, int(s))] = train_run(inputs, settings, regime, int(s), epochs[regime],
                                               None if fixed_epochs is None else fixed_epochs[regime], device)
    return runs


def save_regime(run_dir: str | Path, run: FusionRun, inputs: FusionInputs) -> Path:
    """Persist one regime's network of a run: the model with its input scaler and learning curves
    (artifact ``fusion``) and its probabilities of every split (``regime_probs``). Returns the model's path."""
    stages.FUSION.dir(run_dir).mkdir(parents=True, exist_ok=True)
    for sp, p in run.probs.items():
        artifacts.save_clip_probs(stages.FUSION.path(run_dir, "regime_probs", regime=run.regime, split=sp),
                                  inputs.clip_ids[sp], p, inputs.labels[sp])
    return save_fusion(stages.FUSION.path(run_dir, "fusion", regime=run.regime), run.model, inputs.scaler,
                       run.history, extra={"regime": run.regime, "seed": run.seed,
                                           "train_splits": list(inputs.train_splits),
                                           "select_split": inputs.select_split})


def load_regime(run_dir: str | Path, regime: str, device: Any = "cpu") -> FusionCheckpoint:
    """The network of ``regime`` that chapter 07 persisted in ``run_dir`` (FileNotFoundError naming the stage to
    run when it has not)."""
    regime_parameters(regime)  # ValueError for an unknown regime
    return load_fusion(stages.FUSION.require(run_dir, "fusion", regime=regime), device=device)


def predict_clips(checkpoint: FusionCheckpoint, features: Mapping[str, Any], device: Any = "cpu") -> np.ndarray:
    """Probabilities ``(N, 7)`` of a persisted network for clips given by their raw input vectors (modality ->
    ``(N, D_m)``, e.g. one new clip's with ``N = 1``), standardised with the network's own scaler."""
    x = checkpoint.scaler(features) if checkpoint.scaler is not None else features
    return predict_proba(checkpoint.model, x, device=device)


def reapply(run_dir: str | Path, split: str, regime: str, device: Any = "cpu") -> np.ndarray:
    """Chapter 07's probabilities of ``split`` for ``regime`` ``(N, 7)``, recomputed from the persisted network
    and the run's ``fusion_features``."""
    _, features, _ = read_features(run_dir, split)
    return predict_clips(load_regime(run_dir, regime, device), features, device)
