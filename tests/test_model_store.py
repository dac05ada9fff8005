"""Fitted scikit-learn models on disk: exact round trip, nothing untrusted loaded."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import model_store, svm
from emotiw_utils.errors import DataFormatError


def test_svm_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(70, 6)), np.arange(70) % 7
    model = svm.fit_svm(x, y, C=1.0, gamma="scale", seed=0)
    path = model_store.save_model(tmp_path / "m.skops", model)
    back = model_store.load_model(path)
    assert np.array_equal(svm.predict_proba_full(back, x), svm.predict_proba_full(model, x))
    assert not list(tmp_path.glob(".*part*"))  # the temporary file was renamed


class Untrusted:
    def __init__(self):
        self.w = np.ones(3)


def test_untrusted_type_is_refused_by_name(tmp_path):
    import skops.io as sio

    sio.dump(Untrusted(), tmp_path / "u.skops")
    with pytest.raises(DataFormatError, match="not trusted: .*Untrusted"):
        model_store.load_model(tmp_path / "u.skops")


def test_not_a_model_file(tmp_path):
    (tmp_path / "x.skops").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="not a model file"):
        model_store.load_model(tmp_path / "x.skops")
    with pytest.raises(FileNotFoundError, match="no such model"):
        model_store.load_model(tmp_path / "missing.skops")
