"""FER2013 reader and writer (Kaggle ``fer2013.csv`` format, its ``.gz`` form, and image folders).

The Kaggle file has the header ``emotion,pixels,Usage`` and one row per 48x48 grayscale face:
``emotion`` is the class id 0..6 in FER2013 order (:data:`emotiw_utils.constants.EMOTIONS`),
``pixels`` the 2,304 pixel values as space-separated integers 0..255 in row-major order, and
``Usage`` one of ``Training``, ``PublicTest``, ``PrivateTest``.

The image-folder layout (``train|test/<emotion>/*.jpg|*.png``, as re-distributed on Kaggle) is read
too: ``train`` becomes Usage ``Training`` and ``test`` becomes ``PublicTest``.

Errors about a file's content raise :class:`~emotiw_utils.errors.DataFormatError`. Row numbers in the
messages count data rows from 1, not counting the header: row ``k`` is line ``k + 1`` of the file.
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

import numpy as np

from emotiw_utils.constants import EMOTIONS, FER_COLUMNS, FER_FOLDER_SPLITS, FER_SIZE, FER_USAGES, NUM_CLASSES
from emotiw_utils.atomic import atomic_path
from emotiw_utils.errors import DataFormatError
from emotiw_utils.paths import FER_CSV

__all__ = ["FerData", "PIXELS_PER_IMAGE", "load_fer2013", "write_fer2013_csv"]

#: Number of pixel values per FER2013 row (48 * 48).
PIXELS_PER_IMAGE: int = FER_SIZE * FER_SIZE
#: Image file suffixes read from the image-folder layout (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")

_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK_BYTES = 1 << 24  # bytes read per block while parsing (bounds peak memory)
_ROWS_PER_CHUNK = 2048  # rows formatted per vectorised block when writing
_EXPECTED_FOLDERS = ", ".join(e.lower() for e in EMOTIONS)


@dataclass
class FerData:
    """FER2013 images with their labels and Usage.

    Attributes:
        images: ``(N, 48, 48)`` uint8 grayscale faces.
        labels: ``(N,)`` int64 class ids 0..6 in FER2013 order (``constants.EMOTIONS``).
        usage: ``(N,)`` str array, each one of ``constants.FER_USAGES``.
        source: the file or folder the data was read from.
    """

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    source: Path

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.shape[1:] != (FER_SIZE, FER_SIZE) or len(self.labels) != n or len(self.usage) != n:
            raise ValueError(
                f"inconsistent FerData: images {self.images.shape}, labels {self.labels.shape}, "
                f"usage {self.usage.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, usage: str | Iterable[str]) -> FerData:
        """Rows whose Usage is ``usage`` (one name, or several), in file order.

        Raises ValueError for a name that is not in ``constants.FER_USAGES``.
        """
        wanted = [usage] if isinstance(usage, str) else list(usage)
        for u in wanted:
            if u not in FER_USAGES:
                raise ValueError(f"unknown Usage {u!r}; expected one of {', '.join(FER_USAGES)}")
        mask = np.isin(self.usage, wanted)
        return FerData(self.images[mask], self.labels[mask], self.usage[mask], self.source)

    def usage_counts(self) -> dict[str, int]:
        """Number of rows per Usage, in ``constants.FER_USAGES`` order."""
        return {u: int(np.count_nonzero(self.usage == u)) for u in FER_USAGES}

    def class_counts(self) -> np.ndarray:
        """``(7,)`` int64 number of rows per class."""
        return np.bincount(self.labels, minlength=NUM_CLASSES).astype(np.int64)

    def counts_table(self):
        """``pandas.DataFrame``: one row per Usage (FER2013 order), one column per class, and ``total``."""
        import pandas as pd

        table = pd.DataFrame(
            [np.bincount(self.labels[self.usage == u], minlength=NUM_CLASSES) for u in FER_USAGES],
            index=pd.Index(list(FER_USAGES), name="Usage"), columns=list(EMOTIONS), dtype=np.int64)
        table["total"] = table.sum(axis=1)
        return table


# --------------------------------------------------------------------------------------------- reading


def load_fer2013(path: str | Path) -> FerData:
    """Read FER2013 from ``fer2013.csv``, ``fer2013.csv.gz`` or a folder.

    ``path`` may be the CSV (plain or gzip-compressed; gzip is recognised by its content), or a folder
    holding ``fer2013.csv`` / ``fer2013.csv.gz`` (the plain one is preferred), or a folder in the
    image-folder layout ``train|test/<emotion>/*.jpg|*.jpeg|*.png`` (folder names case-insensitive,
    images read as grayscale and required to be 48x48; order: train then test, class id, file name).

    Returns:
        :class:`FerData` with ``images`` ``(N, 48, 48)`` uint8, ``labels`` ``(N,)`` int64, ``usage``
        ``(N,)`` str, rows in file order (blank lines are skipped).

    Raises:
        DataFormatError: missing file, unreadable / empty file, missing column, wrong number of
            fields or pixel values in a row, a value that is not an integer 0..255, an emotion
            outside 0..6, an unknown Usage, an unknown emotion folder or a bad image. Row numbers
            are 1-based data rows counted after the header line: row ``k`` is line ``k + 1`` of
            the file (blank lines count as rows).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataFormatError(p, "file not found")
    if p.is_dir():
        for name in (FER_CSV, FER_CSV + ".gz"):
            if (p / name).is_file():
                return _load_csv(p / name)
        if any(c.is_dir() and c.name.lower() in FER_FOLDER_SPLITS for c in p.iterdir()):
            return _load_image_folders(p)
        raise DataFormatError(
            p, f"no {FER_CSV}, {FER_CSV}.gz or train/, test/ image folders in this directory"
        )
    return _load_csv(p)


def _load_csv(path: Path) -> FerData:
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
        if magic == _GZIP_MAGIC:
            with gzip.open(path, "rb") as f:
                return _parse_csv(f, path)
        if path.suffix.lower() == ".gz" and magic:
            raise DataFormatError(path, "not a gzip file (the name ends in .gz but the content is not gzip)")
        with open(path, "rb") as f:
            return _parse_csv(f, path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataFormatError(path, f"corrupt gzip data: {e}") from e
    except OSError as e:
        raise DataFormatError(path, f"cannot read file: {e}") from e


def _line_blocks(f: BinaryIO) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(number of the first line, complete lines)`` read from ``f`` in ~16 MB blocks.

    Streaming keeps the peak memory at a few blocks (the uncompressed Kaggle file is 300 MB) and
    lets the allocator reuse the same buffers, which is much faster than splitting the whole file.
    """
    first = 0
    rest = b""
    while True:
        data = f.read(_BLOCK_BYTES)
        if not data:
            break
        data = rest + data if rest else data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        lines = data[:cut].split(b"\n")
        rest = data[cut + 1 :]
        yield first, lines
        first += len(lines)
    if rest:
        yield first, [rest]


def _field_text(field: bytes, limit: int = 40) -> str:
    text = field.decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_header(line: bytes, path: Path) -> tuple[int, int, int, int]:
    """Column indices of emotion, pixels, Usage and the number of columns."""
    line = line.rstrip(b"\r")
    if line.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
        line = line[3:]
    names = [_field_text(h.strip().strip(b'"').strip()) for h in line.split(b",")]
    lowered = [n.lower() for n in names]
    index = []
    for col in FER_COLUMNS:
        if col.lower() not in lowered:
            raise DataFormatError(path, f"missing column {col!r} (found: {', '.join(names)})")
        index.append(lowered.index(col.lower()))
    return index[0], index[1], index[2], len(names)


def _parse_csv(f: BinaryIO, path: Path) -> FerData:
    columns: tuple[int, int, int, int] | None = None
    labels: list[int] = []
    usages: list[str] = []
    blocks: list[np.ndarray] = []
    usage_cache: dict[bytes, str] = {}
    header_line = 0  # 0-based line number of the header; data row k is line header_line + k
    for first, lines in _line_blocks(f):
        if columns is None:
            k = next((i for i, line in enumerate(lines) if line and not line.isspace()), None)
            if k is None:  # leading blank lines
                continue
            columns = _parse_header(lines[k], path)
            header_line = first + k
            lines, first = lines[k + 1 :], first + k + 1
        i_emotion, i_pixels, i_usage, n_fields = columns
        rows: list[int] = []
        pixel_fields: list[bytes] = []
        for row, line in enumerate(lines, start=first - header_line):
            if not line or line.isspace():  # blank lines (e.g. a final newline) are skipped but counted
                continue
            fields = line.rstrip(b"\r").split(b",")
            if len(fields) != n_fields:
                raise DataFormatError(
                    path, f"row {row}: expected {n_fields} comma-separated fields, found {len(fields)}"
                )
            emo = fields[i_emotion].strip().strip(b'"')
            try:
                label = int(emo)
            except ValueError:
                raise DataFormatError(
                    path, f"row {row}: emotion {_field_text(emo)!r} is not an integer"
                ) from None
            if not 0 <= label < NUM_CLASSES:
                raise DataFormatError(path, f"row {row}: emotion {label} out of range 0..{NUM_CLASSES - 1}")
            u = fields[i_usage]
            usage = usage_cache.get(u)
            if usage is None:
                usage = _field_text(u.strip().strip(b'"').strip())
                if usage not in FER_USAGES:
                    raise DataFormatError(
                        path, f"row {row}: unknown Usage {usage!r} (expected {', '.join(FER_USAGES)})"
                    )
                usage_cache[u] = usage
            rows.append(row)
            labels.append(label)
            usages.append(usage)
            pixel_fields.append(fields[i_pixels])
        if rows:
            blocks.append(_parse_pixel_block(pixel_fields, rows, path))
    if columns is None:
        raise DataFormatError(path, "file is empty")
    if not labels:
        raise DataFormatError(path, "no data rows after the header")
    n = len(labels)
    images = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return FerData(
        images=images.reshape(n, FER_SIZE, FER_SIZE),
        labels=np.asarray(labels, dtype=np.int64),
        usage=np.asarray(usages, dtype=str),
        source=path,
    )


def _parse_pixel_block(fields: Sequence[bytes], rows: Sequence[int], path: Path) -> np.ndarray:
    """Parse pixel fields into ``(len(fields), 2304)`` uint8.

    Fast path: one C-level ``np.fromstring`` over the block plus per-row value counts. Fields with
    unusual spacing (tabs, repeated spaces) are normalised and parsed again; only when that fails
    too is each row examined to name the first bad row and value.
    """
    stripped = [f.strip(b' \t"') for f in fields]
    values = _fast_parse(stripped)
    if values is None:
        normalised = [b" ".join(s.split()) for s in stripped]
        values = _fast_parse(normalised)
        if values is None:
            _raise_first_bad_row(normalised, rows, path)
    return values


def _fast_parse(fields: list[bytes]) -> np.ndarray | None:
    """``(R, 2304)`` uint8 if every field is exactly 2304 single-space separated ints 0..255, else None."""
    expected = PIXELS_PER_IMAGE - 1
    if any(f.count(b" ") != expected for f in fields):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # older numpy only warns on bad data
            # int32: a value never wraps into 0..255 by overflow (int16 would for 65536..65791)
            values = np.fromstring(b" ".join(fields), dtype=np.int32, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if values.size != len(fields) * PIXELS_PER_IMAGE or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(len(fields), PIXELS_PER_IMAGE)


def _raise_first_bad_row(fields: list[bytes], rows: Sequence[int], path: Path) -> NoReturn:
    for field, row in zip(fields, rows):
        tokens = field.split()
        if len(tokens) != PIXELS_PER_IMAGE:
            raise DataFormatError(
                path, f"row {row}: expected {PIXELS_PER_IMAGE} pixel values, found {len(tokens)}"
            )
        for t in tokens:
            if not (t.isdigit() and len(t) <= 3 and int(t) <= 255):
                raise DataFormatError(
                    path, f"row {row}: pixel values must be integers 0..255 (found {_field_text(t, 20)!r})"
                )
    # every value passed the strict check, so the fast parser cannot have failed on this block
    raise AssertionError("pixel block failed to parse but no bad row was found")


def _load_image_folders(root: Path) -> FerData:
    import cv2  # imported lazily: only the image-folder layout needs it

    class_of = {e.lower(): i for i, e in enumerate(EMOTIONS)}
    split_dirs = sorted(
        (c for c in root.iterdir() if c.is_dir() and c.name.lower() in FER_FOLDER_SPLITS),
        key=lambda c: (list(FER_FOLDER_SPLITS).index(c.name.lower()), c.name),
    )
    images: list[np.ndarray] = []
    labels: list[int] = []
    usages: list[str] = []
    for split_dir in split_dirs:
        usage = FER_FOLDER_SPLITS[split_dir.name.lower()]
        entries: list[tuple[int, str, Path]] = []
        for child in sorted(split_dir.iterdir()):
            if child.name.startswith("."):
                continue
            if not child.is_dir():
                raise DataFormatError(child, "unexpected file: images must be inside emotion folders")
            label = class_of.get(child.name.lower())
            if label is None:
                raise DataFormatError(
                    child, f"unknown emotion folder {child.name!r} (expected {_EXPECTED_FOLDERS})"
                )
            for f in child.iterdir():
                if f.name.startswith("."):
                    continue
                if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataFormatError(
                        f, f"unexpected entry in an emotion folder (expected {', '.join(IMAGE_SUFFIXES)} images)"
                    )
                entries.append((label, f.name, f))
        for label, _, f in sorted(entries, key=lambda e: (e[0], e[1])):
            try:
                img = cv2.imdecode(np.fromfile(f, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
            except (OSError, cv2.error) as e:
                raise DataFormatError(f, f"cannot read image: {e}") from e
            if img is None:
                raise DataFormatError(f, "cannot decode image (corrupt or not an image)")
            if img.shape != (FER_SIZE, FER_SIZE):
                raise DataFormatError(
                    f, f"image is {img.shape[1]}x{img.shape[0]} pixels, expected {FER_SIZE}x{FER_SIZE}"
                )
            images.append(img)
            labels.append(label)
            usages.append(usage)
    if not images:
        raise DataFormatError(root, "no images found in the train/ and test/ emotion folders")
    return FerData(
        images=np.stack(images).astype(np.uint8, copy=False),
        labels=np.asarray(labels, dtype=np.int64),
        usage=np.asarray(usages, dtype=str),
        source=root,
    )


# --------------------------------------------------------------------------------------------- writing

# value v -> its decimal digits followed by one space, left-aligned in 4 bytes, plus a keep-mask
_CHARS = np.zeros((256, 4), dtype=np.uint8)
_KEEP = np.zeros((256, 4), dtype=bool)
for _v in range(256):
    _b = f"{_v} ".encode()
    _CHARS[_v, : len(_b)] = np.frombuffer(_b, dtype=np.uint8)
    _KEEP[_v, : len(_b)] = True
del _v, _b


def _as_uint8_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (FER_SIZE, FER_SIZE):
        raise ValueError(f"images must have shape (N, {FER_SIZE}, {FER_SIZE}), got {images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"images must be uint8 (or integers 0..255), got dtype {images.dtype}")
    if images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError("image values must lie in 0..255")
    return images.astype(np.uint8)


def write_fer2013_csv(
    path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    usages: str | Sequence[str] | np.ndarray,
    *,
    compresslevel: int = 6,
) -> Path:
    """Write images in the exact Kaggle ``fer2013.csv`` format; gzip-compress if ``path`` ends in ``.gz``.

    Args:
        path: destination; written atomically (temporary file in the same folder, then renamed).
        images: ``(N, 48, 48)`` uint8 (or integers 0..255).
        labels: ``(N,)`` integer class ids 0..6.
        usages: ``(N,)`` strings from ``constants.FER_USAGES``, or one string for every row.
        compresslevel: gzip level for ``.gz`` output (the gzip header has no timestamp, so the
            same data always gives the same bytes).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: for inputs of the wrong shape, dtype or range (nothing is written).
    """
    path = Path(path)
    imgs = _as_uint8_images(images)
    n = len(imgs)
    if n == 0:
        raise ValueError("no images to write")
    labs = np.asarray(labels)
    if labs.shape != (n,) or not np.issubdtype(labs.dtype, np.integer):
        raise ValueError(f"labels must be ({n},) integers, got {labs.dtype} {labs.shape}")
    if labs.min() < 0 or labs.max() >= NUM_CLASSES:
        raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}")
    use = np.full(n, usages, dtype=object) if isinstance(usages, str) else np.asarray(usages, dtype=object)
    if use.shape != (n,):
        raise ValueError(f"usages must be one string or ({n},) strings, got shape {use.shape}")
    unknown = set(use.tolist()) - set(FER_USAGES)
    if unknown:
        raise ValueError(f"unknown Usage {sorted(map(str, unknown))}; expected {', '.join(FER_USAGES)}")

    prefixes = [f"{i},".encode() for i in range(NUM_CLASSES)]
    suffixes = {u: f",{u}\n".encode() for u in FER_USAGES}
    flat = imgs.reshape(n, PIXELS_PER_IMAGE)
    with atomic_path(path) as tmp, open(tmp, "xb") as raw:
        out = raw
        if path.suffix.lower() == ".gz":  # no timestamp in the header: same data, same bytes
            out = gzip.GzipFile(
                filename=path.with_suffix("").name, mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
            )
        try:
            out.write(",".join(FER_COLUMNS).encode() + b"\n")
            for start in range(0, n, _ROWS_PER_CHUNK):
                block = flat[start : start + _ROWS_PER_CHUNK]
                text = _CHARS[block][_KEEP[block]].tobytes()  # "v v ... v " per row, rows concatenated
                row_end = np.cumsum(_KEEP[block].sum(axis=(1, 2)))
                row_begin = np.concatenate(([0], row_end[:-1]))
                lines = [
                    prefixes[labs[start + j]] + text[b : e - 1] + suffixes[use[start + j]]
                    for j, (b, e) in enumerate(zip(row_begin.tolist(), row_end.tolist()))
                ]
                out.write(b"".join(lines))
        finally:
            if out is not raw:
                out.close()
    return path
