"""Generate and cache a whole synthetic dataset (SynthFER, SynthTFD, SynthAFEW) for a profile.

The dataset is written in the real datasets' formats (FER2013 CSV, TFD ``.mat``, AFEW folders of
``.avi`` clips with audio and keypoint sidecars) by the writers of :mod:`emotiw_utils.datasets`,
so the notebooks read synthetic and real data through the same loaders. Every image and clip is
drawn from its own random stream ``default_rng([seed, kind, index])``: the output does not
depend on the number of worker processes. A dataset is built in ``<dir>.partial`` and renamed
when complete; ``generation.json`` records what was generated and makes re-runs instant.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import paths
from ..constants import (AFEW_FPS, AFEW_SPLITS, AUDIO_SR, EMOTIONS, FER2013_CLASS_COUNTS, FER_USAGES,
                         KEYPOINTS_SUFFIX, NUM_CLASSES, TEST_LABELS_FILENAME, TFD_FILENAME)

#: Bump when the generator's output format changes. Cached datasets are also rebuilt whenever the
#: generator's source changes (see :func:`generator_fingerprint`), so a tuned knob never serves stale data.
GENERATOR_VERSION = 1
#: Approximate class shares of AFEW clips (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral).
AFEW_CLASS_SHARES = (0.17, 0.10, 0.11, 0.20, 0.16, 0.10, 0.16)
#: Per-clip metadata (the generator's ground truth story of every clip), at the AFEW root.
METADATA_FILENAME = "synth_metadata.csv"


@dataclass(frozen=True)
class SynthSizes:
    """How much to generate: AFEW clips per split, FER images per Usage, labelled TFD images."""

    afew: tuple[int, int, int]
    fer: tuple[int, int, int]
    tfd: int
    tfd_unlabelled: int


#: Sizes per profile; ``full`` is AFEW 5.0 (723/383/539) + FER2013 (35,887) + TFD (4,178 labelled).
SYNTH_PROFILES: dict[str, SynthSizes] = {
    "smoke": SynthSizes(afew=(35, 21, 14), fer=(1400, 300, 300), tfd=280, tfd_unlabelled=20),
    "demo": SynthSizes(afew=(362, 192, 270), fer=(14355, 1795, 1794), tfd=2089, tfd_unlabelled=200),
    "full": SynthSizes(afew=(723, 383, 539), fer=(28709, 3589, 3589), tfd=4178, tfd_unlabelled=400),
}


def generator_fingerprint() -> str:
    """SHA-256 over the source of every module of :mod:`emotiw_utils.synth` and the dataset writers."""
    import hashlib

    here = Path(__file__).resolve().parent
    files = sorted(here.glob("*.py")) + sorted((here.parent / "datasets").glob("*.py"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def split_counts(total: int, shares) -> list[int]:
    """Integer class counts summing to ``total`` in proportion to ``shares`` (largest remainder),
    at least one per class when total allows."""
    shares = np.asarray(shares, dtype=np.float64) / np.sum(shares)
    raw = shares * total
    counts = np.floor(raw).astype(int)
    if total >= len(shares):
        counts = np.maximum(counts, 1)
    for i in np.argsort(-(raw - np.floor(raw))):
        if counts.sum() >= total:
            break
        counts[i] += 1
    while counts.sum() > total:
        counts[np.argmax(counts)] -= 1
    return counts.tolist()


def _labels(total: int, shares, rng: np.random.Generator) -> np.ndarray:
    lab = np.repeat(np.arange(NUM_CLASSES), split_counts(total, shares))
    return rng.permutation(lab)


# ---- workers (module level so multiprocessing can pickle them) -------------------------------

def _static_task(args):
    seed, kind, index, label, framing_name = args
    from .static import FER_FRAMING, TFD_FRAMING, render_static

    framing = FER_FRAMING if framing_name == "fer" else TFD_FRAMING
    img, _kps, out_label = render_static(np.random.default_rng([seed, kind, index]), int(label), framing)
    return img, out_label


def _clip_task(args):
    seed, split_idx, index, label, out_path = args
    from ..datasets.afew import write_keypoints
    from ..datasets.video import write_clip
    from .clips import make_clip

    clip = make_clip(np.random.default_rng([seed, 2, split_idx, index]), int(label))
    out_path = Path(out_path)
    write_clip(out_path, clip.frames, fps=AFEW_FPS, audio=clip.audio, sr=AUDIO_SR)
    write_keypoints(out_path.with_name(out_path.stem + KEYPOINTS_SUFFIX), clip.keypoints)
    return clip.meta


def _pool_map(fn, tasks, workers: int, desc: str, progress: bool):
    if workers <= 1:
        return [fn(t) for t in tqdm(tasks, desc=desc, disable=not progress)]
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(workers) as pool:
        chunk = max(1, len(tasks) // (workers * 16))
        return list(tqdm(pool.imap(fn, tasks, chunksize=chunk), total=len(tasks), desc=desc, disable=not progress))


# ---- the three datasets ---------------------------------------------------------------------

def fer_plan(sizes: SynthSizes, seed: int) -> tuple[np.ndarray, list[str]]:
    """The class drawn for every SynthFER image (before annotation noise) and its Usage, in file order."""
    rng = np.random.default_rng([seed, 100])
    labels, usages = [], []
    for usage, n in zip(FER_USAGES, sizes.fer):
        labels.append(_labels(n, FER2013_CLASS_COUNTS, rng))
        usages += [usage] * n
    return np.concatenate(labels), usages


def generate_fer(out_csv: Path, sizes: SynthSizes, seed: int, workers: int, progress: bool) -> dict:
    """SynthFER: ``fer2013.csv`` with FER2013's class proportions in every Usage."""
    from ..datasets.fer2013 import write_fer2013_csv

    labels, usages = fer_plan(sizes, seed)
    tasks = [(seed, 0, i, int(lab), "fer") for i, lab in enumerate(labels)]
    out = _pool_map(_static_task, tasks, workers, "SynthFER faces", progress)
    images = np.stack([o[0] for o in out])
    written = np.array([o[1] for o in out], dtype=np.int64)
    write_fer2013_csv(out_csv, images, written, np.array(usages))
    return {"images": len(images), "label_noise_rows": int((written != labels).sum())}


