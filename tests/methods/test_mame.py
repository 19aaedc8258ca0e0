"""MAME [68]: feature groups, the explanation tree on a planted hierarchy, determinism and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.methods.attribution.aggregation.mame import MAME
from nnxai.ops.groups import feature_groups, group_sums, spread_over_groups
from nnxai.metrics.rules import Fidelity
from nnxai.params import ParamError

from toy_models import LinearModel, tiny_convnet, toy_context

PARAMS = {"local_method": "gradient_x_input", "local_params": {"n_explain": 40, "batch_size": 16},
          "patch_size": 2, "n_neighbors": 5, "n_lambdas": 40, "lambda_ratio": 1e-4, "fusion_tol": 1e-3,
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


def planted_case(per_subgroup=10):
    """Inputs of 2 groups × 2 subgroups; a linear model, so Gradient × Input gives θ̂_i = w ⊙ x_i exactly."""
    rng = np.random.default_rng(4)
    groups = np.array([[3.0, 3.0, 3.0, 0.5], [-3.0, -3.0, 0.5, 3.0]])
    offsets = np.array([[0.8, -0.8, 0.0, 0.0], [-0.8, 0.8, 0.0, 0.0]])
    sub = np.repeat(np.arange(4), per_subgroup)
    x = groups[sub // 2] + offsets[sub % 2] + 0.05 * rng.normal(size=(len(sub), 4))
    weight = torch.tensor([[1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    model = LinearModel(weight, torch.tensor([0.0, -100.0]))          # class 0 always predicted
    x = torch.tensor(x, dtype=torch.float32)
    return model, toy_context(model, x, x, n_classes=2), sub


def partitions_equal(a, b) -> bool:
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def test_the_tree_recovers_the_planted_hierarchy_and_fidelity_falls_towards_the_root():
    model, ctx, sub = planted_case()
    record = MAME(**PARAMS).explain(ctx)
    order = np.argsort(record.indices)
    assert (record.indices[order] == np.arange(40)).all()
    levels = record.meta["mame"]["levels"]
    partitions = [np.asarray(lv["labels"]) for lv in levels]
    assert any(partitions_equal(p, sub) for p in partitions)
    assert any(partitions_equal(p, sub // 2) for p in partitions)
    np.testing.assert_allclose(np.asarray(levels[0]["coefficients"]),
                               ctx.test.x.numpy() * np.array([1.0, 2.0, -1.0, 0.5]), rtol=1e-5, atol=1e-5)
    scores = Fidelity(n_queries=400)(record, ctx)
    per_level = [scores[f"fidelity.level{k}"] for k in range(len(levels))]
    assert per_level[0] == pytest.approx(1.0)                          # the leaves are the exact linear models
    assert all(a > b for a, b in zip(per_level, per_level[1:]))
    assert scores["fidelity"] == per_level[record.meta["mame"]["level"]]


def test_attributions_are_each_inputs_cluster_explanation_at_the_chosen_level():
    _, ctx, _ = planted_case()
    for level in (0, 2, 99):
        record = MAME(**{**PARAMS, "level": level}).explain(ctx)
        tree = record.meta["mame"]
        chosen = tree["levels"][tree["level"]]
        assert tree["level"] == min(level, len(tree["levels"]) - 1)
        expected = np.asarray(chosen["coefficients"])[np.asarray(chosen["labels"])]
        np.testing.assert_allclose(record.attributions, expected, rtol=1e-5, atol=1e-6)


def test_same_seed_same_tree_on_images():
    torch.manual_seed(0)
    model = tiny_convnet(0, in_channels=3, n_classes=3)
    x = torch.rand(10, 3, 8, 8)
    params = {**PARAMS, "local_params": {"n_explain": 10, "batch_size": 4}, "n_lambdas": 10, "max_iter": 2000}
    a, b = (MAME(**params).explain(toy_context(model, x, x, 3)) for _ in range(2))
    assert a.meta["mame"] == b.meta["mame"] and np.array_equal(a.attributions, b.attributions)
    assert a.meta["mame"]["n_groups"] == 16
    assert len(set(a.meta["mame"]["levels"][-1]["labels"])) == 1     # the root


@pytest.mark.parametrize("change, message", [
    ({"local_method": "spray"}, r"'mame'\.local_method: 'spray' is not one of"),
    ({"local_method": "nope"}, r"'mame'\.local_method: 'nope' is not one of"),
    ({"local_params": 3}, r"'mame'\.local_params: expected a mapping, got 3"),
    ({"local_params": {"n_explain": 4}}, r"'mame'\.local_params \(gradient_x_input\).*missing \['batch_size'\]"),
    ({"patch_size": 0}, r"'mame'\.patch_size: 0 is out of range, expected >= 1"),
    ({"n_lambdas": 1}, r"'mame'\.n_lambdas: 1 is out of range, expected >= 2"),
    ({"lambda_ratio": 1.0}, r"'mame'\.lambda_ratio: 1\.0 is out of range, expected > 0 and < 1"),
    ({"fusion_tol": -0.1}, r"'mame'\.fusion_tol: -0\.1 is out of range"),
    ({"level": -1}, r"'mame'\.level: -1 is out of range, expected >= 0"),
])
def test_bad_parameters_are_refused_up_front(change, message):
    with pytest.raises(ParamError, match=message):
        MAME(**{**PARAMS, **change})
