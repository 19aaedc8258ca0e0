"""``label_agreement`` [146] on hand-made records with known values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnxai.data import DATASETS
from nnxai.explanations import Examples
from nnxai.methods.example.nearest_neighbours import NearestNeighbours
from nnxai.metrics.base import applicable_metrics
from nnxai.metrics.nearest_neighbours import LabelAgreement, majority_label

TRAIN_Y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
TEST_Y = torch.tensor([0, 1, 2, 1])


def _ctx():
    return SimpleNamespace(train=SimpleNamespace(y=TRAIN_Y), test=SimpleNamespace(y=TEST_Y))


def _record(indices, targets, examples):
    return Examples(indices=indices, targets=targets, examples=examples,
                    scores=[[0.0] * len(e) for e in examples])


def test_label_agreement_known_values():
    # input 0 (true 0, predicted 0): neighbours labelled 0, 0, 1, 0 -> 3/4 agree with both; 3-of-4 vote: 0
    # input 1 (true 1, predicted 2): labels 1, 2, 2, 1          -> 2/4 with the prediction, 2/4 with the truth;
    #                                                                tie 1-2, the nearest is 1: right
    # input 3 (true 1, predicted 1): labels 2, 2, 1, 0          -> 1/4, 1/4; vote 2: wrong
    record = _record([0, 1, 3], [0, 2, 1], [[0, 1, 2, 6], [3, 4, 5, 7], [4, 5, 7, 0]])
    out = LabelAgreement()(record, _ctx(), None)
    assert out["label_agreement"] == pytest.approx((3 / 4 + 2 / 4 + 1 / 4) / 3)
    assert out["label_agreement.true_label"] == pytest.approx((3 / 4 + 2 / 4 + 1 / 4) / 3)
    assert out["label_agreement.knn_accuracy"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(out["label_agreement"].values, [0.75, 0.5, 0.25])
    # the prediction and the truth differ on input 1 only when its neighbours follow the prediction
    out = LabelAgreement()(_record([1], [2], [[4, 5, 4]]), _ctx(), None)
    keys = ("label_agreement", "label_agreement.true_label", "label_agreement.knn_accuracy")
    assert tuple(out[k] for k in keys) == (1.0, 0.0, 0.0)


def test_majority_vote_breaks_ties_by_the_nearest():
    assert majority_label(np.array([2, 1, 1, 2])) == 2
    assert majority_label(np.array([1, 2, 2, 1, 0])) == 1
    assert majority_label(np.array([0, 3, 3])) == 3


def test_bad_records_are_refused():
    with pytest.raises(ValueError, match="same positive number"):
        LabelAgreement()(_record([0, 1], [0, 0], [[0, 1], [2]]), _ctx(), None)
    with pytest.raises(ValueError, match="train split"):
        LabelAgreement()(_record([0], [0], [[9]]), _ctx(), None)


def test_label_agreement_judges_nearest_neighbours():
    assert LabelAgreement.higher_is_better is True
    assert "label_agreement" in applicable_metrics(NearestNeighbours, DATASETS["shapes"])
