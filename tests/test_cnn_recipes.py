"""emotiw_utils.cnn_recipes: recipes checked, labelled, and trained as twins of one initialisation."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import cnn_recipes
from emotiw_utils import early_stopping as es
from emotiw_utils.aligned import StaticFaces
from emotiw_utils.cnn import mean_std_images
from test_cnn import SMALL, gratings

BASE = {"optimizer": "adam", "schedule": "cosine", "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64, "amp": False,
        "rotate": 0.0, "scale": 0.0, "label_smoothing": 0.0}


def test_check_and_label():
    assert cnn_recipes.check_recipe({"lr": 0.1}) == {"lr": 0.1}
    with pytest.raises(ValueError, match="unknown recipe keys \\['momentum'\\]"):
        cnn_recipes.check_recipe({"momentum": 0.9})
    with pytest.raises(ValueError, match="non-empty mapping"):
        cnn_recipes.check_recipe({})
    label = cnn_recipes.recipe_label({"optimizer": "sgd", "schedule": "onecycle", "lr": 0.05, "amp": False})
    assert label == "sgd, onecycle, lr 0.05, float32"
    label = cnn_recipes.recipe_label({"rotate": 10, "scale": 0.1, "label_smoothing": 0})
    assert label == "rotation 10°, zoom 0.1, no smoothing"
    assert cnn_recipes.recipe_label({"rotate": 0, "scale": 0}) == "no rotation, no zoom"


def test_variants_train_from_one_initialisation():
    x, y = gratings(240, seed=0)
    pool = StaticFaces(x, y, np.zeros(len(y), dtype="<U3"), np.full(len(y), "Training"))
    hold = np.arange(len(y)) % 4 == 0
    mean, std = mean_std_images(x)
    afew = gratings(40, seed=1)
    kw = dict(config=SMALL, pool=pool, hold=hold, afew_frames=afew, mean_image=mean, std_image=std, seed=0,
              epochs=2, progress=False)
    runs = cnn_recipes.train_recipes(BASE, [{"amp": False}, {"lr": 3e-3}], **kw)
    assert [r.label for r in runs] == ["float32", "lr 0.003"]
    assert all(set(r.recipe) == set(cnn_recipes.RECIPE_KEYS) for r in runs)
    assert runs[0].history.select_on == es.HOLDOUT_MONITOR
    # the same recipe twice (base values restated) from one seed: identical curves
    strip = [[{k: v for k, v in e.items() if "seconds" not in k} for e in r.history.epochs] for r in runs]
    assert strip[0] == strip[1]
    frame, series = cnn_recipes.comparison_curves(runs, es.HOLDOUT_MONITOR + "_acc")
    assert list(frame["epoch"]) == [1, 2] and list(series) == ["float32 test", "float32 train", "lr 0.003 test",
                                                               "lr 0.003 train"]
    assert list(frame["float32 test"]) == runs[0].history.metric(es.HOLDOUT_MONITOR + "_acc")
    table = cnn_recipes.comparison_table(runs)
    assert list(table.index) == ["float32", "lr 0.003"]
    assert table.loc["float32", es.HOLDOUT_MONITOR + " (%)"] == round(100 * runs[0].history.best[es.HOLDOUT_MONITOR + "_acc"], 1)
    assert table.loc["float32", "selected epoch (holdout)"] == runs[0].history.best_epoch
    other = cnn_recipes.train_recipes(BASE, [{"optimizer": "sgd", "lr": 0.05}], **kw)[0]
    assert other.history.epochs[0]["train_loss"] != runs[0].history.epochs[0]["train_loss"]
    with pytest.raises(ValueError, match="lacks"):
        cnn_recipes.train_recipes({"lr": 1}, [{"lr": 2}], **kw)
    with pytest.raises(ValueError, match="unknown recipe keys"):
        cnn_recipes.train_recipes(BASE, [{"lr": 2}, {"momentum": 0.5}], **kw)
