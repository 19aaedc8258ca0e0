"""``localisation``: does the relevance fall on the ground-truth class evidence?

Scored against the ``evidence`` mask of the ``shapes`` data set (the object silhouette: both its shape
and its texture decide the class), on the survey's saliency map ``s`` (:func:`saliency_map`, the
maximum over channels).  Three standard scores, each averaged over the explained inputs, higher is better:

``localisation.mass``
    Relevance mass accuracy (Arras, Osman & Samek, 2022): Σ_{p∈M} s⁺_p / Σ_p s⁺_p with s⁺ = max(s, 0),
    the share of the positive relevance inside the mask ``M``; 0 where a map has no positive relevance.
``localisation.rank``
    Relevance rank accuracy (same work): with ``K = |M|``, the fraction of the ``K`` highest-ranked
    pixels that lie inside ``M``.
``localisation.pointing``
    Pointing game (Zhang et al., 2016): a hit when the maximum of ``s`` lies inside ``M``; here with no
    tolerance margin, since the masks are exact.

Ties (e.g. a constant map) are resolved by their expectation under a uniformly random tie-break rather
than by pixel order: among pixels tied at the K-th value (rank) or at the maximum (pointing), the share
inside ``M`` counts.  A constant map therefore scores the mask's area fraction on all three scores, the
same as a random map in expectation.  Inputs with an empty mask are left out.
"""

from __future__ import annotations

import torch

from nnxai.intervals import PerInput
from nnxai.ops.maps import saliency_map
from nnxai.metrics.attribution import explained_inputs
from nnxai.metrics.base import Metric, register_metric

MASK = "evidence"


def evidence_masks(ctx, indices) -> torch.Tensor:
    """The ``evidence`` masks of the explained test inputs, bool ``(N, H, W)``."""
    masks = ctx.test.masks
    if masks is None:
        raise ValueError(f"{ctx.dataset} has no ground-truth masks")
    names = list(ctx.test.meta.get("mask_names") or ctx.info.mask_names)
    if MASK not in names:
        raise ValueError(f"{ctx.dataset} masks {names} have no {MASK!r} channel")
    return torch.as_tensor(masks[indices, names.index(MASK)], dtype=torch.bool)


def localisation_scores(relevance: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mass, rank and pointing scores of maps ``relevance`` (N, H, W) against bool ``mask`` (N, H, W)."""
    if relevance.shape != mask.shape:
        raise ValueError(f"saliency maps {tuple(relevance.shape)} and masks {tuple(mask.shape)} differ in shape")
    s = relevance.double().flatten(1)
    m = mask.flatten(1).to(s.device)
    keep = m.any(dim=1)
    s, m = s[keep], m[keep]
    if len(s) == 0:
        return {f"localisation.{k}": float("nan") for k in ("mass", "rank", "pointing")}
    mf = m.double()

    positive = s.clamp(min=0)
    total = positive.sum(dim=1)
    mass = torch.where(total > 0, (positive * mf).sum(dim=1) / total.clamp(min=1e-300), torch.zeros_like(total))

    k = m.sum(dim=1)
    kth = s.sort(dim=1, descending=True).values.gather(1, (k - 1)[:, None])
    above, tied = s > kth, s == kth
    expected_tied_inside = (k - above.sum(1)) * (tied & m).sum(1) / tied.sum(1)
    rank = ((above & m).sum(1) + expected_tied_inside) / k

    at_max = s == s.max(dim=1, keepdim=True).values
    pointing = (at_max & m).sum(1) / at_max.sum(1)
    return {"localisation.mass": PerInput(mass), "localisation.rank": PerInput(rank),
            "localisation.pointing": PerInput(pointing)}


@register_metric
class Localisation(Metric):
    id = "localisation"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    needs_masks = True
    description = "relevance mass accuracy, relevance rank accuracy and pointing game on the evidence mask"

    def __call__(self, record, ctx, method):
        _, _, attributions = explained_inputs(record, ctx)
        if attributions.dim() != 4:
            raise ValueError(f"localisation needs image attributions (N, C, H, W), got {tuple(attributions.shape)}")
        return localisation_scores(saliency_map(attributions).cpu(), evidence_masks(ctx, record.indices))
