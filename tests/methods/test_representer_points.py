"""Representer point selection [117]: the theorem's identity at the fitted stationary point, α in closed
form, and the selected examples against a brute-force ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DatasetInfo, PreparedSplit
from nnxai.explanations import Examples
from nnxai.methods.base import ExplainContext, explained_indices
from nnxai.methods.example.representer_points import (
    RepresenterPoints, fit_last_layer, objective_gradient, penultimate, representer_alphas,
)
from nnxai.models.networks import MLP, ConvNet
from nnxai.params import ParamError

LAM = 0.01
INFO = DatasetInfo("toy", "tabular", 3, (5,), False, False, "test")


def _mlp():
    torch.manual_seed(7)
    model = MLP(5, 3, hidden=(8, 6)).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 2.0)      # a seeded random head, far from the λ-regularised fit
    return model


@pytest.fixture(scope="module")
def ctx():
    g = torch.Generator().manual_seed(1)
    x_train, x_test = torch.randn(80, 5, generator=g), torch.randn(30, 5, generator=g)
    return ExplainContext(model=_mlp(), dataset="toy", model_id="mlp", info=INFO,
                          train=PreparedSplit(x=x_train, y=torch.zeros(80, dtype=torch.long)),
                          test=PreparedSplit(x=x_test, y=torch.zeros(30, dtype=torch.long)), seed=4)


def _method(**over):
    return RepresenterPoints(**{"n_explain": 12, "top_k": 5, "lambda_l2": LAM, "fit_steps": 200, **over})


@pytest.fixture(scope="module")
def record(ctx):
    return _method().explain(ctx)


def _features(model, x):
    """Independent of the method's hook: model.embed plus the constant-1 feature, float64."""
    with torch.no_grad():
        f = model.embed(x).double()
    return torch.cat([f, torch.ones(len(f), 1, dtype=torch.float64)], 1)


def test_decomposition_reproduces_refitted_logits(record):
    dec, head = np.array(record.extra["decomposed_logits"]), np.array(record.extra["head_logits"])
    assert dec.shape == head.shape == (12, 3)
    assert np.abs(dec - head).max() < 1e-4
    assert record.extra["fit_grad_max"] < 1e-8
    assert np.allclose(dec.sum(1), 0.0, atol=1e-8)          # Σ_c α_ic = 0 (softmax cross-entropy)
    assert record.indices == explained_indices(30, 12, 4).tolist()


def test_fitted_theta_is_a_stationary_point(ctx):
    f = _features(ctx.model, ctx.train.x)
    with torch.no_grad():
        p = torch.softmax(ctx.model(ctx.train.x).double(), 1)
    w = ctx.model.classifier
    init = torch.cat([w.weight.detach().T, w.bias.detach()[None]]).double()

    def grad_max(theta):
        theta = theta.clone().requires_grad_(True)
        loss = -(p * torch.log_softmax(f @ theta, 1)).sum(1).mean() + LAM * (theta ** 2).sum()
        loss.backward()
        return theta.grad.abs().max().item()

    assert grad_max(init) > 1e-2                      # the network's own head is not stationary
    theta = fit_last_layer(f, p, LAM, 200, init)
    assert grad_max(theta) < 1e-7                     # float64 L-BFGS stops once the loss stops changing
    # Theorem 3.1 at the parameter level: Θ = Σ_i f_i α_iᵀ (off by -∇/(2λ) away from stationarity)
    alpha = representer_alphas(f, p, theta, LAM)
    torch.testing.assert_close(f.T @ alpha, theta, rtol=0, atol=1e-5)
    torch.testing.assert_close(objective_gradient(theta, f, p, LAM), torch.zeros_like(theta), rtol=0, atol=1e-7)


