"""The PCA of the audio model (paper 3), capped at fit time by the data it sees.

A class of its own so that the saved audio model (``emotiw_utils.model_store``, which trusts it by this name)
and both modules that build the model (:mod:`emotiw_utils.audio_selection`, :mod:`emotiw_utils.audio`) share it.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

__all__ = ["CappedPCA"]


class CappedPCA(PCA):
    """A PCA whose size is capped, at fit time, by the rows and columns it is fitted on: the calibration
    folds of :func:`emotiw_utils.svm.calibrated_fit` see only part of a small training split (e.g. a
    submission trained on a small Val), and a size chosen on the whole split may not fit a fold."""

    def _fit(self, X):
        wanted = self.n_components
        self.n_components = min(int(wanted), X.shape[0], X.shape[1])
        try:
            out = super()._fit(X)
            # a C-ordered copy, as a saved model reads it back: the same BLAS path, bit-identical projections
            self.components_ = np.ascontiguousarray(self.components_)
            return out
        finally:
            self.n_components = wanted
