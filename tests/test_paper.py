"""Tests of emotiw_utils.paper: the paper's quoted numbers and the Table 1 comparison."""

from __future__ import annotations

import math

from emotiw_utils.paper import FRAME_AVERAGING_VAL, TABLE1, mean_std, table1_frame


def test_quoted_numbers():
    assert TABLE1["RNN"] == (0.848, 0.396)
    assert TABLE1["Aggregated CNN"] == (0.505, 0.350)
    assert FRAME_AVERAGING_VAL == 0.237


def test_mean_std_population_and_empty():
    m, s = mean_std([0.4, 0.5, 0.6])
    assert math.isclose(m, 0.5) and math.isclose(s, math.sqrt(2 / 300))
    assert all(math.isnan(v) for v in mean_std([]))
    assert mean_std([0.3, float("nan"), None]) == (0.3, 0.0)


def test_table1_frame_puts_ours_beside_the_paper():
    ours = {"RNN": {"train": [0.9, 0.8], "val": [0.5, 0.6]}, "Frame averaging": {"train": [0.4], "val": [0.3]},
            "Extra": {"train": [], "val": [0.2]}}
    t = table1_frame(ours, "synthetic")
    assert list(t.index) == ["RNN", "Frame averaging", "Extra"]
    assert t.loc["RNN", "paper: val (%)"] == "39.6"
    assert t.loc["RNN", "ours (synthetic): val (%)"] == "55.0 ± 5.0"
    assert t.loc["Frame averaging", "paper: train (%)"] == "–"  # the paper gives no training accuracy
    assert t.loc["Frame averaging", "ours (synthetic): val (%)"] == "30.0"  # one seed: no ± part
    assert t.loc["Extra", "paper: val (%)"] == "–" and t.loc["Extra", "ours (synthetic): train (%)"] == "–"
    t2 = table1_frame(ours, "synthetic", rows=["Aggregated CNN", "RNN"])
    assert t2.loc["Aggregated CNN", "ours (synthetic): val (%)"] == "–"
    assert t2.loc["Aggregated CNN", "seeds"] == 0
