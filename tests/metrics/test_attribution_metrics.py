"""Attribution metrics: pixel flipping / AOPC [149], localisation against masks, completeness [112]–[114]."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnxai.data import DATASETS, shapes
from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.methods.attribution.gradient.integrated_gradients import IntegratedGradients
from nnxai.metrics.completeness import Completeness
from nnxai.metrics.localisation import Localisation, localisation_scores
from nnxai.metrics.pixel_flipping import PixelFlipping
from nnxai.params import ParamError

from toy_models import LinearModel, RegionSumModel, tiny_mlp, toy_context


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def record_for(x: torch.Tensor, attributions, targets, meta=None) -> AttributionMap:
    return AttributionMap(np.asarray(attributions, dtype=np.float32), np.arange(len(x)), np.asarray(targets),
                          meta or {})


# --- pixel flipping ------------------------------------------------------------------------------------

def two_patch_case(train_value: float):
    region = torch.zeros(1, 2, 4)
    region[:, :, :2] = 1.0                                    # left 2×2 patch is the evidence
    model = RegionSumModel(region)
    x = torch.ones(1, 1, 2, 4)                                # logit 1 = 4, logit 0 = 0
    ctx = toy_context(model, torch.full((3, 1, 2, 4), train_value), x, n_classes=2)
    return ctx, region


@pytest.mark.parametrize("fill, train_value, flipped_logit", [("zero", 0.7, 0.0), ("mean", 0.25, 1.0)])
def test_aopc_of_two_patches_worked_out_by_hand(fill, train_value, flipped_logit):
    # p(x) = σ(4).  MoRF on the true evidence: left patch out at k=1 -> logit = 4·fill, then both out.
    # Inverted map: right patch out at k=1 (no change), then both out.
    ctx, region = two_patch_case(train_value)
    metric = PixelFlipping(patch=2, steps=2, fill=fill)
    drop = sigmoid(4.0) - sigmoid(flipped_logit)
    perfect = metric(record_for(ctx.test.x, region[None], [1]), ctx, None)
    inverted = metric(record_for(ctx.test.x, 1.0 - region[None], [1]), ctx, None)
    assert perfect["pixel_flipping"] == pytest.approx(drop, abs=1e-7)
    assert inverted["pixel_flipping"] == pytest.approx(drop / 2, abs=1e-7)
    assert perfect["pixel_flipping.random"] in (pytest.approx(drop, abs=1e-7), pytest.approx(drop / 2, abs=1e-7))
    more_steps = PixelFlipping(patch=2, steps=9, fill=fill)(record_for(ctx.test.x, region[None], [1]), ctx, None)
    assert more_steps["pixel_flipping"] == pytest.approx(drop, abs=1e-7)   # L = min(steps, 2 patches)


def test_aopc_ranks_true_evidence_above_random_above_inverted():
    region = torch.zeros(1, 8, 8)
    region[:, :4, :4] = 1.0                                   # 4 of the 16 2×2 patches
    model = RegionSumModel(region, scale=0.25)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 8, 8, generator=gen)
    ctx = toy_context(model, torch.rand(10, 1, 8, 8, generator=gen), x, n_classes=2, seed=3)
    metric = PixelFlipping(patch=2, steps=6, fill="zero")
    evidence = (x * region).numpy()                           # exact per-pixel contribution to the logit
    perfect = metric(record_for(x, evidence, np.ones(60)), ctx, None)
    inverted = metric(record_for(x, -evidence, np.ones(60)), ctx, None)
    assert perfect["pixel_flipping"] > perfect["pixel_flipping.random"] > inverted["pixel_flipping"]
    assert inverted["pixel_flipping"] == pytest.approx(0.0, abs=1e-7)   # 12 irrelevant patches go first
    assert perfect["pixel_flipping.random"] == inverted["pixel_flipping.random"]   # seeded, map-independent


def test_pixel_flipping_on_tabular_flips_single_features():
    model = LinearModel(torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 0.0]]))
    x = torch.tensor([[2.0, 1.0, 5.0]])                      # logit 1 = x0 - x1 = 1
    ctx = toy_context(model, torch.zeros(4, 3), x, n_classes=2)
    result = PixelFlipping(patch=4, steps=3, fill="mean")(record_for(x, [[2.0, -1.0, 0.0]], [1]), ctx, None)
    # order x0, x2, x1: logits -1, -1, 0
    expected = np.mean([sigmoid(1) - sigmoid(-1), sigmoid(1) - sigmoid(-1), sigmoid(1) - 0.5])
    assert result["pixel_flipping"] == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("bad, name", [({"fill": "noise"}, "fill"), ({"steps": 0}, "steps"), ({"patch": 1.5}, "patch")])
def test_pixel_flipping_rejects_bad_params(bad, name):
    with pytest.raises(ParamError, match=rf"metric 'pixel_flipping'\.{name}\b"):
        PixelFlipping(**{"patch": 4, "steps": 4, "fill": "mean", **bad})


def test_metric_rejects_attributions_not_shaped_like_inputs():
    ctx, region = two_patch_case(0.0)
    with pytest.raises(ValueError, match="do not match"):
        PixelFlipping(patch=2, steps=2, fill="zero")(record_for(ctx.test.x, np.zeros((1, 1, 2, 2)), [1]), ctx, None)


# --- localisation --------------------------------------------------------------------------------------

N_LOC, SIDE, SQUARE = 400, 16, 8


def square_masks(n: int, seed: int) -> np.ndarray:
    """Evidence masks: an 8×8 square at a random place; area fraction 1/4."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, SIDE, SIDE), dtype=bool)
    for i, (r, c) in enumerate(rng.integers(0, SIDE - SQUARE + 1, (n, 2))):
        out[i, r:r + SQUARE, c:c + SQUARE] = True
    return out


