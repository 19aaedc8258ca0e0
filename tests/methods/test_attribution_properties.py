"""Properties every implemented attribution method must have (STYLE.md, habit 2).

The methods come from the registry (implemented, explanation type ``attribution``) and their parameters
from ``configs/config.yaml`` under the ``smoke`` profile, so a new method inherits these tests.  Each runs
on the toy models it declares itself applicable to: a seeded ConvNet (3×8×8 images) and a seeded MLP; a
method applicable to neither (one that needs a known causal graph) runs on an MLP over the ``causal`` features.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from nnxai import registry
from nnxai.config import config_dir, deep_merge
from nnxai.data import causal
from nnxai.methods.base import AttributionMethod, model_traits
from nnxai.taxonomy import ExplanationType
from toy_models import tiny_convnet, tiny_mlp, toy_context

N_CLASSES = 3


def smoke_params() -> dict:
    directory = config_dir()
    base = yaml.safe_load((directory / "config.yaml").read_text())
    smoke = yaml.safe_load((directory / "profiles" / "smoke.yaml").read_text()) or {}
    return deep_merge(base, smoke)["method_params"]


def toy_case(kind: str, seed: int = 0):
    gen = torch.Generator().manual_seed(100 + seed)
    if kind == "image":
        model = tiny_convnet(seed, in_channels=3, n_classes=N_CLASSES)
        x_train, x_test = torch.rand(16, 3, 8, 8, generator=gen), torch.rand(9, 3, 8, 8, generator=gen)
    elif kind == "grey":                              # 1-channel images (digits; smoke runs shapes only)
        model = tiny_convnet(seed, in_channels=1, n_classes=N_CLASSES)
        x_train, x_test = torch.rand(16, 1, 12, 12, generator=gen), torch.rand(9, 1, 12, 12, generator=gen)
    elif kind == "causal":                            # a table whose causal graph is known (causal_shapley)
        model = tiny_mlp(seed, n_features=causal.SCM.n_features, n_classes=N_CLASSES)
        x_train, x_test = (torch.randn(n, causal.SCM.n_features, generator=gen) for n in (16, 9))
        ctx = toy_context(model, x_train, x_test, N_CLASSES, seed=seed)
        ctx.info = dataclasses.replace(ctx.info, name="causal")
        return model, ctx
    else:
        model = tiny_mlp(seed, n_features=5, n_classes=N_CLASSES)
        x_train, x_test = torch.randn(16, 5, generator=gen), torch.randn(9, 5, generator=gen)
    return model, toy_context(model, x_train, x_test, N_CLASSES, seed=seed)


def cases():
    out = []
    for spec in registry.specs():
        if spec.explanation_type is not ExplanationType.ATTRIBUTION or not registry.is_implemented(spec.id):
            continue
        cls = registry.get(spec.id)
        if not issubclass(cls, AttributionMethod):    # global attribution (TCAV, SpRAy, ...): own record types
            continue
        for kind in ("image", "tabular", "causal"):
            model, ctx = toy_case(kind)
            covered = any(c.values[0] == spec.id for c in out)
            if cls.why_not(ctx.info, model_traits(model)) is None and not (kind == "causal" and covered):
                out.append(pytest.param(spec.id, kind, id=f"{spec.id}-{kind}"))
    return out


CASES = cases()
GREY_CASES = [c for c in CASES if c.values[1] == "image"]


def build(method_id: str, model=None, ctx=None):
    """The method with its smoke parameters; fitted for ``model`` on ``ctx``'s train split when given."""
    params = smoke_params()
    assert method_id in params, f"configs/config.yaml has no method_params.{method_id}"
    method = registry.get(method_id)(**params[method_id])
    return method if model is None else method.fit(model, ctx.train, seed=ctx.seed, info=ctx.info)


def call(method, model, x, target):
    """``method(model, x, target)``; reference-based methods get the zero reference explicitly."""
    baselines = torch.zeros_like(x[:1]) if method.uses_baseline else None
    return method(model, x, target, baselines)


def test_every_implemented_attribution_method_is_covered():
    ids = {c.values[0] for c in CASES}
    implemented = {s.id for s in registry.specs()
                   if s.explanation_type is ExplanationType.ATTRIBUTION and registry.is_implemented(s.id)
                   and issubclass(registry.get(s.id), AttributionMethod)}
    assert {"gradient", "integrated_gradients"} <= ids
    assert ids == implemented, f"attribution methods applicable to no toy model: {implemented - ids}"


