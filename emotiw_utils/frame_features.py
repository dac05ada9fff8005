"""Per-frame CNN features of every clip of an AFEW split: the inputs of the clip-level vision models.

The IRNN (paper 2.2) reads "the output of the second convolutional layer after max pooling" of every
frame; the aggregated CNN (paper 2.3) reads the pre-softmax outputs. Stage 02 stores the pre-softmax
outputs of every frame (``frame_logits_{split}.npz``); any other layer is computed here, on the fly,
from ``cnn.pt`` and the aligned faces of stage 01 (conv2 of all AFEW frames would be 1.2 GB on disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotiw_utils import paths
from emotiw_utils.artifacts import stage_dir

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

    ``layer == "logits"`` reads ``02_cnn/frame_logits_{split}.npz``; any other layer of the CNN
    (``conv1``..``conv3``, ``fc``; see ``CnnConfig.layer_names``) is computed with
    ``cnn.layer_activations`` on ``device`` from the aligned faces of ``01_alignment`` and ``model``
    (default: ``02_cnn/cnn.pt``). FileNotFoundError names the stage to run when an artifact is missing.
    """
    run_dir = Path(run_dir)
    if layer == "logits":
        path = stage_dir(run_dir, "02_cnn") / paths.frame_logits_name(split)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no per-frame CNN outputs; run stage 02_cnn first")
        with np.load(path) as z:
            return ClipFrames(split, layer, z["clip_ids"].astype(str), z["labels"].astype(np.int64),
                              z["offsets"].astype(np.int64), z["logits"].astype(np.float32))
    from emotiw_utils import cnn
    from emotiw_utils.aligned import AfewFaces

    if model is None:
        ckpt = stage_dir(run_dir, "02_cnn") / paths.CNN_CHECKPOINT
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt}: no CNN checkpoint; run stage 02_cnn first")
        model = cnn.load_cnn(ckpt, device=device)
    if layer not in model.config.layer_names:
        raise ValueError(f"layer {layer!r} is not a layer of {model.config.arch}; "
                         f"choose one of {list(model.config.layer_names)}")
    faces_path = stage_dir(run_dir, "01_alignment") / paths.afew_faces_name(split)
    if not faces_path.is_file():
        raise FileNotFoundError(f"{faces_path}: no aligned faces; run stage 01_alignment first")
    faces = AfewFaces.load(faces_path)
    feats = cnn.layer_activations(model, faces.faces, layer, batch_size=batch_size, device=device)
    return ClipFrames(split, layer, faces.clip_ids.astype(str), faces.labels, faces.offsets,
                      feats.detach().to("cpu").float().numpy())
