"""Shapley-value methods [104]–[106] against exact Shapley values by enumeration, the Shapley axioms
(efficiency, symmetry, dummy) and closed forms; DASP's LPDN layers against their definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.methods.attribution.shapley._lpdn import max_moments, max_pool_moments, relu_moments, sigmoid_moments
from nnxai.ops.groups import player_groups, player_sums
from nnxai.methods.attribution.shapley.dasp import Dasp, coalition_moments
from nnxai.methods.attribution.shapley.deep_shap import DeepShap
from nnxai.methods.attribution.shapley.kernel_shap import KernelShap
from nnxai.methods.attribution.shapley.shapley_sampling import ShapleySampling
from nnxai.metrics.shapley_error import baseline_game, exact_shapley
from nnxai.models.networks import MLP

from toy_models import LinearModel, tiny_convnet, tiny_mlp, toy_context

SAMPLERS = {"shapley_sampling": ShapleySampling, "kernel_shap": KernelShap}


@pytest.fixture(autouse=True)
def one_thread():
    """The samplers run many passes of a few tiny inputs: extra threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def method(cls, patch=1, **extra):
    return cls(n_explain=8, batch_size=4, patch=patch, baseline="zero", **extra)


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
    out = method(ShapleySampling, patch, n_samples=n_samples)(model, x, target, torch.zeros_like(x[:1]))
    torch.testing.assert_close(out.double().flatten(1).sum(1), output_gap(model, x, target), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case, patch", [(mlp_case, 1), (cnn_case, 4)])
@pytest.mark.parametrize("n_samples", [2, 5, 30])
def test_kernel_shap_is_exactly_efficient(case, patch, n_samples):
    model, x, target = case()
    out = KernelShap(n_explain=8, batch_size=4, n_samples=n_samples, patch=patch, baseline="zero")(
        model, x, target, torch.zeros_like(x[:1]))
    torch.testing.assert_close(out.double().flatten(1).sum(1), output_gap(model, x, target), rtol=1e-5, atol=1e-6)


def test_kernel_shap_without_sampled_coalitions_splits_the_gap_evenly():
    model, x, target = mlp_case()
    values = values_of(method(KernelShap, n_samples=2)(model, x, target, torch.zeros_like(x[:1])))
    torch.testing.assert_close(values, output_gap(model, x, target)[:, None].expand_as(values) / x.shape[1])


# --- agreement with Captum (an independent implementation of the same estimators) --------------------------

def test_shapley_sampling_equals_captums_sampler_given_the_same_permutations():
    from captum.attr import ShapleyValueSampling

    from nnxai.ops.noise import input_seed, seeded

    model, x, target = cnn_case(n=3)
    reference = torch.full_like(x[:1], 0.3)
    ours = values_of(method(ShapleySampling, 3, n_samples=7)(model, x, target, reference), 3)
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
    ours = values_of(method(KernelShap, n_samples=3000)(model, x, target, reference))
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
    values = values_of(method(cls, **params)(model, x, target, torch.zeros_like(x[:1])))
    scale = exact.abs().max(dim=1).values
    assert float(((values[:, 0] - values[:, 1]).abs() / scale).max()) <= symmetry_tol
    assert float((values[:, 2].abs() / scale).max()) <= dummy_tol


def test_deep_shap_gives_a_dummy_feature_nothing():
    model, x, target = symmetric_and_dummy_case()
    background = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    out = DeepShap(n_explain=8, batch_size=4, n_background=6)(model, x, target, background[:1])
    assert torch.equal(out[:, 2], torch.zeros_like(out[:, 2]))


# --- agreement with exact values ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, params, tol", [
    ("shapley_sampling", {"n_samples": 300}, 0.05),       # measured 0.018 (0.074 at 8 permutations)
    ("kernel_shap", {"n_samples": 600}, 0.05),            # measured 0.015 (0.18 at 8 coalitions)
])
def test_samplers_approach_exact_values(name, params, tol):
    model, x, target = mlp_case(seed=1)
    exact = exact_values(model, x, target)
    values = values_of(method(SAMPLERS[name], **params)(model, x, target, torch.zeros_like(x[:1])))
    assert relative_error(values, exact) < tol
    few = values_of(method(SAMPLERS[name], n_samples=8)(model, x, target, torch.zeros_like(x[:1])))
    assert relative_error(values, exact) < relative_error(few, exact)


def test_sampling_over_patches_approaches_exact_patch_values():
    model, x, target = cnn_case(n=2)
    exact = exact_values(model, x, target, patch=4)
    values = values_of(method(ShapleySampling, 4, n_samples=200)(model, x, target, torch.zeros_like(x[:1])), 4)
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
    expected = explainer.attribute(model, x[record.indices], torch.as_tensor(record.targets), x_train[idx])
    np.testing.assert_allclose(record.attributions, expected.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="background set is drawn from the train split"):
        explainer(model, x, torch.zeros(6, dtype=torch.long))


