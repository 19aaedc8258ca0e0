"""``consensus_agreement``: how much the networks of a DeepConsensus ensemble [116] agree on their
explanations (METHODS.md).

From the per-input Spearman rank correlations that a DeepConsensus record stores (grey-scale maps, see
:mod:`nnxai.methods.attribution.aggregation.deepconsensus`):

``consensus_agreement``
    Mean over inputs and over pairs of members of ρ between the members' maps: 1 when every network
    explains every input alike, about 0 when their explanations are unrelated.
``consensus_agreement.to_consensus``
    Mean ρ between each member's map and the consensus map.
``consensus_agreement.prediction``
    Share of the candidate inputs that the (n, k) consensus accepts: at least ``min_agree`` members predict
    the explained class (the record explains the accepted ones only).

Inputs whose maps are constant (ρ undefined, NaN) are left out of the means.
"""

from __future__ import annotations

import numpy as np

from nnxai.explanations import AttributionMap
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric


def consensus_meta(record) -> dict:
    if not isinstance(record, AttributionMap) or "deepconsensus" not in record.meta:
        raise ValueError(f"consensus_agreement scores DeepConsensus records (meta['deepconsensus']), got a "
                         f"{type(record).__name__} of method {getattr(record, 'meta', {}).get('method', '?')!r}")
    return record.meta["deepconsensus"]


@register_metric
class ConsensusAgreement(Metric):
    """Mean pairwise rank correlation of the ensemble's maps, and with their consensus."""

    id = "consensus_agreement"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    description = "mean pairwise Spearman correlation between the maps of networks trained with different seeds"

    def __call__(self, record, ctx=None, method=None):
        meta = consensus_meta(record)
        pairs = np.asarray(meta["spearman_pairs"], dtype=np.float64)
        if pairs.size == 0:
            raise ValueError(f"consensus_agreement needs at least 2 members, the record has {meta['members']}")
        to_consensus = np.asarray(meta["spearman_to_consensus"], dtype=np.float64)
        votes = np.asarray(meta["votes"])
        return {"consensus_agreement": float(np.nanmean(pairs)),
                "consensus_agreement.to_consensus": float(np.nanmean(to_consensus)),
                "consensus_agreement.prediction": PerInput(votes >= meta["min_agree"])}
