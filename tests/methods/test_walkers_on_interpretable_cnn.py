"""LRP, DeepLIFT, bias attribution and DASP on the interpretable CNN [70]: the template mask as a gate.

Each walker's rule for ``y = x ∘ g(x)`` (:mod:`nnxai.methods.attribution.propagation._lrp_rules`) must keep
the property its paper claims: LRP's conservation, DeepLIFT's summation-to-delta (where the reference's
peaks agree with the input's), BBp's ``Σβ = f(x) − ∇f(x)·x``, DASP's exactness with two players; with the
mask all ones (``β = 0``) each must give the base ConvNet's result.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnxai.active.hidden_semantics.interpretable_cnn import InterpretableConvNet
from nnxai.data import DATASETS, PreparedSplit
from nnxai.methods.attribution.propagation import _lrp_rules as rules
from nnxai.methods.attribution.propagation.bias_attribution import BiasAttribution, bias_backpropagation
from nnxai.methods.attribution.propagation.deeplift import DeepLift, chain_deeplift
from nnxai.methods.attribution.propagation.lrp import LRP
from nnxai.methods.attribution.shapley._lpdn import probabilistic_chain
from nnxai.methods.attribution.shapley.dasp import Dasp, dasp_values
from nnxai.methods.base import model_traits
from nnxai.metrics.conservation import Conservation
from nnxai.metrics.implementation_invariance import ImplementationInvariance
from nnxai.workflow import RunPlan, model_traits_for
from toy_models import tiny_convnet, toy_context

TARGET = torch.tensor([0, 1, 2, 1, 0, 2])
WALKERS = (LRP, DeepLift, BiasAttribution, Dasp)


def interpretable(seed: int, beta: float = 4.0, bias: bool = True, pools: bool = True) -> InterpretableConvNet:
    """The project's interpretable CNN at the toy widths of ``tiny_convnet``, float64, eval mode."""
    torch.manual_seed(seed)
    model = InterpretableConvNet(3, 3, widths=(4, 6, 8), beta=beta).double().eval()
    if not bias:
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    if not pools:
        model.features.pool1, model.features.pool2 = nn.Identity(), nn.Identity()
    return model


def inputs(seed: int, n: int = 6) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def logit(model, x, target=TARGET):
    with torch.no_grad():
        return model(x)[torch.arange(len(x)), target]


def peaks(model, x) -> torch.Tensor:
    """The peak position of every map the template mask receives, (B, K)."""
    kept = []
    handle = model.mask.register_forward_hook(lambda _m, inp, _out: kept.append(inp[0].flatten(2).argmax(2)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return kept[0]


def fitted(method, model, x):
    return method.fit(model, PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long)))


def lrp(**kw):
    return LRP(**{"n_explain": 6, "batch_size": 4, "rule": "epsilon", "epsilon": 1e-12, "alpha": 2.0,
                  "input_rule": "zb", **kw})


def deeplift(**kw):
    return DeepLift(**{"n_explain": 6, "batch_size": 4, "rule": "rescale", "baseline": "zero", **kw})


# --- the rule of each walker at the gate -----------------------------------------------------------------

