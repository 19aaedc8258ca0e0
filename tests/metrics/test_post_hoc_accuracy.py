"""``post_hoc_accuracy`` [110]: 1 for the planted truth, the chance level worked out by hand for a random pick.

Model: two classes, logit 1 = (x_a − 1) + (x_b − 1), logit 0 = 0, over 10 features ~ N(1, 1), so the train
mean that replaces unselected features is 1 and a dropped planted feature adds nothing.  Keeping k = 2 random
features keeps both planted ones with probability 1/45, exactly one with 16/45 and none with 28/45.  With
none kept both logits are 0 and argmax says class 0, which agrees with the full input half of the time; with
one kept, sign(u) = sign(u + v) for independent standard normals u, v with probability 3/4.  Chance level:
28/45 · 1/2 + 16/45 · 3/4 + 1/45 · 1 = 27/45 = 0.6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.explanations import AttributionMap
from nnxai.metrics.post_hoc_accuracy import PostHocAccuracy, keep_only, unit_index
from toy_models import LinearModel, RegionSumModel, toy_context

PLANTED = [3, 8]


def planted_case(n_test=4000):
    weight = torch.zeros(2, 10)
    weight[1, PLANTED] = 1.0
    model = LinearModel(weight, torch.tensor([0.0, -2.0]))
    gen = torch.Generator().manual_seed(0)
    train, test = (1.0 + torch.randn(n, 10, generator=gen) for n in (20000, n_test))
    return model, toy_context(model, train, test, 2)


def record_for(ctx, attributions, k=2, patch_size=1) -> AttributionMap:
    n = len(ctx.test.x)
    return AttributionMap(attributions, np.arange(n), np.zeros(n),
                          {"method": "l2x", "selection": {"k": k, "unit": "feature", "patch_size": patch_size}})


def test_planted_truth_scores_one_and_random_scores_chance():
    model, ctx = planted_case()
    truth = np.zeros((len(ctx.test.x), 10), dtype=np.float32)
    truth[:, PLANTED] = 1.0
    scores = PostHocAccuracy()(record_for(ctx, truth), ctx, None)
    assert scores["post_hoc_accuracy"] == 1.0
    assert scores["post_hoc_accuracy.random"] == pytest.approx(0.6, abs=0.03)
    random_map = np.random.default_rng(1).random(truth.shape).astype(np.float32)
    random_score = PostHocAccuracy()(record_for(ctx, random_map), ctx, None)["post_hoc_accuracy"]
    assert random_score == pytest.approx(0.6, abs=0.03)
    inverted = PostHocAccuracy()(record_for(ctx, -truth), ctx, None)["post_hoc_accuracy"]   # keeps neither
    assert inverted == pytest.approx(0.5, abs=0.03)


def test_units_of_an_image_are_patches_of_every_channel():
    region = torch.zeros(2, 4, 4)
    region[:, :2, 2:] = 1.0                                     # top-right 2×2 patch, both channels
    model = RegionSumModel(region)
    gen = torch.Generator().manual_seed(2)
    train, test = torch.rand(50, 2, 4, 4, generator=gen), torch.rand(300, 2, 4, 4, generator=gen) - 0.5
    ctx = toy_context(model, train, test, 2)
    entry_unit, n_units = unit_index((2, 4, 4), 2)
    assert n_units == 4 and entry_unit.reshape(2, 4, 4)[1, 0, 3] == 1 and entry_unit.reshape(2, 4, 4)[0, 3, 0] == 2
    masked = keep_only(test[:1], torch.tensor([[False, True, False, False]]), entry_unit, torch.full((2, 4, 4), 9.0))
    assert torch.equal(masked[0, :, :2, 2:], test[0, :, :2, 2:]) and (masked[0, :, 2:] == 9.0).all()
    truth = np.broadcast_to(region.numpy(), test.shape).copy()
    assert PostHocAccuracy()(record_for(ctx, truth, k=1, patch_size=2), ctx, None)["post_hoc_accuracy"] == 1.0
    wrong = PostHocAccuracy()(record_for(ctx, 1.0 - truth, k=1, patch_size=2), ctx, None)["post_hoc_accuracy"]
    assert wrong < 0.7


def test_records_without_a_selection_are_refused():
    model, ctx = planted_case(n_test=5)
    record = AttributionMap(np.zeros((5, 10)), np.arange(5), np.zeros(5), {"method": "gradient"})
    with pytest.raises(ValueError, match="no meta\\['selection'\\]"):
        PostHocAccuracy()(record, ctx, None)
    with pytest.raises(ValueError, match="must be between 1 and the 10 units"):
        PostHocAccuracy()(record_for(ctx, np.zeros((5, 10)), k=11), ctx, None)
