"""Shapley-value methods [104]–[106] against exact Shapley values by enumeration, the Shapley axioms
(efficiency, symmetry, dummy) and closed forms; fitting (reference, seed, DeepSHAP's background); DASP's
LPDN layers are tested in test_lpdn.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import PreparedSplit
from nnxai.methods.attribution.shapley._lpdn import relu_moments
from nnxai.ops.groups import player_groups, player_sums
from nnxai.methods.attribution.shapley.dasp import Dasp, coalition_moments
from nnxai.methods.attribution.shapley.deep_shap import DeepShap
from nnxai.methods.attribution.shapley.kernel_shap import KernelShap
from nnxai.methods.attribution.shapley.shapley_sampling import ShapleySampling
from nnxai.metrics.shapley_error import baseline_game, exact_shapley
from nnxai.models.networks import MLP
from nnxai.params import ParamError

from toy_models import LinearModel, tiny_convnet, tiny_mlp, toy_context

SAMPLERS = {"shapley_sampling": ShapleySampling, "kernel_shap": KernelShap}


pytestmark = pytest.mark.usefixtures("one_thread")


def method(cls, patch=1, **extra):
    return cls(n_explain=8, batch_size=4, patch=patch, baseline="zero", **extra)


def train_split(x):
    return PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long))


def fitted(cls, model, x, patch=1, **extra):
    """:func:`method` fitted for ``model`` on a train split of ``x`` (seed 0; the zero reference)."""
    return method(cls, patch, **extra).fit(model, train_split(x))


def exact_values(model, x, target, patch=1):
    """``(N, n_players)`` exact Shapley values of the zero-reference game over the method's players."""
    groups, n = player_groups(tuple(x.shape[1:]), patch)
    reference = torch.zeros_like(x[:1])
    return torch.stack([exact_shapley(baseline_game(model, xi, int(t), reference, groups), n)[0]
                        for xi, t in zip(x, target)])


def values_of(attributions, patch=1):
    groups, n = player_groups(tuple(attributions.shape[1:]), patch)
    return player_sums(attributions, groups, n)


def relative_error(values, exact):
    return float(((values - exact).norm(dim=1) / exact.norm(dim=1)).mean())


def mlp_case(seed=0, n_features=5, activation="relu", n=4):
    model = tiny_mlp(seed, n_features=n_features, n_classes=3, activation=activation)
    x = torch.randn(n, n_features, generator=torch.Generator().manual_seed(10 + seed))
    return model, x, torch.arange(n) % 3


def cnn_case(seed=0, n=3):
    model = tiny_convnet(seed, in_channels=3, n_classes=3)
    x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(20 + seed))
    return model, x, torch.arange(n) % 3


def output_gap(model, x, target):
    with torch.no_grad():
        return (model(x) - model(torch.zeros_like(x[:1]))).gather(1, target[:, None])[:, 0].double()


