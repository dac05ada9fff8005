"""The real FER2013 file, when present next to the repository (``../shared/data/fer2013``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from emotiw_utils.constants import FER2013_CLASS_COUNTS, FER2013_SIZES
from emotiw_utils.datasets.fer2013 import load_fer2013

FER_GZ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"


@pytest.mark.realdata
def test_real_fer2013_counts():
    if not FER_GZ.is_file():
        pytest.skip(f"real FER2013 not available at {FER_GZ}")
    d = load_fer2013(FER_GZ)
    assert len(d) == 35887 == sum(FER2013_SIZES.values())
    assert d.images.dtype == np.uint8 and d.images.shape == (35887, 48, 48)
    assert d.labels.dtype == np.int64
    assert d.usage_counts() == FER2013_SIZES
    assert tuple(d.class_counts().tolist()) == FER2013_CLASS_COUNTS
    # the first rows, parsed independently with plain string splitting
    with gzip.open(FER_GZ, "rt") as f:
        assert f.readline().strip() == "emotion,pixels,Usage"
        for i in range(3):
            emotion, pixels, usage = f.readline().strip().split(",")
            assert d.labels[i] == int(emotion) and d.usage[i] == usage
            np.testing.assert_array_equal(d.images[i].ravel(), [int(v) for v in pixels.split()])
