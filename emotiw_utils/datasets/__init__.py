"""Readers and writers for the datasets' native formats (real data and synthetic data alike).

* :mod:`~emotiw_utils.datasets.fer2013` - FER2013 ``fer2013.csv`` (``.gz``) and image folders;
* :mod:`~emotiw_utils.datasets.tfd` - Toronto Face Database ``TFD_48x48.mat``;
* :mod:`~emotiw_utils.datasets.video` - AVI clips with audio (PyAV);
* :mod:`~emotiw_utils.datasets.afew` - the AFEW 5.0 folder tree, clip loading, decode reports;
* :mod:`~emotiw_utils.datasets.keypoints` - keypoint sidecars of clips and static-image files.
* :mod:`~emotiw_utils.datasets.origins` - which datasets of a run are synthetic and which real.

Bad input raises :class:`~emotiw_utils.errors.DataFormatError` naming the file and the problem.
Importing this package loads numpy only; PyAV, OpenCV, SciPy and pandas are imported when used.
"""

from emotiw_utils.datasets.afew import (
    Clip,
    ClipRecord,
    DecodeReport,
    afew_summary,
    decode_report,
    iter_clips,
    load_clip,
    probe_split,
    scan_afew,
)
from emotiw_utils.datasets.keypoints import read_keypoints, read_static_keypoints, write_keypoints
from emotiw_utils.datasets.fer2013 import FerData, load_fer2013, write_fer2013_csv
from emotiw_utils.datasets.tfd import TfdData, load_tfd, write_tfd_mat
from emotiw_utils.datasets.video import ClipInfo, NoAudioError, probe_clip, read_audio, read_frames, write_clip

__all__ = [
    "Clip",
    "ClipInfo",
    "ClipRecord",
    "DecodeReport",
    "FerData",
    "NoAudioError",
    "TfdData",
    "afew_summary",
    "decode_report",
    "iter_clips",
    "load_clip",
    "load_fer2013",
    "load_tfd",
    "probe_clip",
    "probe_split",
    "read_audio",
    "read_frames",
    "read_keypoints",
    "read_static_keypoints",
    "scan_afew",
    "write_clip",
    "write_fer2013_csv",
    "write_keypoints",
    "write_tfd_mat",
]
