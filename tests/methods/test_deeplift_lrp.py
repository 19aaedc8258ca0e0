"""DeepLIFT [112] and LRP [113]: summation-to-delta, closed forms, Captum, and slow per-neuron references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import PreparedSplit
from nnxai.methods.attribution.propagation import _lrp_rules as rules
from nnxai.methods.attribution.propagation.deeplift import DeepLift, chain_deeplift
from nnxai.methods.attribution.propagation.lrp import LRP
from nnxai.metrics.completeness import Completeness
from nnxai.metrics.conservation import Conservation
from nnxai.models.networks import MLP
from nnxai.params import ParamError
from toy_models import tiny_convnet, tiny_mlp, toy_context

TARGET = torch.tensor([0, 1, 2, 1, 0, 2])


def deeplift(**kw):
    return DeepLift(**{"n_explain": 6, "batch_size": 4, "rule": "rescale", "baseline": "zero", **kw})


def lrp(**kw):
    return LRP(**{"n_explain": 6, "batch_size": 4, "rule": "epsilon", "epsilon": 1e-9, "alpha": 2.0,
                  "input_rule": "epsilon", **kw})


def fitted(method, model, x_train):
    """``method`` fitted for ``model`` on a train split holding ``x_train`` (labels 0)."""
    return method.fit(model, PreparedSplit(x=x_train, y=torch.zeros(len(x_train), dtype=torch.long)))


def case(kind: str, seed: int = 0, bias: bool = True):
    """A float64 toy model (project ConvNet / MLP), six inputs, and a random reference."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        model, x, ref = tiny_mlp(seed), torch.randn(6, 6, generator=gen), torch.randn(1, 6, generator=gen)
    else:
        model, x, ref = tiny_convnet(seed), torch.rand(6, 3, 8, 8, generator=gen), torch.rand(1, 3, 8, 8, generator=gen)
    model = model.double()
    if not bias:
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return model, x.double(), ref.double()


def logit(model, x, target=TARGET):
    with torch.no_grad():
        return model(x)[torch.arange(len(x)), target]


def without_maxpool(model):
    model.features.pool1, model.features.pool2 = nn.Identity(), nn.Identity()
    return model


def min_network() -> MLP:
    """o = ReLU(x1) − ReLU(x1 − x2) = min(x1, x2) for x ≥ 0: the example of [112] Sec. 3.5.3 / Fig. 3."""
    net = MLP(2, 2, hidden=(2,)).double().eval()
    with torch.no_grad():
        net.features.fc1.weight.copy_(torch.tensor([[1.0, -1.0], [1.0, 0.0]]))
        net.classifier.weight.copy_(torch.tensor([[-1.0, 1.0], [0.0, 0.0]]))
        net.features.fc1.bias.zero_()
        net.classifier.bias.zero_()
    return net