def test_alpha_closed_form_three_examples():
    f = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    p = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]], dtype=torch.float64)
    # Θ = 0: softmax is uniform, α = (p - 1/2) / (2 · 0.5 · 3)
    alpha = representer_alphas(f, p, torch.zeros(3, 2, dtype=torch.float64), 0.5)
    expected = torch.tensor([[0.2 / 3, -0.2 / 3], [-0.1, 0.1], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(alpha, expected, rtol=0, atol=1e-15)
    # Θ with logits (1, -1), (0, 0), (1, -1): softmax (s, 1 - s), s = 1 / (1 + e^-2); λ = 0.25
    theta = torch.tensor([[1.0, -1.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    s = 1.0 / (1.0 + math.exp(-2.0))
    expected = torch.tensor([[0.7 - s, s - 0.7], [-0.3, 0.3], [0.5 - s, s - 0.5]], dtype=torch.float64) / 1.5
    torch.testing.assert_close(representer_alphas(f, p, theta, 0.25), expected, rtol=0, atol=1e-15)


def test_selected_examples_are_the_k_largest_and_smallest_values(ctx, record):
    """Brute force: every representer value α_ic f_iᵀ f_t by loops, then a full sort."""
    f = _features(ctx.model, ctx.train.x)
    with torch.no_grad():
        p = torch.softmax(ctx.model(ctx.train.x).double(), 1)
    w = ctx.model.classifier
    theta = fit_last_layer(f, p, LAM, 200, torch.cat([w.weight.detach().T, w.bias.detach()[None]]).double())
    q = torch.softmax(f @ theta, 1)
    alpha = ((p - q) / (2 * LAM * len(f))).numpy()
    fnp = f.numpy()
    for row, t in enumerate(record.indices):
        x_t = ctx.test.x[t:t + 1]
        with torch.no_grad():
            c = int(ctx.model(x_t).argmax())
        f_t = _features(ctx.model, x_t).numpy()[0]
        assert record.targets[row] == c
        values = [alpha[i, c] * sum(a * b for a, b in zip(fnp[i], f_t)) for i in range(len(fnp))]
        order = sorted(range(len(values)), key=lambda i: values[i])
        assert record.examples[row] == order[::-1][:5]
        np.testing.assert_allclose(record.scores[row], [values[i] for i in order[::-1][:5]], rtol=1e-6, atol=1e-12)
        assert record.extra["inhibitory_examples"][row] == order[:5]
        np.testing.assert_allclose(record.extra["inhibitory_scores"][row], [values[i] for i in order[:5]],
                                   rtol=1e-6, atol=1e-12)
        # the decomposed logits are the sums of the representer values over all training points
        all_c = [sum(alpha[i, k] * float(fnp[i] @ f_t) for i in range(len(fnp))) for k in range(3)]
        np.testing.assert_allclose(record.extra["decomposed_logits"][row], all_c, rtol=1e-6, atol=1e-9)


def test_model_logits_and_determinism(ctx, record):
    with torch.no_grad():
        logits = ctx.model(ctx.test.x[record.indices]).numpy()
    np.testing.assert_allclose(record.extra["model_logits"], logits, rtol=1e-6)
    again = _method().explain(ctx)
    assert again.examples == record.examples and again.scores == record.scores
    assert isinstance(record, Examples) and record.meta["method"] == "representer_points"


def test_runs_on_a_convnet():
    torch.manual_seed(0)
    model = ConvNet(3, 2, widths=(4, 4, 6)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 8, 8, generator=g)
    info = DatasetInfo("toyimg", "image", 2, (3, 8, 8), False, False, "test")
    split = PreparedSplit(x=x, y=torch.zeros(40, dtype=torch.long))
    rec = _method(n_explain=5, top_k=3).explain(ExplainContext(model, "toyimg", "cnn", info, split, split))
    f, _ = penultimate(model, x, "cpu")
    torch.testing.assert_close(f[:, :-1], model.embed(x).detach().double())
    assert np.abs(np.array(rec.extra["decomposed_logits"]) - np.array(rec.extra["head_logits"])).max() < 1e-4
    assert len(rec.examples) == 5 and all(len(e) == 3 for e in rec.examples)


def test_logits_must_come_from_the_linear_head(ctx):
    class Scaled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.classifier = inner, inner.classifier

        def forward(self, x):
            return 2 * self.inner(x)

    with pytest.raises(ValueError, match="linear head"):
        _method().fit(Scaled(ctx.model), ctx.train)


def test_fit_refits_the_head_on_the_train_split_and_select_needs_it(ctx, record):
    method = _method().fit(ctx.model, ctx.train, seed=ctx.seed)
    assert method.theta_.shape == (7, 3) and method.alpha_.shape == (80, 3)
    torch.testing.assert_close(method.features_, _features(ctx.model, ctx.train.x))
    assert method.select(ctx.model, ctx).examples == record.examples
    with pytest.raises(RuntimeError, match="call fit"):
        _method().select(ctx.model, ctx)
    with pytest.raises(RuntimeError, match="for this model"):
        method.select(_mlp(), ctx)


@pytest.mark.parametrize("bad, message", [
    ({"top_k": 0}, r"top_k: 0 is out of range, expected >= 1"),
    ({"lambda_l2": 0.0}, r"lambda_l2: 0\.0 is out of range, expected > 0"),
    ({"lambda_l2": -1e-3}, r"lambda_l2: -0\.001 is out of range"),
    ({"lambda_l2": float("inf")}, r"lambda_l2: expected a finite number"),
    ({"fit_steps": 0}, r"fit_steps: 0 is out of range"),
    ({"n_explain": -1}, r"n_explain: -1 is out of range")])
def test_bad_params_are_named(bad, message):
    with pytest.raises(ParamError, match=r"'representer_points'\." + message):
        _method(**bad)
