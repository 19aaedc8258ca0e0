"""Entropy of the fractional contribution distribution (Bhatt et al. 2020): closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from nnxai.explanations import AttributionMap
from nnxai.metrics.entropy import Entropy

from toy_models import LinearModel, toy_context


def score(attributions) -> dict[str, float]:
    attributions = np.asarray(attributions, dtype=np.float32)
    x = torch.zeros(attributions.shape)
    model = LinearModel(torch.zeros(2, int(np.prod(attributions.shape[1:]))))
    ctx = toy_context(model, x, x, n_classes=2)
    record = AttributionMap(attributions, np.arange(len(x)), np.zeros(len(x), dtype=np.int64), {})
    return Entropy()(record, ctx, None)


def test_one_hot_map_scores_zero_and_uniform_map_log_n():
    one_hot = np.zeros((1, 3, 4, 5))
    one_hot[0, 1, 2, 3] = -7.0                                 # the sign does not matter
    assert score(one_hot) == {"entropy": 0.0, "entropy.normalised": 0.0}
    uniform = score(np.full((1, 2, 4, 5), 0.3))
    assert uniform["entropy"] == pytest.approx(math.log(20), abs=1e-12)          # 20 pixels
    assert uniform["entropy.normalised"] == pytest.approx(1.0, abs=1e-12)


def test_k_equal_features_score_log_k_and_zero_maps_count_as_uniform():
    maps = np.zeros((3, 8))
    maps[0, :2] = [1.0, -1.0]
    maps[1, :4] = 2.5
    # row 2 is all zero: uniform, ln 8
    out = score(maps)
    assert out["entropy"] == pytest.approx((math.log(2) + math.log(4) + math.log(8)) / 3, abs=1e-12)
    assert out["entropy.normalised"] == pytest.approx((1 / 3 + 2 / 3 + 1) / 3, abs=1e-12)


def test_channels_of_a_pixel_are_summed_in_absolute_value_and_match_scipy():
    gen = np.random.default_rng(0)
    attributions = gen.normal(size=(5, 3, 6, 6))
    expected = [scipy.stats.entropy(np.abs(a.astype(np.float32)).sum(0).ravel()) for a in attributions]
    assert score(attributions)["entropy"] == pytest.approx(np.mean(expected), rel=1e-6)


def test_a_single_feature_has_normalised_entropy_zero():
    assert score(np.ones((2, 1))) == {"entropy": 0.0, "entropy.normalised": 0.0}
