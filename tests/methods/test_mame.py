"""MAME [68]: feature groups, the LIME losses of Eq. (1) (leaves = per-input weighted least squares), a planted
black box whose tree recovers its coefficient vectors, the planted hierarchy, determinism and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.methods.attribution.aggregation.mame import MAME
from nnxai.methods.attribution.perturbation.lime import coin_samples
from nnxai.ops.groups import feature_groups, group_sums, spread_over_groups
from nnxai.metrics.rules import Fidelity
from nnxai.params import ParamError

from toy_models import tiny_convnet, toy_context

PARAMS = {"n_explain": 40, "batch_size": 16, "patch_size": 2, "fill": "zero", "n_samples": 200, "kernel_width": 0.25,
          "alpha": 1e-8, "n_neighbors": 5, "n_lambdas": 40, "lambda_ratio": 1e-4, "fusion_tol": 1e-3,
          "max_iter": 20_000, "level": 1}


def test_feature_groups_are_patches_shared_by_channels():
    index, n = feature_groups((2, 5, 4), 2)
    assert n == 6                                          # ceil(5/2) × ceil(4/2), edge patches smaller
    for c in range(2):
        for h in range(5):
            for w in range(4):
                assert index[c, h, w] == (h // 2) * 2 + w // 2
    assert feature_groups((7,), 3)[1] == 7


def test_spreading_coefficients_over_groups_keeps_their_sums():
    index, n = feature_groups((3, 5, 5), 2)
    theta = np.random.default_rng(0).normal(size=(4, n))
    np.testing.assert_allclose(group_sums(spread_over_groups(theta, index), index, n), theta, rtol=1e-5, atol=1e-6)


class LinearProbability(nn.Module):
    """A black box whose class-0 probability is exactly linear in the features: ``p = ¾ + a · x`` (logits
    ``log p, log(1 − p)``; the planted inputs and their masked copies keep ``p`` in (0.55, 0.95): class 0)."""

    architecture = "mlp"

    def __init__(self, a):
        super().__init__()
        self.classifier = nn.Linear(len(a), 2)          # unused: only marks a linear head for applicability
        self.a = torch.as_tensor(a, dtype=torch.float64)

    def forward(self, x):
        p = 0.75 + x.double() @ self.a
        return torch.stack([p.log(), (1 - p).log()], dim=1).to(x.dtype)


A = np.array([0.02, -0.015, 0.01, 0.01])


def planted_case(per_subgroup=10, offset=0.8):
    """Inputs of 2 groups × 2 subgroups (``offset`` apart).  With absent features at 0, the samples'
    probability is ``¾ + Σ_j z'_j a_j x_ij``: each input's LIME model is exactly ``θ_i = a ⊙ x_i`` (any kernel
    weights)."""
    rng = np.random.default_rng(4)
    groups = np.array([[3.0, 3.0, 3.0, 0.5], [-3.0, -3.0, 0.5, 3.0]])
    offsets = offset * np.array([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]])
    sub = np.repeat(np.arange(4), per_subgroup)
    x = groups[sub // 2] + offsets[sub % 2] + 0.05 * rng.normal(size=(len(sub), 4))
    model = LinearProbability(A)
    x = torch.tensor(x, dtype=torch.float32)
    return model, toy_context(model, x, x, n_classes=2), sub


def partitions_equal(a, b) -> bool:
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def test_a_linear_black_box_gives_its_coefficients_at_the_leaves_and_its_two_vectors_at_two_clusters():
    _, ctx, sub = planted_case(offset=0.0)
    levels = MAME(**PARAMS).explain(ctx).meta["mame"]["levels"]
    x = ctx.test.x.double().numpy()
    np.testing.assert_allclose(np.asarray(levels[0]["coefficients"]), x * A, atol=2e-6)      # closed form
    # Two groups of inputs, two coefficient vectors a ⊙ (group centre): the two-cluster level recovers them.
    two = next(lv for lv in levels if lv["n_clusters"] == 2)
    assert partitions_equal(two["labels"], sub // 2)
    centres = np.array([[3.0, 3.0, 3.0, 0.5], [-3.0, -3.0, 0.5, 3.0]])
    for c in range(2):
        group = sub[np.asarray(two["labels"]) == c][0] // 2
        np.testing.assert_allclose(two["coefficients"][c], A * centres[group], atol=0.02 * np.abs(A * 3).max())
    # The root: the one linear model of all samples, between the two.
    root = np.asarray(levels[-1]["coefficients"])
    assert root.shape == (1, 4) and np.all(np.abs(root[0]) < np.abs(A * 3) + 1e-9)


def test_the_tree_recovers_the_planted_hierarchy_and_fidelity_falls_towards_the_root():
    _, ctx, sub = planted_case()
    record = MAME(**PARAMS).explain(ctx)
    order = np.argsort(record.indices)
    assert (record.indices[order] == np.arange(40)).all()
    levels = record.meta["mame"]["levels"]
    partitions = [np.asarray(lv["labels"]) for lv in levels]
    assert any(partitions_equal(p, sub) for p in partitions)
    assert any(partitions_equal(p, sub // 2) for p in partitions)
    scores = Fidelity(n_queries=400)(record, ctx)
    per_level = [scores[f"fidelity.level{k}"] for k in range(len(levels))]
    assert per_level[0] == pytest.approx(1.0, abs=1e-6)                   # the leaves are the exact linear models
    assert all(a > b for a, b in zip(per_level, per_level[1:]))
    assert scores["fidelity"] == per_level[record.meta["mame"]["level"]]


def independent_lime(model, x, target, patch, n_samples, width, alpha, seed, reference):
    """Per-input weighted least squares written out: coins, masked images built pixel by pixel, the kernel
    π = exp(−(1 − sqrt(k/G))²/σ²), and numpy's least squares on [1, z'] with ridge rows √α for θ."""
    c, h, w = x.shape
    n_cols, n_groups = -(-w // patch), (-(-h // patch)) * (-(-w // patch))
    coins = coin_samples(x, n_groups, n_samples, seed).numpy()
    ys = []
    for z in coins:
        mask = torch.zeros(c, h, w)
        for i in range(h):
            for j in range(w):
                mask[:, i, j] = float(z[(i // patch) * n_cols + j // patch])
        with torch.no_grad():
            ys.append(float(model((mask * x + (1 - mask) * reference)[None]).softmax(1)[0, target]))
    pi = np.exp(-(1 - np.sqrt(coins.sum(1) / n_groups)) ** 2 / width ** 2)
    design = np.hstack([np.ones((n_samples, 1)), coins]) * np.sqrt(pi)[:, None]
    ridge = np.hstack([np.zeros((n_groups, 1)), np.sqrt(alpha) * np.eye(n_groups)])
    solution, *_ = np.linalg.lstsq(np.vstack([design, ridge]),
                                   np.concatenate([np.asarray(ys) * np.sqrt(pi), np.zeros(n_groups)]), rcond=None)
    return solution[1:]


@pytest.mark.parametrize("fill, alpha", [("zero", 1e-8), ("mean", 1.0)])
def test_the_leaves_are_each_inputs_weighted_least_squares(fill, alpha):
    model = tiny_convnet(1, in_channels=2, n_classes=3)
    torch.manual_seed(1)
    x = torch.rand(6, 2, 6, 6)
    params = {**PARAMS, "n_explain": 6, "batch_size": 4, "n_samples": 60, "fill": fill, "alpha": alpha,
              "n_lambdas": 5, "max_iter": 500}
    ctx = toy_context(model, x, x, 3, seed=3)
    record = MAME(**params).explain(ctx)
    leaves = np.asarray(record.meta["mame"]["levels"][0]["coefficients"])
    reference = x.mean((0, 2, 3))[:, None, None] if fill == "mean" else torch.zeros(2, 1, 1)
    assert record.meta["baseline"]["per_channel"] == pytest.approx(reference.flatten().tolist())
    for leaf, i, t in zip(leaves, record.indices, record.targets):
        expected = independent_lime(model, x[i], int(t), 2, 60, 0.25, alpha, 3, reference)
        np.testing.assert_allclose(leaf, expected, rtol=1e-4, atol=1e-7)


def test_attributions_are_each_inputs_cluster_explanation_at_the_chosen_level():
    _, ctx, _ = planted_case()
    for level in (0, 2, 99):
        record = MAME(**{**PARAMS, "level": level}).explain(ctx)
        tree = record.meta["mame"]
        chosen = tree["levels"][tree["level"]]
        assert tree["level"] == min(level, len(tree["levels"]) - 1) and tree["score"] == "probability"
        expected = np.asarray(chosen["coefficients"])[np.asarray(chosen["labels"])]
        np.testing.assert_allclose(record.attributions, expected, rtol=1e-5, atol=1e-6)


def test_same_seed_same_tree_on_images():
    model = tiny_convnet(0, in_channels=3, n_classes=3)
    torch.manual_seed(0)
    x = torch.rand(10, 3, 8, 8)
    params = {**PARAMS, "n_explain": 10, "batch_size": 4, "n_samples": 50, "n_lambdas": 10, "max_iter": 2000,
              "alpha": 1.0, "fill": "mean"}
    a, b = (MAME(**params).explain(toy_context(model, x, x, 3)) for _ in range(2))
    assert a.meta["mame"] == b.meta["mame"] and np.array_equal(a.attributions, b.attributions)
    assert a.meta["mame"]["n_groups"] == 16
    assert len(set(a.meta["mame"]["levels"][-1]["labels"])) == 1     # the root
    c = MAME(**params).explain(toy_context(model, x, x, 3, seed=1))
    assert not np.array_equal(a.meta["mame"]["levels"][0]["coefficients"], c.meta["mame"]["levels"][0]["coefficients"])


@pytest.mark.parametrize("change, message", [
    ({"local_method": "gradient"}, r"'mame'.*local_method"),
    ({"n_explain": 0}, r"'mame'\.n_explain: 0 is out of range"),
    ({"fill": "noise"}, r"'mame'\.fill: 'noise' is not one of"),
    ({"n_samples": 1}, r"'mame'\.n_samples: 1 is out of range, expected >= 2"),
    ({"alpha": 0.0}, r"'mame'\.alpha: 0\.0 is out of range, expected > 0"),
    ({"kernel_width": 0.0}, r"'mame'\.kernel_width: 0\.0 is out of range"),
    ({"patch_size": 0}, r"'mame'\.patch_size: 0 is out of range, expected >= 1"),
    ({"n_lambdas": 1}, r"'mame'\.n_lambdas: 1 is out of range, expected >= 2"),
    ({"lambda_ratio": 1.0}, r"'mame'\.lambda_ratio: 1\.0 is out of range, expected > 0 and < 1"),
    ({"fusion_tol": -0.1}, r"'mame'\.fusion_tol: -0\.1 is out of range"),
    ({"level": -1}, r"'mame'\.level: -1 is out of range, expected >= 0"),
])
def test_bad_parameters_are_refused_up_front(change, message):
    with pytest.raises(ParamError, match=message):
        MAME(**{**PARAMS, **change})


def test_a_tree_needs_two_inputs():
    _, ctx, _ = planted_case()
    with pytest.raises(ValueError, match="at least 2 explained inputs"):
        MAME(**{**PARAMS, "n_explain": 1}).explain(ctx)
