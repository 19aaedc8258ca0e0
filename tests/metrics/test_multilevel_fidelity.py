"""``fidelity`` per level of a MAME tree [68]: against a slow re-implementation, by hand, and the dispatch
of the ``fidelity`` metric between rule sets and attribution records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai import registry
from nnxai.data import DATASETS
from nnxai.explanations import AttributionMap
from nnxai.metrics.multilevel import level_r2, query_design
from nnxai.metrics.rules import Fidelity

from toy_models import tiny_convnet, toy_context


def test_r2_with_cluster_intercepts_by_hand():
    # Two clusters, one group; outputs 1, 3 (cluster 0) and 10, 14 (cluster 1); θ = 1 everywhere, kept = 1.
    outputs = np.array([1.0, 3.0, 10.0, 14.0])
    members, kept = np.arange(4), np.ones((4, 1), dtype=bool)
    labels, theta = np.array([0, 0, 1, 1]), np.array([[1.0], [1.0]])
    # Intercepts: mean residual 1 and 11 -> predictions 2, 2, 12, 12; errors 1 + 1 + 4 + 4 = 10.
    total = ((outputs - outputs.mean()) ** 2).sum()
    assert level_r2(outputs, members, kept, labels, theta) == pytest.approx(1 - 10 / total)


def test_query_design_starts_with_the_inputs_and_is_seeded():
    members, kept = query_design(3, 4, 7, seed=5)
    assert members.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert kept[:3].all()
    again = query_design(3, 4, 7, seed=5)
    assert np.array_equal(kept, again[1])


def mame_record(x, targets, levels, patch_size, level=0, score="probability", per_channel=None):
    tree = {"patch_size": patch_size, "n_groups": len(levels[0]["coefficients"][0]), "level": level,
            "levels": levels, "score": score}
    per_channel = [0.0] * x.shape[1] if per_channel is None else per_channel
    return AttributionMap(np.zeros_like(x.numpy()), np.arange(len(x)), targets,
                          {"mame": tree, "method": "mame", "baseline": {"kind": "mean", "per_channel": per_channel}})


def slow_fidelity(model, x, targets, labels, coefficients, patch_size, members, kept, score, per_channel):
    """Query by query (absent patches at the per-channel reference), then a least-squares fit of one intercept
    per cluster (fixed slopes)."""
    n_cols = -(-x.shape[3] // patch_size)
    reference = torch.tensor(per_channel, dtype=x.dtype)[:, None, None].expand(x.shape[1:])
    outputs, linear = [], []
    for i, s in zip(members, kept):
        mask = torch.zeros(x.shape[1:])
        for h in range(x.shape[2]):
            for w in range(x.shape[3]):
                mask[:, h, w] = float(s[(h // patch_size) * n_cols + w // patch_size])
        with torch.no_grad():
            logits = model((x[i] * mask + reference * (1 - mask))[None])[0]
            values = logits.softmax(0) if score == "probability" else logits
            outputs.append(float(values[targets[i]]))
        linear.append(float(np.dot(s, coefficients[labels[i]])))
    outputs, linear = np.array(outputs), np.array(linear)
    cluster = labels[members]
    design = np.eye(labels.max() + 1)[cluster]
    intercept, *_ = np.linalg.lstsq(design, outputs - linear, rcond=None)
    error = ((outputs - linear - design @ intercept) ** 2).sum()
    return 1 - error / ((outputs - outputs.mean()) ** 2).sum()


@pytest.mark.parametrize("score, per_channel", [("probability", [0.3, -0.2]), ("logit", [0.0, 0.0])])
def test_per_level_fidelity_matches_a_slow_reimplementation(score, per_channel):
    torch.manual_seed(0)
    model = tiny_convnet(0, in_channels=2, n_classes=3)
    x = torch.rand(5, 2, 6, 6)
    targets = np.array([0, 1, 2, 0, 1])
    rng = np.random.default_rng(1)
    levels = [{"labels": list(range(5)), "coefficients": rng.normal(size=(5, 9)).tolist()},
              {"labels": [0, 0, 1, 1, 1], "coefficients": rng.normal(size=(2, 9)).tolist()},
              {"labels": [0] * 5, "coefficients": rng.normal(size=(1, 9)).tolist()}]
    ctx = toy_context(model, x, x, n_classes=3, seed=7)
    scores = Fidelity(n_queries=23)(mame_record(x, targets, levels, 2, 1, score, per_channel), ctx)
    members, kept = query_design(5, 9, 23, seed=7)
    for k, level in enumerate(levels):
        expected = slow_fidelity(model, x, targets, np.asarray(level["labels"]), np.asarray(level["coefficients"]),
                                 2, members, kept, score, per_channel)
        assert scores[f"fidelity.level{k}"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert scores["fidelity"] == scores["fidelity.level1"]


def test_fidelity_scores_rule_sets_and_mame_trees_only():
    info = DATASETS["shapes"]
    assert Fidelity.applies(registry.get("mame"), info) and Fidelity.applies(registry.get("trepan"), DATASETS["iris"])
    assert not Fidelity.applies(registry.get("gradient"), info)
    x = torch.rand(2, 3, 4, 4)
    ctx = toy_context(tiny_convnet(0), x, x, n_classes=3)
    with pytest.raises(ValueError, match="MAME tree"):
        Fidelity(n_queries=0)(AttributionMap(np.zeros((2, 3, 4, 4)), [0, 1], [0, 0], {"method": "gradient"}), ctx)
    bad = mame_record(x, np.array([0, 0]), [{"labels": [0, 1], "coefficients": [[0.0] * 3, [0.0] * 3]}], 2)
    with pytest.raises(ValueError, match="3 feature groups"):
        Fidelity(n_queries=0)(bad, ctx)
    levels = [{"labels": [0, 1], "coefficients": [[0.0] * 4, [0.0] * 4]}]
    with pytest.raises(ValueError, match="class score 'margin'"):
        Fidelity(n_queries=0)(mame_record(x, np.array([0, 0]), levels, 2, score="margin"), ctx)
