"""FER2013 reader/writer: round trips in every layout and one test per error message."""

from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotiw_utils.constants import EMOTIONS, FER_USAGES
from emotiw_utils.datasets.fer2013 import FerData, load_fer2013, write_fer2013_csv
from emotiw_utils.errors import DataFormatError

N = 24


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, 48, 48), dtype=np.uint8)
    images[0] = 0  # extremes and one-digit values
    images[1] = 255
    labels = np.arange(N, dtype=np.int64) % 7
    usages = np.array([FER_USAGES[i % 3] for i in range(N)])
    return images, labels, usages


def _assert_same(d: FerData, images, labels, usages):
    assert isinstance(d, FerData)
    assert d.images.dtype == np.uint8 and d.images.shape == images.shape
    assert d.labels.dtype == np.int64
    np.testing.assert_array_equal(d.images, images)
    np.testing.assert_array_equal(d.labels, labels)
    assert d.usage.tolist() == list(usages)
    assert len(d) == len(images)


@pytest.mark.parametrize("name", ["fer2013.csv", "fer2013.csv.gz"])
def test_csv_round_trip(tmp_path, data, name):
    path = write_fer2013_csv(tmp_path / name, *data)
    _assert_same(load_fer2013(path), *data)
    _assert_same(load_fer2013(tmp_path), *data)  # the folder holding it
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_csv_exact_kaggle_format(tmp_path):
    images = np.zeros((2, 48, 48), np.uint8)
    images[1, 0, :3] = [7, 42, 255]
    write_fer2013_csv(tmp_path / "f.csv", images, [3, 0], ["Training", "PrivateTest"])
    lines = (tmp_path / "f.csv").read_text().splitlines()
    assert lines[0] == "emotion,pixels,Usage"
    assert lines[1] == "3," + " ".join(["0"] * 2304) + ",Training"
    assert lines[2].startswith("0,7 42 255 0 ") and lines[2].endswith(" 0,PrivateTest")
    assert len(lines) == 3


def test_gzip_output_is_deterministic_and_gzip(tmp_path, data):
    a = write_fer2013_csv(tmp_path / "a" / "fer2013.csv.gz", *data).read_bytes()
    b = write_fer2013_csv(tmp_path / "b" / "fer2013.csv.gz", *data).read_bytes()
    assert a == b and a[:2] == b"\x1f\x8b"
    assert gzip.decompress(a).startswith(b"emotion,pixels,Usage\n")


def test_single_usage_string_and_subset(tmp_path, data):
    images, labels, _ = data
    d = load_fer2013(write_fer2013_csv(tmp_path / "f.csv", images, labels, "PublicTest"))
    assert set(d.usage) == {"PublicTest"}
    assert len(d.subset("PublicTest")) == N and len(d.subset("Training")) == 0
    with pytest.raises(ValueError, match="unknown Usage"):
        d.subset("Validation")


