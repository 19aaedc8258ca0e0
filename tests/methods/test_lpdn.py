"""The layers of DASP's lightweight probabilistic deep network (survey [106], Gast & Roth 2018) against their
definitions: exact ReLU moments, the probit-approximated sigmoid, Clark's maximum of two normals and the
pairwise reduction of a max-pool window."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from nnxai.methods.attribution.shapley._lpdn import max_moments, max_pool_moments, relu_moments, sigmoid_moments


def test_max_pool_moments_reduce_each_window_pairwise_row_by_row():
    gen = torch.Generator().manual_seed(0)
    mean, var = torch.randn(1, 2, 4, 4, generator=gen, dtype=torch.float64), torch.rand(1, 2, 4, 4, generator=gen,
                                                                                      dtype=torch.float64)
    got_mean, got_var = max_pool_moments(nn.MaxPool2d(2), mean, var)
    for c, r, q in itertools.product(range(2), range(2), range(2)):
        cell = [(2 * r + dr, 2 * q + dq) for dr in range(2) for dq in range(2)]     # a, b, c, d row by row
        m = [mean[0, c, y, z] for y, z in cell]
        v = [var[0, c, y, z] for y, z in cell]
        top, top_var = max_moments(m[0], v[0], m[1], v[1])
        bottom, bottom_var = max_moments(m[2], v[2], m[3], v[3])
        expected = max_moments(top, top_var, bottom, bottom_var)
        assert float(got_mean[0, c, r, q]) == pytest.approx(float(expected[0]), abs=1e-12)
        assert float(got_var[0, c, r, q]) == pytest.approx(float(expected[1]), abs=1e-12)
    # a window of equal, certain values is that value
    same = max_pool_moments(nn.MaxPool2d(2), torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert same[0].item() == pytest.approx(1.0, abs=1e-6) and same[1].item() == pytest.approx(0.0, abs=1e-6)


def gaussian_expectation(fn, mean, var, points=400_001):
    """E[fn(y)], y ~ N(mean, var), by the trapezoid rule over mean ± 12 sd (float64)."""
    sd = math.sqrt(var)
    y = torch.linspace(mean - 12 * sd, mean + 12 * sd, points, dtype=torch.float64)
    density = torch.exp(-0.5 * ((y - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
    return float(torch.trapezoid(fn(y) * density, y))


@pytest.mark.parametrize("mean, var", [(0.3, 0.5), (-1.0, 2.0), (2.0, 0.01), (0.0, 1.0)])
def test_relu_moments_are_exact_and_sigmoid_moments_close(mean, var):
    m, v = torch.tensor(mean, dtype=torch.float64), torch.tensor(var, dtype=torch.float64)
    relu_mean, relu_var = relu_moments(m, v)
    first = gaussian_expectation(torch.relu, mean, var)
    assert float(relu_mean) == pytest.approx(first, abs=1e-6)
    assert float(relu_var) == pytest.approx(gaussian_expectation(lambda y: torch.relu(y) ** 2, mean, var)
                                            - first ** 2, abs=1e-6)
    sig_mean, sig_var = sigmoid_moments(m, v)
    first = gaussian_expectation(torch.sigmoid, mean, var)
    assert float(sig_mean) == pytest.approx(first, abs=0.01)           # probit approximation; measured <= 0.004
    assert float(sig_var) == pytest.approx(gaussian_expectation(lambda y: torch.sigmoid(y) ** 2, mean, var)
                                           - first ** 2, abs=0.01)                 # measured <= 0.0053


def test_clark_moments_of_a_maximum_match_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    a = 0.5 + 1.0 * torch.randn(400_000, generator=gen, dtype=torch.float64)
    b = 0.2 + 0.5 * torch.randn(400_000, generator=gen, dtype=torch.float64)
    mean, var = max_moments(*(torch.tensor(v, dtype=torch.float64) for v in (0.5, 1.0, 0.2, 0.25)))
    top = torch.maximum(a, b)
    assert float(mean) == pytest.approx(float(top.mean()), abs=0.01)
    assert float(var) == pytest.approx(float(top.var()), abs=0.01)


def test_a_gate_scales_the_gaussian_by_its_value_at_the_mean():
    """The template mask [70] as a constant factor: μ' = g μ, v' = g² v with g the template of each map's
    peak of μ; with v = 0 the network's own output."""
    from nnxai.active.hidden_semantics.interpretable_cnn import TemplateMask, peak_masks
    from nnxai.methods.attribution.shapley._lpdn import layer_moments

    gen = torch.Generator().manual_seed(0)
    mean, var = torch.rand(2, 3, 4, 4, generator=gen), torch.rand(2, 3, 4, 4, generator=gen)
    mask = TemplateMask(beta=1.0)
    gate = peak_masks(mean, 1.0)
    out_mean, out_var = layer_moments(mask, mean, var)
    torch.testing.assert_close(out_mean, gate * mean)
    torch.testing.assert_close(out_var, gate * gate * var)
    assert torch.equal(layer_moments(mask, mean, torch.zeros_like(var))[0], mask(mean))
