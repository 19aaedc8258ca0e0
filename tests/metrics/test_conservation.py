"""``conservation`` [113]: mean relative gap between the summed relevance and the explained logit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai import registry
from nnxai.explanations import AttributionMap
from nnxai.metrics.base import metrics
from nnxai.metrics.conservation import Conservation

from toy_models import LinearModel, toy_context

W = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
B = torch.tensor([0.5, 0.0])


def linear_case():
    """x0 = (1, 1, 1): logits (3.5, 2); x1 = (2, 0, -1): logits (2.5, -3)."""
    model = LinearModel(W, B)
    x = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])
    return model, toy_context(model, x, x, n_classes=2)


def test_conservation_of_hand_made_relevance():
    model, ctx = linear_case()
    # x0, class 0: Σ R = 3.0 against S = 3.5 → 0.5/3.5; x1, class 1: Σ R = −3 against S = −3 → 0.
    record = AttributionMap(np.array([[1.0, 2.0, 0.0], [0.0, 0.0, -3.0]]), np.array([0, 1]), np.array([0, 1]))
    assert Conservation()(record, ctx, None)["conservation"] == pytest.approx((0.5 / 3.5 + 0.0) / 2, rel=1e-7)


def test_relevance_twice_the_logit_has_gap_one_and_exact_relevance_gap_zero():
    model, ctx = linear_case()
    x = ctx.test.x
    exact = (W[[1, 0]] * x).numpy()                                 # w_c ⊙ x: Σ = S_c − b_c
    exact[1, 0] += B[0].item()                                      # put the bias of class 0 back on x1
    record = AttributionMap(exact, np.array([0, 1]), np.array([1, 0]))
    assert Conservation()(record, ctx, None)["conservation"] == pytest.approx(0.0, abs=1e-7)
    record2 = AttributionMap(2 * exact, np.array([0, 1]), np.array([1, 0]))
    assert Conservation()(record2, ctx, None)["conservation"] == pytest.approx(1.0, rel=1e-6)


def test_conservation_is_registered_and_scores_lrp_only():
    assert metrics()["conservation"] is Conservation
    assert Conservation.higher_is_better is False
    _, ctx = linear_case()
    assert Conservation.applies(registry.get("lrp"), ctx.info)
    for other in ("gradient", "integrated_gradients", "deeplift"):
        assert not Conservation.applies(registry.get(other), ctx.info)


def test_misshapen_record_is_a_clear_error():
    _, ctx = linear_case()
    record = AttributionMap(np.zeros((2, 4)), np.array([0, 1]), np.array([0, 0]))
    with pytest.raises(ValueError, match="do not match"):
        Conservation()(record, ctx, None)