def test_the_gate_is_the_template_of_each_maps_peak_and_the_mask_is_input_times_gate():
    model = interpretable(0)
    a = torch.relu(torch.randn(2, 8, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    gate = rules.fixed_gate(model.mask, a)
    torch.testing.assert_close(model.mask(a), a * gate, rtol=0, atol=0)
    assert rules.is_gate(model.mask) and not rules.is_gate(nn.ReLU())
    peak = a.flatten(2).argmax(2)
    assert torch.all(gate.flatten(2).gather(2, peak[..., None]) == 1.0)      # 1 at the peak ([70] Sec. 3.1)


@pytest.mark.parametrize("rule, alpha", [("epsilon", 2.0), ("alpha_beta", 1.0)])
@pytest.mark.parametrize("beta", [4.0, 1.0])
def test_lrp_conserves_relevance_on_a_bias_free_interpretable_cnn(rule, alpha, beta):
    """[113]: with zero biases and z^B at the input Σ R_i = S_c(x), as on the base ConvNet; the gate passes
    relevance unchanged (signal-take-all), so it neither adds nor absorbs any."""
    model, x = interpretable(8, beta, bias=False), inputs(8)
    relevance = fitted(lrp(rule=rule, alpha=alpha), model, x)(model, x, TARGET)
    torch.testing.assert_close(relevance.flatten(1).sum(1), logit(model, x), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_deeplift_sums_to_delta_when_the_references_peaks_agree(rule):
    """[112] Eq. 1: Σ C_i = S_c(x) − S_c(x_ref) holds exactly when every map peaks where the input's does
    (no max-pools here: their switches are the other documented approximation)."""
    model, x = interpretable(2, beta=4.0, pools=False), inputs(2)
    reference = x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    assert torch.equal(peaks(model, x), peaks(model, reference))           # the case the claim is about
    attr = chain_deeplift(rules.layer_chain(model, x, "test"), x, reference, TARGET, rule)
    delta = logit(model, x) - logit(model, reference)
    assert delta.abs().min() > 0
    torch.testing.assert_close(attr.flatten(1).sum(1), delta, rtol=1e-7, atol=1e-15)


def test_deeplift_takes_the_inputs_gate_for_the_reference_so_differing_peaks_leave_a_gap():
    model, x = interpretable(2, beta=4.0, pools=False), inputs(2)
    reference = torch.zeros(1, 3, 8, 8, dtype=x.dtype)
    assert not torch.equal(peaks(model, x), peaks(model, reference.expand_as(x)))
    attr = chain_deeplift(rules.layer_chain(model, x, "test"), x, reference, TARGET, "rescale")
    gap = (attr.flatten(1).sum(1) - (logit(model, x) - logit(model, reference.expand_as(x)))).abs()
    assert gap.max() > 1e-6                  # documented: the multiplier is g(x), not Δy/Δx at the mask


def test_captum_rescale_takes_the_same_gate_as_the_chain_pass():
    """Captum's DeepLift sees no nonlinearity in the mask and uses its gradient, g(x): the chain pass's
    choice, so ``rule="rescale"`` (Captum) and the chain pass agree on the interpretable CNN."""
    model, x = interpretable(3), inputs(3)
    reference = inputs(4, n=1)
    captum = fitted(deeplift(), model, x)(model, x, TARGET, reference)
    ours = chain_deeplift(rules.layer_chain(model, x, "test"), x, reference, TARGET, "rescale")
    torch.testing.assert_close(captum, ours, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rule", ["abs_contribution", "uniform"])
@pytest.mark.parametrize("beta", [4.0, 1.0])
def test_bias_attribution_sums_to_the_local_bias_on_the_interpretable_cnn(rule, beta):
    """[111]: Σβ = f_c(x) − ∇f_c(x)·x; the gate is locally the linear map diag(g) without bias."""
    model, x = interpretable(1, beta), inputs(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=torch.Generator().manual_seed(2)))
    beta_map = bias_backpropagation(model, x, TARGET, rule)
    leaf = x.clone().requires_grad_(True)
    f = model(leaf)[torch.arange(len(x)), TARGET]
    (grad,) = torch.autograd.grad(f.sum(), leaf)
    local_bias = (f - (grad * x).flatten(1).sum(1)).detach()
    assert local_bias.abs().min() > 1e-3
    torch.testing.assert_close(beta_map.flatten(1).sum(1), local_bias, rtol=1e-12, atol=1e-12)


def test_dasp_is_exact_with_two_players_on_the_interpretable_cnn():
    """With two players every coalition of the others is empty or full, the LPDN carries no variance, and
    DASP [106] returns the exact Shapley values: the gate at the mean is then the network's own gate."""
    model, x = interpretable(5, beta=1.0), inputs(5)
    reference = inputs(6, n=1)
    groups = torch.zeros(3, 8, 8, dtype=torch.long)
    groups[:, :, 4:] = 1
    with torch.no_grad():
        values = dasp_values(probabilistic_chain(model, x, "test"), x, reference, TARGET, groups, 2)

        def v(*present):
            keep = sum((groups == p) for p in present) if present else torch.zeros_like(groups, dtype=torch.bool)
            return logit(model, torch.where(keep.bool(), x, reference.expand_as(x)))

        first = 0.5 * ((v(0) - v()) + (v(0, 1) - v(1)))
        second = 0.5 * ((v(1) - v()) + (v(0, 1) - v(0)))
    torch.testing.assert_close(values, torch.stack([first, second], 1), rtol=1e-6, atol=1e-8)


# --- with the mask all ones, the base ConvNet's result -----------------------------------------------------

def ones_mask_twin(seed: int, relu_after_mask: bool = True):
    """The base ConvNet and the interpretable CNN with ``β = 0`` (every template 1) and the same weights;
    without its ReLU after the mask if asked (the same function: the masked maps are then non-negative)."""
    base = tiny_convnet(seed).double()
    twin = InterpretableConvNet(3, 3, widths=(4, 6, 8), beta=0.0).double().eval()
    twin.load_state_dict(base.state_dict())
    if not relu_after_mask:
        twin.features.act_mask3 = nn.Identity()
    return base, twin


@pytest.mark.parametrize("method, relu_after_mask", [
    (lambda: lrp(rule="alpha_beta"), True), (lambda: lrp(rule="epsilon", epsilon=1e-6, input_rule="epsilon"), True),
    (lambda: deeplift(rule="rescale", baseline="mean"), True),
    (lambda: BiasAttribution(n_explain=6, batch_size=4, rule="abs_contribution"), True),
    (lambda: deeplift(rule="reveal_cancel", baseline="mean"), False),
    (lambda: Dasp(n_explain=6, batch_size=6, patch=4, baseline="mean"), False),
], ids=["lrp_ab", "lrp_eps", "deeplift_rescale", "bias_attribution", "deeplift_reveal_cancel", "dasp"])
def test_each_walker_gives_the_base_convnets_result_when_the_mask_is_all_ones(method, relu_after_mask):
    """The gate rules reduce to the identity.  The network's second ReLU (after the mask) changes no value,
    but two walkers see it: RevealCancel gives a unit dead for both ``x`` and ``x_ref`` the ReLU's derivative
    at 0, i.e. 0, as multiplier, where the base net passes the head's weight on (the ``±`` parts such a unit
    passes down cancel), and the LPDN rectifies the moment-matched Gaussian a second time.  Those two are
    compared with the network without that ReLU, which isolates the gate rule."""
    base, twin = ones_mask_twin(7, relu_after_mask)
    x = inputs(7)
    torch.testing.assert_close(logit(twin, x), logit(base, x), rtol=0, atol=0)
    on_base = fitted(method(), base, x)(base, x, TARGET)
    on_twin = fitted(method(), twin, x)(twin, x, TARGET)
    assert on_base.abs().max() > 0
    torch.testing.assert_close(on_twin, on_base, rtol=1e-9, atol=1e-12)


# --- applicability -----------------------------------------------------------------------------------------

def test_the_walkers_apply_to_the_interpretable_cnn_and_refuse_the_prototype_networks():
    shapes = DATASETS["shapes"]
    for method in WALKERS:
        assert method.why_not(shapes, model_traits_for({}, "shapes", "interpretable_cnn")) is None
        for model in ("prototype_network", "protopnet"):
            assert method.why_not(shapes, model_traits_for({}, "shapes", model)) is not None
    traits = {**model_traits_for({}, "shapes", "interpretable_cnn"), "added_layers": ("TemplateMask", "Prototypes")}
    reason = LRP.why_not(shapes, traits)
    assert "LRP [113]" in reason and "no rule for Prototypes" in reason
    # the network-rewriting metric still refuses it: its rebuilds know the base layout only
    assert ImplementationInvariance.cell_why_not(RunPlan({}), "shapes", "interpretable_cnn", "lrp") is not None


def test_lrp_explains_a_trained_interpretable_cnn_and_conservation_scores_it():
    model = interpretable(9, bias=False).float()
    model.checkpoint = {"active": "interpretable_cnn"}
    assert model_traits(model)["standard_layers"] is False
    gen = torch.Generator().manual_seed(9)
    ctx = toy_context(model, torch.rand(20, 3, 8, 8, generator=gen), torch.rand(6, 3, 8, 8, generator=gen), 3)
    method = lrp(n_explain=6)
    record = method.explain(ctx)
    assert Conservation()(record, ctx, method)["conservation"] < 1e-4
