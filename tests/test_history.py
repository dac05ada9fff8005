"""Shared epoch bookkeeping of the trainers (emotiw_utils.history)."""

from __future__ import annotations


def test_best_weights_keeps_the_earliest_best_epoch_and_restores_it():
    import torch

    from emotiw_utils.history import BestWeights

    model = torch.nn.Linear(2, 1)
    keeper = BestWeights(True)
    for epoch, score in enumerate([0.2, 0.5, 0.5, float("nan"), 0.4], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        keeper.update(model, epoch, score)
    assert keeper.finish(model, 5) == 2 and float(model.weight.detach()[0, 0]) == 2.0
    off = BestWeights(False)
    off.update(model, 1, 0.9)
    assert off.finish(model, 7) == 7 and float(model.weight.detach()[0, 0]) == 2.0


def test_best_weights_on_cpu_keeps_independent_copies_and_says_when_it_kept_one():
    import torch

    from emotiw_utils.history import BestWeights

    model = torch.nn.Linear(2, 1)
    keeper = BestWeights(on_cpu=True)
    assert keeper.state is None and keeper.epoch is None
    kept = []
    for epoch, score in enumerate([0.3, 0.3, 0.7, 0.1], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        kept.append(keeper.update(model, epoch, score))
    assert kept == [True, False, True, False]
    assert keeper.epoch == 3 and keeper.state["weight"].device.type == "cpu"
    assert float(keeper.state["weight"][0, 0]) == 3.0 and float(model.weight.detach()[0, 0]) == 4.0  # a copy
    assert keeper.finish(model, 4) == 3 and float(model.weight.detach()[0, 0]) == 3.0
    assert BestWeights(False).update(model, 1, 1.0) is False
