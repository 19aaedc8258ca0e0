"""Implementation invariance [114]: exact rebuilds of the network, and which methods they move (theory first)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.propagation._lrp_rules import layer_chain
from nnxai.methods.attribution.gradient.cam import CAM
from nnxai.methods.attribution.propagation.deeplift import DeepLift
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.methods.attribution.gradient.integrated_gradients import IntegratedGradients
from nnxai.methods.attribution.propagation.lrp import LRP
from nnxai.metrics.implementation_invariance import TRANSFORMS, ImplementationInvariance, equivalent_network
from nnxai.params import ParamError

from toy_models import LinearModel, tiny_convnet, tiny_mlp, toy_context


def image_case(activation="relu"):
    gen = torch.Generator().manual_seed(0)
    model = tiny_convnet(0, activation=activation).double()
    x_train, x = (torch.rand(n, 3, 8, 8, generator=gen, dtype=torch.float64) for n in (20, 4))
    return model, x, toy_context(model, x_train, x, n_classes=3)


def tabular_case(activation="relu"):
    gen = torch.Generator().manual_seed(0)
    model = tiny_mlp(0, activation=activation).double()
    x_train, x = (torch.randn(n, 6, generator=gen, dtype=torch.float64) for n in (20, 6))
    return model, x, toy_context(model, x_train, x, n_classes=3)


def record_of(model, x) -> AttributionMap:
    with torch.no_grad():
        targets = model(x).argmax(1).numpy()
    return AttributionMap(np.zeros(tuple(x.shape)), np.arange(len(x)), targets, {})


def metric(**kw) -> ImplementationInvariance:
    return ImplementationInvariance(**{"n_inputs": 50, "transforms": list(TRANSFORMS), "tolerance": 1e-9, **kw})


@pytest.mark.parametrize("case", [image_case, tabular_case])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_every_rebuild_computes_the_same_function_with_the_same_layout(case, activation, transform):
    model, x, _ = case(activation)
    twin = equivalent_network(model, transform, seed=3)
    if twin is None:
        assert transform == "pool_swap" and case is tabular_case          # an MLP has no max-pool
        return
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), rtol=0, atol=1e-12)
    assert type(twin) is type(model) and isinstance(twin.classifier, nn.Linear)
    assert {name for name, _ in model.features.named_children()} <= {name for name, _ in twin.features.named_children()}
    if activation == "relu":
        layer_chain(twin, x, "test")                       # LRP and DeepLIFT can still walk it
    widths = [m.weight.shape[0] for m in model.features if isinstance(m, (nn.Linear, nn.Conv2d))]
    twin_widths = [m.weight.shape[0] for m in twin.features if isinstance(m, (nn.Linear, nn.Conv2d))]
    expected = {"split": [2 * w for w in widths], "redundant": [w + 1 for w in widths],
                "bias_layer": widths + widths[-1:]}.get(transform, widths)
    assert twin_widths == expected
    assert all(p.requires_grad for p in model.parameters())            # the model itself is untouched


def test_rebuilds_are_seeded():
    model, x, _ = image_case()
    first, again, other = (equivalent_network(model, "permute", s) for s in (1, 1, 2))
    assert torch.equal(first.features.conv1.weight, again.features.conv1.weight)
    assert not torch.equal(first.features.conv1.weight, other.features.conv1.weight)


GRADIENT_METHODS = [Gradient(n_explain=6, batch_size=6),
                    IntegratedGradients(n_explain=6, batch_size=3, n_steps=8, baseline="zero")]


@pytest.mark.parametrize("case", [image_case, tabular_case])
@pytest.mark.parametrize("method", GRADIENT_METHODS, ids=["gradient", "integrated_gradients"])
def test_gradient_methods_are_implementation_invariant(case, method):
    model, x, ctx = case()
    out = metric()(record_of(model, x), ctx, method)
    assert out["implementation_invariance"] < 1e-12 and out["implementation_invariance.agreement"] == 1.0
    assert ("implementation_invariance.pool_swap" in out) == (case is image_case)


def test_deeplift_breaks_under_swapping_relu_and_max_pool_only():
    # The multiplier of a ReLU after the pool compares window maxima of x and x_ref, which may sit at
    # different pixels; every other rebuild keeps DeepLIFT's multipliers (positive scaling, identity units).
    model, x, ctx = image_case()
    out = metric()(record_of(model, x), ctx, DeepLift(n_explain=6, batch_size=6, rule="rescale", baseline="zero"))
    assert out["implementation_invariance.pool_swap"] > 1e-3
    assert all(out[f"implementation_invariance.{t}"] < 1e-12 for t in ("permute", "split", "redundant", "bias_layer"))
    assert out["implementation_invariance"] == out["implementation_invariance.pool_swap"]


@pytest.mark.parametrize("case", [image_case, tabular_case])
def test_lrp_alpha_beta_breaks_under_the_bias_layer_and_lrp_epsilon_does_not(case):
    # ε-LRP of a ReLU net is Gradient ⊙ Input as ε → 0 (Ancona et al. 2018), so invariant up to O(ε);
    # αβ splits (h + β) v and the moved bias into other positive and negative parts than h v.
    model, x, ctx = case()
    params = {"n_explain": 6, "batch_size": 6, "epsilon": 1e-9, "input_rule": "zb"}
    alpha_beta = metric()(record_of(model, x), ctx, LRP(rule="alpha_beta", alpha=2.0, **params))
    epsilon = metric()(record_of(model, x), ctx, LRP(rule="epsilon", alpha=1.0, **params))
    assert alpha_beta["implementation_invariance.bias_layer"] > 1e-2
    assert alpha_beta["implementation_invariance.permute"] < 1e-12
    assert epsilon["implementation_invariance"] < 1e-6


def test_cam_moves_by_the_constant_the_bias_layer_adds_to_the_features():
    model, x, _ = image_case()
    twin = equivalent_network(model, "bias_layer", seed=0)
    target = model(x).argmax(1)
    cam = CAM(n_explain=6, batch_size=6)
    shift = twin.classifier.weight.detach()[target] @ twin.features.bias_shift.bias.detach()    # Σ_k w_k^c β_k
    torch.testing.assert_close(cam(twin, x, target) - cam(model, x, target),
                               shift[:, None, None, None].expand(-1, 3, 8, 8), rtol=0, atol=1e-12)


def test_only_transforms_asked_for_are_reported():
    model, x, ctx = tabular_case()
    out = metric(transforms=["split"])(record_of(model, x), ctx, Gradient(n_explain=6, batch_size=6))
    assert set(out) == {"implementation_invariance", "implementation_invariance.split",
                        "implementation_invariance.agreement"}


def test_a_model_without_features_and_classifier_is_rejected():
    model = LinearModel(torch.ones(2, 3))
    with pytest.raises(ValueError, match="nn.Sequential 'features'"):
        equivalent_network(model, "permute", 0)


@pytest.mark.parametrize("bad, name", [({"transforms": []}, "transforms"), ({"transforms": ["rotate"]}, "transforms"),
                                       ({"transforms": ["split", "split"]}, "transforms"),
                                       ({"transforms": "split"}, "transforms"),
                                       ({"tolerance": -1e-3}, "tolerance"), ({"n_inputs": 0}, "n_inputs")])
def test_rejects_bad_params(bad, name):
    with pytest.raises(ParamError, match=rf"metric 'implementation_invariance'\.{name}\b"):
        metric(**bad)


def test_methods_that_query_only_outputs_are_invariant_by_construction_and_not_rerun():
    # Occlusion reads f only: on a rebuilt network (equal outputs, checked above for every rebuild) it sees
    # the same numbers, so the metric states the reason instead of re-running it; gradient methods are run.
    from types import SimpleNamespace

    from nnxai.methods.attribution.perturbation.occlusion import Occlusion

    info = SimpleNamespace(name="toy", has_masks=False)
    assert Occlusion.model_agnostic and "by construction" in ImplementationInvariance.why_not(Occlusion, info)
    assert ImplementationInvariance.why_not(Gradient, info) is None
    model = tiny_mlp(seed=0).double()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    method = Occlusion(n_explain=5, batch_size=5, window=1, stride=1, fill="zero")
    zero = torch.zeros_like(x)
    first = method.attribute(model, x, model(x).argmax(1), zero)
    for transform in TRANSFORMS:
        twin = equivalent_network(model, transform, 0)
        if twin is not None:
            torch.testing.assert_close(method.attribute(twin, x, model(x).argmax(1), zero), first, atol=1e-9, rtol=0)