def generate_tfd(out_mat: Path, sizes: SynthSizes, seed: int, workers: int, progress: bool) -> dict:
    """SynthTFD: labelled faces (TFD's 4,178 in ``full``) plus a few unlabelled ones, 5 folds."""
    from ..datasets.tfd import write_tfd_mat

    rng = np.random.default_rng([seed, 101])
    labels = _labels(sizes.tfd, np.ones(NUM_CLASSES), rng)
    n = sizes.tfd + sizes.tfd_unlabelled
    render_labels = np.concatenate([labels, rng.integers(0, NUM_CLASSES, sizes.tfd_unlabelled)])
    tasks = [(seed, 1, i, int(lab), "tfd") for i, lab in enumerate(render_labels)]
    out = _pool_map(_static_task, tasks, workers, "SynthTFD faces", progress)
    images = np.stack([o[0] for o in out])
    stored = np.concatenate([labels, -np.ones(sizes.tfd_unlabelled, dtype=np.int64)])
    # About 8 images per identity, identities never shared across a fold's train/valid/test.
    identities = np.arange(n) // 8
    folds = np.zeros((n, 5), dtype=np.int64)
    id_rng = np.random.default_rng([seed, 102])
    for f in range(5):
        role = id_rng.choice([1, 1, 1, 2, 3], size=identities.max() + 1)  # 60% train, 20% valid, 20% test
        folds[: sizes.tfd, f] = role[identities[: sizes.tfd]]
    write_tfd_mat(out_mat, images, stored, identities, folds)
    return {"images": n, "labelled": int(sizes.tfd)}


