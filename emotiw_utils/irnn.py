"""Sequence models over per-frame features: the IRNN of Kahou et al. 2015, section 2.2.

What is implemented
-------------------
* :class:`SequenceClassifier`: one recurrent layer (``hidden=200`` units) read out once, at the last valid
  time step of every sequence, by ``Linear(hidden, 7)`` + softmax (paper eq. 1-2, Figure 1). ``cell``:

  - ``"irnn"`` (the paper's model, Le et al. 2015, "A Simple Way to Initialize Recurrent Networks of
    Rectified Linear Units"): ``nn.RNN(nonlinearity="relu")`` whose recurrent matrix is initialised to
    exactly ``identity_scale * I`` and whose recurrent bias is zero;
  - ``"lstm"`` / ``"gru"``: PyTorch's cells with their default initialisation (baselines; the paper
    chose IRNNs over LSTMs but did not report an LSTM number).

  Variable lengths are packed (:class:`torch.nn.utils.rnn.PackedSequence`), so padding never influences a
  sequence's output. The training and inference loops build each batch's packed data straight from the
  concatenated frames (:class:`_Packed`), never as a ``(batch, longest clip, D)`` padded tensor: a batch
  costs memory in proportion to the frames it holds, so one very long clip no longer multiplies the
  memory of its whole batch. The packed data are exactly those :func:`~torch.nn.utils.rnn.pack_padded_sequence`
  makes of the padded batch (same values, same order, same sort of the lengths), so the results are the
  same, bit for bit, as with padded batches.
* Very long clips: a network built with ``max_frames=N`` reads a clip longer than ``N`` frames at ``N``
  uniformly spaced frames, the first and the last included (:func:`capped_frames`); shorter clips are read
  whole. The cap is part of the saved network, so training, prediction and :func:`reapply` read a clip alike.
* :func:`train_sequence_model`: SGD, learning rate 0.005, gradient-norm clipping at 1.0, batches of 64
  sequences (the paper's settings), cross-entropy on the last-step logits; the model of the epoch with
  the best accuracy on a selection split is restored (ties -> earliest), and ``fixed_epochs`` retrains a
  known number of epochs without a selection split. ``eval_every=N`` evaluates the selection split only
  every N-th epoch (and after the last): the best epoch is then chosen among the evaluated ones.
* :func:`predict_proba` / :func:`last_hidden_states`: ``(N, 7)`` class probabilities and the ``(N, hidden)``
  last-time-step hidden activations (the RNN's input to the paper's fusion network, section 3).
* Chapter 03's loops: :func:`train_seeds` (one :func:`fit_and_predict` per seed: build, train, predict
  every split, accuracies -> :class:`SeedRun`), :func:`layer_run` (the paper's choice of CNN layer) and
  ``fit_and_predict(train_fraction=...)`` on a :func:`stratified_subset` of the training clips (how much
  data?); :func:`mean_curves` and :func:`flat_from` (where the learning curves flatten).
* :func:`reapply`: the persisted network of a finished run (``irnn.pt``) applied again to a split's
  per-frame CNN features (:func:`predict_frames`, usable for new clips).

Deviations and choices the paper leaves open
--------------------------------------------
* Input-to-hidden initialisation (IRNN): Gaussian with std ``input_std=0.001`` and zero input bias, as in
  Le et al. 2015; ``input_std=None`` keeps PyTorch's default uniform init. The output layer keeps
  PyTorch's default ``nn.Linear`` init. ``identity_scale`` is the paper's "scaled variations of the identity
  matrix" (the scale actually used is not reported).
* No momentum by default (the paper says "SGD"); ``momentum`` is exposed.
* ``train_loss`` / ``train_acc`` are running averages over the epoch's training batches (computed before
  each update, in training mode; the model has no dropout so train/eval mode coincide).
* The paper selected epochs on AFEW validation; how that epoch count was then reused is not stated.
  ``fixed_epochs`` supports the "select on Val, retrain on Train+Val for the same number of epochs" protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotiw_utils.checkpoints import read_model, write_model
from emotiw_utils.device import torch_device
from emotiw_utils.errors import DataFormatError
from emotiw_utils.history import BestWeights, EpochCurves, report_epoch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

__all__ = ["CELLS", "InputScaler", "IrnnCheckpoint", "SeedRun", "SeqHistory", "SequenceClassifier", "SequenceSettings",
           "IrnnLimits", "capped_frames", "data_size_row", "fit_and_predict", "fit_scaler", "flat_from",
           "last_hidden_states", "layer_run", "load_irnn", "mean_curves", "predict_frames", "predict_proba",
           "quarter_means", "reapply", "save_irnn", "split_sequences", "stratified_subset", "train_seeds",
           "train_sequence_model", "training_sets", "what_limits"]

CELLS: tuple[str, ...] = ("irnn", "lstm", "gru")
N_CLASSES = 7


class SequenceClassifier(nn.Module):
    """Recurrent classifier reading out the last valid time step (Kahou et al. 2015, section 2.2).

    ``input_dim``: D, the per-frame feature size. ``hidden``: H (200 in the paper). ``cell``: one of
    :data:`CELLS`. ``identity_scale``: the IRNN's recurrent matrix is initialised to ``identity_scale * I``
    (ignored for LSTM/GRU). ``input_std``: std of the IRNN's Gaussian input weights (``None``: PyTorch's
    default init). ``seed``: if given, the parameters are drawn from a private generator seeded with it
    (the global RNG state is left untouched). ``max_frames``: the training and inference loops read a clip
    longer than this at ``max_frames`` uniformly spaced frames (:func:`capped_frames`; None: every frame).
    """

    def __init__(self, input_dim: int, hidden: int = 200, cell: str = "irnn", identity_scale: float = 1.0,
                 n_classes: int = N_CLASSES, seed: int | None = None, input_std: float | None = 0.001,
                 max_frames: int | None = None) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
        if int(input_dim) < 1 or int(hidden) < 1 or int(n_classes) < 2:
            raise ValueError(f"need input_dim >= 1, hidden >= 1, n_classes >= 2; "
                             f"got {input_dim}, {hidden}, {n_classes}")
        if max_frames is not None and (int(max_frames) != max_frames or int(max_frames) < 2):
            raise ValueError(f"max_frames must be an integer >= 2 or None, got {max_frames!r}")
        self.input_dim, self.hidden, self.cell = int(input_dim), int(hidden), cell
        self.identity_scale, self.n_classes = float(identity_scale), int(n_classes)
        self.input_std = None if input_std is None else float(input_std)
        self.max_frames = None if max_frames is None else int(max_frames)
        rng_state = torch.random.get_rng_state() if seed is not None else None
        try:
            if seed is not None:
                torch.manual_seed(int(seed))
            if cell == "irnn":
                self.rnn: nn.RNNBase = nn.RNN(self.input_dim, self.hidden, nonlinearity="relu", batch_first=True)
            elif cell == "lstm":
                self.rnn = nn.LSTM(self.input_dim, self.hidden, batch_first=True)
            else:
                self.rnn = nn.GRU(self.input_dim, self.hidden, batch_first=True)
            self.out = nn.Linear(self.hidden, self.n_classes)
            if cell == "irnn":
                self._init_irnn()
        finally:
            if rng_state is not None:
                torch.random.set_rng_state(rng_state)

    @torch.no_grad()
    def _init_irnn(self) -> None:
        """Le et al. 2015: ``W_hh = scale * I``, ``b_hh = 0``; input weights N(0, input_std^2), ``b_ih = 0``."""
        self.rnn.weight_hh_l0.copy_(self.identity_scale * torch.eye(self.hidden))
        self.rnn.bias_hh_l0.zero_()
        if self.input_std is not None:
            self.rnn.weight_ih_l0.normal_(0.0, self.input_std)
            self.rnn.bias_ih_l0.zero_()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def last_hidden(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, T, D)`` float, zero-padded; ``lengths``: ``(B,)`` long, ``1 <= lengths <= T``.

        Returns ``(B, H)``: the hidden state at each sequence's last valid step (the fusion feature).
        """
        if x.dim() != 3 or x.shape[2] != self.input_dim:
            raise ValueError(f"x must be (B, T, {self.input_dim}), got {tuple(x.shape)}")
        lengths = torch.as_tensor(lengths).to("cpu", torch.long)
        if lengths.shape != (x.shape[0],):
            raise ValueError(f"lengths must be ({x.shape[0]},), got {tuple(lengths.shape)}")
        if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
            raise ValueError(f"lengths must lie in [1, {x.shape[1]}]")
        return self.packed_last_hidden(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))

    def packed_last_hidden(self, packed: PackedSequence) -> torch.Tensor:
        """The ``(B, H)`` hidden state at each sequence's last step of a packed batch, in the batch's order."""
        _, h_n = self.rnn(packed)
        if isinstance(h_n, tuple):  # LSTM: (h_n, c_n)
            h_n = h_n[0]
        return h_n[-1]  # (B, H), already back in the input order

    def packed_forward(self, packed: PackedSequence) -> torch.Tensor:
        """Logits ``(B, n_classes)`` of the last step of every sequence of a packed batch."""
        return self.out(self.packed_last_hidden(packed))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)``, ``(B,)`` -> logits ``(B, n_classes)`` of the last valid time step."""
        return self.out(self.last_hidden(x, lengths))


# ----------------------------------------------------------------------------- data


def split_sequences(features: Any, offsets: Any) -> list:
    """``features`` ``(F, D)`` + ``offsets`` ``(n+1,)`` -> ``n`` views ``features[offsets[i]:offsets[i+1]]``."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0) \
            or offsets[-1] != len(features):
        raise ValueError("offsets must be non-decreasing, start at 0 and end at len(features)")
    return [features[int(a):int(b)] for a, b in zip(offsets[:-1], offsets[1:])]


