"""Continuity [58] / max-sensitivity (Yeh et al. 2019): closed forms on linear models and a slow loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.methods.attribution.gradient.gradient_x_input import GradientXInput
from nnxai.ops.noise import input_noise
from nnxai.metrics.continuity import Continuity, perturbations
from nnxai.params import ParamError

from toy_models import LinearModel, tiny_mlp, toy_context

SEED = 7


def case(model, x_test, x_train):
    ctx = toy_context(model, x_train, x_test, n_classes=3, seed=SEED)
    with torch.no_grad():
        targets = model(x_test).argmax(1).numpy()
    record = AttributionMap(np.zeros(tuple(x_test.shape), dtype=np.float32), np.arange(len(x_test)), targets, {})
    return ctx, record


def metric(**kw) -> Continuity:
    return Continuity(**{"n_inputs": 50, "n_samples": 6, "radius": 0.1, **kw})


def test_the_gradient_of_a_linear_model_is_perfectly_continuous():
    gen = torch.Generator().manual_seed(0)
    model = LinearModel(torch.randn(3, 5, generator=gen), torch.randn(3, generator=gen)).double()
    ctx, record = case(model, torch.randn(10, 5, generator=gen, dtype=torch.float64),
                       torch.randn(20, 5, generator=gen, dtype=torch.float64))
    assert metric()(record, ctx, Gradient(n_explain=10, batch_size=4)) == {"continuity": 0.0,
                                                                           "continuity.lipschitz": 0.0}


def test_gradient_x_input_of_one_feature_has_lipschitz_quotient_abs_w():
    # Φ(x) = w x: ‖Φ(x+δ) − Φ(x)‖₁ / |δ| = |w| for every δ; relative change |δ| / |x|, largest δ wins.
    model = LinearModel(torch.tensor([[-2.5], [0.0], [0.0]])).double()
    x = torch.tensor([[-1.0], [-3.0], [-0.5]], dtype=torch.float64)             # class 0 predicted (logit > 0)
    ctx, record = case(model, x, torch.tensor([[-4.0], [2.0]], dtype=torch.float64))
    out = metric(radius=0.05)(record, ctx, GradientXInput(n_explain=3, batch_size=2))
    assert out["continuity.lipschitz"] == pytest.approx(2.5, rel=1e-12)
    delta = perturbations(x, 6, 0.05, torch.tensor([[6.0]], dtype=torch.float64), SEED)
    expected = (delta.abs().amax(dim=1)[:, 0] / x.abs()[:, 0]).mean()
    assert out["continuity"] == pytest.approx(float(expected), rel=1e-12)
    assert delta.abs().max() <= 0.05 * 6.0                                     # inside the L∞ ball


def slow_scores(method, model, x, targets, n_samples, radius, span):
    """One input and one perturbation at a time, straight from the definitions."""
    relative, lipschitz = [], []
    for xi, ti in zip(x, targets):
        base = method(model, xi[None], torch.tensor([ti])).numpy().ravel()
        z = input_noise(xi, n_samples, SEED)
        rel_k, lip_k = [], []
        for k in range(n_samples):
            delta = (radius * span * torch.erf(z[k] / math.sqrt(2.0)))
            moved = method(model, (xi + delta)[None], torch.tensor([ti])).numpy().ravel()
            rel_k.append(np.linalg.norm(moved - base) / np.linalg.norm(base))
            lip_k.append(np.abs(moved - base).sum() / np.linalg.norm(delta.numpy()))
        relative.append(max(rel_k))
        lipschitz.append(max(lip_k))
    return float(np.mean(relative)), float(np.mean(lipschitz))


def test_relu_network_gradient_matches_a_slow_loop_and_does_not_depend_on_batching():
    model = tiny_mlp(seed=3, n_features=6).double()
    gen = torch.Generator().manual_seed(3)
    x_train = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    ctx, record = case(model, x, x_train)
    span = x_train.amax(0) - x_train.amin(0)
    method = Gradient(n_explain=7, batch_size=3)
    out = metric(radius=0.3, n_samples=5)(record, ctx, method)
    relative, lipschitz = slow_scores(method, model, x, record.targets, 5, 0.3, span)
    assert out["continuity"] == pytest.approx(relative, rel=1e-10)
    assert out["continuity.lipschitz"] == pytest.approx(lipschitz, rel=1e-10)
    assert out["continuity"] > 0.01                            # ReLU kinks: the gradient jumps
    assert metric(radius=0.3, n_samples=5)(record, ctx, Gradient(n_explain=7, batch_size=1)) == out


def test_only_the_first_n_inputs_are_scored_and_noise_is_per_input():
    model = tiny_mlp(seed=4, n_features=6).double()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    ctx, record = case(model, x, torch.randn(30, 6, generator=gen, dtype=torch.float64))
    head = AttributionMap(record.attributions[:4], record.indices[:4], record.targets[:4], {})
    method = Gradient(n_explain=9, batch_size=9)
    assert metric(n_inputs=4)(record, ctx, method) == metric(n_inputs=100)(head, ctx, method)
    span = torch.ones(1, 6, dtype=torch.float64)
    torch.testing.assert_close(perturbations(x[2:5], 3, 0.1, span, 0), perturbations(x, 3, 0.1, span, 0)[2:5])


@pytest.mark.parametrize("bad, name", [({"n_inputs": 0}, "n_inputs"), ({"n_samples": 2.0}, "n_samples"),
                                       ({"radius": 0.0}, "radius"), ({"radius": float("nan")}, "radius")])
def test_rejects_bad_params(bad, name):
    with pytest.raises(ParamError, match=rf"metric 'continuity'\.{name}\b"):
        metric(**bad)