def generate_afew(afew_dir: Path, sizes: SynthSizes, seed: int, workers: int, progress: bool) -> dict:
    """SynthAFEW: ``Train|Val/<Emotion>/<clip>.avi`` and an unlabelled, flat ``Test/`` whose ground
    truth goes to ``test_labels.csv`` (as the organisers released it after the challenge)."""
    tasks, rows = [], []
    for split_idx, (split, n) in enumerate(zip(AFEW_SPLITS, sizes.afew)):
        labels = _labels(n, AFEW_CLASS_SHARES, np.random.default_rng([seed, 103, split_idx]))
        for i, lab in enumerate(labels):
            clip_id = f"{split[:2].lower()}{i:05d}"
            folder = afew_dir / split if split == "Test" else afew_dir / split / EMOTIONS[lab]
            folder.mkdir(parents=True, exist_ok=True)
            tasks.append((seed, split_idx, i, int(lab), str(folder / f"{clip_id}.avi")))
            rows.append((split, clip_id, EMOTIONS[lab]))
    metas = _pool_map(_clip_task, tasks, workers, "SynthAFEW clips", progress)
    with open(afew_dir / TEST_LABELS_FILENAME, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip", "emotion"])
        w.writerows([(c, e) for s, c, e in rows if s == "Test"])
    with open(afew_dir / METADATA_FILENAME, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "clip", "label", "n_frames", "duration_s", "events", "motion", "motion_informative",
                    "audio_informative", "occluded", "no_face", "frames_without_keypoints"])
        for (split, clip_id, _), m in zip(rows, metas):
            w.writerow([split, clip_id, m["label"], m["n_frames"], m["duration_s"], json.dumps(m["events"]),
                        m["motion"], m["motion_informative"], m["audio_informative"], m["occluded"], m["no_face"],
                        m["frames_without_keypoints"]])
    return {"clips": len(tasks), "frames": int(sum(m["n_frames"] for m in metas)),
            "audio_seconds": round(float(sum(m["duration_s"] for m in metas)), 1)}


def generate_dataset(profile: str, seed: int = 0, workers: int | None = None, force: bool = False,
                     root: Path | None = None, progress: bool = True) -> Path:
    """Generate (or reuse the cached) synthetic dataset of ``profile`` and return its root.

    The root holds ``fer2013/fer2013.csv``, ``tfd/TFD_48x48.mat``, ``afew/Train|Val|Test`` and
    ``generation.json``. ``workers`` defaults to all cores. Raises ValueError for an unknown profile.
    """
    if profile not in SYNTH_PROFILES:
        raise ValueError(f"no synthetic dataset for profile {profile!r}; choose one of {', '.join(SYNTH_PROFILES)}")
    sizes = SYNTH_PROFILES[profile]
    root = Path(root) if root is not None else paths.synth_dataset_dir(profile, seed)
    wanted = {"profile": profile, "seed": seed, "generator_version": GENERATOR_VERSION,
              "generator_fingerprint": generator_fingerprint(), "sizes": asdict(sizes)}
    info_path = root / paths.SYNTH_INFO
    if info_path.exists() and not force:
        info = json.loads(info_path.read_text())
        if {k: info.get(k) for k in wanted} == json.loads(json.dumps(wanted)):
            return root
    workers = workers or os.cpu_count() or 1
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / paths.FER_SUBDIR).mkdir(parents=True)
    (partial / paths.TFD_SUBDIR).mkdir(parents=True)
    (partial / paths.AFEW_SUBDIR).mkdir(parents=True)
    t0 = time.perf_counter()
    stats = {
        "fer2013": generate_fer(partial / paths.FER_SUBDIR / paths.FER_CSV, sizes, seed, workers, progress),
        "tfd": generate_tfd(partial / paths.TFD_SUBDIR / TFD_FILENAME, sizes, seed, workers, progress),
        "afew": generate_afew(partial / paths.AFEW_SUBDIR, sizes, seed, workers, progress),
    }
    info = dict(wanted, stats=stats, workers=workers, wall_time_s=round(time.perf_counter() - t0, 1),
                created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    (partial / paths.SYNTH_INFO).write_text(json.dumps(info, indent=2))
    if root.exists():
        shutil.rmtree(root)
    os.replace(partial, root)
    return root


def load_generation_info(root: Path) -> dict:
    """The ``generation.json`` of a synthetic dataset root (sizes, seed, wall time, stats)."""
    return json.loads((Path(root) / paths.SYNTH_INFO).read_text())