@pytest.mark.parametrize("method_id, kind", CASES)
def test_shape_and_dtype_follow_the_inputs(method_id, kind):
    model, ctx = toy_case(kind)
    x = ctx.test.x[:4]
    out = call(build(method_id, model, ctx), model, x, torch.tensor([0, 1, 2, 1]))
    assert isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("method_id, kind", CASES)
def test_same_seed_same_result(method_id, kind):
    records = []
    for _ in range(2):
        model, ctx = toy_case(kind, seed=1)
        torch.manual_seed(ctx.seed)
        records.append(build(method_id).explain(ctx))
    a, b = records
    np.testing.assert_array_equal(a.attributions, b.attributions)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert a.attributions.shape == (len(a.indices), *ctx.test.x.shape[1:])


@pytest.mark.parametrize("method_id, kind", CASES)
def test_batch_size_invariance(method_id, kind):
    model, ctx = toy_case(kind, seed=2)
    method = build(method_id, model, ctx)
    x, target = ctx.test.x[:6], torch.tensor([0, 1, 2, 2, 1, 0])
    torch.manual_seed(0)
    whole = call(method, model, x, target)
    torch.manual_seed(0)
    halves = torch.cat([call(method, model, x[:3], target[:3]), call(method, model, x[3:], target[3:])])
    torch.testing.assert_close(whole, halves, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("method_id, kind", CASES)
def test_model_and_inputs_left_alone(method_id, kind, requires_grad):
    model, ctx = toy_case(kind, seed=3)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    x = ctx.test.x[:4].clone().requires_grad_(requires_grad)
    grad = torch.full_like(x, 7.0) if requires_grad else None
    x.grad = grad
    training = model.training
    call(build(method_id, model, ctx), model, x, torch.tensor([2, 1, 0, 1]))
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), f"{method_id} changed parameter {name}"
        assert p.grad is None, f"{method_id} left a gradient on parameter {name}"
    assert x.requires_grad is requires_grad and model.training is training
    if requires_grad:
        assert torch.equal(x.grad, torch.full_like(x, 7.0))
    else:
        assert x.grad is None
    torch.testing.assert_close(x.detach(), ctx.test.x[:4], rtol=0, atol=0)


@pytest.mark.parametrize("method_id, kind", CASES)
def test_target_out_of_range_is_a_clear_error(method_id, kind):
    model, ctx = toy_case(kind)
    method = build(method_id, model, ctx)
    for bad in (N_CLASSES, -1):
        with pytest.raises(ValueError, match=f"target class {bad} out of range"):
            method(model, ctx.test.x[:2], torch.tensor([0, bad]))


@pytest.mark.parametrize("method_id, kind", CASES)
def test_baseline_of_wrong_shape_is_a_clear_error(method_id, kind):
    model, ctx = toy_case(kind)
    x = ctx.test.x[:2]
    wrong = torch.zeros(1, *x.shape[1:-1], x.shape[-1] + 1)
    with pytest.raises(ValueError, match="baseline shape"):
        build(method_id, model, ctx)(model, x, torch.tensor([0, 1]), wrong)


@pytest.mark.parametrize("method_id, kind", GREY_CASES)
def test_one_channel_images(method_id, kind):
    """Every image method also runs on 1-channel images of another size (the digits data set)."""
    model, ctx = toy_case("grey")
    method = build(method_id, model, ctx)
    x = ctx.test.x[:4]
    out = call(method, model, x, model(x).argmax(1))
    assert out.shape == x.shape and torch.isfinite(out).all()
    record = method.explain(ctx)
    assert record.attributions.shape == (len(record.indices), 1, 12, 12)


LEARNING_CASES = [c for c in CASES if registry.get(c.values[0]).learns()]


def test_methods_that_learn_from_the_train_split_declare_a_fit():
    learning = {c.values[0] for c in LEARNING_CASES}
    assert {"maple", "l2x", "prediction_difference", "integrated_gradients", "lrp"} <= learning


@pytest.mark.parametrize("method_id, kind", LEARNING_CASES)
def test_a_method_that_learns_refuses_to_explain_before_fit(method_id, kind):
    """Fitting is explicit (scikit-learn's contract): no hidden binding, no made-up train split."""
    model, ctx = toy_case(kind)
    method = build(method_id)
    with pytest.raises(RuntimeError, match="call fit"):
        call(method, model, ctx.test.x[:2], torch.tensor([0, 1]))
    other, _ = toy_case(kind, seed=5)
    method.fit(model, ctx.train, seed=ctx.seed, info=ctx.info)
    with pytest.raises(RuntimeError, match="call fit"):          # fitted for another model
        call(method, other, ctx.test.x[:2], torch.tensor([0, 1]))
