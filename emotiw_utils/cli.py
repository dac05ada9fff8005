"""``emotiw`` command line: generate data, run the notebooks, build the book.

::

    emotiw data synth --profile demo [--seed 0] [--workers N] [--force]
    emotiw run --profile demo [--stages 00 03_irnn] [--device auto|cpu|cuda] [--run-dir D] [--executed-dir E]
               [--afew PATH] [--fer2013 PATH] [--tfd PATH] [--recompute] [--seed S] [-p KEY=VALUE ...]
               (profile real needs --afew and --fer2013; with a synthetic profile, given paths replace
               those synthetic datasets, e.g. --fer2013 PATH alone: the CNN on real FER2013)
    emotiw run --profile demo --variant NAME [-p KEY=VALUE ...] [--stages ...]
               (a variant of the run in --run-dir, in RUN_DIR/variants/NAME/: emotiw_utils/variants.py)
    emotiw compare RUN_OR_VARIANT ... [--run-dir runs/demo] [--out DIR]   (emotiw_utils/compare.py)
    emotiw lab [--profile demo] [--variant NAME] [-p KEY=VALUE ...]       (JupyterLab on the chapters: lab.py)
    emotiw book [--strict | --no-strict]
    emotiw stages
    emotiw predict VIDEO_OR_FOLDER... [--run-dir runs/demo] [--submission N] [--out DIR] [--device auto|cpu|cuda]
                   [--window SECONDS] (a finished run applied to any video: emotiw_utils/predict.py)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from . import paths, profiles, stages

#: Errors reported as one line (no traceback) with exit code 1.
_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError, KeyError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emotiw", description=(
        "Runnable reproduction of Kahou et al. 2015, 'Recurrent Neural Networks for Emotion Recognition in "
        "Video': generate the synthetic data, execute the notebooks, build the book."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="dataset commands")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    synth = dsub.add_parser("synth", help="generate (or reuse) the synthetic dataset of a profile")
    synth.add_argument("--profile", choices=profiles.SYNTHETIC_PROFILES, default="demo",
                       help="dataset size (default: demo)")
    synth.add_argument("--seed", type=int, default=None, help="generator seed (default: the profile's common.seed)")
    synth.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    synth.add_argument("--force", action="store_true", help="regenerate even if a matching dataset is cached")

    run = sub.add_parser("run", help="execute the notebooks (stages) of a profile with papermill")
    run.add_argument("--profile", choices=profiles.PROFILES, default="demo", help="parameter profile (default: demo)")
    run.add_argument("--stages", nargs="+", metavar="STAGE",
                     help=f"stages to run, by name or prefix (e.g. {stages.IRNN.name} or {stages.IRNN.number}); "
                          "default: all available")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                     help="torch device (default: the profile's common.device, normally auto)")
    run.add_argument("--run-dir", type=Path, default=None, help="artifact folder (default: runs/<profile>)")
    run.add_argument("--executed-dir", type=Path, default=None,
                     help="folder of the executed notebooks (default: book/executed, what `emotiw book` renders)")
    run.add_argument("--afew", type=Path, default=None, help="AFEW 5.0 root holding Train|Val|Test/")
    run.add_argument("--fer2013", type=Path, default=None,
                     help="fer2013.csv (or .csv.gz, or the image-folder root); alone with a synthetic profile: "
                          "train the CNN on real FER2013 (synthetic AFEW, no TFD)")
    run.add_argument("--tfd", type=Path, default=None, help="TFD_48x48.mat (optional)")
    run.add_argument("--variant", metavar="NAME", default=None,
                     help="run variant NAME of the run in --run-dir: in RUN_DIR/variants/NAME/, with the overrides "
                          "recorded for it and those given; the stages it leaves unchanged are linked to the base "
                          "run, which is never written")
    run.add_argument("--recompute", action="store_true", help="run the stages even if cached")
    run.add_argument("--seed", type=int, default=None, help="override common.seed")
    run.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter: KEY=VALUE (wherever defined) or STAGE.KEY=VALUE; repeatable")
    run.add_argument("--workers", type=int, default=None, help="worker processes for data generation")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(subparser=run)

    book = sub.add_parser("book", help="render the executed notebooks with Jupyter Book into _build/html")
    book.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                      help="turn warnings into errors (-W; default: on)")

    sub.add_parser("stages", help="list the stages and whether their notebook exists")

    lab = sub.add_parser("lab", help="JupyterLab on working copies of the chapters (a run or a variant), on loopback")
    lab.add_argument("--profile", choices=profiles.PROFILES, default="demo", help="parameter profile (default: demo)")
    lab.add_argument("--variant", metavar="NAME", default=None,
                     help="work in variant NAME of the run (RUN_DIR/variants/NAME/): its overrides, its folder; "
                          "the base run is never written")
    lab.add_argument("--run-dir", type=Path, default=None, help="the (base) run (default: runs/<profile>)")
    lab.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                     help="torch device (default: the profile's common.device, normally auto)")
    lab.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: 8888 or the next free one)")
    lab.add_argument("--browser", action=argparse.BooleanOptionalAction, default=False,
                     help="open the URL in the default web browser (default: --no-browser, the URL is printed)")
    lab.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter in the working copies (recorded in the variant): KEY=VALUE or "
                          "STAGE.KEY=VALUE; repeatable")

    pr = sub.add_parser("predict", help="apply a finished run's models to any video (nothing is retrained)")
    pr.add_argument("inputs", nargs="+", type=Path, metavar="VIDEO_OR_FOLDER",
                    help="video files, or folders whose videos are all predicted")
    pr.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="the finished run (default: runs/demo)")
    pr.add_argument("--submission", type=int, default=None, metavar="N",
                    help="use submission N's models and fusion weights (1-6; default: the run's main chain)")
    pr.add_argument("--out", type=Path, default=None,
                    help="output folder (default: RUN_DIR/predictions): per video a CSV, JSON, label file and PNG")
    pr.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device (default: auto)")
    pr.add_argument("--window", type=float, default=None, metavar="SECONDS",
                    help="predict each window of this many seconds (default: the whole video as one clip, "
                         "5 s windows beyond 60 s)")
    pr.add_argument("--no-timeline", action="store_true", help="do not draw the PNG timelines")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    cmp = sub.add_parser("compare", help="runs or variants side by side: the parameters that differ, the figures "
                                         "that changed")
    cmp.add_argument("runs", nargs="+", metavar="RUN_OR_VARIANT",
                     help="a run or variant folder, a variant NAME of --run-dir, or `base` (--run-dir itself); a "
                          "single variant is compared with its base run")
    cmp.add_argument("--run-dir", type=Path, default=Path("runs/demo"),
                     help="the base run whose variants NAMEs refer to (default: runs/demo)")
    cmp.add_argument("--out", type=Path, default=None,
                     help="write compare.csv, compare.json and the PNG figures into this folder")
    return p


def _cmd_data_synth(args) -> int:
    from .synth.generate import generate_dataset

    seed = args.seed if args.seed is not None else int(profiles.load_params(args.profile)["common"]["seed"])
    t0 = time.perf_counter()
    root = generate_dataset(args.profile, seed=seed, workers=args.workers, force=args.force)
    print(root)
    print(f"synthetic dataset {args.profile} (seed {seed}) ready in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return 0


def _cmd_run(args) -> int:
    from . import pipeline

    run_parser: argparse.ArgumentParser = args.subparser
    try:
        overrides = profiles.parse_overrides(args.params)
        if args.stages:
            for s in args.stages:
                stages.resolve_stage_name(s)
    except ValueError as e:
        run_parser.error(str(e))
    if args.seed is not None:
        overrides["seed"] = args.seed
    given = {n: getattr(args, n) for n in ("afew", "fer2013", "tfd") if getattr(args, n) is not None}
    data, replace = None, None
    missing = [n for n in profiles.REQUIRED_DATA.get(args.profile, ()) if getattr(args, n) is None]
    if missing:
        optional = [n for n in ("afew", "fer2013", "tfd") if n not in profiles.REQUIRED_DATA[args.profile]]
        run_parser.error(f"profile {args.profile!r} needs the real datasets: "
                         + " ".join(f"--{n} PATH" for n in profiles.REQUIRED_DATA[args.profile])
                         + "".join(f" [--{n} PATH]" for n in optional))
    if args.profile not in profiles.SYNTHETIC_DATA:
        data = pipeline.DataPaths(afew=args.afew, fer2013=args.fer2013, tfd=args.tfd, synthetic=False)
    elif given:
        # A synthetic profile with some real datasets: they replace the synthetic ones (e.g. the real
        # FER2013 check of chapter 02: --fer2013 PATH alone trains the CNN on real FER2013).
        replace = given
    try:
        results = pipeline.run_pipeline(
            args.profile, stages=args.stages, run_dir=args.run_dir, device=args.device, data=data, replace=replace,
            executed_dir=args.executed_dir,
            recompute=args.recompute, overrides=overrides, progress=not args.quiet, workers=args.workers,
            variant=args.variant, command=_command_line(args.argv) if args.variant else None)
    except pipeline.StageFailed as e:
        if e.results:
            print(pipeline.format_summary(e.results, _summary_run_dir(args)))
        print(f"\nemotiw: error: {e}", file=sys.stderr)
        return 1
    print(pipeline.format_summary(results, _summary_run_dir(args)))
    return 0


def _summary_run_dir(args) -> Path:
    """The folder the stages of ``emotiw run`` ran in (a variant's under the base run): where the summary reads
    the clip statuses and the dataset's warnings."""
    run_dir = Path(args.run_dir if args.run_dir is not None else paths.default_run_dir(args.profile)).expanduser()
    if getattr(args, "variant", None):
        from .variants import variant_dir

        run_dir = variant_dir(run_dir, args.variant)
    return run_dir


def _command_line(argv: list[str] | None) -> str:
    """The ``emotiw`` command as typed (recorded in a variant)."""
    import shlex

    return "emotiw " + shlex.join(sys.argv[1:] if argv is None else argv)


def _toc_files(toc: Path) -> list[str]:
    import yaml

    data = yaml.safe_load(toc.read_text(encoding="utf-8")) or {}
    out: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("root", "file") and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return out


def _cmd_book(args) -> int:
    root = paths.REPO_ROOT
    toc = root / "_toc.yml"
    if not toc.is_file():
        print(f"emotiw: error: {toc} not found", file=sys.stderr)
        return 1
    from .book_pages import prepare_book

    prepare_book(root)  # execution statistics, the landing page's headline, MyST sources (from the run)
    missing = [f for f in _toc_files(toc)
               if not any((root / f).with_suffix(ext).is_file() or (root / (f + ext)).is_file()
                          for ext in (".md", ".ipynb", ".rst"))]
    if missing:
        hint = " (run `emotiw run --profile demo` first)" if any("executed" in f for f in missing) else ""
        print(f"emotiw: error: the table of contents lists missing files: {', '.join(missing)}{hint}",
              file=sys.stderr)
        return 1
    exe = Path(sys.executable).parent / "jupyter-book"
    if not exe.exists():
        import shutil

        found = shutil.which("jupyter-book")
        if found is None:
            print("emotiw: error: jupyter-book is not installed (run `make install`)", file=sys.stderr)
            return 1
        exe = Path(found)
    cmd = [str(exe), "build", str(root)]
    if args.strict:
        cmd += ["-W", "--keep-going"]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    rc = subprocess.call(cmd, cwd=root)
    if rc == 0:
        print(f"book: {root / '_build' / 'html' / 'index.html'}", file=sys.stderr)
    return rc


def _cmd_stages() -> int:
    from . import pipeline

    width = max(len(s.name) for s in stages.STAGES)
    for s in stages.STAGES:
        state = "ok     " if s.exists else "missing"
        print(f"{s.name:<{width}}  {state}  {s.notebook}  {s.title}")
    return 0


def _cmd_predict(args) -> int:
    import pandas as pd

    from . import predict

    if args.window is not None and not args.window > 0:
        print("emotiw: error: --window must be a positive number of seconds", file=sys.stderr)
        return 2
    models = predict.RunModels.load(args.run_dir, submission=args.submission, device=args.device)
    out = args.out if args.out is not None else args.run_dir / "predictions"
    preds = predict.predict_paths(args.inputs, models, out, window=args.window, progress=not args.quiet,
                                  timeline=not args.no_timeline)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 80):
        print(predict.summary_table(preds).to_string(), flush=True)
    bad = sum(not p.ok for p in preds)
    print(f"{len(preds) - bad} of {len(preds)} videos predicted" + (f", {bad} unreadable" if bad else "")
          + f"; outputs in {out}", file=sys.stderr)
    return 0 if bad < len(preds) else 1


def _cmd_lab(args) -> int:
    from . import lab

    return lab.serve(args.profile, args.variant, run_dir=args.run_dir, overrides=args.params, device=args.device,
                     port=args.port, browser=args.browser,
                     command=_command_line(args.argv) if args.variant else None)


def _cmd_compare(args) -> int:
    from . import compare

    try:
        folders, names = compare.resolve_arguments(args.runs, args.run_dir)
    except compare.CompareArgumentError as e:
        for line in e.errors:
            print(f"emotiw: error: {line}", file=sys.stderr)
        return 1
    result = compare.compare_runs(folders, names)
    print(result.format_text(), end="", flush=True)
    if args.out is not None:
        written = result.write(args.out)
        print(f"compare: {len(written)} files in {args.out}: " + ", ".join(p.name for p in written), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emotiw`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        if args.command == "data":
            return _cmd_data_synth(args)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "book":
            return _cmd_book(args)
        if args.command == "stages":
            return _cmd_stages()
        if args.command == "predict":
            return _cmd_predict(args)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "lab":
            return _cmd_lab(args)
    except _USER_ERRORS as e:
        print(f"emotiw: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("emotiw: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