def test_subset_and_counts(tmp_path, data):
    d = load_fer2013(write_fer2013_csv(tmp_path / "f.csv", *data))
    train = d.subset("Training")
    assert len(train) == N // 3 and set(train.usage) == {"Training"}
    np.testing.assert_array_equal(train.images, data[0][data[2] == "Training"])
    assert len(d.subset(["PublicTest", "PrivateTest"])) == 2 * N // 3
    assert d.usage_counts() == {u: N // 3 for u in FER_USAGES}
    assert d.class_counts().sum() == N


def test_tolerates_crlf_tabs_and_extra_spaces(tmp_path, data):
    images, labels, usages = data
    rows = ["emotion,pixels,Usage"]
    for i in range(3):
        vals = [str(v) for v in images[i].ravel()]
        pix = "\t".join(vals) if i == 0 else " " + "  ".join(vals) + " "
        rows.append(f"{labels[i]},{pix},{usages[i]}")
    (tmp_path / "f.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    _assert_same(load_fer2013(tmp_path / "f.csv"), images[:3], labels[:3], usages[:3])


def test_image_folder_round_trip(tmp_path, data):
    images, labels, _ = data
    folder = {"Training": "train", "PublicTest": "test"}
    usages = np.where(np.arange(N) % 2 == 0, "Training", "PublicTest")
    for i in range(N):
        emotion = EMOTIONS[labels[i]]
        name = emotion.upper() if i % 3 == 0 else emotion.lower()  # folder names any case
        d = tmp_path / folder[usages[i]] / name
        d.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(d / f"im{i:03d}.png"), images[i])
    got = load_fer2013(tmp_path)
    # expected order: train then test, class id, file name
    order = sorted(range(N), key=lambda i: (usages[i] != "Training", labels[i], i))
    _assert_same(got, images[order], labels[order], usages[order])
    assert got.source == tmp_path


def test_image_folder_reads_color_jpg_as_gray(tmp_path):
    img = np.full((48, 48, 3), (10, 120, 200), np.uint8)
    (tmp_path / "train" / "Happy").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "train" / "Happy" / "x.jpg"), img)
    d = load_fer2013(tmp_path)
    assert d.images.shape == (1, 48, 48) and d.labels.tolist() == [3] and d.usage.tolist() == ["Training"]


# ------------------------------------------------------------------------------------------- errors


def _csv(tmp_path: Path, rows: list[str], header: str = "emotion,pixels,Usage") -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _pix(n: int = 2304, value: str = "1") -> str:
    return " ".join([value] * n)


def _row(emotion="0", pixels=None, usage="Training") -> str:
    return f"{emotion},{_pix() if pixels is None else pixels},{usage}"


def test_error_missing_column(tmp_path):
    path = _csv(tmp_path, ["0,Training"], header="emotion,Usage")
    with pytest.raises(DataFormatError, match=r"missing column 'pixels' \(found: emotion, Usage\)") as e:
        load_fer2013(path)
    assert e.value.path == path and str(e.value).startswith(str(path))


def test_error_wrong_pixel_count(tmp_path):
    rows = [_row()] * 16 + [_row(pixels=_pix(2303))]
    with pytest.raises(DataFormatError, match="row 17: expected 2304 pixel values, found 2303"):
        load_fer2013(_csv(tmp_path, rows))


def test_error_counts_cannot_balance_out(tmp_path):
    rows = [_row(pixels=_pix(2305)), _row(pixels=_pix(2303))]
    with pytest.raises(DataFormatError, match="row 1: expected 2304 pixel values, found 2305"):
        load_fer2013(_csv(tmp_path, rows))


def test_error_empty_pixels(tmp_path):
    with pytest.raises(DataFormatError, match="row 2: expected 2304 pixel values, found 0"):
        load_fer2013(_csv(tmp_path, [_row(), _row(pixels="")]))


def test_error_unknown_usage(tmp_path):
    rows = [_row()] * 4 + [_row(usage="Foo")]
    with pytest.raises(
        DataFormatError, match=r"row 5: unknown Usage 'Foo' \(expected Training, PublicTest, PrivateTest\)"
    ):
        load_fer2013(_csv(tmp_path, rows))


def test_error_emotion_out_of_range(tmp_path):
    with pytest.raises(DataFormatError, match=r"row 3: emotion 9 out of range 0\.\.6"):
        load_fer2013(_csv(tmp_path, [_row(), _row(), _row(emotion="9")]))


def test_error_emotion_not_integer(tmp_path):
    with pytest.raises(DataFormatError, match="row 1: emotion 'happy' is not an integer"):
        load_fer2013(_csv(tmp_path, [_row(emotion="happy")]))


@pytest.mark.parametrize("bad", ["12.5", "abc", "256", "-1", "1000", "65541"])
def test_error_pixel_not_integer_0_255(tmp_path, bad):
    pixels = " ".join(["3"] * 100 + [bad] + ["3"] * 2203)
    with pytest.raises(DataFormatError, match=rf"row 2: pixel values must be integers 0\.\.255 \(found '{bad}'\)"):
        load_fer2013(_csv(tmp_path, [_row(), _row(pixels=pixels)]))