def capped_frames(n_frames: int, max_frames: int | None) -> np.ndarray:
    """Indices of the frames the IRNN reads of an ``n_frames`` clip: all of them when ``max_frames`` is None
    or ``n_frames <= max_frames``; else ``max_frames`` uniformly spaced ones, the first and the last included
    (``round(linspace(0, n_frames - 1, max_frames))``, strictly increasing)."""
    n = int(n_frames)
    if n < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if max_frames is None or n <= int(max_frames):
        return np.arange(n, dtype=np.int64)
    if int(max_frames) < 2:
        raise ValueError(f"max_frames must be >= 2, got {max_frames}")
    return np.rint(np.linspace(0.0, n - 1.0, int(max_frames))).astype(np.int64)


class _Packed:
    """All sequences, concatenated: ``feats`` ``(F, D)`` float32 on the device; ``offsets`` ``(n,)`` and
    ``lengths`` ``(n,)`` int64 on the CPU.

    ``max_frames``: a sequence longer than this is kept at its :func:`capped_frames` (``n_capped`` counts them).
    :meth:`batch` packs a batch without padding it.
    """

    def __init__(self, sequences: Sequence[Any], device: torch.device, input_dim: int | None = None,
                 name: str = "sequences", max_frames: int | None = None) -> None:
        if len(sequences) == 0:
            raise ValueError(f"{name} is empty")
        arrays = []
        for i, s in enumerate(sequences):
            t = s.detach().to("cpu", torch.float32) if isinstance(s, torch.Tensor) \
                else torch.as_tensor(np.asarray(s, dtype=np.float32))
            if t.dim() != 2:
                raise ValueError(f"{name}[{i}] must be 2-D (T, D), got shape {tuple(t.shape)}")
            if t.shape[0] == 0:
                raise ValueError(f"{name}[{i}] has zero length")
            arrays.append(t)
        self.n_capped = 0
        if max_frames is not None:
            for i, t in enumerate(arrays):
                if t.shape[0] > max_frames:
                    arrays[i] = t[torch.from_numpy(capped_frames(t.shape[0], max_frames))]
                    self.n_capped += 1
        dims = {int(t.shape[1]) for t in arrays}
        if len(dims) != 1:
            raise ValueError(f"{name} have differing feature sizes {sorted(dims)}")
        d = dims.pop()
        if input_dim is not None and d != input_dim:
            raise ValueError(f"{name} have feature size {d}, the model expects {input_dim}")
        lengths = torch.tensor([int(t.shape[0]) for t in arrays], dtype=torch.long)
        self.lengths = lengths
        self.offsets = torch.cumsum(lengths, 0) - lengths
        self.feats = torch.cat(arrays).to(device)
        self.n = len(arrays)

    def batch(self, idx: torch.Tensor) -> PackedSequence:
        """Sequences ``idx`` as one :class:`~torch.nn.utils.rnn.PackedSequence`, gathered from ``feats`` without
        padding (``sum(lengths)`` rows, not ``B * max(lengths)``).

        Exactly what ``pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)`` makes
        of the zero-padded batch: the lengths sorted by the same ``torch.sort(descending=True)``, then time
        step by time step the rows of the sequences still running, in that sorted order.
        """
        lens = self.lengths[idx.cpu()]
        sorted_lens, order = torch.sort(lens, descending=True)
        steps = torch.arange(int(sorted_lens[0]))
        running = steps[:, None] < sorted_lens[None, :]  # (T, B): step t of sorted sequence b exists
        batch_sizes = running.sum(1)
        rows = (self.offsets[idx.cpu()][order][None, :] + steps[:, None])[running]  # time-major, sorted
        data = self.feats[rows.to(self.feats.device)]
        return PackedSequence(data, batch_sizes, order.to(self.feats.device), None)