def localisation_ctx(evidence: np.ndarray, mask_names=None):
    names = mask_names or shapes.MASK_NAMES
    masks = np.zeros((len(evidence), len(names), SIDE, SIDE), dtype=bool)
    masks[:, names.index("background")] = ~evidence           # a decoy channel: must not be read
    masks[:, names.index("evidence")] = evidence
    x = torch.zeros(len(evidence), 3, SIDE, SIDE)
    return toy_context(RegionSumModel(torch.ones(SIDE, SIDE)), x, x, 2, masks=masks, mask_names=mask_names)


def as_attribution(maps: np.ndarray) -> np.ndarray:
    """Put the map in channel 1 and lower values elsewhere: the channel maximum is the map."""
    out = np.repeat(maps[:, None].astype(np.float32) - 5.0, 3, axis=1)
    out[:, 1] = maps
    return out


@pytest.mark.parametrize("names", [None, ["evidence", "background"]])
def test_localisation_of_the_mask_itself_is_perfect_and_of_its_complement_zero(names):
    evidence = square_masks(20, 0)
    ctx = localisation_ctx(evidence, names)
    metric = Localisation()
    perfect = metric(record_for(ctx.test.x, as_attribution(evidence), np.ones(20)), ctx, None)
    outside = metric(record_for(ctx.test.x, as_attribution(~evidence), np.ones(20)), ctx, None)
    assert perfect == {"localisation.mass": 1.0, "localisation.rank": 1.0, "localisation.pointing": 1.0}
    assert outside == {"localisation.mass": 0.0, "localisation.rank": 0.0, "localisation.pointing": 0.0}


