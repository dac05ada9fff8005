"""Names shared by every stage: classes, splits, dataset file names.

One name for one thing: the class order is FER2013's everywhere (paper section 2.1.1),
``Angry Disgust Fear Happy Sad Surprise Neutral``.
"""

from __future__ import annotations

#: The seven EmotiW classes in FER2013 order; index = label id everywhere in the project.
EMOTIONS: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES: int = len(EMOTIONS)
EMOTION_TO_ID: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}
#: Label used where the class is unknown (e.g. the AFEW Test split).
UNKNOWN_LABEL: int = -1

#: AFEW split folder names (AFEW 5.0 layout ``Train|Val|Test/<Emotion>/<clip>.avi``).
AFEW_SPLITS: tuple[str, ...] = ("Train", "Val", "Test")
#: AFEW 5.0 clip counts per split (paper section 1).
AFEW5_SIZES: dict[str, int] = {"Train": 723, "Val": 383, "Test": 539}
#: Video frame rate of AFEW clips.
AFEW_FPS: int = 25
#: Sample rate every audio track is resampled to (paper section 3 uses openSMILE on 16 kHz speech).
AUDIO_SR: int = 16000

#: FER2013 CSV columns and Usage values (Kaggle format).
FER_COLUMNS: tuple[str, ...] = ("emotion", "pixels", "Usage")
FER_USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
FER_SIZE: int = 48
#: FER2013 totals (35,887 images) for reference checks.
FER2013_SIZES: dict[str, int] = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
FER2013_CLASS_COUNTS: tuple[int, ...] = (4953, 547, 5121, 8989, 6077, 4002, 6198)
#: Image-folder layout of FER2013 (``train|test/<emotion>/*.jpg``): folder names, lower case.
FER_FOLDER_SPLITS: dict[str, str] = {"train": "Training", "test": "PublicTest"}

#: TFD: the 48x48 file and its expression ids (1..7, same order as FER2013; -1 unlabelled).
TFD_FILENAME: str = "TFD_48x48.mat"
TFD_SIZE: int = 48
#: Number of labelled TFD images used in the paper (4,178).
TFD_LABELLED: int = 4178

#: The five facial keypoints, in this order, everywhere (MTCNN order).
KEYPOINTS: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

#: Sidecar file next to each AFEW clip with per-frame keypoints (CSV, one row per frame).
KEYPOINTS_SUFFIX: str = ".keypoints.csv"
#: Ground-truth labels for an unlabelled Test split, when available (``clip,emotion`` CSV).
TEST_LABELS_FILENAME: str = "test_labels.csv"


def emotion_id(name: str) -> int:
    """Map a class name (any case, e.g. ``'happy'``) to its FER2013 label id; ValueError if unknown."""
    for i, e in enumerate(EMOTIONS):
        if e.lower() == name.strip().lower():
            return i
    raise ValueError(f"unknown emotion {name!r}; expected one of {', '.join(EMOTIONS)}")