def _labels(labels: Any, n: int, n_classes: int, device: torch.device, name: str = "labels") -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries for {n} sequences")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes})")
    return y.to(device)


@dataclass
class InputScaler:
    """Per-dimension standardisation of the frame features, fitted on the training frames.

    ``mean``/``std`` are ``(D,)`` float32; ``std`` is floored at ``floor`` so that constant dimensions
    (dead ReLU units of the CNN) map to 0 instead of dividing by zero. Not in the paper, which does not
    say how its IRNN inputs were scaled: conv2 activations and logits differ in scale by orders of
    magnitude, and one learning rate (0.005) for both needs a common scale.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: Any, floor: float = 1e-3) -> InputScaler:
        """``features``: ``(F, D)`` training frames (all clips concatenated)."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] < 1:
            raise ValueError(f"features must be a non-empty (F, D) array, got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError("features contain NaN or inf")
        return cls(f.mean(0).astype(np.float32), np.maximum(f.std(0), floor).astype(np.float32))

    @classmethod
    def identity(cls, dim: int) -> InputScaler:
        """No scaling (``standardise=False``)."""
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32))

    def __call__(self, features: Any) -> np.ndarray:
        """``(F, D)`` -> ``(F, D)`` float32 ``(features - mean) / std``."""
        f = np.asarray(features, dtype=np.float32)
        if f.ndim != 2 or f.shape[1] != len(self.mean):
            raise ValueError(f"features must be (F, {len(self.mean)}), got shape {f.shape}")
        return (f - self.mean) / self.std


# ----------------------------------------------------------------------------- history


