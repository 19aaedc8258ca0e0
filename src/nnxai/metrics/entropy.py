"""``entropy``: how concentrated an attribution map is, its Shannon entropy (survey Sec. V, after [149]).

Samek et al. [149] report the entropy of the heatmaps beside their perturbation curves, "in the belief that
good saliency maps focus on relevant regions and do not contain much irrelevant information and noise"
(the survey, Sec. V).  We use the definition of Bhatt, Weller & Moura (IJCAI 2020, "Evaluating and
aggregating feature-based model explanations", Sec. 3.3, *complexity*): the entropy of the *fractional
contribution distribution*

    P_g(i) = |g_i| / Σ_j |g_j|,       μ_C(g) = −Σ_i P_g(i) ln P_g(i),

in nats, ``0 · ln 0 = 0``.  A map with all its relevance on one feature scores 0; a uniform map scores
``ln n``, the most complex.  For images a feature is a pixel: ``|g_p|`` is the sum of the absolute
attributions over the channels of pixel ``p`` (so that a strongly negative channel counts, and a map
repeated over channels, as CAM's, is one distribution over ``H × W`` pixels); tables use their features.
A map that is zero everywhere has no distribution; it is given the uniform one (entropy ``ln n``): it
concentrates on nothing.

Reported, means over the explained inputs, lower is better: ``entropy`` (nats) and ``entropy.normalised``
(divided by ``ln n``, in [0, 1]; 0 when ``n = 1``).
"""

from __future__ import annotations

import math

import torch

from nnxai.intervals import PerInput
from nnxai.metrics.attribution import explained_inputs
from nnxai.metrics.base import Metric, register_metric


def contribution_distribution(attributions: torch.Tensor) -> torch.Tensor:
    """``P_g`` of every map: ``(N, n)`` float64 rows summing to 1 (uniform for an all-zero map)."""
    magnitude = attributions.double().abs()
    if magnitude.dim() == 4:
        magnitude = magnitude.sum(dim=1)
    elif magnitude.dim() != 2:
        raise ValueError(f"entropy expects (N, C, H, W) or (N, F) attributions, got {tuple(attributions.shape)}")
    magnitude = magnitude.flatten(1)
    total = magnitude.sum(dim=1, keepdim=True)
    uniform = torch.full_like(magnitude, 1.0 / magnitude.shape[1])
    return torch.where(total > 0, magnitude / total.clamp(min=1e-300), uniform)


def shannon_entropy(p: torch.Tensor) -> torch.Tensor:
    """``−Σ_i p_i ln p_i`` of every row of ``p`` (N, n), with ``0 ln 0 = 0``."""
    return -torch.where(p > 0, p * torch.log(p.clamp(min=1e-300)), torch.zeros_like(p)).sum(dim=1)


@register_metric
class Entropy(Metric):
    id = "entropy"
    higher_is_better = False
    kinds = frozenset({"attribution"})
    description = "Shannon entropy of the fractional contributions |a_i| / sum |a| (Bhatt et al.'s complexity)"

    def __call__(self, record, ctx, method):
        _, _, attributions = explained_inputs(record, ctx)
        p = contribution_distribution(attributions)
        entropy = shannon_entropy(p)
        n = p.shape[1]
        normalised = entropy / math.log(n) if n > 1 else torch.zeros_like(entropy)
        return {"entropy": PerInput(entropy), "entropy.normalised": PerInput(normalised)}
