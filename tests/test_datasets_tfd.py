"""TFD ``TFD_48x48.mat`` reader/writer: round trip, stored layout, error messages."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from emotiw_utils.constants import TFD_FILENAME
from emotiw_utils.datasets.tfd import TfdData, load_tfd, write_tfd_mat
from emotiw_utils.errors import DataFormatError

N = 30


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(N, 48, 48), dtype=np.uint8)
    labels = np.where(np.arange(N) % 3 == 0, -1, np.arange(N) % 7).astype(np.int64)
    identities = np.where(np.arange(N) % 5 == 0, -1, np.arange(N) // 2)
    folds = rng.integers(0, 4, size=(N, 5))
    return images, labels, identities, folds


def test_round_trip(tmp_path, data):
    images, labels, identities, folds = data
    path = write_tfd_mat(tmp_path / TFD_FILENAME, *data)
    for source in (path, tmp_path):  # the file, or the folder holding it
        d = load_tfd(source)
        assert isinstance(d, TfdData) and d.source == path and len(d) == N
        assert d.images.dtype == np.uint8 and d.images.shape == (N, 48, 48)
        assert d.labels.dtype == d.identities.dtype == d.folds.dtype == np.int64
        np.testing.assert_array_equal(d.images, images)
        np.testing.assert_array_equal(d.labels, labels)
        np.testing.assert_array_equal(d.identities, identities)
        np.testing.assert_array_equal(d.folds, folds)
    assert [p.name for p in tmp_path.iterdir()] == [TFD_FILENAME]


def test_stored_layout_is_tfd(tmp_path, data):
    images, labels, identities, folds = data
    mat = scipy.io.loadmat(write_tfd_mat(tmp_path / TFD_FILENAME, *data))
    assert mat["images"].shape == (N, 48, 48) and mat["images"].dtype == np.uint8
    assert mat["labs_ex"].shape == (N, 1) and mat["labs_id"].shape == (N, 1) and mat["folds"].shape == (N, 5)
    np.testing.assert_array_equal(mat["labs_ex"][:, 0], np.where(labels < 0, -1, labels + 1))  # 1-based
    assert set(np.unique(mat["labs_ex"])) <= {-1, 1, 2, 3, 4, 5, 6, 7}


def test_labelled_and_fold(tmp_path, data):
    d = load_tfd(write_tfd_mat(tmp_path / TFD_FILENAME, *data))
    lab = d.labelled()
    assert len(lab) == int((data[1] >= 0).sum()) and (lab.labels >= 0).all()
    np.testing.assert_array_equal(lab.images, data[0][data[1] >= 0])
    train = d.fold(2, "train")
    assert len(train) == int((data[3][:, 2] == 1).sum()) and (train.folds[:, 2] == 1).all()
    with pytest.raises(ValueError, match="fold must be"):
        d.fold(5, "train")
    with pytest.raises(ValueError, match="part must be"):
        d.fold(0, "validation")


def _save(tmp_path, **arrays):
    path = tmp_path / TFD_FILENAME
    scipy.io.savemat(path, arrays)
    return path


def _good(n=4):
    return {
        "images": np.zeros((n, 48, 48), np.uint8),
        "labs_ex": np.ones((n, 1), np.int32),
        "labs_id": np.ones((n, 1), np.int32),
        "folds": np.ones((n, 5), np.int32),
    }


def test_error_missing_key(tmp_path):
    arrays = _good()
    del arrays["folds"]
    with pytest.raises(DataFormatError, match=r"missing key 'folds' \(found: images, labs_ex, labs_id\)"):
        load_tfd(_save(tmp_path, **arrays))


def test_error_wrong_image_shape(tmp_path):
    arrays = _good()
    arrays["images"] = np.zeros((4, 32, 32), np.uint8)
    with pytest.raises(DataFormatError, match=r"'images' has shape \(4, 32, 32\), expected \(N, 48, 48\)"):
        load_tfd(_save(tmp_path, **arrays))


def test_error_label_out_of_range(tmp_path):
    arrays = _good()
    arrays["labs_ex"][2, 0] = 8
    with pytest.raises(DataFormatError, match=r"'labs_ex' row 3: label 8 not in \{-1, 1\.\.7\}"):
        load_tfd(_save(tmp_path, **arrays))
    arrays["labs_ex"][2, 0] = 0  # 0 is not a TFD label either (1-based)
    with pytest.raises(DataFormatError, match="label 0 not in"):
        load_tfd(_save(tmp_path, **arrays))


def test_error_inconsistent_lengths(tmp_path):
    arrays = _good()
    arrays["labs_id"] = np.ones((3, 1), np.int32)
    with pytest.raises(DataFormatError, match="inconsistent lengths: 'images' has 4 rows but 'labs_id' has 3"):
        load_tfd(_save(tmp_path, **arrays))


def test_error_bad_fold_value(tmp_path):
    arrays = _good()
    arrays["folds"][1, 4] = 7
    with pytest.raises(DataFormatError, match=r"'folds' row 2, fold 5: value 7 not in 0\.\.3"):
        load_tfd(_save(tmp_path, **arrays))


def test_error_unreadable_and_missing(tmp_path):
    (tmp_path / TFD_FILENAME).write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(DataFormatError, match="cannot read MATLAB file") as e:
        load_tfd(tmp_path)
    assert e.value.path == tmp_path / TFD_FILENAME
    with pytest.raises(DataFormatError, match="file not found"):
        load_tfd(tmp_path / "other.mat")


def test_writer_rejects_bad_input(tmp_path, data):
    images, labels, identities, folds = data
    target = tmp_path / TFD_FILENAME
    with pytest.raises(ValueError, match="labels must be 0..6 or -1"):
        write_tfd_mat(target, images, labels + 2, identities, folds)
    with pytest.raises(ValueError, match="folds must"):
        write_tfd_mat(target, images, labels, identities, folds + 1)
    with pytest.raises(ValueError, match="folds must be integers of shape"):
        write_tfd_mat(target, images, labels, identities, folds[:, :4])
    assert not list(tmp_path.iterdir())