def test_localisation_of_a_random_map_is_the_mask_area_fraction():
    evidence = square_masks(N_LOC, 1)
    ctx = localisation_ctx(evidence)
    maps = np.random.default_rng(2).random((N_LOC, SIDE, SIDE))
    scores = Localisation()(record_for(ctx.test.x, as_attribution(maps), np.ones(N_LOC)), ctx, None)
    p, pixels, k = 0.25, SIDE * SIDE, SQUARE * SQUARE
    # 4 standard errors: pointing is Bernoulli(p); rank hypergeometric (k draws of `pixels`);
    # mass a ratio of uniform sums, whose spread is below that of the share of k-of-pixels indicators.
    assert scores["localisation.pointing"] == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / N_LOC))
    rank_se = math.sqrt(p * (1 - p) * (pixels - k) / ((pixels - 1) * k) / N_LOC)
    assert scores["localisation.rank"] == pytest.approx(p, abs=4 * rank_se)
    assert scores["localisation.mass"] == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / pixels / N_LOC))


def test_localisation_ties_count_by_expectation_and_empty_masks_are_left_out():
    evidence = square_masks(3, 3)
    evidence[2] = False                                        # no evidence: left out
    scores = localisation_scores(torch.ones(3, SIDE, SIDE), torch.as_tensor(evidence))
    assert scores == {"localisation.mass": 0.25, "localisation.rank": 0.25, "localisation.pointing": 0.25}
    nothing = localisation_scores(torch.ones(1, 4, 4), torch.zeros(1, 4, 4, dtype=bool))
    assert all(math.isnan(v) for v in nothing.values())


def test_localisation_needs_masks():
    assert Localisation.why_not(Gradient, DATASETS["shapes"]) is None
    assert "no ground-truth masks" in Localisation.why_not(Gradient, DATASETS["digits"])


# --- completeness --------------------------------------------------------------------------------------

def ig(**kw):
    return IntegratedGradients(**{"n_explain": 12, "batch_size": 12, "n_steps": 1000, "baseline": "zero", **kw})


def test_completeness_of_ig_on_a_piecewise_linear_net_is_zero_and_of_twice_it_one():
    model = tiny_mlp(seed=2).double()
    gen = torch.Generator().manual_seed(2)
    ctx = toy_context(model, torch.randn(8, 6, generator=gen, dtype=torch.float64),
                      4.0 * torch.rand(12, 6, generator=gen, dtype=torch.float64), n_classes=3)
    record = ig().explain(ctx)
    error = Completeness()(record, ctx, None)["completeness"]
    assert error < 1e-3
    doubled = AttributionMap(2.0 * record.attributions, record.indices, record.targets, record.meta)
    assert Completeness()(doubled, ctx, None)["completeness"] == pytest.approx(1.0, abs=2e-3)


def test_completeness_uses_the_recorded_reference():
    # On a linear model IG is exact for any reference, so only a wrong f(x_ref) could make the error large.
    weight = torch.randn(2, 12, generator=torch.Generator().manual_seed(4))
    model = LinearModel(weight, torch.tensor([0.5, -0.5]))
    model.architecture = "cnn"
    gen = torch.Generator().manual_seed(5)
    ctx = toy_context(model, torch.rand(10, 3, 2, 2, generator=gen) + 2.0, torch.rand(12, 3, 2, 2, generator=gen),
                      n_classes=2)
    record = ig(baseline="mean", n_steps=3).explain(ctx)
    assert Completeness()(record, ctx, None)["completeness"] < 1e-4
    wrong = AttributionMap(record.attributions, record.indices, record.targets,
                           {**record.meta, "baseline": {"kind": "zero", "per_channel": [0.0, 0.0, 0.0]}})
    assert Completeness()(wrong, ctx, None)["completeness"] > 0.1
    with pytest.raises(ValueError, match="baseline"):
        Completeness()(AttributionMap(record.attributions, record.indices, record.targets, {}), ctx, None)


def test_completeness_applies_only_to_methods_with_a_reference():
    info = DATASETS["iris"]
    assert "no reference input" in Completeness.why_not(Gradient, info)
    assert not Completeness.applies(Gradient, info)
    assert Completeness.applies(IntegratedGradients, info)
    assert PixelFlipping.applies(Gradient, info) and PixelFlipping.applies(IntegratedGradients, info)