# --- efficiency ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, patch", [(mlp_case, 1), (cnn_case, 4)])
@pytest.mark.parametrize("n_samples", [1, 3])
def test_sampling_is_efficient_for_any_number_of_permutations(case, patch, n_samples):
    model, x, target = case()
    out = fitted(ShapleySampling, model, x, patch, n_samples=n_samples)(model, x, target, torch.zeros_like(x[:1]))
    torch.testing.assert_close(out.double().flatten(1).sum(1), output_gap(model, x, target), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case, patch", [(mlp_case, 1), (cnn_case, 4)])
@pytest.mark.parametrize("n_samples", [2, 5, 30])
def test_kernel_shap_is_exactly_efficient(case, patch, n_samples):
    model, x, target = case()
    out = KernelShap(n_explain=8, batch_size=4, n_samples=n_samples, patch=patch, baseline="zero").fit(
        model, train_split(x))(model, x, target, torch.zeros_like(x[:1]))
    torch.testing.assert_close(out.double().flatten(1).sum(1), output_gap(model, x, target), rtol=1e-5, atol=1e-6)


def test_kernel_shap_without_sampled_coalitions_splits_the_gap_evenly():
    model, x, target = mlp_case()
    values = values_of(fitted(KernelShap, model, x, n_samples=2)(model, x, target, torch.zeros_like(x[:1])))
    torch.testing.assert_close(values, output_gap(model, x, target)[:, None].expand_as(values) / x.shape[1])


# --- agreement with Captum (an independent implementation of the same estimators) --------------------------

def test_shapley_sampling_equals_captums_sampler_given_the_same_permutations():
    from captum.attr import ShapleyValueSampling

    from nnxai.ops.noise import input_seed, seeded

    model, x, target = cnn_case(n=3)
    reference = torch.full_like(x[:1], 0.3)
    ours = values_of(fitted(ShapleySampling, model, x, 3, n_samples=7)(model, x, target, reference), 3)
    groups, n = player_groups(tuple(x.shape[1:]), 3)
    for j in range(len(x)):
        with seeded(input_seed(x[j], 0, "shapley_sampling")), torch.no_grad():   # Captum draws the same orders
            theirs = ShapleyValueSampling(model).attribute(x[j:j + 1], baselines=reference, target=int(target[j]),
                                                           feature_mask=groups[None], n_samples=7)
        torch.testing.assert_close(ours[j], (player_sums(theirs, groups, n) / torch.bincount(groups.flatten()))[0],
                                   rtol=1e-4, atol=1e-7)


def test_kernel_shap_agrees_with_captums_kernel_shap_at_a_large_sample():
    from captum.attr import KernelShap as CaptumKernelShap

    model, x, target = mlp_case(seed=1)
    reference = torch.zeros_like(x[:1])
    ours = values_of(fitted(KernelShap, model, x, n_samples=3000)(model, x, target, reference))
    torch.manual_seed(0)
    theirs = torch.cat([CaptumKernelShap(model).attribute(x[j:j + 1], baselines=reference, target=int(target[j]),
                                                          n_samples=3000).double() for j in range(len(x))])
    assert relative_error(ours, theirs) < 0.03           # each is 0.008 from the exact values (measured)


# --- symmetry and dummy ----------------------------------------------------------------------------------

def symmetric_and_dummy_case():
    """Features 0 and 1 are interchangeable (same weights, same values); feature 2 is ignored."""
    model, x, target = mlp_case(seed=3)
    with torch.no_grad():
        model.features.fc1.weight[:, 1] = model.features.fc1.weight[:, 0]
        model.features.fc1.weight[:, 2] = 0.0
    x = x.clone()
    x[:, 1] = x[:, 0]
    return model, x, target


@pytest.mark.parametrize("name, params, symmetry_tol, dummy_tol", [
    ("shapley_sampling", {"n_samples": 200}, 0.1, 0.0),      # measured asymmetry 0.041
    ("kernel_shap", {"n_samples": 200}, 0.15, 0.15),         # measured 0.076, dummy 0.055
    ("dasp", {}, 1e-6, 0.0),
])
def test_symmetric_players_share_and_dummy_players_get_nothing(name, params, symmetry_tol, dummy_tol):
    model, x, target = symmetric_and_dummy_case()
    exact = exact_values(model, x, target)
    torch.testing.assert_close(exact[:, 0], exact[:, 1])
    assert torch.equal(exact[:, 2], torch.zeros_like(exact[:, 2]))
    cls = {**SAMPLERS, "dasp": Dasp}[name]
    values = values_of(fitted(cls, model, x, **params)(model, x, target, torch.zeros_like(x[:1])))
    scale = exact.abs().max(dim=1).values
    assert float(((values[:, 0] - values[:, 1]).abs() / scale).max()) <= symmetry_tol
    assert float((values[:, 2].abs() / scale).max()) <= dummy_tol


def test_deep_shap_gives_a_dummy_feature_nothing():
    model, x, target = symmetric_and_dummy_case()
    background = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    explainer = DeepShap(n_explain=8, batch_size=4, n_background=6).fit(model, train_split(background))
    out = explainer(model, x, target, background[:1])
    assert torch.equal(out[:, 2], torch.zeros_like(out[:, 2]))


# --- agreement with exact values ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, params, tol", [
    ("shapley_sampling", {"n_samples": 300}, 0.05),       # measured 0.018 (0.074 at 8 permutations)
    ("kernel_shap", {"n_samples": 600}, 0.05),            # measured 0.015 (0.18 at 8 coalitions)
])
def test_samplers_approach_exact_values(name, params, tol):
    model, x, target = mlp_case(seed=1)
    exact = exact_values(model, x, target)
    values = values_of(fitted(SAMPLERS[name], model, x, **params)(model, x, target, torch.zeros_like(x[:1])))
    assert relative_error(values, exact) < tol
    few = values_of(fitted(SAMPLERS[name], model, x, n_samples=8)(model, x, target, torch.zeros_like(x[:1])))
    assert relative_error(values, exact) < relative_error(few, exact)


