"""``prior_agreement``: how well attributions, and a learnt attribution prior, agree with the known feature
importance (DAPr [121]; the survey's Sec. IV-C: the prior "biases the model to have similar attribution as
the prior").

[121] judge the deep attribution prior by whether the prior network recovers what the meta-features say
about the features, and whether the network's attributions follow the prior.  On a data set whose feature
importance is planted (``Dataset.feature_importance``: ``planted``, ``|w_j|``) both can be scored by rank:

- ``prior_agreement``: per explained input, Spearman's ρ between the map's magnitudes ``|A_i|`` and the true
  importance; the mean over the inputs (``PerInput``).  Any attribution map can be scored so, which is how
  the passive methods on the ``planted`` models are compared with DAPr's own attribution;
- ``prior_agreement.truth`` (records with a learnt prior: ``meta["prior_importance"]``, DAPr's own
  explanation): ρ between the prior network's importance ``g_β(m_j)`` and the true importance (one number);
- ``prior_agreement.attribution`` (same records): per input, ρ between ``|A_i|`` and the prior (PerInput).

Spearman's ρ with ties given their average rank (:func:`~nnxai.metrics.map_similarity.spearman_rows`);
NaN for a constant map (left out of the mean).  The truth of ``planted`` ties its 8 irrelevant features at
0, so a map that orders every feature rightly, but separates the irrelevant ones, scores
``sqrt(101/143) ≈ 0.84``, not 1 (the 1 needs the irrelevant features tied too); the ceiling is the same for
every method, so the comparison is fair.  Higher is better; −1 is the reversed order.

Where it applies (our choice): every attribution record (``kinds``) on a data set with planted importance,
whether or not the method's catalogue ``judged_by`` lists it (only ``dapr`` does), so that every map of the
``planted`` models is scored against the truth at the cost of one rank correlation per map; and, for a
method that lists it (``dapr``), on a data set with meta-features but no known importance, where only
``prior_agreement.attribution`` can be computed.  It is not ``universal``: image sets have no planted
importance, and the attribution-metric heatmap keeps it as a panel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nnxai.explanations import AttributionMap
from nnxai.intervals import PerInput
from nnxai.metrics.attribution import explained_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.map_similarity import spearman_rows


def rank_agreement(maps: torch.Tensor, reference: Any) -> torch.Tensor:
    """Spearman's ρ between ``|maps[i]|`` (flattened to ``p`` features) and ``reference`` ``(p,)``, per row."""
    magnitude = torch.as_tensor(maps).double().flatten(1).abs()
    ref = torch.as_tensor(np.array(reference, dtype=np.float64)).reshape(1, -1)
    if ref.shape[1] != magnitude.shape[1]:
        raise ValueError(f"maps over {magnitude.shape[1]} features cannot be compared with an importance of "
                         f"{ref.shape[1]} features")
    return spearman_rows(magnitude, ref.expand_as(magnitude))


def spearman(a: Any, b: Any) -> float:
    """Spearman's ρ of two vectors of the same length (their signed values; NaN if one is constant)."""
    a = torch.as_tensor(np.array(a, dtype=np.float64))[None]
    b = torch.as_tensor(np.array(b, dtype=np.float64))[None]
    return float(spearman_rows(a, b)[0])


@register_metric
class PriorAgreement(Metric):
    id = "prior_agreement"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    description = ("Spearman rank correlation of the maps (and of a learnt attribution prior) with the planted "
                   "feature importance, and of the maps with the prior")

    @classmethod
    def applies(cls, method_cls: type, info: Any) -> bool:
        if method_cls.record_type.kind not in cls.kinds:
            return False
        return cls.why_not(method_cls, info) is None

    @classmethod
    def why_not(cls, method_cls: type, info: Any) -> str | None:
        if getattr(info, "feature_importance", None) is not None:
            return None
        judged = cls.id in getattr(getattr(method_cls, "spec", None), "judged_by", ())
        if judged and getattr(info, "meta_features", None) is not None:
            return None
        return f"{info.name} has no planted feature importance" + (" nor meta-features" if judged else "")

    def __call__(self, record, ctx, method=None) -> dict[str, float]:
        if not isinstance(record, AttributionMap):
            raise ValueError(f"prior_agreement scores AttributionMap records, got {type(record).__name__}")
        _, _, maps = explained_inputs(record, ctx)
        out: dict[str, float] = {}
        truth = getattr(ctx.info, "feature_importance", None)
        if truth is not None:
            out[self.id] = PerInput(rank_agreement(maps, truth))
        prior = record.meta.get("prior_importance")
        if prior is not None:
            if truth is not None:   # the prior's signed output: a lower value is a less important feature
                out[f"{self.id}.truth"] = spearman(prior, truth)
            out[f"{self.id}.attribution"] = PerInput(rank_agreement(maps, prior))
        return out

