"""What every notebook does first: :func:`open_stage` sets up one stage's run.

One call replaces the dozen setup lines each chapter used to repeat: the stage folder, where the data came
from (synthetic or real, per dataset), the partition protocol of the clip-level stages, the seeds, the
device banner and the seeding itself::

    ctx = open_stage(stage, profile=profile, run_dir=run_dir, seed=seed, device=device, afew_dir=afew_dir,
                     fer2013_path=fer2013_path, tfd_path=tfd_path, train_splits=train_splits,
                     select_split=select_split, fixed=fixed_epochs is not None, n_seeds=n_seeds)
    ctx.out_dir, ctx.data_label, ctx.partition, ctx.seeds
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stages
from .protocol import Partition, check_partition

__all__ = ["StageContext", "fixed_hyperparameters", "open_stage"]

#: Figure resolution of every chapter (inline PNGs).
FIGURE_DPI = 90


@dataclass
class StageContext:
    """One stage's run, as :func:`open_stage` set it up."""

    stage: stages.Stage
    profile: str
    run_dir: Path
    out_dir: Path
    seed: int
    seeds: list[int]
    device: str
    origins: dict[str, str]
    data_label: str
    partition: Partition | None
    t_start: float = field(default_factory=time.perf_counter)

    def stage_dir(self, stage: stages.Stage | str) -> Path:
        """The folder of another stage of this run."""
        st = stage if isinstance(stage, stages.Stage) else stages.get(stage)
        return st.dir(self.run_dir)

    def elapsed(self) -> float:
        """Seconds since the stage was opened."""
        return time.perf_counter() - self.t_start

    def banner(self) -> str:
        """The line each chapter shows first (data, profile, seeds, device, partition)."""
        from .device import device_description

        seeds = f"seeds {self.seeds}" if len(self.seeds) > 1 else f"seed {self.seed}"
        text = f"**Data in this run: {self.data_label}** (profile `{self.profile}`, {seeds}); device: " \
               f"{device_description(self.device)}."
        if self.partition is not None:
            text += f" Partition: {self.partition.label}."
        return text


def fixed_hyperparameters(**values: Any) -> bool:
    """Whether a retraining run fixes its hyperparameters from a reference run: True when every one of
    ``values`` (e.g. ``svm_C=..., svm_gamma=...``) is set, False when none is (the stage searches them);
    ValueError naming them when only some are. Pass the result as :func:`open_stage`'s ``fixed``."""
    given = [k for k, v in values.items() if v is not None]
    if given and len(given) != len(values):
        raise ValueError(f"set all of {', '.join(values)} (fixed hyperparameters from a reference run) or none "
                         f"(the stage searches them); got only {', '.join(given)}")
    return bool(given)


def open_stage(stage: str, *, profile: str, run_dir: str | Path, seed: int, device: str = "cpu",
               afew_dir: str | Path | None = None, fer2013_path: str | Path | None = None,
               tfd_path: str | Path | None = None, datasets: Sequence[str] | None = None,
               train_splits: Any = None, select_split: str | None = None, fixed: bool = False,
               n_seeds: int = 1, show: bool = True) -> StageContext:
    """Open stage ``stage`` (a name of :mod:`emotiw_utils.stages`) in ``run_dir`` and return its context.

    * creates ``{run_dir}/{stage}/`` (a link there, to another run's stage, is replaced by a folder of this run:
      the other run is never written);
    * labels the data: each of AFEW, FER2013, TFD given is synthetic or real; ``datasets`` keeps only
      those the chapter uses (``["AFEW"]`` for audio and activity);
    * with ``train_splits`` (the clip-level stages 03-08): validates the partition protocol
      (:func:`emotiw_utils.protocol.check_partition`; ``fixed``: hyperparameters from a reference run);
    * seeds ``seed, seed + 1, ...`` (``n_seeds`` of them; ValueError below 1), and seeds every RNG with ``seed``;
    * shows the banner (``show``).
    """
    import matplotlib

    from . import artifacts
    from .device import seed_everything
    from .variants import detach
    from .datasets.origins import dataset_origins, describe_origins

    st = stages.get(stage)
    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds must be at least 1, got {n_seeds}")
    origins = dataset_origins(afew_dir, fer2013_path, tfd_path)
    if datasets is not None:
        origins = {k: v for k, v in origins.items() if k in datasets}
    partition = check_partition(train_splits, select_split, fixed=fixed) if train_splits is not None else None
    run_dir = Path(run_dir)
    # A stage folder that is a link (a variant reusing its base run's stage, a submission sharing the main run's)
    # belongs to another run: the stage now runs here, so the link goes and the folder becomes this run's own.
    # Writing through it would change the other run (a working copy opened in JupyterLab runs without the runner).
    detach(st.dir(run_dir))
    ctx = StageContext(stage=st, profile=str(profile), run_dir=run_dir, out_dir=artifacts.stage_dir(run_dir, st.name),
                       seed=int(seed), seeds=[int(seed) + i for i in range(int(n_seeds))], device=str(device),
                       origins=origins, data_label=describe_origins(origins) if origins else "none",
                       partition=partition)
    matplotlib.rcParams["figure.dpi"] = FIGURE_DPI
    seed_everything(ctx.seed)
    if show:
        from IPython.display import Markdown, display

        display(Markdown(ctx.banner()))
    return ctx
