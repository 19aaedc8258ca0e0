"""Gradient ⊙ Input [139], SmoothGrad [39], DeconvNet [72], guided backprop [102]: closed forms, autograd,
and slow re-implementations of the ReLU rules written here with backward hooks."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import PreparedSplit
from nnxai.methods.attribution.propagation.deconvnet import DeconvNet
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.methods.attribution.gradient.gradient_x_input import GradientXInput
from nnxai.methods.attribution.propagation.guided_backprop import GuidedBackprop
from nnxai.methods.attribution.gradient.integrated_gradients import IntegratedGradients
from nnxai.methods.attribution.gradient.smoothgrad import SmoothGrad, smoothed_gradient
from nnxai.ops.noise import input_noise
from nnxai.methods.base import model_traits
from nnxai.params import ParamError
from toy_models import LinearModel, tiny_convnet, tiny_mlp, toy_context

W = torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0, -0.25],
                  [-1.5, 0.0, 2.0, -4.0, 0.75, 1.0],
                  [0.1, 0.2, -0.3, 0.4, -0.5, 0.6]])
B = torch.tensor([0.3, -0.7, 1.1])
TARGET6 = torch.tensor([0, 1, 2, 2, 1, 0])


def images(n=6, seed=1, size=8):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def autograd_gradient(model, x, target):
    """Signed ∂S_c/∂x by plain autograd (samples are independent: one backward for the batch)."""
    leaf = x.detach().clone().requires_grad_(True)
    model(leaf)[torch.arange(len(x)), target].sum().backward()
    return leaf.grad


def split(x):
    """A train split holding ``x`` (labels 0)."""
    return PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long))


def make(cls, **kw):
    defaults = {"n_explain": 10, "batch_size": 4}
    if cls is SmoothGrad:
        defaults.update(n_samples=8, noise_level=0.15)
    return cls(**{**defaults, **kw})


# --- Gradient ⊙ Input -------------------------------------------------------------------------------------

def test_gxi_on_linear_model_is_weight_row_times_input():
    x = torch.randn(5, 1, 2, 3, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 1, 0])
    attr = make(GradientXInput)(LinearModel(W, B), x, target)
    assert torch.equal(attr, W[target].reshape(5, 1, 2, 3) * x)


def test_gxi_on_linear_model_equals_integrated_gradients_from_zero():
    model, x = LinearModel(W, B), torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([2, 0, 1, 1, 2])
    ig = IntegratedGradients(n_explain=10, batch_size=4, n_steps=7, baseline="zero").fit(model, split(x))
    expected = ig(model, x, target, torch.zeros(1, 6))
    torch.testing.assert_close(make(GradientXInput)(model, x, target), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_gxi_on_relu_net_is_input_times_autograd_gradient(kind):
    model = tiny_convnet(seed=3) if kind == "cnn" else tiny_mlp(seed=3)
    x = images() if kind == "cnn" else torch.randn(6, 6, generator=torch.Generator().manual_seed(1))
    attr = make(GradientXInput)(model, x, TARGET6)
    torch.testing.assert_close(attr, x * autograd_gradient(model, x, TARGET6), rtol=0, atol=1e-7)
    assert (attr < 0).any() and (attr > 0).any()   # signed, unlike the |·| of `gradient`


# --- SmoothGrad -------------------------------------------------------------------------------------------

class HalfSquaredNorm(nn.Module):
    """Logit 0 = ½‖x‖², logit 1 = 0: the gradient at x + σε is exactly x + σε."""

    def forward(self, x):
        s = 0.5 * x.flatten(1).pow(2).sum(1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_smoothgrad_without_noise_is_the_gradient_method(kind):
    model = tiny_convnet(seed=4) if kind == "cnn" else tiny_mlp(seed=4)
    x = images() if kind == "cnn" else torch.randn(6, 6, generator=torch.Generator().manual_seed(1))
    plain = Gradient(n_explain=10, batch_size=4)(model, x, TARGET6)
    smooth = make(SmoothGrad, noise_level=0.0)(model, x, TARGET6)
    torch.testing.assert_close(smooth, plain, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("noise_level", [0.1, 0.5, 3.0])
def test_smoothgrad_on_linear_model_is_the_weight_row_for_any_noise(noise_level):
    model, x = LinearModel(W, B), torch.randn(5, 6, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([2, 0, 1, 1, 2])
    signed = smoothed_gradient(model, x, target, n_samples=16, noise_level=noise_level)
    torch.testing.assert_close(signed, W[target], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(make(SmoothGrad, noise_level=noise_level)(model, x, target), W[target].abs(),
                               rtol=1e-6, atol=1e-7)


def test_smoothgrad_noise_scale_is_noise_level_times_input_range():
    x = images(3, seed=7) * torch.tensor([1.0, 2.0, 5.0]).reshape(3, 1, 1, 1)   # three different ranges
    level, n = 0.2, 5
    signed = smoothed_gradient(HalfSquaredNorm(), x, torch.zeros(3, dtype=torch.long), n, level, seed=11)
    for i in range(3):
        sigma = level * (x[i].max() - x[i].min())
        expected = x[i] + sigma * input_noise(x[i], n, seed=11).mean(0)
        torch.testing.assert_close(signed[i], expected, rtol=1e-6, atol=1e-6)


def test_input_noise_is_standard_normal_and_keyed_by_values_and_seed():
    x = images(1)[0]
    eps = input_noise(x, 2000, seed=0)
    assert eps.shape == (2000, *x.shape)
    assert abs(eps.mean().item()) < 0.01 and abs(eps.std().item() - 1) < 0.01   # 384,000 draws
    assert torch.equal(eps, input_noise(x.clone(), 2000, seed=0))
    assert not torch.equal(eps[:5], input_noise(x, 5, seed=1))
    assert not torch.equal(eps[:5], input_noise(x + 1e-3, 5, seed=0))


def test_smoothgrad_same_input_same_noise_in_any_batch_other_seed_other_noise():
    model, x = tiny_convnet(seed=5), images(6, seed=3)
    method = make(SmoothGrad, noise_level=0.3, batch_size=6)
    whole = method(model, x, TARGET6)
    other_batch = method(model, x[[4, 1]], TARGET6[[4, 1]])
    torch.testing.assert_close(other_batch, whole[[4, 1]], rtol=1e-5, atol=1e-7)
    reseeded = method.fit(model, split(x), seed=1)(model, x, TARGET6)
    assert (reseeded - whole).abs().amax().item() > 1e-3   # a nonlinear net: the noise matters


def test_smoothgrad_learns_nothing_unfitted_it_draws_with_seed_0():
    model, x = tiny_convnet(seed=5), images(4, seed=3)
    assert not SmoothGrad.learns()
    unfitted = make(SmoothGrad, noise_level=0.3)
    assert unfitted.seed == 0
    fitted = make(SmoothGrad, noise_level=0.3).fit(model, split(x), seed=0)
    torch.testing.assert_close(unfitted(model, x, TARGET6[:4]), fitted(model, x, TARGET6[:4]), rtol=0, atol=0)


def test_smoothgrad_explain_draws_noise_with_the_context_seed():
    model = tiny_convnet(seed=6)
    ctx = toy_context(model, images(4, seed=8), images(9, seed=9), n_classes=3, seed=5)
    record = make(SmoothGrad, n_explain=5).explain(ctx)
    method = make(SmoothGrad).fit(model, ctx.train, seed=5)
    expected = method(model, ctx.test.x[record.indices], torch.as_tensor(record.targets))
    np.testing.assert_allclose(record.attributions, expected.numpy(), rtol=1e-5, atol=1e-7)
    assert method.seed == 5 and record.meta["seed"] == 5


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", True, None])
def test_smoothgrad_rejects_bad_noise_level(bad):
    with pytest.raises(ParamError, match=r"method 'smoothgrad'\.noise_level: .*(>= 0|number)"):
        make(SmoothGrad, noise_level=bad)


@pytest.mark.parametrize("cls", [GradientXInput, SmoothGrad, DeconvNet, GuidedBackprop])
@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"n_explain": -1}, {"batch_size": 2.5}, {"n_samples": 0}])
def test_bad_integer_params_are_clear_errors(cls, bad):
    if "n_samples" in bad and cls is not SmoothGrad:
        bad = {"n_explain": "3"}
    with pytest.raises(ParamError, match=rf"method '{cls.spec.id}'\.{next(iter(bad))}: "):
        make(cls, **bad)


# --- DeconvNet and guided backprop: slow references from the ReLU rules -----------------------------------

@contextlib.contextmanager
def relu_rule(model, rule):
    """Replace the backward pass of every nn.ReLU by ``rule(forward_input, grad_output)``."""
    inputs, handles = {}, []

    def remember(module, args, output):
        inputs[module] = args[0].detach()

    def backward(module, grad_input, grad_output):
        return (rule(inputs[module], grad_output[0]),)

    for m in model.modules():
        if isinstance(m, nn.ReLU):
            handles += [m.register_forward_hook(remember), m.register_full_backward_hook(backward)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def deconv_rule(z, g):
    return g.clamp(min=0)                        # [72]: rectify the signal, ignore the forward input


def guided_rule(z, g):
    return g * (z > 0) * (g > 0)                 # [102] Fig. 1: gradient mask AND positive signal


def reference(model, x, target, rule):
    with relu_rule(model, rule):
        return autograd_gradient(model, x, target)


@pytest.mark.parametrize("cls, rule", [(DeconvNet, deconv_rule), (GuidedBackprop, guided_rule)])
@pytest.mark.parametrize("seed", [0, 1])
def test_relu_rule_matches_hook_reimplementation_on_convnet(cls, rule, seed):
    model, x = tiny_convnet(seed=seed), images(6, seed=10 + seed, size=12)
    attr = make(cls)(model, x, TARGET6)
    torch.testing.assert_close(attr, reference(model, x, TARGET6, rule), rtol=1e-5, atol=1e-7)
    plain = autograd_gradient(model, x, TARGET6)
    assert (attr - plain).abs().amax() > 1e-4     # the rule is really applied, not the gradient
    assert not any(m._backward_hooks or m._forward_hooks for m in model.modules())


def one_relu_net(seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    # Flatten first: Captum's ReLU hook fails when the ReLU's input is the leaf tensor being explained
    head = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(4 * 5 * 5, 3))
    return conv, head, nn.Sequential(conv, head).eval()


def test_guided_backprop_is_gradient_masked_by_positive_deconvnet_signal_with_one_relu():
    """One ReLU: with z = conv(x), S_c = w_c · relu(z) + b_c and r = w_c the signal reaching the ReLU,
    gradient δ_g = r·1[z>0], DeconvNet δ_d = max(r, 0), guided δ = r·1[z>0]·1[r>0] = δ_g·1[δ_d>0]
    at the ReLU's input; at the image every method applies the same conv backward (convᵀ δ)."""
    conv, head, model = one_relu_net()
    x, target = images(6, seed=12, size=5), TARGET6
    z = conv(x).detach()
    gradient_signal = autograd_gradient(head, z, target)
    deconv_signal = make(DeconvNet)(head, z, target)
    guided_signal = make(GuidedBackprop)(head, z, target)
    torch.testing.assert_close(guided_signal, gradient_signal * (deconv_signal > 0), rtol=0, atol=1e-7)
    torch.testing.assert_close(guided_signal, deconv_signal * (z > 0), rtol=0, atol=1e-7)
    # at the image: convᵀ applied to the combined signal
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(conv(leaf), leaf, grad_outputs=gradient_signal * (deconv_signal > 0))
    torch.testing.assert_close(make(GuidedBackprop)(model, x, target), expected, rtol=1e-6, atol=1e-7)
    # non-trivial: some units are cut by each mask alone
    assert ((gradient_signal != 0) & (deconv_signal == 0)).any() and ((deconv_signal > 0) & (z <= 0)).any()


@pytest.mark.parametrize("cls", [DeconvNet, GuidedBackprop])
def test_relu_rules_apply_to_relu_cnns_only(cls):
    info = toy_context(tiny_convnet(), images(2), images(2), 3).info
    assert cls.why_not(info, model_traits(tiny_convnet())) is None
    assert "relu" in cls.why_not(info, model_traits(tiny_convnet(activation="sigmoid")))
    tab = toy_context(tiny_mlp(), torch.zeros(2, 6), torch.zeros(2, 6), 3)
    assert "cnn" in cls.why_not(tab.info, model_traits(tiny_mlp()))
    with pytest.raises(ValueError, match="no nn.ReLU module"):
        make(cls)(tiny_convnet(activation="sigmoid"), images(2), torch.tensor([0, 1]))