@dataclass
class SeqHistory(EpochCurves):
    """Learning curves of :func:`train_sequence_model`.

    ``epochs``: one dict per epoch with ``epoch`` (1-based), ``train_loss``, ``train_acc`` (running
    averages over the epoch's batches), ``val_loss``, ``val_acc`` (on the selection split after the epoch;
    NaN without one, and on the epochs ``eval_every`` skips) and ``seconds`` (wall time of the epoch,
    evaluation included). ``best_epoch``: the epoch whose weights the model holds at the end (best
    ``val_acc`` among the evaluated epochs, ties -> earliest; the last epoch when there is no selection
    split or ``fixed_epochs`` was given).
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    config: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- training


@torch.no_grad()
def _evaluate(model: SequenceClassifier, data: _Packed, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over all sequences (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, data.n, batch_size):
        idx = torch.arange(start, min(start + batch_size, data.n))
        logits = model.packed_forward(data.batch(idx))
        yb = y[idx.to(y.device)]
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return loss_sum / data.n, correct / data.n


def train_sequence_model(model: SequenceClassifier, sequences: Sequence[Any], labels: Any, *,
                         select: tuple[Sequence[Any], Any] | None = None, epochs: int = 100, lr: float = 0.005,
                         clip: float | None = 1.0, batch_size: int = 64, momentum: float = 0.0, seed: int = 0,
                         device: Any = "cpu", fixed_epochs: int | None = None, eval_every: int = 1,
                         progress: bool = False, log: Callable[[str], None] | None = None) -> SeqHistory:
    """Train ``model`` in place with SGD (Kahou et al. 2015, section 2.2: lr 0.005, clip 1.0, batch 64).

    ``sequences``: N arrays/tensors ``(T_i, D)`` (``T_i >= 1``); ``labels``: ``(N,)`` ints in ``[0, 7)``.
    They are moved to ``device`` once, as one ``(sum T_i, D)`` tensor; each batch is gathered by index and
    zero-padded to the batch's longest sequence. Every epoch the order is reshuffled by a
    ``torch.Generator`` seeded with ``seed`` (the global RNG is not used), so runs are deterministic on CPU.
    ``clip``: max gradient L2 norm (``clip_grad_norm_``; ``None`` disables).

    ``select=(val_sequences, val_labels)``: evaluated after every epoch; the weights of the best
    ``val_acc`` epoch (ties -> earliest) are restored at the end. ``fixed_epochs``: train exactly that many
    epochs (overrides ``epochs``) and keep the last weights (``select``, if given, is only monitored) --
    ``fixed_epochs=history.best_epoch`` retrains for the selected number of epochs.
    ``eval_every``: evaluate ``select`` only after every ``eval_every``-th epoch and after the last one (the
    other epochs' ``val_loss``/``val_acc`` are NaN); the kept epoch is the best of the evaluated ones, so with
    ``eval_every > 1`` it is a multiple of ``eval_every`` or the last epoch. 1 (default): every epoch.
    ``progress``: print a line per epoch; ``log``: called with that line. Returns a :class:`SeqHistory`.
    """
    dev = torch_device(device, model)
    n_epochs = int(fixed_epochs if fixed_epochs is not None else epochs)
    if n_epochs < 1:
        raise ValueError(f"need at least one epoch, got {n_epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(eval_every) != eval_every or int(eval_every) < 1:
        raise ValueError(f"eval_every must be an integer >= 1, got {eval_every!r}")
    eval_every = int(eval_every)
    train = _Packed(sequences, dev, model.input_dim, "sequences", model.max_frames)
    y = _labels(labels, train.n, model.n_classes, dev)
    val = yv = None
    if select is not None:
        val_seqs, val_labels = select
        val = _Packed(val_seqs, dev, model.input_dim, "select sequences", model.max_frames)
        yv = _labels(val_labels, val.n, model.n_classes, dev, "select labels")
    restore = val is not None and fixed_epochs is None

    model.to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(int(seed))
    hist = SeqHistory(config={"epochs": n_epochs, "lr": float(lr), "clip": None if clip is None else float(clip),
                              "batch_size": int(batch_size), "momentum": float(momentum), "seed": int(seed),
                              "fixed_epochs": None if fixed_epochs is None else int(fixed_epochs),
                              "eval_every": eval_every, "cell": model.cell, "hidden": model.hidden,
                              "identity_scale": model.identity_scale,
                              "n_train": train.n, "n_select": 0 if val is None else val.n})
    keeper = BestWeights(restore)
    for epoch in range(1, n_epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(train.n, generator=gen)
        loss_sum, correct = 0.0, 0
        for start in range(0, train.n, batch_size):
            idx = perm[start:start + batch_size]
            yb = y[idx.to(dev)]
            logits = model.packed_forward(train.batch(idx))
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == yb).sum())
        rec: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / train.n, "train_acc": correct / train.n,
                               "val_loss": float("nan"), "val_acc": float("nan")}
        if val is not None and (epoch % eval_every == 0 or epoch == n_epochs):
            rec["val_loss"], rec["val_acc"] = _evaluate(model, val, yv, max(256, batch_size))
            keeper.update(model, epoch, rec["val_acc"])
        rec["seconds"] = time.perf_counter() - t0
        hist.epochs.append(rec)
        if progress or log is not None:
            report_epoch(f"epoch {epoch}/{n_epochs} loss {rec['train_loss']:.4f} acc {rec['train_acc']:.3f} "
                         f"val_loss {rec['val_loss']:.4f} val_acc {rec['val_acc']:.3f} ({rec['seconds']:.2f}s)",
                         progress, log)
    hist.best_epoch = keeper.finish(model, n_epochs)
    model.eval()
    return hist


# ----------------------------------------------------------------------------- inference


@torch.no_grad()
def _run(model: SequenceClassifier, sequences: Sequence[Any], batch_size: int, device: Any,
         fn: Callable[[PackedSequence], torch.Tensor]) -> np.ndarray:
    dev = torch_device(device, model)
    model.to(dev)
    was_training = model.training
    model.eval()
    data = _Packed(sequences, dev, model.input_dim, max_frames=model.max_frames)
    out = []
    for start in range(0, data.n, int(batch_size)):
        out.append(fn(data.batch(torch.arange(start, min(start + int(batch_size), data.n)))).float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def predict_proba(model: SequenceClassifier, sequences: Sequence[Any], batch_size: int = 256,
                  device: Any = None) -> np.ndarray:
    """``(N, 7)`` softmax probabilities of the last time step (rows sum to 1). ``device=None``: the model's."""
    return _run(model, sequences, batch_size, device, lambda p: torch.softmax(model.packed_forward(p), dim=1))


def last_hidden_states(model: SequenceClassifier, sequences: Sequence[Any], batch_size: int = 256,
                       device: Any = None) -> np.ndarray:
    """``(N, hidden)`` hidden activations at each sequence's last step (the fusion input, section 3)."""
    return _run(model, sequences, batch_size, device, model.packed_last_hidden)


# ----------------------------------------------------------------------------- checkpoint

IRNN_FORMAT = "emotiw-sequence-model"
_IRNN_VERSION = 1


@dataclass
class IrnnCheckpoint:
    """What :func:`save_irnn` wrote: model (eval mode), input scaler, learning curves, ``extra`` dict."""

    model: SequenceClassifier
    scaler: InputScaler
    history: SeqHistory | None
    extra: dict[str, Any] | None


def save_irnn(path: str | Path, model: SequenceClassifier, scaler: InputScaler, history: SeqHistory | None = None,
              extra: Mapping[str, Any] | None = None) -> Path:
    """Write the sequence model, its input scaler and history to ``path`` atomically (torch, weights-only safe)."""
    config = {"input_dim": model.input_dim, "hidden": model.hidden, "cell": model.cell,
              "identity_scale": model.identity_scale, "n_classes": model.n_classes, "input_std": model.input_std,
              "max_frames": model.max_frames}
    return write_model(path, IRNN_FORMAT, _IRNN_VERSION, model, config, history=history, extra=extra,
                       scaler={"mean": torch.from_numpy(scaler.mean.copy()), "std": torch.from_numpy(scaler.std.copy())})


def load_irnn(path: str | Path, device: Any = "cpu") -> IrnnCheckpoint:
    """Read a :func:`save_irnn` file. FileNotFoundError if missing; DataFormatError if not such a file."""
    ck = read_model(path, IRNN_FORMAT, _IRNN_VERSION, "sequence-model checkpoint",
                    lambda config: SequenceClassifier(**config), device=device, history=SeqHistory.from_dict,
                    fields={"scaler": lambda d: InputScaler(d["mean"].numpy(), d["std"].numpy())})
    if ck.fields["scaler"] is None:
        raise DataFormatError(Path(path), "corrupt sequence-model checkpoint: no input scaler")
    return IrnnCheckpoint(model=ck.model, scaler=ck.fields["scaler"], history=ck.history, extra=ck.extra)


# ----------------------------------------------------------------------------- chapter 03: seeds, layers, reapply


@dataclass(frozen=True)
class SequenceSettings:
    """Model and training settings of chapter 03 (its parameters of the same names; defaults: the paper's).

    ``hidden``, ``cell``, ``identity_scale``, ``max_frames`` build the :class:`SequenceClassifier`; ``epochs``,
    ``lr``, ``clip``, ``batch_size``, ``momentum``, ``fixed_epochs``, ``eval_every`` go to
    :func:`train_sequence_model`.
    """

    hidden: int = 200
    cell: str = "irnn"
    identity_scale: float = 1.0
    epochs: int = 100
    lr: float = 0.005
    clip: float | None = 1.0
    batch_size: int = 64
    momentum: float = 0.0
    fixed_epochs: int | None = None
    max_frames: int | None = None
    eval_every: int = 1

    def build(self, input_dim: int, seed: int) -> SequenceClassifier:
        """A fresh, untrained network for ``input_dim``-d frames, its parameters drawn with ``seed``."""
        return SequenceClassifier(input_dim, self.hidden, self.cell, identity_scale=self.identity_scale, seed=seed,
                                  max_frames=self.max_frames)


@dataclass
class SeedRun:
    """One seed's training (:func:`fit_and_predict`): the trained ``model`` (the kept epoch's weights), its
    learning curves, its ``(n, 7)`` ``probs`` on every predicted split and their ``accuracy``
    (:func:`emotiw_utils.metrics.split_accuracies`: per split, and ``"train"`` over the training splits)."""

    seed: int
    model: SequenceClassifier
    history: SeqHistory
    probs: dict[str, np.ndarray]
    accuracy: dict[str, float]

    @property
    def selected(self) -> bool:
        """Whether the training was evaluated on a select split (every ``eval_every``-th epoch)."""
        return int(self.history.config.get("n_select", 0)) > 0

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.mean([e["seconds"] for e in self.history.epochs]))


