"""Smoke run of the whole chain: generate the smoke data, execute every existing stage's notebook
with papermill, and build the book with ``jupyter-book build -W`` (warnings are errors).

The executed notebooks and the book go to a temporary copy of the book sources, so the test never
touches the developer's ``book/executed`` or ``_build``. The synthetic smoke dataset is cached in
``$EMOTIW_DATA`` (default ``data/``) like any run's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotiw_utils import artifacts, pipeline, stages

pytestmark = pytest.mark.slow

# The `smoke` fixture (the run and the book build, once per session) is in conftest.py: the browser test
# (test_book_browser.py) opens the same book.


def test_every_existing_stage_ran(smoke):
    names = [r.name for r in smoke["results"]]
    assert names == [s.name for s in pipeline.available_stages()]
    assert all(r.status == "ran" for r in smoke["results"])
    for name in names:
        manifest = json.loads((smoke["run"] / name / stages.MANIFEST).read_text())
        assert manifest["status"] == "ok" and manifest["parameters"]["profile"] == "smoke"
        assert (smoke["run"] / name / stages.METRICS).is_file()


def test_data_chapter_metrics(smoke):
    m = json.loads((smoke["run"] / "00_datasets" / stages.METRICS).read_text())
    assert m["data"] == "synthetic"
    assert m["fer2013_images"] == 2000 and m["tfd_labelled"] == 280
    assert m["afew_clips"] == {"Train": 35, "Val": 21, "Test": 14}
    assert m["afew_probe"]["Train"]["unreadable"] == 0


def test_book_builds_without_warnings(smoke):
    b = smoke["build"]
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
    html = smoke["site"] / "_build" / "html"
    assert (html / "index.html").is_file()
    page = (html / "book" / "executed" / "00_datasets.html").read_text()
    assert "synthetic" in page and page.count("<img") >= 5


def test_alignment_and_cnn_artifacts(smoke):
    """01 writes aligned faces for every frame; 02 writes cnn.pt and per-frame logits aligned with them."""
    import numpy as np

    from emotiw_utils import cnn
    from emotiw_utils.aligned import AfewFaces, StaticFaces

    run = smoke["run"]
    m01 = json.loads((run / "01_alignment" / stages.METRICS).read_text())
    assert m01["keypoint_sources"]["FER2013"].startswith("sidecar")
    static = StaticFaces.load(stages.ALIGNMENT.path(run, "static_faces"))
    assert len(static) == 2000 + 280 and static.images.shape[1:] == (48, 48)
    model = cnn.load_cnn(stages.CNN.path(run, "cnn"))
    for split, n_clips in (("Train", 35), ("Val", 21), ("Test", 14)):
        faces = AfewFaces.load(stages.ALIGNMENT.path(run, "afew_faces", split=split))
        assert len(faces) == n_clips and len(faces.faces) == m01["afew_frames"][split]
        with np.load(stages.CNN.path(run, "frame_logits", split=split)) as z:
            assert z["logits"].shape == (len(faces.faces), 7)
            np.testing.assert_array_equal(z["offsets"], faces.offsets)
            assert list(z["clip_ids"]) == list(faces.clip_ids)
    # the saved model reproduces the stored logits of the first Val clip
    val = AfewFaces.load(stages.ALIGNMENT.path(run, "afew_faces", split="Val"))
    with np.load(stages.CNN.path(run, "frame_logits", split="Val")) as z:
        np.testing.assert_allclose(cnn.predict_logits(model, val.clip(0)), z["logits"][: val.lengths[0]], atol=1e-4)
    m02 = json.loads((run / "02_cnn" / stages.METRICS).read_text())
    assert set(m02["regimes"]) == {"afew", "holdout"} and 0 <= m02["fer_test_accuracy"]["PrivateTest"] <= 1


def test_clip_level_vision_artifacts(smoke):
    """03 and 04 write the stage contract (clip_probs, fusion_features) for every split, and the Table 1 rows."""
    from emotiw_utils import artifacts, irnn

    run = smoke["run"]
    for split, n_clips in (("Train", 35), ("Val", 21), ("Test", 14)):
        ids = {}
        for stage, block, dim in (("03_irnn", "rnn", 200), ("04_kavg_svm", "kavg", 105)):
            clip_ids, probs, labels = artifacts.load_clip_probs(run / stage / stages.CLIP_PROBS.name(split=split))
            assert probs.shape == (n_clips, 7)
            fids, feats = artifacts.load_fusion_features(run / stage / stages.FUSION_FEATURES.name(split=split))
            assert list(fids) == list(clip_ids) and feats[block].shape == (n_clips, dim)
            ids[stage] = list(clip_ids)
        assert ids["03_irnn"] == ids["04_kavg_svm"]
        artifacts.load_clip_probs(run / "04_kavg_svm" / stages.KAVG.file("frame_average", split=split))
    ck = irnn.load_irnn(stages.IRNN.path(run, "irnn"))
    assert ck.model.hidden == 200 and ck.extra["feature_layer"] == "logits"
    m03 = json.loads((run / "03_irnn" / stages.METRICS).read_text())
    assert len(m03["table1"]["RNN"]["val"]) == 2 and [r["layer"] for r in m03["layer_comparison"]][1:] == ["conv2"]
    m04 = json.loads((run / "04_kavg_svm" / stages.METRICS).read_text())
    assert set(m04["table1"]) == {"Aggregated CNN", "Frame averaging"}
    assert all(0 <= v <= 1 for v in m04["table1"]["Aggregated CNN"]["val"])
    page = (smoke["site"] / "_build" / "html" / "book" / "executed" / "04_kavg_svm.html").read_text()
    assert "39.6" in page and "synthetic" in page  # the paper's RNN number beside ours


def test_audio_and_activity_artifacts(smoke):
    """05 and 06 write the stage contract; audio feeds the fusion network (10 components), activity does not."""
    from emotiw_utils import artifacts

    run = smoke["run"]
    for split, n_clips in (("Train", 35), ("Val", 21), ("Test", 14)):
        ids5, probs5, _ = artifacts.load_clip_probs(run / "05_audio" / stages.CLIP_PROBS.name(split=split))
        ids6, probs6, _ = artifacts.load_clip_probs(run / "06_activity_sae" / stages.CLIP_PROBS.name(split=split))
        assert probs5.shape == probs6.shape == (n_clips, 7) and list(ids5) == list(ids6)
        fids, feats = artifacts.load_fusion_features(run / "05_audio" / stages.FUSION_FEATURES.name(split=split))
        assert list(fids) == list(ids5) and feats["audio"].shape == (n_clips, 10)
        assert not (run / "06_activity_sae" / stages.FUSION_FEATURES.name(split=split)).exists()
    m5 = json.loads((run / "05_audio" / stages.METRICS).read_text())
    m6 = json.loads((run / "06_activity_sae" / stages.METRICS).read_text())
    assert set(m5["missing"]) == {"Train", "Val", "Test"} and len(m5["table1"]["Audio"]["val"]) == 2
    assert m6["sae"]["loss_last"] < m6["sae"]["loss_first"] and m6["sae"]["n_hidden"] == 64
    page = (smoke["site"] / "_build" / "html" / "book" / "executed" / "06_activity_sae.html").read_text()
    assert "26.6" in page and page.count("<img") >= 4  # the paper's activity number, Figure 2 and friends


def test_fusion_random_search_and_submission_artifacts(smoke, kernel_threads):
    from emotiw_utils import decision, fusion, records, stages
    from emotiw_utils import submissions as submissions_

    run = smoke["run"]
    for split in ("Train", "Val", "Test"):
        for regime in fusion.REGIMES:
            _, probs, _ = artifacts.load_clip_probs(stages.FUSION.path(run, "regime_probs", regime=regime,
                                                                       split=split))
            assert np.allclose(probs.sum(1), 1, atol=1e-5)
        _, fused, _ = artifacts.load_clip_probs(stages.SEARCH.path(run, "clip_probs", split=split))
        assert np.allclose(fused.sum(1), 1, atol=1e-5)
    for regime in fusion.REGIMES:  # the persisted networks give the stage's Test probabilities again, exactly
        _, stored, _ = artifacts.load_clip_probs(stages.FUSION.path(run, "regime_probs", regime=regime, split="Test"))
        assert np.array_equal(fusion.reapply(run, "Test", regime), stored)
    _, stored, _ = artifacts.load_clip_probs(stages.SEARCH.path(run, "clip_probs", split="Test"))
    assert np.array_equal(decision.reapply(run, "Test"), stored)  # from the search's record
    m7 = artifacts.read_metrics(stages.FUSION.dir(run))
    assert set(records.read(run, stages.FUSION).best_epochs) == set(fusion.REGIMES) == set(m7["regimes"])
    assert m7["regimes"]["original"]["lr"] == 0.1 and m7["regimes"]["stable"]["momentum"] == 0.9
    search = records.read(run, stages.SEARCH)
    w = np.asarray(search.weights)
    assert w.shape == (5, 7) and np.allclose(w.sum(0), 1) and list(search.modalities) == list(decision.MODALITIES)
    assert len(artifacts.read_metrics(stages.SEARCH.dir(run))["subsets"]) == 31  # every subset of the five
    table2 = records.read(run, stages.SUBMISSIONS).table2
    assert sorted(table2, key=int) == [str(n) for n in range(1, 8)]
    irnn, fusion_name = stages.IRNN.name, stages.FUSION.name
    sub = {n: submissions_.submission_dir(run, n) for n in range(1, 8)}
    assert (sub[1] / irnn).is_symlink() and (sub[5] / fusion_name).is_symlink()
    assert not (sub[4] / irnn).is_symlink()
    p4 = artifacts.read_manifest(stages.IRNN.dir(sub[4]))["parameters"]
    assert p4["train_splits"] == ["Val"] and p4["select_split"] == "Train"
    p6 = artifacts.read_manifest(stages.IRNN.dir(sub[6]))["parameters"]
    assert p6["train_splits"] == ["Train", "Val"] and p6["fixed_epochs"] == records.read(sub[4], stages.IRNN).best_epoch
    # retraining keeps the combination weights
    assert records.read(sub[3], stages.SEARCH).weights == records.read(sub[2], stages.SEARCH).weights
    main_key = artifacts.read_metrics(stages.ACTIVITY.dir(run))["sae"]["key"]
    for n in (3, 4, 6):  # the chains reuse the main run's unsupervised activity features, refit only the SVM
        m6_n = artifacts.read_metrics(stages.ACTIVITY.dir(sub[n]))
        assert m6_n["sae"]["from_cache"] and m6_n["sae"]["key"] == main_key
        assert list(records.read(sub[n], stages.ACTIVITY).partition.train_splits) != ["Train"]
    n_test = len(list(stages.SUBMISSIONS.path(run, "emotiw", number=6, clip="x").parent.glob("*.txt")))
    assert n_test == 14 and stages.SUBMISSIONS.path(run, "predictions", number=7).is_file()


def test_every_persisted_model_gives_back_its_stage_test_probabilities(smoke, kernel_threads):
    """Issue 13, item 5: each classifier stage's persisted models, loaded again (weights-only torch checkpoints,
    skops files with trusted types), reproduce that stage's Test ``clip_probs`` exactly."""
    from emotiw_utils import activity_features, audio, decision, fusion, irnn, kavg, stages

    run = smoke["run"]
    reapply = {
        stages.IRNN: lambda: irnn.reapply(run, "Test"),
        stages.KAVG: lambda: kavg.reapply(run, "Test"),
        stages.AUDIO: lambda: audio.reapply(run, "Test"),
        stages.ACTIVITY: lambda: activity_features.reapply(run, "Test"),
        stages.FUSION: lambda: fusion.reapply(run, "Test", fusion.MAIN_REGIME),
        stages.SEARCH: lambda: decision.reapply(run, "Test"),
    }
    for st in stages.STAGES:
        if "clip_probs" not in st.artifacts:
            continue
        for key in st.models:
            assert list(st.dir(run).glob(st.artifact(key).glob)), f"{st.name}: persisted model {key} missing"
        _, stored, _ = artifacts.load_clip_probs(st.path(run, "clip_probs", split="Test"))
        assert np.array_equal(reapply[st](), stored), st.name
