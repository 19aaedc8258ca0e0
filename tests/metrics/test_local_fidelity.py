"""``local_fidelity``: the weighted error of LIME's [20] and MAPLE's [101] stored local surrogates on fresh
neighbourhood points, at its optimum for a model that is linear in the surrogate's features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.methods.attribution.perturbation.lime import Lime
from nnxai.methods.attribution.perturbation.maple import Maple
from nnxai.metrics.local_fidelity import FRESH_SEED, LocalFidelity, weighted_errors
from nnxai.params import ParamError
from probability_models import ProbabilityLinear
from toy_models import tiny_mlp, toy_context

LIME = dict(n_explain=5, batch_size=5, fill="mean", n_segments=8, compactness=20.0, n_samples=200,
            kernel_width=0.25, alpha=0.0)
MAPLE = dict(n_explain=5, batch_size=5, patch=4, n_trees=20, min_samples_leaf=10, max_features=0.5, alpha=0.0)
WEIGHT = torch.tensor([0.1, -0.05, 0.0, 0.15])


def linear_context(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    model = ProbabilityLinear(WEIGHT)
    return model, toy_context(model, torch.rand(300, 4, generator=gen) * 2 - 1,
                              torch.rand(60, 4, generator=gen) * 2 - 1, 2, seed=seed)


def mlp_context(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    model = tiny_mlp(seed, n_features=4, n_classes=3)
    return model, toy_context(model, torch.randn(300, 4, generator=gen), torch.randn(60, 4, generator=gen), 3,
                              seed=seed)


def score(method, ctx, record=None):
    record = record if record is not None else method.explain(ctx)
    return LocalFidelity(n_samples=300)(record, ctx, method)


@pytest.mark.parametrize("method_cls, params", [(Lime, LIME), (Maple, MAPLE)], ids=["lime", "maple"])
def test_a_linear_model_is_reproduced_exactly(method_cls, params):
    model, ctx = linear_context()
    values = score(method_cls(**params), ctx)
    assert values["local_fidelity"] < 1e-10
    assert values["local_fidelity.r2"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("method_cls, params", [(Lime, LIME), (Maple, MAPLE)], ids=["lime", "maple"])
def test_the_metric_scores_the_stored_map(method_cls, params):
    """A nonlinear model is fitted imperfectly; doubling the stored coefficients fits it worse."""
    model, ctx = mlp_context()
    method = method_cls(**params)
    record = method.explain(ctx)
    good = score(method, ctx, record)
    assert 0 < good["local_fidelity"] and good["local_fidelity.r2"] < 1
    doubled = AttributionMap(2 * record.attributions, record.indices, record.targets, record.meta)
    assert score(method, ctx, doubled)["local_fidelity"] > good["local_fidelity"]


@pytest.mark.parametrize("method_cls, params", [(Lime, LIME), (Maple, MAPLE)], ids=["lime", "maple"])
def test_a_method_not_yet_fitted_is_fitted_as_explain_fits_it(method_cls, params):
    """The metric fits the method it is given for the cell's model (the evaluate stage builds a fresh one),
    with the cell's train split and seed, and scores the record as the explaining instance would."""
    model, ctx = mlp_context(2)
    explained = method_cls(**params)
    record = explained.explain(ctx)
    fresh = method_cls(**params)
    assert score(fresh, ctx, record) == score(explained, ctx, record)
    assert fresh.is_fitted_for(model) and fresh.seed == ctx.seed


def test_weighted_errors_match_numpy():
    rng = np.random.default_rng(0)
    f, g, w = rng.random(50), rng.random(50), rng.random(50)
    mse, variance = weighted_errors(torch.as_tensor(f), torch.as_tensor(g), torch.as_tensor(w))
    assert mse == pytest.approx(np.average((f - g) ** 2, weights=w), rel=1e-12)
    assert variance == pytest.approx(np.average((f - np.average(f, weights=w)) ** 2, weights=w), rel=1e-12)
    assert all(math.isnan(v) for v in weighted_errors(torch.ones(3), torch.zeros(3), torch.zeros(3)))


def test_r2_pools_errors_and_variances_over_inputs():
    model, ctx = mlp_context(1)
    method = Lime(**LIME)
    record = method.explain(ctx)
    metric = LocalFidelity(n_samples=300)
    values = metric(record, ctx, method)
    errors, variances = [], []                           # the same, input by input, by hand
    inputs = ctx.test.x[record.indices]
    hoods = method.neighbourhoods(model, inputs, 300, ctx.seed + FRESH_SEED, ctx.test.x)   # explain fitted it
    for i, (x, c, hood) in enumerate(zip(inputs, record.targets, hoods)):
        index = method.feature_index(x)
        beta = torch.as_tensor(record.attributions[i]).double().reshape(-1)[:index.numel()]
        f = model(hood.inputs).softmax(1)[:, int(c)].double().detach().numpy()
        g = record.meta["surrogate"]["intercept"][i] + hood.features.double().numpy() @ beta.numpy()
        w = hood.weights.numpy()
        errors.append(np.average((f - g) ** 2, weights=w))
        variances.append(np.average((f - np.average(f, weights=w)) ** 2, weights=w))
    assert values["local_fidelity"] == pytest.approx(np.mean(errors), rel=1e-6)
    assert values["local_fidelity.r2"] == pytest.approx(1 - np.sum(errors) / np.sum(variances), rel=1e-6)


def test_applies_to_local_surrogates_only():
    _, ctx = linear_context()
    assert LocalFidelity.applies(Lime, ctx.info) and LocalFidelity.applies(Maple, ctx.info)
    assert not LocalFidelity.applies(Gradient, ctx.info)
    assert "fits no local linear surrogate" in LocalFidelity.why_not(Gradient, ctx.info)


def test_missing_intercepts_are_a_clear_error():
    _, ctx = linear_context()
    method = Maple(**MAPLE)
    record = method.explain(ctx)
    record.meta.pop("surrogate")
    with pytest.raises(ValueError, match="needs meta\\['surrogate'\\]\\['intercept'\\]"):
        LocalFidelity(n_samples=10)(record, ctx, method)
    with pytest.raises(ParamError, match="'local_fidelity'.n_samples: 0 is out of range, expected >= 1"):
        LocalFidelity(n_samples=0)


def test_an_input_whose_leaves_hold_no_held_out_point_is_left_out():
    """MAPLE's neighbourhood of an input is the held-out points sharing a leaf with it; where none does (a far
    input, a small test split), that input has no neighbourhood and no score, and the others still count."""
    model, ctx = linear_context()
    method = Maple(**MAPLE)
    record = method.explain(ctx)
    far = torch.full((1, 4), 50.0)
    hood = next(method.neighbourhoods(model, far, 1, 0, far.clone()))   # the pool holds only the input itself
    assert len(hood.inputs) == 0 and hood.features.shape == (0, 4)
    assert score(method, ctx, record)["local_fidelity"] < 1e-10
