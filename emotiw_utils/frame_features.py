"""Per-frame CNN features of every clip of an AFEW split: the inputs of the clip-level vision models.

The IRNN (paper 2.2) reads "the output of the second convolutional layer after max pooling" of every
frame; the aggregated CNN (paper 2.3) reads the pre-softmax outputs. Stage 02 stores the pre-softmax
outputs of every frame (its artifact ``frame_logits``); any other layer is computed here, on the fly,
from the CNN (artifact ``cnn``) and the aligned faces of stage 01 (artifact ``afew_faces``): conv2 of all
AFEW frames would be 1.2 GB on disk. File names come from :mod:`emotiw_utils.stages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotiw_utils import stages

__all__ = ["ClipFrames", "load_frame_features"]


@dataclass
class ClipFrames:
    """Per-frame features of one split: ``features`` ``(F, D)`` float32 with clip ``i`` in
    ``features[offsets[i]:offsets[i + 1]]``; ``clip_ids`` ``(n,)``, ``labels`` ``(n,)`` (-1 unknown),
    ``offsets`` ``(n + 1,)``; ``layer`` names the CNN layer."""

    split: str
    layer: str
    clip_ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.clip_ids)

    def sequences(self, scale: Any = None) -> list[np.ndarray]:
        """One ``(T_i, D)`` array per clip (views), after ``scale(features)`` if given."""
        f = self.features if scale is None else scale(self.features)
        return [f[int(a):int(b)] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


def load_frame_features(run_dir: str | Path, split: str, layer: str = "conv2", model: Any = None,
                        device: Any = "cpu", batch_size: int | None = None) -> ClipFrames:
    """Features of ``layer`` for every frame of every clip of ``split`` (Train/Val/Test).

    ``layer == "logits"`` reads stage 02's per-frame outputs (``stages.CNN`` artifact ``frame_logits``);
    any other layer of the CNN (``conv1``..``conv3``, ``fc``; see ``CnnConfig.layer_names``) is computed
    with ``cnn.layer_activations`` on ``device`` from the aligned faces of stage 01 (``stages.ALIGNMENT``
    artifact ``afew_faces``) and ``model`` (default: stage 02's CNN, artifact ``cnn``).
    FileNotFoundError names the stage to run when an artifact is missing.
    """
    run_dir = Path(run_dir)
    if layer == "logits":
        with np.load(stages.CNN.require(run_dir, "frame_logits", split=split)) as z:
            return ClipFrames(split, layer, z["clip_ids"].astype(str), z["labels"].astype(np.int64),
                              z["offsets"].astype(np.int64), z["logits"].astype(np.float32))
    from emotiw_utils import cnn
    from emotiw_utils.aligned import AfewFaces

    if model is None:
        model = cnn.load_cnn(stages.CNN.require(run_dir, "cnn"), device=device)
    if layer not in model.config.layer_names:
        raise ValueError(f"layer {layer!r} is not a layer of {model.config.arch}; "
                         f"choose one of {list(model.config.layer_names)}")
    faces = AfewFaces.load(stages.ALIGNMENT.require(run_dir, "afew_faces", split=split))
    feats = cnn.layer_activations(model, faces.faces, layer, batch_size=batch_size, device=device)
    return ClipFrames(split, layer, faces.clip_ids.astype(str), faces.labels, faces.offsets,
                      feats.detach().to("cpu").float().numpy())
