"""RAVDESS emotional speech (Livingstone & Russo 2018): a real-data check of the audio model (paper section 3).

Files are named ``MM-VV-EE-II-SS-RR-AA.<ext>`` (modality, vocal channel, emotion, intensity, statement,
repetition, actor). RAVDESS has eight emotions; they map onto the seven EmotiW classes as the data's
README prescribes: neutral and calm -> Neutral, happy -> Happy, sad -> Sad, angry -> Angry, fearful -> Fear,
disgust -> Disgust, surprised -> Surprise. Evaluation must be speaker-independent (split by actor).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from emotiw_utils.constants import EMOTIONS
from emotiw_utils.errors import DataFormatError

__all__ = ["RAVDESS_TO_EMOTIW", "RavdessFile", "scan_ravdess"]

#: RAVDESS emotion code -> EmotiW class index (constants.EMOTIONS order).
RAVDESS_TO_EMOTIW: dict[int, int] = {
    1: EMOTIONS.index("Neutral"), 2: EMOTIONS.index("Neutral"), 3: EMOTIONS.index("Happy"),
    4: EMOTIONS.index("Sad"), 5: EMOTIONS.index("Angry"), 6: EMOTIONS.index("Fear"),
    7: EMOTIONS.index("Disgust"), 8: EMOTIONS.index("Surprise"),
}
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg"}


@dataclass(frozen=True)
class RavdessFile:
    """One RAVDESS recording: ``path``, EmotiW ``label`` (0..6), ``actor`` (1..24), ``intensity`` (1 normal,
    2 strong) and the original ``emotion_code`` (1..8)."""

    path: Path
    label: int
    actor: int
    intensity: int
    emotion_code: int


def scan_ravdess(root: str | Path) -> list[RavdessFile]:
    """Every audio file under ``root`` (e.g. ``Actor_01/*.flac``), sorted by path.

    Raises DataFormatError for a missing folder, an audio file whose name is not a RAVDESS name, an
    unknown emotion code, or a folder without audio files.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "no such RAVDESS folder")
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in _AUDIO_EXT or not p.is_file():
            continue
        m = _NAME.match(p.stem)
        if not m:
            raise DataFormatError(p, "not a RAVDESS file name (expected MM-VV-EE-II-SS-RR-AA)")
        emotion, intensity, actor = int(m.group(3)), int(m.group(4)), int(m.group(7))
        if emotion not in RAVDESS_TO_EMOTIW:
            raise DataFormatError(p, f"unknown RAVDESS emotion code {emotion:02d} (expected 01-08)")
        out.append(RavdessFile(p, RAVDESS_TO_EMOTIW[emotion], actor, intensity, emotion))
    if not out:
        raise DataFormatError(root, "no RAVDESS audio files (*.flac, *.wav) found")
    return out
