"""``consensus_agreement`` of DeepConsensus records [116]: the reductions, worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnxai import registry
from nnxai.data import DATASETS
from nnxai.explanations import AttributionMap
from nnxai.metrics.consensus import ConsensusAgreement


def consensus_record(pairs, to_consensus, votes, min_agree):
    meta = {"deepconsensus": {"members": ["baseline", "baseline_seed1", "baseline_seed2"], "votes": votes,
                              "min_agree": min_agree, "spearman_pairs": pairs, "spearman_to_consensus": to_consensus}}
    return AttributionMap(np.zeros((len(votes), 1, 2, 2)), np.arange(len(votes)), np.zeros(len(votes)), meta)


def test_means_over_inputs_and_pairs_leave_undefined_correlations_out():
    record = consensus_record(pairs=[[1.0, 0.5, 0.0], [math.nan, 0.25, 0.25]],
                              to_consensus=[[1.0, 1.0, 1.0], [0.5, math.nan, 0.5]], votes=[3, 1], min_agree=2)
    scores = ConsensusAgreement()(record, None)
    assert scores["consensus_agreement"] == pytest.approx(2.0 / 5)
    assert scores["consensus_agreement.to_consensus"] == pytest.approx(4.0 / 5)
    assert scores["consensus_agreement.prediction"] == 0.5


def test_clear_errors_and_applicability():
    with pytest.raises(ValueError, match="DeepConsensus records"):
        ConsensusAgreement()(AttributionMap(np.zeros((1, 2)), [0], [0], {"method": "gradient"}), None)
    with pytest.raises(ValueError, match="at least 2 members"):
        ConsensusAgreement()(consensus_record([[]], [[1.0]], [1], 1), None)
    assert ConsensusAgreement.applies(registry.get("deepconsensus"), DATASETS["digits"])
    assert not ConsensusAgreement.applies(registry.get("spray"), DATASETS["digits"])
