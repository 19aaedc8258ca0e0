"""Gradient saliency [71], [137] and Integrated Gradients [114]: closed forms, autograd, completeness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.data import PreparedSplit
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.ops.maps import saliency_map
from nnxai.methods.attribution.gradient import integrated_gradients
from nnxai.methods.attribution.gradient.integrated_gradients import IntegratedGradients
from nnxai.params import ParamError
from toy_models import LinearModel, tiny_convnet, tiny_mlp, toy_context

W = torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0, -0.25],
                  [-1.5, 0.0, 2.0, -4.0, 0.75, 1.0],
                  [0.1, 0.2, -0.3, 0.4, -0.5, 0.6]])
B = torch.tensor([0.3, -0.7, 1.1])


def gradient(**kw):
    return Gradient(**{"n_explain": 10, "batch_size": 4, **kw})


def split(x):
    """A train split holding ``x`` (labels 0)."""
    return PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long))


def ig(**kw):
    return IntegratedGradients(**{"n_explain": 10, "batch_size": 4, "n_steps": 50, "baseline": "zero", **kw})


def fitted_ig(model, x_train, **kw):
    """Integrated Gradients fitted for ``model`` on the train inputs ``x_train``."""
    return ig(**kw).fit(model, split(x_train))


def relative_completeness_error(model, x, target, attr, reference):
    with torch.no_grad():
        delta = (model(x) - model(reference.expand_as(x))).gather(1, target[:, None])[:, 0]
    return ((attr.flatten(1).sum(1) - delta).abs() / delta.abs()).mean().item()


# --- Gradient ------------------------------------------------------------------------------------------

def test_gradient_of_linear_model_is_abs_weight_row_of_target():
    model = LinearModel(W, B)
    x = torch.randn(5, 1, 2, 3, generator=torch.Generator().manual_seed(0))   # flattened to 6 features
    target = torch.tensor([0, 1, 2, 1, 0])
    attr = gradient()(model, x, target)
    assert torch.equal(attr, W[target].abs().reshape(5, 1, 2, 3))


def test_gradient_equals_autograd_on_convnet():
    model = tiny_convnet(seed=3)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 2, 1, 0])
    leaf = x.clone().requires_grad_(True)
    model(leaf)[torch.arange(6), target].sum().backward()   # samples are independent: one backward for all
    expected = leaf.grad.abs()
    attr = gradient()(model, x, target)
    torch.testing.assert_close(attr, expected, rtol=0, atol=1e-7)
    assert attr.abs().sum() > 0


def test_saliency_map_is_max_over_channels():
    attr = torch.tensor([[[[1.0, -3.0]], [[0.5, -1.0]], [[-2.0, -2.0]]]])   # (1, 3, 1, 2)
    assert torch.equal(saliency_map(attr), torch.tensor([[[1.0, -1.0]]]))
    np.testing.assert_array_equal(saliency_map(attr.numpy()), np.array([[[1.0, -1.0]]], dtype=np.float32))
    table = torch.randn(4, 7)
    assert saliency_map(table) is table
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        saliency_map(torch.zeros(2, 3, 4))


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"n_explain": -1}, {"batch_size": 2.5}, {"batch_size": True}])
def test_gradient_rejects_bad_params(bad):
    with pytest.raises(ParamError, match=rf"method 'gradient'\.{next(iter(bad))}: "):
        gradient(**bad)


# --- Integrated Gradients -------------------------------------------------------------------------------

def test_ig_on_linear_model_with_zero_baseline_is_gradient_times_input():
    model = LinearModel(W, B)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([2, 0, 1, 1, 2])
    attr = fitted_ig(model, x, n_steps=7)(model, x, target)
    leaf = x.clone().requires_grad_(True)
    model(leaf)[torch.arange(5), target].sum().backward()
    torch.testing.assert_close(attr, leaf.grad * x, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(attr, W[target] * x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("make, shape", [(tiny_convnet, (6, 3, 8, 8)), (tiny_mlp, (6, 6))])
def test_ig_completeness_on_relu_networks(make, shape, seed):
    # Completeness (Prop. 1 of [114]) up to quadrature error.  On ReLU nets the integrand is piecewise
    # constant, so the error falls only as O(1/n_steps) (pooled error 7e-4..5e-3 at 200 steps on these nets),
    # hence 1000 steps.  Errors are pooled over inputs (Σ|ΣR − Δ| / Σ|Δ|) because a single input with
    # f(x) ≈ f(x_ref) makes any per-input ratio explode.  A wrong path, reference or scaling gives O(1).
    model = make(seed=seed)
    x = 4.0 * torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    target = model(x).argmax(1)
    attr = fitted_ig(model, x, n_steps=1000, batch_size=6)(model, x, target)
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    assert (attr.double().flatten(1).sum(1) - delta).abs().sum() / delta.abs().sum() < 2e-3


def test_ig_completeness_on_smooth_network_with_200_steps():
    model = tiny_mlp(seed=1, activation="sigmoid").double()
    with torch.no_grad():                    # larger weights: outputs that move, not a near-constant net
        for p in model.parameters():
            p.mul_(4.0)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    target = model(x).argmax(1)
    reference = torch.full_like(x[:1], 0.5)
    attr = fitted_ig(model, x, n_steps=200)(model, x, target, reference)
    assert relative_completeness_error(model, x, target, attr, reference) < 1e-6


def test_ig_mean_baseline_is_per_channel_train_mean():
    # On a linear model IG is exact: IG = W_c ⊙ (x − x_ref), so the result pins down the reference used.
    weight = torch.randn(2, 8, generator=torch.Generator().manual_seed(5))
    model = LinearModel(weight)
    model.architecture = "cnn"
    gen = torch.Generator().manual_seed(6)
    x_train = torch.rand(20, 2, 2, 2, generator=gen) + torch.tensor([0.0, 3.0]).reshape(1, 2, 1, 1)
    x_test = torch.rand(7, 2, 2, 2, generator=gen)
    ctx = toy_context(model, x_train, x_test, n_classes=2)
    record = ig(baseline="mean", n_steps=5, batch_size=3).explain(ctx)

    means = x_train.mean(dim=(0, 2, 3))
    assert record.meta["baseline"]["kind"] == "mean"
    np.testing.assert_allclose(record.meta["baseline"]["per_channel"], means.numpy(), rtol=1e-6)
    reference = means.reshape(1, 2, 1, 1)
    explained = x_test[record.indices]
    expected = weight[record.targets].reshape(-1, 2, 2, 2) * (explained - reference)
    np.testing.assert_allclose(record.attributions, expected.numpy(), rtol=1e-5, atol=1e-6)

    zero = ig(baseline="zero", n_steps=5).explain(ctx)
    assert zero.meta["baseline"] == {"kind": "zero", "per_channel": [0.0, 0.0]}
    assert not np.allclose(zero.attributions, record.attributions, atol=1e-3)


def test_ig_learns_its_reference_in_fit_and_refuses_to_explain_unfitted():
    model = LinearModel(W)
    x, x_train = torch.randn(2, 6), torch.randn(9, 6) + 2.0
    method = ig(baseline="mean")
    assert IntegratedGradients.learns()
    for call in (lambda: method(model, x, torch.tensor([0, 1])),
                 lambda: method(model, x, torch.tensor([0, 1]), torch.ones(1, 6))):
        with pytest.raises(RuntimeError, match=r"integrated_gradients.*fit\(model, train_split\)"):
            call()
    with pytest.raises(RuntimeError, match=r"baseline='mean'.*fit\(model, train_split\)"):
        method.attribute(model, x, torch.tensor([0, 1]))
    method.fit(model, split(x_train))
    means = x_train.double().mean(0).float()
    torch.testing.assert_close(method.reference_per_channel_, means)
    torch.testing.assert_close(method(model, x, torch.tensor([0, 1])), W[[0, 1]] * (x - means), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(method(model, x, torch.tensor([0, 1]), torch.ones(1, 6)),
                               W[[0, 1]] * (x - 1.0), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="fit"):
        method(LinearModel(W), x, torch.tensor([0, 1]))          # fitted for another model


def test_ig_passes_bound_the_model_batch(monkeypatch):
    monkeypatch.setattr(integrated_gradients, "PASS_ELEMENTS", 4 * 3 * 8 * 8)   # 4 images a pass
    model = tiny_convnet(seed=2)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    x = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    target = torch.zeros(10, dtype=torch.long)
    small = fitted_ig(model, x, batch_size=2, n_steps=9)(model, x, target)
    assert max(seen[1:]) == 4            # seen[0]: __call__'s one-input check of the class count
    monkeypatch.setattr(integrated_gradients, "PASS_ELEMENTS", 2**22)
    large = fitted_ig(model, x, batch_size=100, n_steps=9)(model, x, target)
    torch.testing.assert_close(small, large, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad, name", [({"baseline": "blur"}, "baseline"), ({"n_steps": 0}, "n_steps"),
                                       ({"batch_size": -3}, "batch_size")])
def test_ig_rejects_bad_params(bad, name):
    with pytest.raises(ParamError, match=rf"method 'integrated_gradients'\.{name}: "):
        ig(**bad)


def test_explain_records_predicted_class_of_seeded_inputs():
    model = tiny_mlp(seed=4)
    gen = torch.Generator().manual_seed(8)
    ctx = toy_context(model, torch.randn(30, 6, generator=gen), torch.randn(25, 6, generator=gen), n_classes=3)
    record = ig(n_explain=10, batch_size=4).explain(ctx)
    x = ctx.test.x[record.indices]
    assert record.attributions.shape == (10, 6) and len(set(record.indices.tolist())) == 10
    np.testing.assert_array_equal(record.targets, model(x).argmax(1).numpy())
    assert record.meta["method"] == "integrated_gradients" and record.meta["n_inputs"] == 10