def fit_scaler(frames: Mapping[str, Any], train_splits: Sequence[str], standardise: bool = True) -> InputScaler:
    """The input scaler of chapter 03: :meth:`InputScaler.fit` on every frame of the ``train_splits`` of
    ``frames`` (split -> :class:`~emotiw_utils.frame_features.ClipFrames`), or the identity when not
    ``standardise``."""
    if not standardise:
        return InputScaler.identity(frames[train_splits[0]].features.shape[1])
    return InputScaler.fit(np.concatenate([frames[s].features for s in train_splits]))


def training_sets(sequences: Mapping[str, Sequence[Any]], labels: Mapping[str, Any],
                  partition: Any) -> tuple[list, np.ndarray, tuple[list, np.ndarray] | None]:
    """``(train sequences, train labels, select)`` of a :class:`~emotiw_utils.protocol.Partition`: the clips
    of ``partition.train`` in order, and ``select = (sequences, labels)`` of the labelled clips of
    ``partition.select`` (None without a select split or when none of its clips is labelled)."""
    train_seqs = [x for s in partition.train for x in sequences[s]]
    train_labels = np.concatenate([np.asarray(labels[s]) for s in partition.train])
    select = None
    if partition.select is not None and (np.asarray(labels[partition.select]) >= 0).any():
        select_labels = np.asarray(labels[partition.select])
        keep = select_labels >= 0
        select = ([x for x, k in zip(sequences[partition.select], keep) if k], select_labels[keep])
    return train_seqs, train_labels, select