def test_sampling_over_patches_approaches_exact_patch_values():
    model, x, target = cnn_case(n=2)
    exact = exact_values(model, x, target, patch=4)
    sampler = fitted(ShapleySampling, model, x, 4, n_samples=200)
    values = values_of(sampler(model, x, target, torch.zeros_like(x[:1])), 4)
    assert relative_error(values, exact) < 0.15                                       # measured 0.074


def test_explain_seeds_per_input_and_records_players():
    model, x, _ = cnn_case(n=6)
    x_train = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    sampler = ShapleySampling(n_explain=6, batch_size=6, n_samples=3, patch=3, baseline="mean")
    record = sampler.explain(toy_context(model, x_train, x, 3, seed=4))
    assert record.meta["players"] == {"patch": 3, "n_players": 9}
    assert record.meta["baseline"]["kind"] == "mean"
    other_seed = sampler.explain(toy_context(model, x_train, x, 3, seed=5))
    assert not np.allclose(record.attributions, other_seed.attributions)      # the seed reaches the sampler


# --- DeepSHAP --------------------------------------------------------------------------------------------

def test_deep_shap_on_a_linear_model_is_weight_times_distance_to_the_background_mean():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, generator=gen)
    model = LinearModel(w, torch.tensor([0.1, -0.2, 0.3]))
    x, background = torch.randn(5, 4, generator=gen), torch.randn(7, 4, generator=gen)
    target = torch.tensor([0, 1, 2, 1, 0])
    out = DeepShap(n_explain=5, batch_size=2, n_background=7).attribute(model, x, target, background)
    torch.testing.assert_close(out, w[target] * (x - background.mean(0)), rtol=1e-5, atol=1e-6)


def test_deep_shap_on_a_relu_mlp_sums_to_the_gap_to_the_mean_background_output():
    model, x, target = mlp_case(seed=2)
    background = torch.randn(9, 5, generator=torch.Generator().manual_seed(1))
    out = DeepShap(n_explain=4, batch_size=3, n_background=9).attribute(model, x, target, background)
    with torch.no_grad():
        expected = model(x).gather(1, target[:, None])[:, 0] - model(background)[:, target].mean(0)
    torch.testing.assert_close(out.sum(1), expected, rtol=1e-4, atol=1e-5)


def test_deep_shap_explain_uses_a_seeded_background_of_train_inputs():
    model, x, _ = mlp_case(seed=2, n=6)
    x_train = torch.randn(30, 5, generator=torch.Generator().manual_seed(3))
    ctx = toy_context(model, x_train, x, 3, seed=7)
    explainer = DeepShap(n_explain=6, batch_size=4, n_background=5)
    record = explainer.explain(ctx)
    idx = record.meta["background_indices"]
    assert len(set(idx)) == 5 and idx == sorted(idx)
    targets = torch.as_tensor(record.targets)
    expected = explainer.attribute(model, x[record.indices], targets, x_train[idx])
    np.testing.assert_allclose(record.attributions, expected.numpy(), rtol=1e-5, atol=1e-6)
    # the fitted background is the one explain drew (fit: seeded by the run's seed)
    torch.testing.assert_close(explainer(model, x[record.indices], targets), expected)
    again = DeepShap(n_explain=6, batch_size=4, n_background=5).fit(model, ctx.train, seed=7)
    assert again.background_indices_.tolist() == idx
    assert DeepShap(n_explain=6, batch_size=4, n_background=5).fit(
        model, ctx.train, seed=8).background_indices_.tolist() != idx


def test_deep_shap_without_a_fit_or_a_background_is_a_clear_error():
    model, x, target = mlp_case(seed=2)
    explainer = DeepShap(n_explain=4, batch_size=2, n_background=3)
    with pytest.raises(RuntimeError, match=r"'deep_shap' learns from the train split: call fit\(model, train_split\)"):
        explainer(model, x, target)
    with pytest.raises(RuntimeError, match="background set is drawn from the train split"):
        explainer.attribute(model, x, target)
    other, _, _ = mlp_case(seed=3)
    explainer.fit(other, train_split(x))
    with pytest.raises(RuntimeError, match="call fit"):                  # fitted for another model
        explainer(model, x, target)


