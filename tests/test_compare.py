"""``emotiw compare`` and the book's Variants page (issue 22, items 4 and 5), on fake run folders: a base run,
a variant of it that changes the IRNN's cell (stages before 03 linked to the base) and a second run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from emotiw_utils import artifacts, checkpoints, cli, compare, records, stages, variants
from emotiw_utils.constants import NUM_CLASSES
from emotiw_utils.protocol import check_partition

PART = records.PartitionRecord.of(check_partition(["Train"], "Val"))
UPSTREAM = (stages.DATASETS, stages.ALIGNMENT, stages.CNN)


def _manifest(run, st, params, wall, data_dir):
    artifacts.write_manifest(st.dir(run), stage=st.name, input_hash=f"h-{st.name}", status="ok", wall_time_s=wall,
                             device="cpu", started="2025-01-01T00:00:00+00:00", finished="2025-01-01T00:01:00+00:00",
                             profile="smoke", run_id=f"id-{st.name}-{wall}",
                             parameters={"seed": 0, "profile": "smoke", "stage": st.name, "run_dir": str(run),
                                         "afew_dir": str(data_dir), "synthetic": True, **params})


def _clip_probs(run, st, accuracy, seed):
    rng = np.random.default_rng(seed)
    for split in ("Val", "Test"):
        labels = np.arange(70) % NUM_CLASSES
        pred = np.where(rng.random(70) < accuracy, labels, (labels + 1) % NUM_CLASSES)
        probs = np.full((70, NUM_CLASSES), 0.05)
        probs[np.arange(70), pred] = 0.7
        artifacts.save_clip_probs(st.path(run, "clip_probs", split=split), [f"{split}_{i:03d}" for i in range(70)],
                                  probs, labels)


def _irnn(run, cell, vals, test, data_dir, wall):
    _manifest(run, stages.IRNN, {"cell": cell, "hidden": 100}, wall, data_dir)
    seeds = {str(s): {"best_epoch": 3 + s, "accuracy": {"train": 0.9, "Val": v, "Test": t}}
             for s, (v, t) in enumerate(zip(vals, test))}
    records.IrnnRecord(partition=PART, table1={"RNN": records.Accuracies((0.9,) * len(vals), tuple(vals))},
                       feature_layer="logits", best_epoch=3).write(stages.IRNN.dir(run), data="synthetic", cell=cell,
                                                                   seeds=seeds)
    _clip_probs(run, stages.IRNN, vals[0], seed=len(cell))
    epochs = [{"epoch": e, "train_acc": 0.2 + 0.1 * e, "val_acc": vals[0] * e / 5, "seconds": 1.0} for e in range(1, 6)]
    checkpoints.write_payload(stages.IRNN.path(run, "irnn"), "emotiw-sequence-model", 1,
                              {"history": {"epochs": epochs, "best_epoch": 3, "config": {}}})


def _kavg(run, vals, data_dir, wall, C=1.0):
    _manifest(run, stages.KAVG, {"k": 15}, wall, data_dir)
    records.KavgRecord(partition=PART, table1={"Aggregated CNN": records.Accuracies((0.8, 0.8), tuple(vals))},
                       C=C, gamma="scale", k=15).write(
        stages.KAVG.dir(run), data="synthetic", accuracy={"kavg_svm": {"train": 0.8, "Val": vals[0], "Test": 0.3}})
    _clip_probs(run, stages.KAVG, vals[0], seed=7)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """``base`` (00-04), its variant ``lstm`` (00-02 linked; 03 with an LSTM, 04 re-run) and a run ``other``."""
    monkeypatch.setattr(artifacts, "git_commit", lambda repo=None: None)  # 15 manifests: no git process each
    data_dir = tmp_path / "data" / "afew"
    data_dir.mkdir(parents=True)
    base = tmp_path / "runs" / "smoke"
    for i, st in enumerate(UPSTREAM):
        _manifest(base, st, {"epochs": 4}, 10.0 + i, data_dir)
        artifacts.write_metrics(st.dir(base), {"data": "synthetic"})
    _irnn(base, "irnn", (0.40, 0.44), (0.30, 0.34), data_dir, 20.0)
    _kavg(base, (0.34, 0.36), data_dir, 5.0)

    vdir = variants.variant_dir(base, "lstm")
    vdir.mkdir(parents=True)
    artifacts.atomic_write_json(vdir / variants.VARIANT_FILE, {
        "name": "lstm", "profile": "smoke", "base_run": str(base), "overrides": {f"{stages.IRNN.name}.cell": "lstm"},
        "command": f"emotiw run --profile smoke --variant lstm -p {stages.IRNN.name}.cell=lstm",
        "created": "2025-01-02T00:00:00+00:00", "updated": "2025-01-02T00:00:00+00:00"})
    for st in UPSTREAM:
        (vdir / st.name).symlink_to(os.path.relpath(st.dir(base), vdir), target_is_directory=True)
    same_data = data_dir.parent / "." / "afew"  # the same folder, spelled otherwise: no difference
    _irnn(vdir, "lstm", (0.50, 0.52), (0.40, 0.41), same_data, 30.0)
    _kavg(vdir, (0.35, 0.37), same_data, 6.0)

    other = tmp_path / "other"
    for i, st in enumerate(UPSTREAM):
        _manifest(other, st, {"epochs": 8}, 12.0 + i, data_dir)
        artifacts.write_metrics(st.dir(other), {"data": "synthetic"})
    _irnn(other, "irnn", (0.45,), (0.3,), data_dir, 21.0)
    _kavg(other, (0.34, 0.36), data_dir, 5.0, C=10.0)
    return dict(base=base, variant=vdir, other=other, tmp=tmp_path)


def _row(c, stage, name):
    return next(f for f in c.figures if f.stage == stage.name and f.name == name)


def test_compare_names_the_changed_parameter_and_metrics(runs):
    c = compare.compare_runs([runs["base"], runs["variant"]], ["base", "lstm"])
    diffs = {(p.stage, p.key): p.values for p in c.parameters}
    assert diffs == {(stages.IRNN.name, "cell"): ["irnn", "lstm"]}  # run_dir and the data path do not count
    assert c.runs[1].overrides == {f"{stages.IRNN.name}.cell": "lstm"}
    assert c.statuses(stages.ALIGNMENT.name) == ["ran", "reused"] and c.reused_everywhere(stages.CNN.name)
    assert c.statuses(stages.IRNN.name) == ["ran", "ran"]

    val = _row(c, stages.IRNN, "RNN · Val acc")
    assert [f.show() for f in val.figures] == ["42.0 ± 2.0", "51.0 ± 1.0"]
    assert val.delta(1) == "+9.0" and val.note(1) == compare.BEYOND
    test = _row(c, stages.IRNN, "RNN · Test acc")  # per seed from the chapter's seeds
    assert test.figures[1].show() == "40.5 ± 0.5" and test.note(1) == compare.BEYOND
    assert _row(c, stages.IRNN, "epoch kept").figures[0].show() == "3.5 ± 0.5"
    kavg = _row(c, stages.KAVG, "Aggregated CNN · Val acc")
    assert kavg.changed and kavg.delta(1) == "+1.0" and kavg.note(1) == compare.WITHIN
    single = _row(c, stages.KAVG, "kavg_svm · Test acc")
    assert not single.changed and single.note(1) == ""
    uar = _row(c, stages.IRNN, "RNN · Val UAR")  # not in the metrics: computed from clip_probs
    assert uar.figures[0].n == 1 and uar.note(1) == compare.ONE_SEED
    wall = _row(c, stages.IRNN, "wall time")
    assert wall.figures[1].show() == "30.0 s" and wall.note(1) == ""
    assert not any(f.changed for f in c.figures if f.stage == stages.ALIGNMENT.name)
    assert c.data == "synthetic" and c.synthetic

    text = c.format_text()
    assert "cell" in text and "irnn" in text and "lstm" in text
    assert f"{stages.ALIGNMENT.name}: reused from base" in text
    assert "42.0 ± 2.0" in text and "51.0 ± 1.0" in text and compare.BEYOND in text and compare.WITHIN in text
    assert text.index("Parameters that differ") < text.index("Figures that changed")


def test_runs_compared_with_each_other_show_choices_and_one_seed(runs):
    c = compare.compare_runs([runs["base"], runs["other"]])
    assert c.names == ["smoke", "other"]
    diffs = {(p.stage, p.key): p.values for p in c.parameters}
    assert diffs[(stages.CNN.name, "epochs")] == [4, 8]
    assert _row(c, stages.KAVG, "C").changed and _row(c, stages.KAVG, "C").figures[1].show() == "10"
    assert not _row(c, stages.KAVG, "k").changed
    assert _row(c, stages.IRNN, "RNN · Val acc").note(1) == compare.ONE_SEED
    assert "stages 00, 01, 02" in c.format_text() or "epochs" in c.format_text()


def test_csv_json_and_figures(runs, tmp_path):
    c = compare.compare_runs([runs["base"], runs["variant"]], ["base", "lstm"])
    out = tmp_path / "out"
    written = c.write(out)
    names = {p.name for p in written}
    assert {compare.CSV_FILE, compare.JSON_FILE} <= names
    for suffix in ("curves", "confusion_delta", "per_class_delta"):
        assert f"{stages.IRNN.name}_{suffix}.png" in names
        assert (out / f"{stages.IRNN.name}_{suffix}.png").stat().st_size > 1000
    assert not any(n.startswith(stages.ALIGNMENT.name) for n in names)  # reused: nothing to draw
    import pandas as pd

    df = pd.read_csv(out / compare.CSV_FILE)
    cell = df[(df.section == "parameter") & (df.item == "cell")]
    assert list(cell.value) == ["irnn", "lstm"]
    rnn = df[(df.section == "figure") & (df.item == "RNN · Val acc") & (df.run == "lstm")].iloc[0]
    assert rnn.value == "51.0 ± 1.0" and rnn.note == compare.BEYOND and bool(rnn.changed)
    data = json.loads((out / compare.JSON_FILE).read_text())
    assert data["runs"][1]["overrides"] == {f"{stages.IRNN.name}.cell": "lstm"}
    assert data["runs"][1]["stages"][stages.DATASETS.name] == "reused"
    fig = next(f for f in data["figures"] if f["figure"] == "RNN · Val acc")
    assert fig["runs"]["lstm"]["values"] == [0.5, 0.52] and fig["runs"]["lstm"]["note"] == compare.BEYOND


def test_cli_compare_a_variant_with_its_base(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", "lstm", "--run-dir", str(runs["base"]), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Parameters that differ" in captured.out and "base" in captured.out and "lstm" in captured.out
    assert (out / compare.CSV_FILE).is_file() and list(out.glob("*.png"))
    assert cli.main(["compare", "base", str(runs["variant"]), str(runs["other"]), "--run-dir", str(runs["base"])]) == 0
    assert "other" in capsys.readouterr().out


def test_cli_errors_are_one_line_each(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["compare", "nope", str(empty), "--run-dir", str(runs["base"])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("emotiw: error: ") for line in err)
    assert "no variant 'nope'" in err[0] and "known variants: lstm" in err[0]
    assert "not a run or variant folder" in err[1]
    assert cli.main(["compare", "lstm", "--run-dir", str(runs["other"])]) == 1
    assert "known variants: none" in capsys.readouterr().err
    assert cli.main(["compare", str(runs["base"])]) == 1  # nothing to compare with
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_variants_page_with_and_without_variants(runs, tmp_path):
    executed = tmp_path / "book" / "executed"
    page = compare.write_variants_page(executed, chapters=[{"params": {"run_dir": str(runs["base"])}}])
    text = page.read_text()
    assert page.name == compare.VARIANTS_PAGE and text.startswith("# Variants\n")
    assert "## Variant `lstm`" in text and "Synthetic data" in text
    assert f"emotiw run --profile smoke --variant lstm -p {stages.IRNN.name}.cell=lstm" in text
    assert f"| `{stages.IRNN.name}.cell` | `lstm` |" in text  # the overrides
    assert "| RNN · Val acc | 42.0 ± 2.0 | 51.0 ± 1.0 | +9.0 |" in text
    imgs = [ln[ln.index("(") + 1:-1] for ln in text.splitlines() if ln.startswith("![")]
    assert imgs and all((executed / p).is_file() for p in imgs)

    page = compare.write_variants_page(executed, run_dir=runs["other"])
    text = page.read_text()
    assert "has no variants yet" in text and "--variant lstm" in text and "emotiw compare lstm" in text
    assert not (executed / compare.VARIANTS_FIGURES).exists()  # the old figures went with the variants
    assert "no variants" in compare.write_variants_page(executed, chapters=[]).read_text()

