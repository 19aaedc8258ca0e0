"""Bias attribution (BBp) [111]: Σβ = f(x) − ∇f(x)·x exactly, a hand-worked network, the linear case."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nnxai.data import DATASETS
from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.propagation.bias_attribution import BiasAttribution, bias_backpropagation
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.methods.base import model_traits
from nnxai.metrics.completeness import Completeness
from nnxai.params import ParamError
from toy_models import LinearModel, tiny_convnet, tiny_mlp, toy_context

RULES = ("abs_contribution", "uniform")


def with_biases(model: nn.Module, seed: int) -> nn.Module:
    """Seeded non-zero biases everywhere, so that the local bias term is far from 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=gen))
    return model


def local_bias(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    net = copy.deepcopy(model).double()
    xd = x.double().requires_grad_(True)
    logit = net(xd).gather(1, target[:, None])[:, 0]
    (grad,) = torch.autograd.grad(logit.sum(), xd)
    return (logit - (grad * xd).flatten(1).sum(1)).detach()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("kind", ["mlp", "convnet", "convnet_zero_pixels"])
def test_bias_attributions_sum_to_the_local_bias_in_float64(kind, rule):
    gen = torch.Generator().manual_seed(1)
    if kind == "mlp":
        model, x = with_biases(tiny_mlp(0, n_features=6, n_classes=3), 2), torch.randn(7, 6, generator=gen)
    else:
        model, x = with_biases(tiny_convnet(0, in_channels=3, n_classes=3), 2), torch.rand(7, 3, 8, 8, generator=gen)
        if kind == "convnet_zero_pixels":          # every unit over a zero patch splits its bias evenly
            x[:, :, :4] = 0.0
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    beta = bias_backpropagation(model, x, target, rule)
    assert beta.dtype == torch.float64 and beta.shape == x.shape
    expected = local_bias(model, x, target)
    assert expected.abs().min() > 1e-3
    torch.testing.assert_close(beta.flatten(1).sum(1), expected, rtol=1e-12, atol=1e-12)


def test_a_two_layer_relu_network_worked_out_by_hand():
    # z1 = W1 x + b1 = (2, 3) for x = (1, 2), both units active; f = w2·relu(z1) + 0.5 = −3.5; ∇f = (−3, −3).
    # Output bias 0.5 is split over relu(z1) by |w2 a| = (2, 6): (0.125, 0.375).  Unit 1 holds
    # ∂f/∂z1_1 · b1_1 + 0.125 = 1·3 + 0.125, split over x by |W1[0] x| = (1, 2); unit 2 holds
    # (−2)(−1) + 0.375 = 2.375, split by |W1[1] x| = (2, 2).
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([3.0, -1.0]))
        model[2].weight.copy_(torch.tensor([[1.0, -2.0]]))
        model[2].bias.copy_(torch.tensor([0.5]))
    x = torch.tensor([[1.0, 2.0]])
    beta = bias_backpropagation(model, x, torch.tensor([0]), "abs_contribution")
    hand = torch.tensor([[3.125 / 3 + 2.375 / 2, 3.125 * 2 / 3 + 2.375 / 2]], dtype=torch.float64)
    torch.testing.assert_close(beta, hand, rtol=0, atol=1e-12)
    assert float(beta.sum()) == pytest.approx(-3.5 - (-3.0 * 1.0 - 3.0 * 2.0), abs=1e-12)
    uniform = bias_backpropagation(model, x, torch.tensor([0]), "uniform")
    # uniform: 0.5 → (0.25, 0.25); unit 1 holds 3.25, unit 2 holds 2.25, each split in half over x
    torch.testing.assert_close(uniform, torch.tensor([[2.75, 2.75]], dtype=torch.float64), rtol=0, atol=1e-12)


def test_dead_units_pass_no_bias_of_their_own():
    # unit 2 is dead (z = −4): it contributes nothing, its bias −1 included; all of f's bias comes from unit 1
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
        model[0].bias.copy_(torch.tensor([2.0, -1.0]))
        model[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
        model[2].bias.copy_(torch.tensor([0.0]))
    x = torch.tensor([[1.0, 2.0]])
    beta = bias_backpropagation(model, x, torch.tensor([0]), "abs_contribution")
    torch.testing.assert_close(beta, torch.tensor([[2.0 / 3, 4.0 / 3]], dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_linear_model_distributes_its_bias_as_prescribed(rule):
    gen = torch.Generator().manual_seed(3)
    weight, bias = torch.randn(3, 5, generator=gen), torch.tensor([0.7, -1.2, 2.0])
    model = LinearModel(weight, bias)
    x = torch.randn(4, 5, generator=gen)
    target = torch.tensor([0, 1, 2, 1])
    beta = BiasAttribution(n_explain=4, batch_size=3, rule=rule)(model, x, target).double()
    w = weight[target].double()
    if rule == "abs_contribution":
        share = (w * x.double()).abs() / (w * x.double()).abs().sum(1, keepdim=True)
    else:
        share = torch.full_like(w, 1 / 5)
    torch.testing.assert_close(beta, bias[target].double()[:, None] * share, rtol=1e-6, atol=1e-7)


def test_completeness_metric_scores_the_bias_identity():
    model = with_biases(tiny_convnet(0, in_channels=3, n_classes=3), 4)
    gen = torch.Generator().manual_seed(6)
    ctx = toy_context(model, torch.rand(8, 3, 8, 8, generator=gen), torch.rand(10, 3, 8, 8, generator=gen), 3)
    method = BiasAttribution(n_explain=10, batch_size=4, rule="abs_contribution")
    record = method.explain(ctx)
    assert Completeness.applies(BiasAttribution, DATASETS["shapes"])
    assert "no reference input" in Completeness.why_not(Gradient, DATASETS["shapes"])
    assert Completeness()(record, ctx, method)["completeness"] < 1e-5
    assert Completeness()(record, ctx, None)["completeness"] < 1e-5      # identity read from meta["method"]
    doubled = AttributionMap(2.0 * record.attributions, record.indices, record.targets, record.meta)
    assert Completeness()(doubled, ctx, method)["completeness"] == pytest.approx(1.0, abs=1e-5)


def test_relu_networks_only_and_bad_rule():
    sigmoid = tiny_mlp(0, n_features=4, activation="sigmoid")
    assert "relu" in BiasAttribution.why_not(DATASETS["iris"], model_traits(sigmoid))
    assert BiasAttribution.why_not(DATASETS["iris"], model_traits(tiny_mlp(0, n_features=4))) is None
    with pytest.raises(ParamError, match=r"method 'bias_attribution'\.rule: 'signed' is not one of "
                                         r"'abs_contribution', 'uniform'"):
        BiasAttribution(n_explain=4, batch_size=3, rule="signed")
    with pytest.raises(ParamError, match=r"'bias_attribution'\.batch_size: 0 is out of range, expected >= 1"):
        BiasAttribution(n_explain=4, batch_size=0, rule="uniform")
    with pytest.raises(ValueError, match="not supported"):
        bias_backpropagation(sigmoid, torch.zeros(2, 4), torch.tensor([0, 1]), "uniform")
