"""JupyterLab working copies of the chapters: a chapter runs in JupyterLab as under papermill.

``emotiw lab --profile P [--variant NAME]`` opens the chapters as working copies in ``{run}/lab/`` (or
``{run}/variants/NAME/lab/``), written by :func:`prepare_lab`.

What is implemented
-------------------
* A working copy is the chapter (MyST markdown, so JupyterLab opens it through jupytext and saves it back as
  MyST without outputs) with papermill's ``injected-parameters`` cell after the chapter's own parameters cell,
  made by papermill's own function: the profile's resolved parameters plus the variant's overrides, ``run_dir``
  the variant (or the run), the datasets the run read, the resolved device. So Run All in JupyterLab executes
  exactly what ``emotiw run`` executes, and writes into the same folder.
* Its last cell calls :func:`record_lab_run`, which writes the stage's manifest as the runner would (the same
  input hash, so a later ``emotiw run --variant NAME`` finds the stage done and runs only what reads it), and
  records a parameter changed in the working copy as an override of the variant (``variant.json``), where
  ``emotiw compare`` and ``emotiw run`` find it.
* Before the copies are written, the base run's stages that the variant leaves unchanged are linked
  (:func:`emotiw_utils.variants.reuse_base_stage`), so a chapter reads its inputs as ``emotiw run`` would.

Deviations
----------
* A stage run in JupyterLab has no executed notebook (its outputs stay in the browser); its manifest says
  ``executed_by: jupyterlab`` and the runner accepts it as cached without one. Its wall time is not measured.
* Only parameters are carried from a working copy: code edited in one is not recorded (every ``emotiw lab``
  writes the copies again). To change code, edit the chapter in ``notebooks/`` (also a notebook in JupyterLab):
  its source is part of the input hash, so the variant runs that chapter again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import artifacts, paths, pipeline, profiles, stages
from .variants import LAB_SUBDIR, VARIANT_FILE, base_run_of, open_variant, read_variant, reuse_base_stage

__all__ = ["LAB_KERNEL", "LAB_KERNEL_DISPLAY", "RECORD_TAG", "prepare_lab", "record_lab_run"]

#: Tag of the last cell of a working copy (records the run for ``emotiw run`` and ``emotiw compare``).
RECORD_TAG = "record-lab-run"
#: The kernel the working copies ask for (installed into the venv by ``make install``).
LAB_KERNEL = "emotiw-book"
LAB_KERNEL_DISPLAY = "emotiw-book (.venv)"


def _lab_context(profile: str, variant: str | None, run_dir: str | Path | None,
                 overrides: Mapping[str, Any] | Iterable[str] | None, device: str | None, data: Any = None,
                 replace: Mapping[str, Any] | None = None, command: str | None = None):
    """``(base run, target folder, params, data, device)`` of a lab session; the target is the variant's folder
    (created, its record updated) or the run itself."""
    from .device import resolve_device

    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = profiles.parse_overrides(list(overrides))
    base = Path(run_dir if run_dir is not None else paths.default_run_dir(profile)).expanduser().resolve()
    if variant is not None:
        target, rec = open_variant(base, variant, profile, overrides, command)
        overrides = rec["overrides"]
    else:
        target = base
        target.mkdir(parents=True, exist_ok=True)
    params = profiles.load_params(profile, overrides)
    common = params["common"]
    if data is None and replace is None:
        data = _data_of_run(base)
    if data is None:
        data = pipeline.resolve_data(profile, int(common["seed"]), data, replace=replace, progress=False)
    dev = resolve_device(device if device is not None else common.get("device", "auto"))
    return base, target, params, data, dev


def _data_of_run(run_dir: Path):
    """The datasets a run read (from any of its manifests), so that a lab session uses the same; None if unknown."""
    for st in stages.STAGES:
        try:
            m = artifacts.read_manifest(run_dir / st.name)
        except ValueError:
            continue
        p = (m or {}).get("parameters") or {}
        if p.get("afew_dir") and p.get("fer2013_path"):
            data = pipeline.DataPaths(Path(p["afew_dir"]), Path(p["fer2013_path"]),
                                      Path(p["tfd_path"]) if p.get("tfd_path") else None, bool(p.get("synthetic")))
            try:
                return data.resolved()
            except FileNotFoundError:
                return None
    return None


def _record_cell_source(stage: str, names: Iterable[str]) -> str:
    args = ", ".join(f"{n}={n}" for n in names)
    return ("# Recorded for `emotiw run` and `emotiw compare` (written by `emotiw lab`): this stage's manifest, and\n"
            "# any parameter changed above as an override of the variant.\n"
            "from emotiw_utils import working_copies\n\n"
            f"working_copies.record_lab_run({stage!r}, dict({args}))")


def prepare_lab(profile: str, variant: str | None = None, run_dir: str | Path | None = None,
                overrides: Mapping[str, Any] | Iterable[str] | None = None, device: str | None = None,
                data: Any = None, replace: Mapping[str, Any] | None = None, command: str | None = None) -> Path:
    """Write every chapter as a JupyterLab working copy in ``{target}/lab/`` and return that folder.

    ``target`` is variant ``variant`` of ``run_dir`` (default ``runs/<profile>``; created, ``overrides`` merged
    into its record), or the run itself without ``variant``. Each copy is the chapter (MyST markdown) with
    papermill's injected parameters cell after the chapter's own (the profile's resolved parameters, the
    variant's overrides, ``run_dir`` the target) and a last cell calling :func:`record_lab_run`. The base
    run's stages that the variant leaves unchanged are linked first, so a chapter reads them as ``emotiw run``
    would. The datasets are those the run read (its manifests), else the profile's.
    """
    import jupytext
    import nbformat
    from papermill.parameterize import parameterize_notebook

    base, target, params, data, dev = _lab_context(profile, variant, run_dir, overrides, device, data, replace,
                                                   command)
    lab = target / LAB_SUBDIR
    lab.mkdir(parents=True, exist_ok=True)
    data_fp = data.fingerprint()
    for stage in pipeline.available_stages():
        sp = pipeline.stage_call_parameters(params, stage, data, target, dev)
        if variant is not None:
            h, _ = pipeline.stage_input_hash(stage, sp, data_fp, target)
            reuse_base_stage(base, target, stage.name, h)
        nb = jupytext.read(stage.source)
        nb.metadata.setdefault("papermill", {})  # what papermill adds when it loads a notebook itself
        for c in nb.cells:
            c.metadata.setdefault("tags", [])
        nb = parameterize_notebook(nb, artifacts.to_jsonable(sp), kernel_name=LAB_KERNEL, language="python")
        nb.metadata["kernelspec"] = {"name": LAB_KERNEL, "display_name": LAB_KERNEL_DISPLAY, "language": "python"}
        nb.metadata.pop("papermill", None)
        cell = nbformat.v4.new_code_cell(_record_cell_source(stage.name, sp), metadata={"tags": [RECORD_TAG]})
        nb.cells.append(cell)
        nb.metadata["jupytext"] = {"text_representation": {"extension": ".md", "format_name": "myst"}}
        path = lab / f"{stage.name}.md"
        artifacts.atomic_write_text(path, jupytext.writes(nb, fmt="md:myst"))
    return lab


def record_lab_run(stage: str, parameters: Mapping[str, Any]) -> dict:
    """Record a stage run from a JupyterLab working copy (its last cell): the manifest the runner would have
    written (same input hash, ``executed_by: jupyterlab``) and, in a variant, every parameter that differs from
    the variant's resolved ones as a new override (``STAGE.KEY``). Returns the manifest; prints what it recorded.

    ValueError when the stage wrote no ``metrics.json`` (it did not finish).
    """
    import uuid

    from .device import device_description

    st = stages.get(stage)
    run_dir = Path(parameters["run_dir"]).resolve()
    sdir = run_dir / st.name
    if not (sdir / stages.METRICS).is_file():
        raise ValueError(f"{sdir}: no {stages.METRICS}; run every cell of the chapter before this one")
    rec = read_variant(run_dir)
    profile = str(parameters["profile"])
    notes = []
    if rec is not None:
        params = profiles.load_params(profile, rec.get("overrides") or {})
        want = pipeline.stage_call_parameters(params, st, None, run_dir, parameters.get("device"))
        changed = {f"{st.name}.{k}": v for k, v in parameters.items()
                   if k not in pipeline.INJECTED_PARAMETERS and k != "profile"
                   and artifacts.to_jsonable(v) != artifacts.to_jsonable(want.get(k))}
        if changed:
            open_variant(base_run_of(run_dir), rec["name"], profile, changed)
            notes += [f"recorded override {k}={v!r} in {run_dir / VARIANT_FILE}" for k, v in changed.items()]
    data = pipeline.DataPaths(Path(parameters["afew_dir"]), Path(parameters["fer2013_path"]),
                     Path(parameters["tfd_path"]) if parameters.get("tfd_path") else None,
                     bool(parameters.get("synthetic")))
    sp = dict(parameters)
    input_hash, upstream = pipeline.stage_input_hash(st, sp, data.fingerprint(), run_dir)
    now = artifacts.now_iso()
    manifest = artifacts.write_manifest(
        sdir, stage=st.name, parameters=sp, input_hash=input_hash, status="ok", wall_time_s=0.0,
        device=device_description(str(parameters.get("device", "cpu"))), started=now, finished=now,
        run_id=uuid.uuid4().hex, profile=profile, notebook=st.notebook, executed=None, upstream=upstream,
        executed_by="jupyterlab")
    notes.append(f"recorded {st.name} in {sdir} (as `emotiw run` would: later stages that read it run again)")
    for n in notes:
        print(n, file=sys.stdout)
    return manifest

