"""emotiw_utils: the thin shared package behind the emotiw-book notebooks.

Reproduction of Kahou et al., "Recurrent Neural Networks for Emotion Recognition in Video"
(ICMI 2015). Importing the package has no side effects; submodules are imported on demand.
"""

__version__ = "0.1.0"