# --- DeepLIFT ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
@pytest.mark.parametrize("seed", [0, 1])
def test_deeplift_summation_to_delta_on_mlp(rule, seed):
    model, x, ref = case("mlp", seed)
    attr = fitted(deeplift(rule=rule), model, x)(model, x, TARGET, ref)
    delta = logit(model, x) - logit(model, ref.expand_as(x))
    torch.testing.assert_close(attr.flatten(1).sum(1), delta, rtol=0, atol=1e-5)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_deeplift_summation_to_delta_on_convnet_without_maxpool(rule):
    model, x, ref = case("cnn", 2)
    model = without_maxpool(model)
    attr = fitted(deeplift(rule=rule), model, x)(model, x, TARGET, ref)
    delta = logit(model, x) - logit(model, ref.expand_as(x))
    torch.testing.assert_close(attr.flatten(1).sum(1), delta, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_captum_rescale_equals_chain_pass_with_gradient_rule_at_maxpool(kind):
    """Independent re-implementation; on the ConvNet it pins down Captum's max-pool behaviour (see module)."""
    model, x, ref = case(kind, 3)
    captum = fitted(deeplift(rule="rescale"), model, x)(model, x, TARGET, ref)
    ours = chain_deeplift(rules.layer_chain(model, x, "test"), x, ref, TARGET, "rescale")
    torch.testing.assert_close(captum, ours, rtol=1e-9, atol=1e-12)


def test_convnet_maxpool_makes_summation_to_delta_approximate_when_argmaxes_differ():
    model, x, ref = case("cnn", 0)
    delta = logit(model, x) - logit(model, ref.expand_as(x))
    gap = (fitted(deeplift(), model, x)(model, x, TARGET, ref).flatten(1).sum(1) - delta).abs()
    assert gap.max() > 1e-4               # documented limitation: max-pool multipliers follow the gradient


def test_rescale_with_zero_reference_on_bias_free_relu_mlp_is_gradient_times_input():
    model, x, _ = case("mlp", 4, bias=False)
    leaf = x.clone().requires_grad_(True)
    model(leaf)[torch.arange(6), TARGET].sum().backward()
    expected = leaf.grad * x
    attr = fitted(deeplift(), model, x)(model, x, TARGET, torch.zeros(1, 6, dtype=x.dtype))
    torch.testing.assert_close(attr, expected, rtol=1e-9, atol=1e-12)


def test_rescale_and_reveal_cancel_on_the_min_example_of_the_paper():
    """x = (3, 1), reference 0: h1 = ReLU(x1 − x2) = 2, h2 = ReLU(x1) = 3, o = h2 − h1 = 1.

    Rescale: m(h1) = 2/2 = 1, so x1 gets 3 − 3 = 0 and x2 gets 0 − (−1) = 1.
    RevealCancel at h1: Δz⁺ = 3, Δz⁻ = −1, Δh⁺ = ½(3 − 0) + ½(2 − 0) = 2.5, Δh⁻ = ½(0 − 0) + ½(2 − 3) = −0.5;
    x1 gets 3 − 2.5 = 0.5 and x2 gets 0 − (−0.5) = 0.5: both inputs of the min share the credit.
    """
    net, x, zero = min_network(), torch.tensor([[3.0, 1.0]], dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    target = torch.tensor([0])
    assert logit(net, x, target).item() == 1.0
    rescale = fitted(deeplift(rule="rescale"), net, x)(net, x, target, zero)
    reveal = fitted(deeplift(rule="reveal_cancel"), net, x)(net, x, target, zero)
    torch.testing.assert_close(rescale, torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(reveal, torch.tensor([[0.5, 0.5]], dtype=torch.float64))


def test_deeplift_mean_baseline_is_recorded_and_completeness_metric_is_zero_on_mlp():
    model = tiny_mlp(5, n_features=5)
    gen = torch.Generator().manual_seed(5)
    ctx = toy_context(model, torch.randn(20, 5, generator=gen) + 2.0, torch.randn(8, 5, generator=gen), 3)
    method = deeplift(baseline="mean", rule="reveal_cancel", n_explain=8)
    record = method.explain(ctx)
    np.testing.assert_allclose(record.meta["baseline"]["per_channel"], ctx.train.x.double().mean(0).numpy(),
                               rtol=1e-6)
    assert record.meta["baseline"]["kind"] == "mean"
    assert Completeness()(record, ctx, method)["completeness"] < 1e-4


def test_deeplift_bad_params_and_models_are_clear_errors():
    with pytest.raises(ParamError, match=r"method 'deeplift'\.rule: 'shapley' is not one of 'rescale', "):
        deeplift(rule="shapley")
    with pytest.raises(ParamError, match=r"method 'deeplift'\.baseline: 'blur' is not one of 'zero', 'mean'"):
        deeplift(baseline="blur")
    sigmoid = tiny_mlp(0, activation="sigmoid")
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match="Sigmoid is not supported"):
        fitted(deeplift(rule="reveal_cancel"), sigmoid, x)(sigmoid, x, torch.tensor([0, 1]))
    assert "relu" in (DeepLift.why_not(toy_context(sigmoid, torch.randn(2, 6), torch.randn(2, 6), 3).info,
                                       {"architecture": "mlp", "activation": "sigmoid", "gap_head": False,
                                        "linear_head": True}) or "")


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_deeplift_learns_its_reference_and_refuses_to_explain_unfitted(baseline):
    model, x, _ = case("mlp", 5)
    method = deeplift(baseline=baseline)
    with pytest.raises(RuntimeError, match=r"'deeplift' learns from the train split: call fit\(model, train_split\)"):
        method(model, x, TARGET)
    x_train = x + 1.0
    method.fit(model, PreparedSplit(x=x_train, y=torch.zeros(6, dtype=torch.long)))
    expected = x_train.mean(0) if baseline == "mean" else torch.zeros(6, dtype=x.dtype)
    torch.testing.assert_close(method.reference_, expected[None])
    torch.testing.assert_close(method(model, x, TARGET), method(model, x, TARGET, expected[None]), rtol=0, atol=0)


# --- LRP -----------------------------------------------------------------------------------------------

class NoFlatten(nn.Module):
    """The ConvNet with its Flatten done functionally: Captum's LRP has no rule for ``nn.Flatten``."""

    def __init__(self, net):
        super().__init__()
        self.features, self.gap, self.classifier = net.features, net.gap, net.classifier

    def forward(self, x):
        return self.classifier(self.gap(self.features(x)).reshape(len(x), -1))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_lrp_epsilon_matches_captum_epsilon_rule_on_every_layer(kind):
    from captum.attr import LRP as CaptumLRP
    from captum.attr._utils.lrp_rules import EpsilonRule

    model, x, _ = case(kind, 6)
    ours = fitted(lrp(epsilon=1e-9), model, x)(model, x, TARGET)     # max-pool: Captum stabilises, we do not
    wrapped = NoFlatten(model) if kind == "cnn" else model
    for module in wrapped.modules():
        if not list(module.children()) and not isinstance(module, nn.ReLU):
            module.rule = EpsilonRule(epsilon=1e-9)
    captum = CaptumLRP(wrapped).attribute(x.clone().requires_grad_(True), target=TARGET).detach()
    for module in wrapped.modules():
        module.__dict__.pop("rule", None)
    scale = captum.abs().max()
    torch.testing.assert_close(ours, captum, rtol=0, atol=1e-5 * scale)


def test_lrp_epsilon_to_zero_on_bias_free_relu_mlp_is_gradient_times_input():
    model, x, _ = case("mlp", 7, bias=False)
    leaf = x.clone().requires_grad_(True)
    model(leaf)[torch.arange(6), TARGET].sum().backward()
    relevance = fitted(lrp(epsilon=1e-12), model, x)(model, x, TARGET)
    torch.testing.assert_close(relevance, leaf.grad * x, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("rule, alpha", [("epsilon", 2.0), ("alpha_beta", 1.0), ("alpha_beta", 2.0)])
def test_lrp_conserves_relevance_on_bias_free_networks(kind, rule, alpha):
    """αβ conserves when every neuron has contributions of both signs: true of these (wider) seeded nets."""
    model, x, _ = case(kind, 8, bias=False)
    if kind == "mlp":
        torch.manual_seed(8)
        model = MLP(6, 3, hidden=(32, 16)).double().eval()
        for m in (model.features.fc1, model.features.fc2, model.classifier):
            nn.init.zeros_(m.bias)
    relevance = fitted(lrp(rule=rule, alpha=alpha, epsilon=1e-12, input_rule="zb"), model, x)(model, x, TARGET)
    torch.testing.assert_close(relevance.flatten(1).sum(1), logit(model, x), rtol=1e-6, atol=1e-9)


def slow_zb(x, w, low, high, r_out):
    """R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i' (…) · R_j, one neuron at a time (w: out × in)."""
    r_in = np.zeros_like(x)
    for j in range(w.shape[0]):
        terms = [x[i] * w[j, i] - low[i] * max(w[j, i], 0) - high[i] * min(w[j, i], 0) for i in range(len(x))]
        for i in range(len(x)):
            r_in[i] += terms[i] / sum(terms) * r_out[j]
    return r_in


def slow_alpha_beta(a, w, b, r_out, alpha):
    r_in = np.zeros_like(a)
    for j in range(w.shape[0]):
        z = [a[i] * w[j, i] for i in range(len(a))]
        z_pos = sum(max(v, 0) for v in z) + max(b[j], 0)
        z_neg = sum(min(v, 0) for v in z) + min(b[j], 0)
        for i in range(len(a)):
            r_in[i] += (alpha * max(z[i], 0) / z_pos - (alpha - 1) * min(z[i], 0) / z_neg) * r_out[j]
    return r_in


def test_zb_rule_matches_slow_per_neuron_loop_on_linear_and_conv():
    gen = torch.Generator().manual_seed(9)
    layer = nn.Linear(5, 4).double()
    x = torch.randn(1, 5, generator=gen, dtype=torch.float64)
    low, high = x - torch.rand(1, 5, generator=gen, dtype=torch.float64), x + torch.rand(1, 5, generator=gen, dtype=torch.float64)
    r_out = torch.randn(1, 4, generator=gen, dtype=torch.float64)
    got = rules.zb_rule(layer, x, r_out, low, high)
    expected = slow_zb(x[0].numpy(), layer.weight.detach().numpy(), low[0].numpy(), high[0].numpy(), r_out[0].numpy())
    np.testing.assert_allclose(got[0].numpy(), expected, rtol=1e-10)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()                     # as the dense matrix it applies
    xc = torch.rand(1, 2, 4, 4, generator=gen, dtype=torch.float64)
    dense = torch.autograd.functional.jacobian(lambda t: nn.functional.conv2d(t, conv.weight, padding=1), xc).reshape(48, 32)
    lc, hc = torch.zeros_like(xc), torch.ones_like(xc)
    rc = torch.rand(1, 3, 4, 4, generator=gen, dtype=torch.float64)
    got = rules.zb_rule(conv, xc, rc, lc, hc).flatten()
    expected = slow_zb(xc.flatten().numpy(), dense.detach().numpy(), lc.flatten().numpy(), hc.flatten().numpy(),
                       rc.flatten().numpy())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alpha_beta_rule_matches_slow_per_neuron_loop(alpha):
    gen = torch.Generator().manual_seed(10)
    layer = nn.Linear(6, 4).double()
    a = torch.randn(1, 6, generator=gen, dtype=torch.float64)              # signed inputs, nonzero biases
    r_out = torch.randn(1, 4, generator=gen, dtype=torch.float64)
    got = rules.alpha_beta_rule(layer, a, r_out, alpha)
    expected = slow_alpha_beta(a[0].numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy(),
                               r_out[0].numpy(), alpha)
    np.testing.assert_allclose(got[0].numpy(), expected, rtol=1e-10)


def test_maxpool_sends_all_relevance_to_the_winner():
    a = torch.tensor([[[[1.0, 3.0], [2.0, 0.0]]]])
    got = rules.winner_take_all(nn.MaxPool2d(2), a, torch.tensor([[[[5.0]]]]))
    assert torch.equal(got, torch.tensor([[[[0.0, 5.0], [0.0, 0.0]]]]))


def test_lrp_explain_uses_train_range_as_zb_bounds_and_is_scored_by_conservation():
    model = tiny_mlp(11, n_features=4)
    gen = torch.Generator().manual_seed(11)
    x_train, x_test = torch.randn(30, 4, generator=gen), torch.randn(6, 4, generator=gen) * 0.5
    ctx = toy_context(model, x_train, x_test, 3)
    method = lrp(input_rule="zb", rule="alpha_beta", n_explain=6)
    record = method.explain(ctx)
    np.testing.assert_allclose(record.meta["bounds"]["low"], x_train.min(0).values.numpy())
    np.testing.assert_allclose(record.meta["bounds"]["high"], x_train.max(0).values.numpy())
    low, high = method.bounds_                         # explain fitted the method for ctx.model
    torch.testing.assert_close(low, x_train.min(0).values)
    torch.testing.assert_close(high, x_train.max(0).values)
    direct = method(model, ctx.test.x[record.indices], torch.as_tensor(record.targets))
    np.testing.assert_allclose(record.attributions, direct.numpy(), rtol=1e-6, atol=1e-7)
    gap = Conservation()(record, ctx, method)["conservation"]
    scores = logit(model, ctx.test.x[record.indices], torch.as_tensor(record.targets)).double()
    expected = ((torch.as_tensor(record.attributions).double().sum(1) - scores).abs() / scores.abs()).mean()
    assert gap == pytest.approx(float(expected), rel=1e-9)


def test_lrp_image_bounds_are_the_channels_data_range_and_it_refuses_to_explain_unfitted():
    model = tiny_convnet(12).double()
    x_train = 0.5 + 0.2 * torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    method = lrp(input_rule="zb")
    with pytest.raises(RuntimeError, match=r"'lrp' learns from the train split: call fit\(model, train_split\)"):
        method(model, x_train, TARGET[:5])
    low, high = fitted(method, model, x_train).bounds_
    dims = (0, 2, 3)
    assert torch.equal(low, x_train.amin(dims)) and torch.equal(high, x_train.amax(dims))   # moves with the data
    shifted_low, shifted_high = fitted(lrp(input_rule="zb"), model, x_train - 1.0).bounds_
    torch.testing.assert_close((shifted_low, shifted_high), (low - 1.0, high - 1.0), rtol=0, atol=1e-15)
    with pytest.raises(RuntimeError, match="z\\^B input bounds are learnt"):
        lrp(input_rule="zb").input_bounds(x_train)


def test_lrp_bad_params_are_clear_errors():
    for bad, match in (({"rule": "gamma"}, r"'lrp'\.rule: 'gamma' is not one of 'epsilon', 'alpha_beta'"),
                       ({"input_rule": "w2"}, r"'lrp'\.input_rule: 'w2' is not one of"),
                       ({"epsilon": 0.0}, r"'lrp'\.epsilon: 0\.0 is out of range, expected > 0"),
                       ({"alpha": 0.5}, r"'lrp'\.alpha: 0\.5 is out of range, expected >= 1")):
        with pytest.raises(ParamError, match=match):
            lrp(**bad)
    sigmoid, x = tiny_mlp(0, activation="sigmoid"), torch.randn(2, 6)
    with pytest.raises(ValueError, match="Sigmoid is not supported"):
        fitted(lrp(), sigmoid, x)(sigmoid, x, torch.tensor([0, 1]))
