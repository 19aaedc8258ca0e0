"""Insertion / deletion curves of RISE (Petsiuk et al. 2018): worked-out curves, the optimal order, the blur."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.ndimage
import torch

from nnxai.explanations import AttributionMap
from nnxai.metrics.insertion_deletion import InsertionDeletion, gaussian_blur
from nnxai.params import ParamError

from toy_models import LinearModel, RegionSumModel, toy_context


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def record_for(x, attributions, targets) -> AttributionMap:
    return AttributionMap(np.asarray(attributions, dtype=np.float32), np.arange(len(x)), np.asarray(targets), {})


def metric(**kw) -> InsertionDeletion:
    return InsertionDeletion(**{"patch": 2, "steps": 2, "fill": "zero", "blur_sigma": 1.0, **kw})


def test_two_patch_curves_worked_out_by_hand():
    region = torch.zeros(1, 2, 4)
    region[:, :, :2] = 1.0                                    # the left 2×2 patch is the evidence
    x = torch.ones(1, 1, 2, 4)                                # logit 1 = 4 with it, 0 without: p = σ(4) or 1/2
    ctx = toy_context(RegionSumModel(region), torch.zeros(3, 1, 2, 4), x, n_classes=2)
    p = sigmoid(4.0)
    # fractions 0, 1/2, 1.  Perfect: deletion (p, ½, ½), insertion (½, p, p).  Inverted: (p, p, ½), (½, ½, p).
    perfect = metric()(record_for(x, region[None], [1]), ctx, None)
    inverted = metric()(record_for(x, 1.0 - region[None], [1]), ctx, None)
    assert perfect["insertion_deletion.deletion"] == pytest.approx((p + 0.5) / 4 + 0.25, abs=1e-12)
    assert perfect["insertion_deletion.insertion"] == pytest.approx((p + 0.5) / 4 + p / 2, abs=1e-12)
    assert inverted["insertion_deletion.deletion"] == pytest.approx(p / 2 + (p + 0.5) / 4, abs=1e-12)
    assert inverted["insertion_deletion.insertion"] == pytest.approx(0.25 + (p + 0.5) / 4, abs=1e-12)
    assert perfect["insertion_deletion"] == pytest.approx(p / 2 - 0.25, abs=1e-12)
    assert inverted["insertion_deletion"] == pytest.approx(0.25 - p / 2, abs=1e-12)
    assert perfect["insertion_deletion.random"] in (pytest.approx(p / 2 - 0.25), pytest.approx(0.25 - p / 2))
    many_steps = metric(steps=50)(record_for(x, region[None], [1]), ctx, None)   # L = min(steps, 2 patches)
    assert many_steps == pytest.approx(perfect, abs=1e-12)


def test_the_true_ranking_is_the_best_of_all_24_orders():
    # Four 2×2 patches with contributions 3, 2, 1, 0.5 to the logit: removing (inserting) the largest first
    # is optimal at every point of both curves, so no order may beat it.
    weights = torch.tensor([[3.0, 2.0], [1.0, 0.5]]).repeat_interleave(2, 0).repeat_interleave(2, 1) / 4
    x = torch.ones(1, 1, 4, 4)
    ctx = toy_context(RegionSumModel(weights[None]), torch.zeros(2, 1, 4, 4), x, n_classes=2, seed=1)
    m = metric(steps=4)

    def score(order):
        ranks = torch.empty(4)
        ranks[list(order)] = torch.arange(4.0, 0.0, -1.0)   # first of the order gets the highest relevance
        patch_map = ranks.reshape(2, 2).repeat_interleave(2, 0).repeat_interleave(2, 1)
        return m(record_for(x, patch_map[None, None], [1]), ctx, None)["insertion_deletion"]

    scores = {order: score(order) for order in itertools.permutations(range(4))}
    best = score((0, 1, 2, 3))
    assert best == pytest.approx(max(scores.values()), abs=1e-12)
    assert best > score((3, 2, 1, 0)) and best == max(scores.values())


def test_true_evidence_beats_the_random_order_which_beats_the_inverted_map():
    region = torch.zeros(1, 8, 8)
    region[:, 2:6, 2:6] = 1.0
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 8, 8, generator=gen)
    ctx = toy_context(RegionSumModel(region, scale=0.5), torch.rand(10, 1, 8, 8, generator=gen), x, n_classes=2,
                      seed=3)
    m = metric(steps=8, fill="mean")
    evidence = ((x - ctx.train.x.mean()) * region).numpy()     # each pixel's drop when set to the mean
    perfect = m(record_for(x, evidence, np.ones(40)), ctx, None)
    inverted = m(record_for(x, -evidence, np.ones(40)), ctx, None)
    assert perfect["insertion_deletion"] > perfect["insertion_deletion.random"] > inverted["insertion_deletion"]
    assert perfect["insertion_deletion.deletion"] < inverted["insertion_deletion.deletion"]
    assert perfect["insertion_deletion.insertion"] > inverted["insertion_deletion.insertion"]
    assert perfect["insertion_deletion.random"] == inverted["insertion_deletion.random"]   # seeded, map-blind


def test_tabular_inputs_switch_single_features():
    model = LinearModel(torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 0.0]]))
    x = torch.tensor([[2.0, 1.0, 5.0]])                      # logit 1 = x0 - x1 = 1; train mean 0
    ctx = toy_context(model, torch.zeros(4, 3), x, n_classes=2)
    out = metric(steps=3, fill="mean")(record_for(x, [[2.0, -1.0, 0.0]], [1]), ctx, None)
    # order x0, x2, x1.  Deletion logits 1, -1, -1, 0; insertion from the mean 0, 2, 2, 1.
    fractions = np.array([0, 1 / 3, 2 / 3, 1])
    deletion = np.trapezoid([sigmoid(v) for v in (1, -1, -1, 0)], fractions)
    insertion = np.trapezoid([sigmoid(v) for v in (0, 2, 2, 1)], fractions)
    assert out["insertion_deletion.deletion"] == pytest.approx(deletion, abs=1e-7)
    assert out["insertion_deletion.insertion"] == pytest.approx(insertion, abs=1e-7)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_blur_equals_scipy_gaussian_filter_with_edge_replication(sigma):
    images = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours = gaussian_blur(images, sigma).numpy()
    theirs = scipy.ndimage.gaussian_filter(images.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_blur_fill_starts_insertion_from_the_blurred_input():
    # A model reading one pixel: insertion from the blurred image begins at σ(blurred value).
    weight = torch.zeros(2, 16)
    weight[1, 5] = 1.0
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 4.0                                       # flat index 5
    ctx = toy_context(LinearModel(weight), torch.zeros(2, 1, 4, 4), x, n_classes=2)
    attr = torch.zeros(1, 1, 4, 4)
    attr[0, 0, 1, 1] = 1.0
    out = InsertionDeletion(patch=1, steps=16, fill="blur", blur_sigma=1.0)(record_for(x, attr, [1]), ctx, None)
    blurred = float(gaussian_blur(x, 1.0)[0, 0, 1, 1])
    start, rest = sigmoid(blurred), sigmoid(4.0)
    assert out["insertion_deletion.insertion"] == pytest.approx((start + rest) / 2 / 16 + rest * 15 / 16, abs=1e-6)


def test_blur_is_only_for_images():
    plan = SimpleNamespace(cfg={"metric_params": {"insertion_deletion": {"fill": "blur"}}})
    assert "iris is tabular" in InsertionDeletion.cell_why_not(plan, "iris", "baseline", "gradient")
    assert InsertionDeletion.cell_why_not(plan, "shapes", "baseline", "gradient") is None
    x = torch.zeros(1, 3)
    ctx = toy_context(LinearModel(torch.ones(2, 3)), torch.zeros(2, 3), x, n_classes=2)
    with pytest.raises(ValueError, match="needs .* images"):
        metric(fill="blur")(record_for(x, np.ones((1, 3)), [1]), ctx, None)


@pytest.mark.parametrize("bad, name", [({"fill": "noise"}, "fill"), ({"steps": 0}, "steps"), ({"patch": 1.5}, "patch"),
                                       ({"blur_sigma": 0}, "blur_sigma"), ({"blur_sigma": "wide"}, "blur_sigma")])
def test_rejects_bad_params(bad, name):
    with pytest.raises(ParamError, match=rf"metric 'insertion_deletion'\.{name}\b"):
        metric(**bad)
