"""``mmd`` and ``nn_classifier_accuracy`` [147] on hand-made records with known values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS
from nnxai.explanations import Examples
from nnxai.methods.example.mmd_critic import MMDCritic
from nnxai.metrics.base import applicable_metrics
from nnxai.metrics.mmd_critic import MMD, NNClassifierAccuracy


class Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(1, 2)

    def embed(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.classifier(self.embed(x))


def _ctx(train_x, train_y, test_y=(0,)):
    return SimpleNamespace(model=Identity(), device=torch.device("cpu"), seed=0,
                           train=SimpleNamespace(x=torch.tensor(train_x, dtype=torch.float32)[:, None],
                                                 y=torch.tensor(train_y)),
                           test=SimpleNamespace(y=torch.tensor(test_y)))


def _record(prototypes, kernel="global", gamma=1.0, **fields):
    base = {"indices": [0], "targets": [0], "examples": [[prototypes[0]]], "scores": [[0.0]]}
    return Examples(**{**base, **fields}, extra={"prototypes": prototypes, "gamma": gamma, "kernel": kernel})


def test_mmd_known_values():
    """Two clusters of two identical points, 50 apart (k = 1 inside, e^-2500 = 0 across):
    MMD² = (1/n²)Σk - (2/nm)Σ_{j∈S}k + (1/m²)Σ_{S,S}k = 8/16 - 2·2/4 + 1 = 0.5 for one prototype, and
    8/16 - 2·4/8 + 2/4 = 0 for one per cluster.  Every single point is as good as prototype 0 (random 0.5);
    of the 6 random pairs 2 share a cluster (MMD² 0.5) and 4 are exact (0): the expectation is 1/6."""
    ctx = _ctx([0.0, 0.0, 50.0, 50.0], [0, 0, 1, 1])
    one = MMD(n_random=5)(_record([0]), ctx, None)
    assert (one["mmd"], one["mmd.random"], one["mmd.ratio"]) == pytest.approx((0.5, 0.5, 1.0))
    two = MMD(n_random=3000)(_record([0, 2]), ctx, None)
    assert two["mmd"] == pytest.approx(0.0, abs=1e-15)
    assert two["mmd.random"] == pytest.approx(1 / 6, abs=0.02)
    assert two["mmd.ratio"] == pytest.approx(0.0, abs=1e-12)


def test_mmd_local_kernel_ignores_other_labels():
    """Three points at one place, labelled 0, 0, 1: the local kernel is 1 between the two 0s, 0 elsewhere.
    With prototype 0: (1/9)·5 - (2/3)·2 + 1 = 2/9."""
    ctx = _ctx([0.0, 0.0, 0.0], [0, 0, 1])
    assert MMD(n_random=2)(_record([0], kernel="local"), ctx, None)["mmd"] == pytest.approx(2 / 9)
    assert MMD(n_random=2)(_record([0], kernel="global"), ctx, None)["mmd"] == pytest.approx(0.0, abs=1e-15)


def test_nn_classifier_accuracy_known_values():
    ctx = _ctx([0.0, 1.0, 2.0, 3.0], [0, 1, 1, 0], test_y=[0, 1, 1, 0, 1])
    # nearest prototypes 0, 1, 3, 0 (labels 0, 1, 0, 0) for test inputs 0, 1, 2, 4 (true 0, 1, 1, 1);
    # the network predicted 0, 1, 0, 1
    record = Examples(indices=[0, 1, 2, 4], targets=[0, 1, 0, 1], examples=[[0], [1], [3], [0]],
                      scores=[[0.0]] * 4, extra={"prototypes": [0, 1, 3]})
    out = NNClassifierAccuracy()(record, ctx, None)
    assert out["nn_classifier_accuracy"] == pytest.approx(2 / 4)
    assert out["nn_classifier_accuracy.network_agreement"] == pytest.approx(3 / 4)
    np.testing.assert_array_equal(out["nn_classifier_accuracy"].values, [1, 1, 0, 0])


def test_bad_records_are_refused():
    ctx = _ctx([0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match="written by mmd_critic"):
        MMD(n_random=2)(Examples(indices=[0], targets=[0], examples=[[0]], scores=[[0.0]]), ctx, None)
    with pytest.raises(ValueError, match="train split"):
        MMD(n_random=2)(_record([5]), ctx, None)
    with pytest.raises(ValueError, match="exactly one example"):
        NNClassifierAccuracy()(Examples(indices=[0], targets=[0], examples=[[0, 1]], scores=[[0.0, 0.0]]), ctx, None)


def test_directions_and_applicability():
    assert MMD.higher_is_better is False and NNClassifierAccuracy.higher_is_better is True
    assert {"mmd", "nn_classifier_accuracy"} <= set(applicable_metrics(MMDCritic, DATASETS["digits"]))