# --- DASP ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, patch", [((6,), 1), ((2, 4, 4), 2)])
def test_dasp_is_exact_on_a_one_layer_linear_model(shape, patch):
    gen = torch.Generator().manual_seed(0)
    n_in = int(np.prod(shape))
    model = LinearModel(torch.randn(3, n_in, generator=gen), torch.randn(3, generator=gen))
    x, target = torch.randn(4, *shape, generator=gen), torch.tensor([0, 1, 2, 0])
    exact = exact_values(model, x, target, patch)
    values = values_of(method(Dasp, patch)(model, x, target, torch.zeros_like(x[:1])), patch)
    torch.testing.assert_close(values, exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation, tol", [("relu", 0.2), ("sigmoid", 0.005)])   # measured 0.110, 0.0014
def test_dasp_is_close_to_exact_on_a_small_mlp(activation, tol):
    torch.manual_seed(0)
    model = MLP(8, 3, hidden=(16, 8), activation=activation).eval()
    x, target = torch.randn(12, 8, generator=torch.Generator().manual_seed(1)), torch.arange(12) % 3
    exact = exact_values(model, x, target)
    values = values_of(method(Dasp)(model, x, target, torch.zeros_like(x[:1])))
    error = relative_error(values, exact)
    equal_split = relative_error(exact.sum(1, keepdim=True).expand_as(exact) / 8, exact)
    assert error < tol and error < 0.2 * equal_split


def test_dasp_on_a_convnet_over_patches_is_close_to_exact():
    model, x, target = cnn_case(n=6)
    exact = exact_values(model, x, target, patch=4)
    values = values_of(method(Dasp, 4)(model, x, target, torch.zeros_like(x[:1])), 4)
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
    values = values_of(method(Dasp)(model, x, target, torch.zeros_like(x[:1])))
    for row, (xi, t) in enumerate(zip(x, target)):
        with torch.no_grad():
            np.testing.assert_allclose(values[row].numpy(), slow_dasp(model, xi, int(t)), rtol=1e-4, atol=1e-6)


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


def test_dasp_with_zero_variance_reproduces_the_network():
    # k = 0 without i and k = n − 1 with i are deterministic coalitions: f(r) and f(x) exactly
    model, x, target = cnn_case(n=2)
    values = values_of(method(Dasp, 8)(model, x, target, torch.zeros_like(x[:1])), 8)   # one player
    torch.testing.assert_close(values[:, 0], output_gap(model, x, target), rtol=1e-5, atol=1e-6)


# --- errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, params, match", [
    (ShapleySampling, {"patch": 0}, "'patch' must be an integer >= 1, got 0"),
    (ShapleySampling, {"n_samples": 2.5}, "'n_samples' must be an integer >= 1, got 2.5"),
    (KernelShap, {"baseline": "median"}, "'baseline' must be one of \\['zero', 'mean'\\], got 'median'"),
    (KernelShap, {"n_samples": 0}, "'n_samples' must be an integer >= 1, got 0"),
    (Dasp, {"patch": True}, "'patch' must be an integer >= 1, got True"),
])
def test_bad_parameters_are_clear_errors(cls, params, match):
    base = {"n_explain": 4, "batch_size": 2, "n_samples": 4, "patch": 2, "baseline": "zero"}
    base = {k: v for k, v in base.items() if k in cls.param_names}
    with pytest.raises(ValueError, match=match):
        cls(**{**base, **params})


def test_deep_shap_bad_background_size_is_a_clear_error():
    with pytest.raises(ValueError, match="'n_background' must be an integer >= 1, got 0"):
        DeepShap(n_explain=4, batch_size=2, n_background=0)


def test_dasp_names_an_unsupported_layer():
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="layer type Tanh is not supported"):
        method(Dasp)(model, x, torch.tensor([0, 1]), torch.zeros(1, 4))


def test_deep_shap_validated_call_takes_a_background_of_any_size():
    """``method(model, x, target, background)``: B background rows for N inputs, B != N, is the documented use."""
    model, x, target = mlp_case(seed=2)
    background = torch.randn(9, 5, generator=torch.Generator().manual_seed(1))
    method = DeepShap(n_explain=4, batch_size=3, n_background=9)
    torch.testing.assert_close(method(model, x, target, background), method.attribute(model, x, target, background))
    with pytest.raises(ValueError, match=r"baseline shape \(9, 4\) \(a background set\) must be \(B, 5\)"):
        method(model, x, target, background[:, :4])
