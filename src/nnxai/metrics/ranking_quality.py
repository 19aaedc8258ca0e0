"""``ranking_quality``: a feature ranking against the planted importance (dual-net [122]; data set ``planted``).

Where the truth is planted (``Dataset.feature_importance``: ``|w_j|`` on ``planted``, 0 for the irrelevant
features), a population-wise ranking of the features can be checked directly, as [122] does on its
synthetic sets (Sec. 4.1: is the planted subset found, is it ranked in order):

- ``ranking_quality``: the fraction of the ``k`` truly relevant features (``k`` = how many have importance
  > 0) among the ``k`` top-scored ones (precision at ``k`` = recall at ``k``).  Scores tied across the
  ``k``-th place share the remaining places evenly (the expected fraction under a random tie-break), so a
  constant map scores ``k/d``, what chance gives, and not whatever the sort order happens to give;
- ``ranking_quality.spearman``: Spearman's ρ between the scores and the true importance over all ``d``
  features (average ranks for ties; NaN when the scores are constant).

The feature scores of a record: ``meta["global_scores"]`` when the method gives one population-wise
vector (dual-net's signed ``−∇f_S``: a negative score says the feature hurts, below an irrelevant one's 0);
otherwise the mean magnitude of its per-input maps over the explained inputs, ``(1/N) Σ_i |a_ij|`` (the
usual global aggregate of local attributions, e.g. mean |SHAP|).  So the metric is ``universal``: every
attribution map on a data set with planted importance gets it, which puts the passive methods' rankings
beside dual-net's (the catalogue's ``judged_by`` names it for dual-net only); elsewhere it does not apply.
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.explanations import AttributionMap
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.map_similarity import spearman_rows


def feature_scores(record: AttributionMap) -> np.ndarray:
    """One score per feature: the record's ``global_scores``, else the mean |attribution| over its inputs."""
    given = record.meta.get("global_scores")
    if given is not None:
        return np.asarray(given, dtype=np.float64).reshape(-1)
    maps = np.asarray(record.attributions, dtype=np.float64)
    if not len(maps):
        raise ValueError("ranking_quality: the record explains no input")
    return np.abs(maps.reshape(len(maps), -1)).mean(axis=0)


def top_k_fraction(scores: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the ``k`` relevant features (``truth > 0``) among the ``k`` top scores, ties at the
    ``k``-th place sharing the remaining places evenly."""
    relevant = truth > 0
    k = int(relevant.sum())
    if k == 0:
        raise ValueError("ranking_quality needs at least one relevant feature (importance > 0)")
    threshold = np.sort(scores)[::-1][k - 1]
    above, tied = scores > threshold, scores == threshold
    share = (k - above.sum()) / tied.sum()        # places left for the tied group, per member
    in_top = above.astype(np.float64) + share * tied
    return float((in_top * relevant).sum() / k)


def ranking_scores(scores, truth) -> dict[str, float]:
    """``{"ranking_quality": top-k fraction, "ranking_quality.spearman": ρ}`` of ``scores`` against ``truth``."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    if scores.shape != truth.shape:
        raise ValueError(f"ranking_quality: {scores.size} feature scores for {truth.size} features of planted "
                         "importance")
    rho = spearman_rows(torch.tensor(scores)[None], torch.tensor(truth)[None])[0]
    return {"ranking_quality": top_k_fraction(scores, truth), "ranking_quality.spearman": float(rho)}


@register_metric
class RankingQuality(Metric):
    """A feature ranking against the planted importance: top-k hit fraction and Spearman's ρ (module doc)."""

    id = "ranking_quality"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    universal = True
    description = ("fraction of the truly relevant features among the top-k ranked (k relevant), and Spearman's "
                   "rho of the feature scores with the planted importance")

    @classmethod
    def why_not(cls, method_cls, info):
        if getattr(info, "feature_importance", None) is None:
            return f"{info.name} has no planted feature importance"
        return super().why_not(method_cls, info)

    def __call__(self, record, ctx, method=None):
        if not isinstance(record, AttributionMap):
            raise ValueError(f"ranking_quality scores attribution maps, got {type(record).__name__}")
        return ranking_scores(feature_scores(record), ctx.info.feature_importance)
