"""Input invariance [143]: the shifted network is exact, and the methods behave as Kindermans et al. show."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.propagation.deeplift import DeepLift
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.methods.attribution.gradient.gradient_x_input import GradientXInput
from nnxai.methods.attribution.gradient.grad_cam import GradCAM
from nnxai.methods.attribution.gradient.cam import CAM
from nnxai.methods.attribution.gradient.integrated_gradients import IntegratedGradients
from nnxai.methods.attribution.propagation.lrp import LRP
from nnxai.methods.attribution.perturbation.occlusion import Occlusion
from nnxai.metrics.input_invariance import InputInvariance, map_difference, shifted_network
from nnxai.params import ParamError

from toy_models import LinearModel, tiny_convnet, tiny_mlp, toy_context

SHIFT = -1.0


def image_case(seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = tiny_convnet(seed).double()
    x_train, x = (torch.rand(n, 3, 8, 8, generator=gen, dtype=torch.float64) for n in (20, 6))
    return model, x, toy_context(model, x_train, x, n_classes=3)


def tabular_case(seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = tiny_mlp(seed).double()
    x_train, x = (torch.randn(n, 6, generator=gen, dtype=torch.float64) for n in (20, 6))
    return model, x, toy_context(model, x_train, x, n_classes=3)


def record_of(model, x) -> AttributionMap:
    with torch.no_grad():
        targets = model(x).argmax(1).numpy()
    return AttributionMap(np.zeros(tuple(x.shape)), np.arange(len(x)), targets, {})


def metric(**kw) -> InputInvariance:
    return InputInvariance(**{"n_inputs": 50, "shift": SHIFT, "tolerance": 1e-6, **kw})


@pytest.mark.parametrize("case", [image_case, tabular_case])
def test_shifted_network_computes_the_same_function_exactly(case):
    model, x, _ = case()
    twin = shifted_network(model, SHIFT, x)
    with torch.no_grad():
        torch.testing.assert_close(twin(x + SHIFT), model(x), rtol=0, atol=1e-12)
        assert (twin(x) - model(x)).abs().max() > 0.01           # it is another function of the same input
    assert type(twin) is type(model) and all(hasattr(twin, a) for a in ("features", "classifier"))


def test_zero_padding_makes_a_constant_bias_shift_inexact_so_the_conv_bias_is_a_map():
    model, x, _ = image_case()
    conv = model.features.conv1
    naive = tiny_convnet(0).double()
    with torch.no_grad():
        naive.features.conv1.bias -= SHIFT * conv.weight.sum(dim=(1, 2, 3))
        assert (naive(x + SHIFT) - model(x)).abs().max() > 1e-4                   # the border breaks it
    bias_map = shifted_network(model, SHIFT, x).features.conv1.bias_map
    interior = conv.bias[:, None, None] - SHIFT * conv.weight.sum(dim=(1, 2, 3))[:, None, None]
    torch.testing.assert_close(bias_map[:, 1:-1, 1:-1], interior.expand(-1, 6, 6), rtol=0, atol=1e-12)


CASES = [  # (case, method, invariant according to [143])
    (image_case, Gradient(n_explain=6, batch_size=6), True),
    (tabular_case, Gradient(n_explain=6, batch_size=6), True),
    (image_case, IntegratedGradients(n_explain=6, batch_size=3, n_steps=8, baseline="zero"), False),
    (image_case, IntegratedGradients(n_explain=6, batch_size=3, n_steps=8, baseline="mean"), True),
    (tabular_case, IntegratedGradients(n_explain=6, batch_size=3, n_steps=8, baseline="zero"), False),
    (tabular_case, IntegratedGradients(n_explain=6, batch_size=3, n_steps=8, baseline="mean"), True),
    (image_case, DeepLift(n_explain=6, batch_size=6, rule="rescale", baseline="mean"), True),
    (image_case, DeepLift(n_explain=6, batch_size=6, rule="reveal_cancel", baseline="mean"), True),
    (tabular_case, DeepLift(n_explain=6, batch_size=6, rule="reveal_cancel", baseline="zero"), False),
    (tabular_case, DeepLift(n_explain=6, batch_size=6, rule="reveal_cancel", baseline="mean"), True),
    (image_case, GradientXInput(n_explain=6, batch_size=6), False),
    (image_case, Occlusion(n_explain=6, batch_size=6, window=2, stride=2, fill="zero"), False),
    (image_case, Occlusion(n_explain=6, batch_size=6, window=2, stride=2, fill="mean"), True),
    (image_case, CAM(n_explain=6, batch_size=6), True),
    (image_case, GradCAM(n_explain=6, batch_size=6), True),
    # LRP-ε weighs input i by x_i w_ij, which the shift changes; z^B with bounds from the (shifted) data
    # range gives (x − l) w⁺ + (x − h) w⁻ terms, which it does not: the box is the data's, so it moves with
    # the data on tables and images alike ([143] Sec. 3: a reference learnt from the data).
    (tabular_case, LRP(n_explain=6, batch_size=6, rule="epsilon", epsilon=1e-9, alpha=2.0, input_rule="epsilon"),
     False),
    (image_case, LRP(n_explain=6, batch_size=6, rule="epsilon", epsilon=1e-9, alpha=2.0, input_rule="epsilon"),
     False),
    (tabular_case, LRP(n_explain=6, batch_size=6, rule="epsilon", epsilon=1e-9, alpha=2.0, input_rule="zb"), True),
    (image_case, LRP(n_explain=6, batch_size=6, rule="epsilon", epsilon=1e-9, alpha=2.0, input_rule="zb"), True),
]


@pytest.mark.parametrize("case, method, invariant", CASES,
                         ids=[f"{c.__name__}-{type(m).__name__}-{i}" for i, (c, m, _) in enumerate(CASES)])
def test_methods_are_input_invariant_as_kindermans_et_al_find(case, method, invariant):
    model, x, ctx = case()
    out = metric()(record_of(model, x), ctx, method)
    if invariant:
        assert out["input_invariance"] < 1e-9 and out["input_invariance.agreement"] == 1.0
    else:
        assert out["input_invariance"] > 1e-3 and out["input_invariance.agreement"] < 1.0


def test_gradient_x_input_of_a_linear_model_differs_by_w_times_the_shift():
    w = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    model = LinearModel(w).double()
    x = torch.tensor([[1.0, 0.5, 2.0], [3.0, -1.0, 1.0]], dtype=torch.float64)
    ctx = toy_context(model, torch.zeros(4, 3, dtype=torch.float64), x, n_classes=2)
    out = metric(shift=0.5, tolerance=0.3)(record_of(model, x), ctx, GradientXInput(n_explain=2, batch_size=2))
    first, second = w[0] * x, w[0] * (x + 0.5)                 # both inputs predict class 0
    scale = torch.maximum(first.abs().amax(1), second.abs().amax(1))
    assert out["input_invariance"] == pytest.approx(float(((w[0].abs() * 0.5).mean() / scale).mean()), abs=1e-12)
    largest = 1.0 / scale                                      # max |w_i| · 0.5 = 1
    assert out["input_invariance.agreement"] == float((largest <= 0.3).double().mean())


def test_map_difference_closed_form():
    mean, largest = map_difference(torch.tensor([[1.0, -2.0], [0.0, 0.0]]), torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    assert mean.tolist() == [1.0, 0.0] and largest.tolist() == [2.0, 0.0]


def test_a_first_layer_that_does_not_see_the_input_cannot_absorb_the_shift():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(2 * x)

    with pytest.raises(ValueError, match="does not see the raw input"):
        shifted_network(Scaled(), 1.0, torch.ones(2, 3))


@pytest.mark.parametrize("bad, name", [({"shift": 0}, "shift"), ({"shift": "one"}, "shift"),
                                       ({"tolerance": -1.0}, "tolerance"), ({"n_inputs": 0}, "n_inputs")])
def test_rejects_bad_params(bad, name):
    with pytest.raises(ParamError, match=rf"metric 'input_invariance'\.{name}\b"):
        metric(**bad)


def test_bias_attribution_sees_the_bias_map_of_the_shifted_convolution():
    # [111]: Σ β = f_c(x) − ∇f_c(x)·x, the local bias.  On the twin, the first convolution's bias is a map
    # over positions (BiasMapConv2d); were it skipped, the twin's β would miss b_map's share of the bias.
    from nnxai.methods.attribution.propagation.bias_attribution import bias_backpropagation

    model, x, _ = image_case()
    twin = shifted_network(model, SHIFT, x)
    shifted = (x + SHIFT).requires_grad_(True)
    targets = model(x).argmax(1)
    logits = twin(shifted).gather(1, targets[:, None]).sum()
    (grad,) = torch.autograd.grad(logits, shifted)
    with torch.no_grad():
        local_bias = twin(shifted).gather(1, targets[:, None])[:, 0] - (grad * shifted).flatten(1).sum(1)
    beta = bias_backpropagation(twin, x + SHIFT, targets, "abs_contribution")
    torch.testing.assert_close(beta.flatten(1).sum(1), local_bias.detach(), rtol=0, atol=1e-9)