# --- DASP ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, patch", [((6,), 1), ((2, 4, 4), 2)])
def test_dasp_is_exact_on_a_one_layer_linear_model(shape, patch):
    gen = torch.Generator().manual_seed(0)
    n_in = int(np.prod(shape))
    model = LinearModel(torch.randn(3, n_in, generator=gen), torch.randn(3, generator=gen))
    x, target = torch.randn(4, *shape, generator=gen), torch.tensor([0, 1, 2, 0])
    exact = exact_values(model, x, target, patch)
    values = values_of(fitted(Dasp, model, x, patch)(model, x, target, torch.zeros_like(x[:1])), patch)
    torch.testing.assert_close(values, exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation, tol", [("relu", 0.2), ("sigmoid", 0.005)])   # measured 0.110, 0.0014
def test_dasp_is_close_to_exact_on_a_small_mlp(activation, tol):
    torch.manual_seed(0)
    model = MLP(8, 3, hidden=(16, 8), activation=activation).eval()
    x, target = torch.randn(12, 8, generator=torch.Generator().manual_seed(1)), torch.arange(12) % 3
    exact = exact_values(model, x, target)
    values = values_of(fitted(Dasp, model, x)(model, x, target, torch.zeros_like(x[:1])))
    error = relative_error(values, exact)
    equal_split = relative_error(exact.sum(1, keepdim=True).expand_as(exact) / 8, exact)
    assert error < tol and error < 0.2 * equal_split


def test_dasp_on_a_convnet_over_patches_is_close_to_exact():
    model, x, target = cnn_case(n=6)
    exact = exact_values(model, x, target, patch=4)
    values = values_of(fitted(Dasp, model, x, 4)(model, x, target, torch.zeros_like(x[:1])), 4)
    assert relative_error(values, exact) < 0.3                                        # measured 0.14


def test_dasp_input_layer_moments_are_those_of_sampling_without_replacement():
    a = torch.tensor([[[0.5], [-1.0], [2.0], [0.25], [3.0]]], dtype=torch.float64)     # (B=1, n=5, units=1)
    mean, var, factor = coalition_moments(a)
    for i in range(5):
        others = [float(a[0, j, 0]) for j in range(5) if j != i]
        for k in range(5):
            sums = [sum(c) for c in itertools.combinations(others, k)]
            assert float(k * mean[0, i, 0]) == pytest.approx(np.mean(sums), abs=1e-12)
            assert float(factor[k] * var[0, i, 0]) == pytest.approx(np.var(sums), abs=1e-12)


def slow_dasp(model: MLP, x: torch.Tensor, target: int) -> np.ndarray:
    """[106] Algorithm 1 written out for an MLP with zero reference: first-layer moments by enumerating
    every coalition of each size, then the LPDN layer by layer, one player and one size at a time."""
    n = len(x)
    layers = list(model.features) + [model.classifier]
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            outputs = []
            for with_i in (0, 1):
                pre = [layers[0](torch.where(torch.isin(torch.arange(n), torch.tensor(list(s) + [i] * with_i,
                                                                                         dtype=torch.long)),
                                             x, torch.zeros_like(x))[None])[0].double()
                       for s in itertools.combinations(others, k)]
                stacked = torch.stack(pre)
                mean, var = stacked.mean(0), stacked.var(0, unbiased=False)
                for layer in layers[1:]:
                    if isinstance(layer, nn.Linear):
                        mean = layer.weight.double() @ mean + layer.bias.double()
                        var = (layer.weight.double() ** 2) @ var
                    else:
                        mean, var = relu_moments(mean, var)
                outputs.append(float(mean[target]))
            phi[i] += (outputs[1] - outputs[0]) / n
    return phi


def test_dasp_matches_a_slow_implementation_of_its_algorithm():
    model, x, target = mlp_case(seed=4, n=2)
    values = values_of(fitted(Dasp, model, x)(model, x, target, torch.zeros_like(x[:1])))
    for row, (xi, t) in enumerate(zip(x, target)):
        with torch.no_grad():
            np.testing.assert_allclose(values[row].numpy(), slow_dasp(model, xi, int(t)), rtol=1e-4, atol=1e-6)


def test_dasp_with_zero_variance_reproduces_the_network():
    # k = 0 without i and k = n − 1 with i are deterministic coalitions: f(r) and f(x) exactly
    model, x, target = cnn_case(n=2)
    values = values_of(fitted(Dasp, model, x, 8)(model, x, target, torch.zeros_like(x[:1])), 8)   # one player
    torch.testing.assert_close(values[:, 0], output_gap(model, x, target), rtol=1e-5, atol=1e-6)


# --- errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, params, match", [
    (ShapleySampling, {"patch": 0}, r"method 'shapley_sampling'\.patch: 0 is out of range, expected >= 1"),
    (ShapleySampling, {"n_samples": 2.5}, r"'shapley_sampling'\.n_samples: expected an integer >= 1, got 2\.5"),
    (KernelShap, {"baseline": "median"}, r"'kernel_shap'\.baseline: 'median' is not one of 'zero', 'mean'"),
    (KernelShap, {"n_samples": 0}, r"'kernel_shap'\.n_samples: 0 is out of range, expected >= 1"),
    (Dasp, {"patch": True}, r"'dasp'\.patch: expected an integer >= 1, got True"),
    (Dasp, {"n_samples": 4}, r"'dasp': parameters .* expected; unknown \['n_samples'\]"),
])
def test_bad_parameters_are_clear_errors(cls, params, match):
    base = {"n_explain": 4, "batch_size": 2, "n_samples": 4, "patch": 2, "baseline": "zero"}
    base = {k: v for k, v in base.items() if k in cls.param_names}
    with pytest.raises(ParamError, match=match):
        cls(**{**base, **params})