def stratified_subset(labels: Any, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a random ``fraction`` of the clips of every class of ``labels`` (``round(fraction *
    n_c)`` of a class of ``n_c`` clips, at least one), drawn with ``seed``; ``fraction=1``: every index."""
    y = np.asarray(labels).reshape(-1)
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    if float(fraction) == 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(int(seed))
    keep = [rng.choice(idx, max(1, int(round(float(fraction) * len(idx)))), replace=False)
            for idx in (np.flatnonzero(y == c) for c in np.unique(y))]
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def fit_and_predict(sequences: Mapping[str, Sequence[Any]], labels: Mapping[str, Any], partition: Any,
                    settings: SequenceSettings, seed: int, *, device: Any = "cpu",
                    predict: Sequence[str] | None = None, train_fraction: float = 1.0) -> SeedRun:
    """Train one network with ``seed`` and predict: the unit of chapter 03's seeds and layer experiment.

    ``sequences``: split -> ``(T_i, D)`` scaled frame features of every clip; ``labels``: split -> ``(n,)``
    (-1 unknown). Builds ``settings.build(D, seed)``, trains it on the partition's :func:`training_sets`
    (early stopping on the select split unless ``settings.fixed_epochs``), then predicts every split of
    ``predict`` (default: every split of ``sequences``). ``train_fraction < 1``: train on a class-stratified
    random part of the training clips (:func:`stratified_subset` with ``seed``; the data-size experiment);
    the ``"train"`` accuracy is still over every training clip.
    """
    from emotiw_utils import metrics

    train_seqs, train_labels, select = training_sets(sequences, labels, partition)
    if float(train_fraction) != 1.0:
        keep = stratified_subset(train_labels, train_fraction, seed)
        train_seqs, train_labels = [train_seqs[i] for i in keep], train_labels[keep]
    model = settings.build(int(np.asarray(train_seqs[0]).shape[1]), seed)
    history = train_sequence_model(model, train_seqs, train_labels, select=select, epochs=settings.epochs,
                                   lr=settings.lr, clip=settings.clip, batch_size=settings.batch_size,
                                   momentum=settings.momentum, seed=seed, device=device,
                                   fixed_epochs=settings.fixed_epochs, eval_every=settings.eval_every)
    splits = list(sequences) if predict is None else list(predict)
    probs = {sp: predict_proba(model, sequences[sp], device=device) for sp in splits}
    accuracy = metrics.split_accuracies(probs, {sp: labels[sp] for sp in splits}, partition.train)
    return SeedRun(int(seed), model, history, probs, accuracy)


def train_seeds(sequences: Mapping[str, Sequence[Any]], labels: Mapping[str, Any], partition: Any,
                settings: SequenceSettings, seeds: Sequence[int], *, device: Any = "cpu",
                progress: bool = False) -> dict[int, SeedRun]:
    """:func:`fit_and_predict` for every seed, in order (``progress``: a tqdm bar over the seeds).
    Returns seed -> :class:`SeedRun`."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    if progress:
        from tqdm import tqdm

        seeds_iter: Any = tqdm(seeds, desc=f"{settings.cell} seeds", unit="seed")
    else:
        seeds_iter = seeds
    return {s: fit_and_predict(sequences, labels, partition, settings, s, device=device) for s in seeds_iter}


def mean_curves(histories: Sequence[SeqHistory]):  # -> pandas.DataFrame
    """The learning curves of several seeds averaged epoch by epoch: a DataFrame indexed by ``epoch`` with
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (each the mean over the seeds that have a value
    at that epoch: NaN on the epochs ``eval_every`` skipped) and ``n_seeds`` (the seeds that ran the epoch)."""
    import pandas as pd

    if not histories:
        raise ValueError("need at least one history")
    cols = ["train_loss", "train_acc", "val_loss", "val_acc"]
    frame = pd.concat([h.to_frame()[cols] for h in histories], keys=range(len(histories)), names=["run", "epoch"])
    out = frame.groupby(level="epoch").mean()
    out["n_seeds"] = frame.groupby(level="epoch").size()
    return out


def flat_from(curve: Any, window: int = 25, tol: float = 0.02, level: str = "final") -> int:
    """Where a learning curve flattens, from its moving average over ``window`` epochs (``curve``: a pandas
    Series indexed by epoch; NaN entries, the epochs ``eval_every`` skipped, are dropped, and the window then
    covers ``window / spacing`` of the remaining points).

    ``level="final"``: the first epoch from which the moving average stays within ``tol`` of its last value (a
    curve still moving at the end gets an epoch near its last one). ``level="max"``: the first epoch at which it
    comes within ``tol`` of its highest value (where an accuracy curve reaches its plateau, even if it sinks
    again later). A curve already within ``tol`` at its first smoothed point gets that point's epoch.
    """
    if level not in ("final", "max"):
        raise ValueError(f"level must be 'final' or 'max', got {level!r}")
    s = curve.dropna()
    if s.empty:
        raise ValueError("the curve has no values")
    spacing = float(np.median(np.diff(s.index))) if len(s) > 1 else 1.0
    points = max(1, int(round(window / max(spacing, 1.0))))
    smooth = s.rolling(points, min_periods=min(points, len(s))).mean().dropna()
    v = smooth.to_numpy()
    if level == "max":
        return int(smooth.index[int(np.argmax(v >= v.max() - tol))])
    off = np.flatnonzero(np.abs(v - v[-1]) > tol)
    return int(smooth.index[0] if len(off) == 0 else smooth.index[off[-1] + 1])


def quarter_means(curves: Any, select_name: str = "Val"):  # -> pandas.DataFrame
    """:func:`mean_curves` averaged over each quarter of the epochs: columns ``"epochs a-b"``, rows ``"train
    accuracy (%)"``, ``"train loss"``, ``"{select_name} accuracy (%)"``, ``"{select_name} loss"`` (2 decimals)."""
    import pandas as pd

    edges = np.unique(np.linspace(0, len(curves), 5).round().astype(int))
    return pd.DataFrame({f"epochs {a + 1}-{b}": {
        "train accuracy (%)": 100 * curves["train_acc"].iloc[a:b].mean(), "train loss": curves["train_loss"].iloc[a:b].mean(),
        f"{select_name} accuracy (%)": 100 * curves["val_acc"].iloc[a:b].mean(),
        f"{select_name} loss": curves["val_loss"].iloc[a:b].mean()} for a, b in zip(edges[:-1], edges[1:])}).round(2)


def data_size_row(run: SeedRun, fraction: float, select_name: str = "Val") -> dict[str, Any]:
    """One row of chapter 03's data-size table for a run trained on ``fraction`` of the training clips: its
    clips, the kept epoch, the select accuracy there and the level the select curve settles at (mean of the
    evaluations of the second half of the training), and the running training accuracy of the last 25 epochs."""
    f = run.history.to_frame()
    return {"training clips": int(run.history.config["n_train"]), "fraction": fraction,
            "epoch kept": run.history.best_epoch,
            f"{select_name} at the kept epoch (%)": round(100 * run.history.best["val_acc"], 1),
            f"{select_name}, second half (%)": round(100 * f["val_acc"].iloc[len(f) // 2:].mean(), 1),
            "train (running), last 25 epochs (%)": round(100 * f["train_acc"].iloc[-25:].mean(), 1)}


#: Thresholds (accuracy points) of chapter 03's verdict on what limits the IRNN (:func:`what_limits`).
STILL_RISING = 2.0  # the select accuracy rises this much from the third to the last quarter: the budget
FITS_GAP = 10.0     # training accuracy at least this far above the select accuracy: the capacity is not the limit
DATA_COST = 3.0     # the smaller training set settles this much lower: the number of clips is a limit


@dataclass
class IrnnLimits:
    """What limits the IRNN on a run (:func:`what_limits`). ``figures``: the quarter means the verdict reads
    (``tr3``/``tr4`` training accuracy of the third/last quarter, ``va1``/``va3``/``va4`` and ``vl3``/``vl4``
    select accuracy and loss; with a data-size comparison ``full_n``/``small_n`` clips and ``full_v``/``small_v``
    settled select accuracy). ``budget``: ``"rising"`` (more epochs would help), ``"fitting"`` (only the training
    accuracy still rises) or ``"converged"``. ``capacity``: the network fits its training clips hardly better
    than new ones. ``data``: fewer clips cost at least :data:`DATA_COST` points (None: no comparison).
    ``limited`` / ``checked``: the limits found / examined, as phrases."""

    figures: dict[str, Any]
    budget: str
    capacity: bool
    data: bool | None
    limited: list[str]
    checked: list[str]


def what_limits(quarters: Any, size_rows: Sequence[Mapping[str, Any]] = (), select_name: str = "Val") -> IrnnLimits:
    """Chapter 03's verdict from :func:`quarter_means` and the :func:`data_size_row` rows (full set first)."""
    q = quarters.columns
    acc, sacc, sloss = "train accuracy (%)", f"{select_name} accuracy (%)", f"{select_name} loss"
    fig = {"tr3": quarters.loc[acc, q[-2]], "tr4": quarters.loc[acc, q[-1]], "va1": quarters.loc[sacc, q[0]],
           "va3": quarters.loc[sacc, q[-2]], "va4": quarters.loc[sacc, q[-1]],
           "vl3": quarters.loc[sloss, q[-2]], "vl4": quarters.loc[sloss, q[-1]]}
    budget = ("rising" if fig["va4"] - fig["va3"] >= STILL_RISING else
              "fitting" if fig["tr4"] - fig["tr3"] >= STILL_RISING else "converged")
    capacity = fig["tr4"] - fig["va4"] < FITS_GAP
    limited = (["the training budget"] if budget == "rising" else []) + (["the network's capacity"] if capacity else [])
    checked = ["the training budget", "the network's capacity"]
    data = None
    if len(size_rows) > 1:
        col = f"{select_name}, second half (%)"
        fig.update(full_n=size_rows[0]["training clips"], small_n=size_rows[-1]["training clips"],
                   full_v=size_rows[0][col], small_v=size_rows[-1][col])
        data = fig["full_v"] - fig["small_v"] >= DATA_COST
        checked.append("the number of training clips")
        if data:
            limited.append("the number of training clips")
    return IrnnLimits(fig, budget, capacity, data, limited, checked)


def layer_run(run_dir: str | Path, layer: str, partition: Any, settings: SequenceSettings, seed: int, *,
              epochs: int, standardise: bool = True, device: Any = "cpu") -> SeedRun:
    """The paper's layer experiment for one CNN layer: the features of ``layer`` for the training and select
    splits of ``run_dir`` (:func:`~emotiw_utils.frame_features.load_frame_features`), scaled as in chapter 03,
    one network trained for ``epochs`` with early stopping on the select split, evaluated after every epoch
    whatever ``settings.eval_every`` (these runs are short), predictions on the training splits (the select
    accuracy of the kept epoch is ``run.history.best["val_acc"]``)."""
    from dataclasses import replace

    from emotiw_utils.frame_features import load_frame_features

    frames = {sp: load_frame_features(run_dir, sp, layer, device=device) for sp in [*partition.train, partition.select]}
    scaler = fit_scaler(frames, partition.train, standardise)
    sequences = {sp: f.sequences(scaler) for sp, f in frames.items()}
    labels = {sp: f.labels for sp, f in frames.items()}
    return fit_and_predict(sequences, labels, partition,
                           replace(settings, epochs=int(epochs), fixed_epochs=None, eval_every=1),
                           seed, device=device, predict=partition.train)


def predict_frames(checkpoint: IrnnCheckpoint, frames: Any, device: Any = "cpu") -> np.ndarray:
    """``(n, 7)`` probabilities of a checkpoint's network for the clips of ``frames`` (a
    :class:`~emotiw_utils.frame_features.ClipFrames` of the CNN layer the network reads), in their order:
    the checkpoint's input scaler, then :func:`predict_proba` -- the computation of chapter 03."""
    layer = (checkpoint.extra or {}).get("feature_layer")
    if layer is not None and frames.layer != layer:
        raise ValueError(f"the sequence model reads CNN layer {layer!r}, got features of {frames.layer!r}")
    return predict_proba(checkpoint.model, frames.sequences(checkpoint.scaler), device=device)


def reapply(run_dir: str | Path, split: str, device: Any = "cpu") -> np.ndarray:
    """Stage 03's persisted network applied again to ``split`` of a finished run: ``(n, 7)`` probabilities in
    the clip order of its ``clip_probs_{split}.npz`` (equal to them when computed on the run's device)."""
    from emotiw_utils import stages
    from emotiw_utils.frame_features import load_frame_features

    path = stages.IRNN.require(run_dir, "irnn")
    checkpoint = load_irnn(path, device=device)
    layer = (checkpoint.extra or {}).get("feature_layer")
    if layer is None:
        raise DataFormatError(path, "the checkpoint does not say which CNN layer the network reads "
                                    "(extra.feature_layer)")
    from emotiw_utils.clip_policy import refill

    frames = load_frame_features(run_dir, split, layer, device=device)
    return refill(run_dir, stages.IRNN, split, frames.clip_ids, predict_frames(checkpoint, frames, device=device))
