"""The paper's own numbers (Kahou et al. 2015), quoted, and tables that put ours beside them.

Every figure here is copied from the paper (real AFEW 5.0, EmotiW 2015) and only ever shown labelled
as the paper's. Our numbers are never stored here: they come from the runs' ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["FRAME_AVERAGING_VAL", "FUSION_VAL", "PAPER_ROWS", "TABLE1", "TABLE2", "TABLE2_METHODS", "mean_std",
           "table1_frame"]

#: Table 1, "Training and Validation Accuracies for All Modalities (Training on Train partition)":
#: model -> (training accuracy, validation accuracy). "Frame averaging" is not a row of Table 1: its
#: validation accuracy is quoted in section 2.3 ("Simple averaging of the per-frame probabilities
#: yielded a validation accuracy of only 23.7%"; no training accuracy is given).
TABLE1: dict[str, tuple[float | None, float]] = {
    "Activity": (0.983, 0.266),
    "Audio": (0.418, 0.332),
    "Aggregated CNN": (0.505, 0.350),
    "RNN": (0.848, 0.396),
}
FRAME_AVERAGING_VAL: float = 0.237
#: Section 6.2: "Our fusion network achieves a validation accuracy of 43.7%" (no training accuracy given;
#: not a row of Table 1).
FUSION_VAL: float = 0.437
#: The paper's rows in the order of its Table 1, plus the frame-averaging baseline of section 2.3 and the
#: feature-fusion network of section 6.2.
PAPER_ROWS: dict[str, tuple[float | None, float]] = {**TABLE1, "Frame averaging": (None, FRAME_AVERAGING_VAL),
                                                      "Fusion network": (None, FUSION_VAL)}
#: Table 2, "Our submissions with training, validation and test accuracies": submission -> (train, valid,
#: test); None where the paper prints "-" (models retrained on Train+Val have no held-out split).
TABLE2: dict[int, tuple[float | None, float | None, float]] = {
    1: (0.86216, 0.54716, 0.44341),
    2: (0.81997, 0.54447, 0.48979),
    3: (None, None, 0.50463),
    4: (0.52320, 0.71967, 0.50092),
    5: (0.52742, 0.68463, 0.47680),
    6: (None, None, 0.52875),
    7: (None, None, 0.49907),
}
#: Table 2's method column, in the paper's words (:data:`emotiw_utils.submissions.SUBMISSIONS` runs them).
TABLE2_METHODS: dict[int, str] = {
    1: "Training on Train, Validation on Valid",
    2: "Training on Train, Validation on Valid, stable fusion",
    3: "Training on Train+Val, hyperparams from submission 2, stable fusion",
    4: "Training on Val, Validation on Train",
    5: "Training on Val, Validation on Train, stable fusion",
    6: "Training on Train+Val, hyperparams from submission 4",
    7: "Random Search over combinations of submission 3 and 6 on Train+Val",
}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation of ``values``; ``(nan, nan)`` when empty."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std())


def _fmt(values: Sequence[float]) -> str:
    m, s = mean_std(values)
    if not np.isfinite(m):
        return "–"
    n = len([v for v in values if v is not None and np.isfinite(v)])
    return f"{100 * m:.1f}" if n == 1 else f"{100 * m:.1f} ± {100 * s:.1f}"


def table1_frame(ours: Mapping[str, Mapping[str, Sequence[float]]], data_label: str, rows: Sequence[str] | None = None):
    """Table 1 rows, the paper's beside ours, as a DataFrame indexed by model (accuracies in %).

    ``ours``: model -> ``{"train": [per-seed accuracy], "val": [per-seed accuracy]}`` (fractions; a
    model missing from ``ours`` shows dashes). ``rows``: which models, in order (default: those of
    ``ours`` that the paper reports, then the others). Our columns read "mean ± std over seeds" (a
    single value when there is one seed); ``data_label`` (e.g. "synthetic") goes into their headers.
    """
    import pandas as pd

    if rows is None:
        rows = [r for r in PAPER_ROWS if r in ours] + [r for r in ours if r not in PAPER_ROWS]
    out = []
    for r in rows:
        p_train, p_val = PAPER_ROWS.get(r, (None, None))
        mine: Mapping[str, Any] = ours.get(r, {})
        n = max(len(mine.get("train", [])), len(mine.get("val", [])))
        out.append({
            "model": r,
            "paper: train (%)": "–" if p_train is None else f"{100 * p_train:.1f}",
            "paper: val (%)": "–" if p_val is None else f"{100 * p_val:.1f}",
            f"ours ({data_label}): train (%)": _fmt(mine.get("train", [])),
            f"ours ({data_label}): val (%)": _fmt(mine.get("val", [])),
            "seeds": n,
        })
    return pd.DataFrame(out).set_index("model")
