"""Errors for bad input name the file, also after crossing a process boundary."""

from __future__ import annotations

import copy
import multiprocessing as mp
from pathlib import Path

import pytest

from emotiw_utils.errors import DataFormatError


def _raise(path: str) -> None:
    raise DataFormatError(path, "not a video")


def test_message_starts_with_the_path():
    e = DataFormatError("/d/clip.avi", "not a video")
    assert str(e) == "/d/clip.avi: not a video" and e.path == Path("/d/clip.avi") and e.problem == "not a video"


def test_rebuilds_from_path_and_problem():
    # copy goes through __reduce__, as a process pool does when it sends the error back to the parent
    e = copy.deepcopy(DataFormatError("/d/clip.avi", "truncated"))
    assert isinstance(e, DataFormatError) and str(e) == "/d/clip.avi: truncated" and e.problem == "truncated"


def test_crosses_a_process_pool():
    with mp.get_context("spawn").Pool(1) as pool:
        with pytest.raises(DataFormatError, match=r"^/d/bad\.avi: not a video$"):
            pool.apply(_raise, ("/d/bad.avi",))
