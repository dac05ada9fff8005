"""Decision-level fusion by random search (Kahou et al. 2015, section 5.2), vectorised.

Each modality ``m`` gives class probabilities ``P[m]`` ``(N, 7)`` for the N clips of a partition. The
fused score of class ``c`` is ``sum_m W[m, c] * P[m][:, c]`` with one weight per modality per class, and
the prediction is the argmax (an exact tie counts as right for the true class). The paper found the weights by random search:

* 100,000 weight matrices drawn uniformly in [0, 1] and rescaled so that every class's weights sum to 1
  over the modalities;
* then a local search around the best so far: Gaussian steps with standard deviation ``sigma = 0.5``,
  ``sigma`` multiplied by 0.9 after every 100,000 candidates, until it falls below 1e-4 (81 rounds:
  8.1 million candidates, plus the 100,000 of the first phase); candidates are clipped to [0, 1] and
  rescaled like the first ones. ``local="uniform"`` draws the steps uniformly in ``[-sigma, sigma]``
  instead (the paper's uniform variant).

Vectorised: candidates are evaluated in batches as one tensor operation on the device (GPU when
present): ``(B, M, 7)`` weights against ``(M, N, 7)`` probabilities -> ``(B, N, 7)`` scores -> ``(B,)``
accuracies. The local search draws a whole batch around the same centre and moves the centre to the
batch's best candidate if it beats the current best (``batch_size=1`` is the sequential search). Ties
keep the earlier candidate. The same seed on the same device gives the same weights.

The search must run on a partition that trained none of the input models (paper 6.3: "Searching on the
same partition that the models were trained on was not an option, as random search would assign high
weights to the over-fitters"): :func:`random_search` refuses otherwise.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from emotiw_utils.constants import NUM_CLASSES, UNKNOWN_LABEL
from emotiw_utils.device import torch_device

__all__ = ["PAPER_SPEC", "SearchResult", "SearchSpec", "all_subsets", "fuse", "random_search"]


@dataclass(frozen=True)
class SearchSpec:
    """Schedule of the search: ``n_uniform`` first-phase candidates, then local rounds of ``per_round``
    candidates starting at ``sigma`` and multiplied by ``decay`` after each round while ``sigma >= sigma_min``;
    ``local`` is ``"gaussian"`` or ``"uniform"``."""

    n_uniform: int = 100_000
    sigma: float = 0.5
    decay: float = 0.9
    sigma_min: float = 1e-4
    per_round: int = 100_000
    local: str = "gaussian"

    def __post_init__(self) -> None:
        if self.local not in ("gaussian", "uniform"):
            raise ValueError(f"local must be 'gaussian' or 'uniform', got {self.local!r}")
        if self.n_uniform < 1 or self.per_round < 0 or not 0 < self.decay < 1 or self.sigma_min <= 0:
            raise ValueError("need n_uniform >= 1, per_round >= 0, 0 < decay < 1 and sigma_min > 0")

    @property
    def rounds(self) -> int:
        """Number of local-search rounds (sigma values >= sigma_min)."""
        if self.per_round == 0 or self.sigma < self.sigma_min:
            return 0
        return int(math.floor(math.log(self.sigma_min / self.sigma) / math.log(self.decay) + 1e-9)) + 1

    @property
    def candidates(self) -> int:
        return self.n_uniform + self.rounds * self.per_round


#: The paper's schedule: 100,000 uniform + 81 rounds x 100,000 Gaussian steps = 8.2 million candidates.
PAPER_SPEC = SearchSpec()


@dataclass
class SearchResult:
    """``weights`` ``(M, 7)`` (each column sums to 1), their ``accuracy`` on the search clips, the
    ``modalities`` in row order, ``trace`` (one dict per phase/round: ``sigma``, ``best_accuracy``),
    ``candidates`` evaluated and ``seconds``."""

    modalities: tuple[str, ...]
    weights: np.ndarray
    accuracy: float
    candidates: int
    seconds: float
    trace: list[dict[str, Any]] = field(default_factory=list)


def fuse(probs: Mapping[str, Any] | Sequence[Any], weights: Any) -> np.ndarray:
    """Fused scores ``(N, 7)``: ``sum_m weights[m, c] * probs[m][:, c]`` (``probs`` in the weights' row order)."""
    p = np.stack([np.asarray(v, dtype=np.float64) for v in (probs.values() if isinstance(probs, Mapping) else probs)])
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (p.shape[0], p.shape[2]):
        raise ValueError(f"weights must be ({p.shape[0]}, {p.shape[2]}), got {w.shape}")
    return np.einsum("mc,mnc->nc", w, p)


def _normalise(w: torch.Tensor) -> torch.Tensor:
    """Rescale every class's weights (dim 1 = modalities) to sum to 1; an all-zero column becomes uniform."""
    s = w.sum(dim=1, keepdim=True)
    return torch.where(s > 0, w / s.clamp_min(1e-30), torch.full_like(w, 1.0 / w.shape[1]))


def _correct(w: torch.Tensor, pc: torch.Tensor, y_index: torch.Tensor) -> torch.Tensor:
    """``w`` ``(B, M, C)`` weights, ``pc`` ``(C, M, N)`` probabilities (class-major), ``y_index`` ``(1, B, N)``
    expanded labels -> ``(B,)`` number of clips whose true class has the highest fused score.

    One batched matrix product per class gives the scores ``(C, B, N)``; a clip counts as right when its
    true class's score equals the maximum (an exact tie between the true and another class counts as
    right; ``argmax`` would pick the lower class index). This is several times faster on a CPU than
    ``argmax`` over a ``(B, N, C)`` tensor.
    """
    scores = torch.bmm(w.permute(2, 0, 1), pc)
    true = scores.gather(0, y_index[:, : w.shape[0]])[0]
    return (true >= scores.amax(dim=0)).sum(dim=1)


def _check_partition(trained_on: Mapping[str, Iterable[str]] | None, search_split: str | None,
                     modalities: Sequence[str]) -> None:
    if trained_on is None:
        return
    if search_split is None:
        raise ValueError("name the search_split when trained_on is given")
    bad = [m for m in modalities if search_split in set(trained_on.get(m, ()))]
    if bad:
        raise ValueError(f"random search on {search_split!r}, which trained {bad}: the search would favour the models "
                         f"that over-fit it (paper 6.3); search on a partition no input model was trained on")


def random_search(probs: Mapping[str, Any], labels: Any, spec: SearchSpec = PAPER_SPEC, seed: int = 0,
                  device: Any = "cpu", batch_size: int = 2048, trained_on: Mapping[str, Iterable[str]] | None = None,
                  search_split: str | None = None, allow_trained_split: bool = False,
                  progress: bool = False) -> SearchResult:
    """Search the ``(M, 7)`` fusion weights that maximise accuracy on the search clips (paper 5.2).

    ``probs``: modality name -> ``(N, 7)`` probabilities of the same N clips in the same order;
    ``labels``: ``(N,)`` (clips labelled -1 are ignored). ``trained_on``: modality -> the splits that trained
    it, with ``search_split`` the split these clips come from: a search on a split that trained any input
    model is refused (ValueError), unless ``allow_trained_split=True``: the paper's submission 7 searched
    on Train+Val, which trained its inputs, on purpose (and its test accuracy fell). ``batch_size``: candidates per tensor operation (2048 suits a CPU's caches;
    use about 100,000 on a GPU). A candidate's accuracy counts an exact tie between the true class and
    another as right (see :func:`_correct`).
    """
    names = tuple(probs)
    if not names:
        raise ValueError("need at least one modality")
    if not allow_trained_split:
        _check_partition(trained_on, search_split, names)
    shapes = [np.asarray(probs[m]).shape for m in names]
    if len(set(shapes)) != 1 or len(shapes[0]) != 2 or shapes[0][1] != NUM_CLASSES:
        raise ValueError(f"every modality's probabilities must be (N, {NUM_CLASSES}) for the same N; got {shapes}")
    p_np = np.stack([np.asarray(probs[m], dtype=np.float32) for m in names])
    y_np = np.asarray(labels).astype(np.int64)
    if y_np.shape != (p_np.shape[1],):
        raise ValueError(f"labels must be ({p_np.shape[1]},), got {y_np.shape}")
    keep = y_np != UNKNOWN_LABEL
    if not keep.any():
        raise ValueError("no labelled clip to search on")
    if not np.isfinite(p_np).all():
        raise ValueError("probabilities contain NaN or inf")
    dev = torch_device(device)
    bs = max(1, int(batch_size))
    p = torch.from_numpy(p_np[:, keep]).to(dev)
    m, n_clips, c = p.shape
    pc = p.permute(2, 0, 1).contiguous()  # (C, M, N)
    y = torch.from_numpy(y_np[keep]).to(dev)
    y_index = y.view(1, 1, -1).expand(1, bs, n_clips)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    t0 = time.perf_counter()

    best_w = _normalise(torch.ones(1, m, c, device=dev))[0]  # equal weights: the reference before any candidate
    best_hits = int(_correct(best_w[None], pc, y_index)[0])
    trace = [{"phase": "equal weights", "sigma": None, "best_accuracy": best_hits / n_clips}]

    def consider(w: torch.Tensor) -> None:
        nonlocal best_w, best_hits
        hits = _correct(w, pc, y_index)
        i = int(torch.argmax(hits))  # first maximum: ties keep the earlier candidate
        if int(hits[i]) > best_hits:
            best_hits, best_w = int(hits[i]), w[i].clone()

    n_rounds = spec.rounds
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=spec.candidates, desc=f"random search ({'+'.join(names)})", unit="cand", unit_scale=True)
    done = 0
    while done < spec.n_uniform:
        b = min(bs, spec.n_uniform - done)
        consider(_normalise(torch.rand(b, m, c, generator=gen, device=dev)))
        done += b
        if bar is not None:
            bar.update(b)
    trace.append({"phase": "uniform", "sigma": None, "best_accuracy": best_hits / n_clips})
    sigma = spec.sigma
    for _ in range(n_rounds):
        done = 0
        while done < spec.per_round:
            b = min(bs, spec.per_round - done)
            if spec.local == "gaussian":
                step = torch.randn(b, m, c, generator=gen, device=dev) * sigma
            else:
                step = (torch.rand(b, m, c, generator=gen, device=dev) * 2 - 1) * sigma
            consider(_normalise((best_w[None] + step).clamp_(0.0, 1.0)))
            done += b
            if bar is not None:
                bar.update(b)
        trace.append({"phase": spec.local, "sigma": sigma, "best_accuracy": best_hits / n_clips})
        sigma *= spec.decay
    if bar is not None:
        bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return SearchResult(modalities=names, weights=best_w.double().cpu().numpy(), accuracy=best_hits / n_clips,
                        candidates=spec.candidates, seconds=time.perf_counter() - t0, trace=trace)


def all_subsets(names: Sequence[str], min_size: int = 1) -> list[tuple[str, ...]]:
    """Every subset of ``names`` with at least ``min_size`` members, smallest first, in ``names`` order."""
    return [s for k in range(int(min_size), len(names) + 1) for s in itertools.combinations(names, k)]