def test_error_wrong_field_count(tmp_path):
    with pytest.raises(DataFormatError, match="row 1: expected 3 comma-separated fields, found 4"):
        load_fer2013(_csv(tmp_path, [_row() + ",extra"]))


def test_error_file_not_found(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        load_fer2013(tmp_path / "nope.csv")


def test_error_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataFormatError, match="file is empty"):
        load_fer2013(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataFormatError, match="no data rows after the header"):
        load_fer2013(tmp_path / "h.csv")


def test_error_corrupt_gzip(tmp_path, data):
    good = write_fer2013_csv(tmp_path / "f.csv.gz", *data).read_bytes()
    (tmp_path / "t.csv.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFormatError, match="corrupt gzip data"):
        load_fer2013(tmp_path / "t.csv.gz")
    (tmp_path / "p.csv.gz").write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataFormatError, match="not a gzip file"):
        load_fer2013(tmp_path / "p.csv.gz")


def test_error_directory_without_data(tmp_path):
    with pytest.raises(DataFormatError, match="no fer2013.csv, fer2013.csv.gz or train/, test/ image folders"):
        load_fer2013(tmp_path)


def test_error_unknown_emotion_folder(tmp_path):
    (tmp_path / "train" / "happyy").mkdir(parents=True)
    with pytest.raises(
        DataFormatError,
        match=r"unknown emotion folder 'happyy' \(expected angry, disgust, fear, happy, sad, surprise, neutral\)",
    ) as e:
        load_fer2013(tmp_path)
    assert e.value.path == tmp_path / "train" / "happyy"


def test_error_wrong_image_size(tmp_path):
    (tmp_path / "test" / "sad").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "test" / "sad" / "a.png"), np.zeros((40, 48), np.uint8))
    with pytest.raises(DataFormatError, match="image is 48x40 pixels, expected 48x48"):
        load_fer2013(tmp_path)


def test_error_undecodable_image(tmp_path):
    (tmp_path / "test" / "sad").mkdir(parents=True)
    (tmp_path / "test" / "sad" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match="cannot decode image"):
        load_fer2013(tmp_path)


def test_error_no_images_in_folders(tmp_path):
    (tmp_path / "train" / "sad").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="no images found"):
        load_fer2013(tmp_path)


def test_writer_rejects_bad_input(tmp_path, data):
    images, labels, usages = data
    target = tmp_path / "f.csv"
    with pytest.raises(ValueError, match=r"shape \(N, 48, 48\)"):
        write_fer2013_csv(target, images[:, :40], labels, usages)
    with pytest.raises(ValueError, match="uint8"):
        write_fer2013_csv(target, images.astype(np.float32), labels, usages)
    with pytest.raises(ValueError, match=r"0\.\.6"):
        write_fer2013_csv(target, images, labels + 1, usages)
    with pytest.raises(ValueError, match="unknown Usage"):
        write_fer2013_csv(target, images, labels, ["Train"] * N)
    assert not list(tmp_path.iterdir())  # nothing written


def test_counts_table_rows_per_usage_and_classes(tmp_path):
    images = np.zeros((6, 48, 48), dtype=np.uint8)
    labels = np.array([0, 3, 3, 6, 1, 3])
    usages = np.array(["Training", "Training", "PublicTest", "PrivateTest", "Training", "Training"])
    path = write_fer2013_csv(tmp_path / "f.csv", images, labels, usages)
    t = load_fer2013(path).counts_table()
    assert list(t.index) == ["Training", "PublicTest", "PrivateTest"]
    assert t.loc["Training", "Happy"] == 2 and t.loc["Training", "Disgust"] == 1 and t.loc["PublicTest", "Happy"] == 1
    assert list(t["total"]) == [4, 1, 1]