def test_deep_shap_bad_background_size_is_a_clear_error():
    with pytest.raises(ParamError, match=r"'deep_shap'\.n_background: 0 is out of range, expected >= 1"):
        DeepShap(n_explain=4, batch_size=2, n_background=0)


@pytest.mark.parametrize("cls, extra", [(ShapleySampling, {"n_samples": 2}), (KernelShap, {"n_samples": 4}),
                                        (Dasp, {})])
def test_player_methods_must_be_fitted_for_the_model(cls, extra):
    model, x, target = mlp_case()
    unfitted = method(cls, **extra)
    with pytest.raises(RuntimeError, match=rf"'{unfitted.spec.id}' learns from the train split: call fit"):
        unfitted(model, x, target, torch.zeros_like(x[:1]))
    other, _, _ = mlp_case(seed=1)
    with pytest.raises(RuntimeError, match="call fit"):
        unfitted.fit(other, train_split(x))(model, x, target)
    with pytest.raises(RuntimeError, match="reference .* is learnt from the train split"):
        method(cls, **extra).attribute(model, x, target)


def test_fit_learns_the_mean_reference_and_the_seed():
    model, x, target = mlp_case(n=4)
    x_train = torch.randn(20, 5, generator=torch.Generator().manual_seed(9))
    sampler = ShapleySampling(n_explain=4, batch_size=4, n_samples=3, patch=1, baseline="mean")
    sampler.fit(model, train_split(x_train), seed=3)
    torch.testing.assert_close(sampler.reference_[0], x_train.mean(0))
    explicit = ShapleySampling(n_explain=4, batch_size=4, n_samples=3, patch=1, baseline="zero").fit(
        model, train_split(x_train), seed=3)
    torch.testing.assert_close(sampler(model, x, target), explicit(model, x, target, x_train.mean(0, keepdim=True)))
    other_seed = explicit.fit(model, train_split(x_train), seed=4)(model, x, target, x_train.mean(0, keepdim=True))
    assert not torch.allclose(sampler(model, x, target), other_seed)


def test_dasp_names_an_unsupported_layer():
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="layer type Tanh is not supported"):
        fitted(Dasp, model, x)(model, x, torch.tensor([0, 1]), torch.zeros(1, 4))


def test_deep_shap_validated_call_takes_a_background_of_any_size():
    """``method(model, x, target, background)``: B background rows for N inputs, B != N, is the documented use."""
    model, x, target = mlp_case(seed=2)
    background = torch.randn(9, 5, generator=torch.Generator().manual_seed(1))
    method = DeepShap(n_explain=4, batch_size=3, n_background=9).fit(model, train_split(background))
    torch.testing.assert_close(method(model, x, target, background), method.attribute(model, x, target, background))
    with pytest.raises(ValueError, match=r"baseline shape \(9, 4\) \(a background set\) must be \(B, 5\)"):
        method(model, x, target, background[:, :4])
