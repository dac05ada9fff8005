"""Real-data check of the audio model on RAVDESS speech (speaker-independent); skips when the data is absent.

A reduced version of ``bench/bench_audio.py``: hyperparameters chosen by cross-validation grouped by actor
over actors 1-5 (five folds, one actor each), tested on the unseen actors 9-10 (420 files). The full nested
comparison over actors 1-12 is recorded in bench/RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotiw_utils import audio, metrics
from emotiw_utils.datasets.ravdess import scan_ravdess

RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess_speech16k"

pytestmark = pytest.mark.skipif(not RAVDESS.is_dir(), reason=f"RAVDESS speech not available at {RAVDESS}")


def test_ravdess_speaker_independent_reduced():
    files = [f for f in scan_ravdess(RAVDESS) if f.actor in (1, 2, 3, 4, 5, 9, 10)]
    assert len(files) == 7 * 60
    feats, status, seconds = audio.extract_paths([f.path for f in files], workers=0)
    assert (status == "ok").all() and feats.shape == (len(files), audio.IS10_DIM) and seconds.min() > 1
    y, actors = np.array([f.label for f in files]), np.array([f.actor for f in files])
    r = audio.evaluate_speaker_split(feats, y, actors, train=(1, 2, 3, 4, 5), test=(9, 10), pca_dims=(20, 50),
                                     Cs=(1, 10, 30), gammas=("scale", 0.003), n_folds=5)
    assert r["n_test"] == 120 and np.isclose(r["majority"], 0.2)  # Neutral = neutral + calm
    np.testing.assert_array_equal(r["test_index"], np.flatnonzero(actors >= 9))
    assert r["accuracy"] == metrics.accuracy(r["y_true"], r["y_pred"])
    assert r["accuracy"] > 0.30 and r["uar"] > 0.30  # chance: 14 % (UAR), majority class 20 %
