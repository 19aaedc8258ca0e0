"""``eigengap`` and ``cluster_purity`` of SpRAy records: hand-made spectra and planted concept clusters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai import registry
from nnxai.data import DATASETS, PreparedSplit, shapes
from nnxai.explanations import AttributionMap
from nnxai.methods.base import ExplainContext
from nnxai.metrics.spray import ClusterPurity, Eigengap, purity
from nnxai.params import ParamError

from toy_models import tiny_convnet


def spray_record(targets, labels, classes=None):
    n = len(targets)
    meta = {"spray": {"labels": list(labels), "classes": classes or {"0": {"eigenvalues": [0.0, 0.1, 0.9]}},
                      "skipped_classes": {}, "heatmap_size": 2}}
    return AttributionMap(np.zeros((n, 1, 2, 2)), np.arange(n), np.asarray(targets), meta)


def test_eigengap_is_the_largest_gap_of_each_class_averaged():
    classes = {"0": {"eigenvalues": [0.0, 0.0, 0.0, 0.6, 0.7]},      # 3 clusters, gap 0.6
               "1": {"eigenvalues": [0.0, 0.2, 0.3, 0.35, 0.4]}}     # 1 cluster, gap 0.2
    scores = Eigengap()(spray_record([0, 1], [0, 0], classes), None)
    assert scores["eigengap"] == pytest.approx(0.4)
    assert scores["eigengap.k"] == pytest.approx(2.0)
    assert (scores["eigengap.class0"], scores["eigengap.k.class0"]) == (pytest.approx(0.6), 3.0)
    assert (scores["eigengap.class1"], scores["eigengap.k.class1"]) == (pytest.approx(0.2), 1.0)


def test_purity_by_hand():
    assert purity([0, 0, 0, 1, 1, 1], [5, 5, 7, 7, 7, 7]) == pytest.approx(5 / 6)
    assert purity([0, 1, 2], [1, 1, 1]) == 1.0


def shapes_context(n=240, seed=0):
    records = shapes.sample_concepts(n, seed)
    split = PreparedSplit(x=torch.zeros(n, 3, 32, 32), y=torch.as_tensor(shapes.label_from_concepts(records)),
                          concepts=shapes.concept_table(records),
                          meta={"concept_features": shapes.CONCEPT_FEATURES})
    ctx = ExplainContext(model=tiny_convnet(0, n_classes=2), dataset="shapes", model_id="baseline",
                         info=DATASETS["shapes"], train=split, test=split, seed=seed)
    return ctx, records


METRIC = ClusterPurity(concepts=["shape", "texture"], n_permutations=50)


def test_clusters_that_follow_the_concept_combinations_are_pure():
    ctx, records = shapes_context()
    targets = np.asarray(ctx.test.y)
    combination = records["shape"].astype(int) * 2 + records["texture"].astype(int)
    scores = METRIC(spray_record(targets, combination), ctx)
    assert scores["cluster_purity"] == 1.0
    assert scores["cluster_purity.one_cluster"] < 0.6 and scores["cluster_purity.chance"] < 0.7


def test_clusters_that_follow_a_distractor_score_chance():
    ctx, records = shapes_context()
    targets = np.asarray(ctx.test.y)
    scores = METRIC(spray_record(targets, records["colour"].astype(int)), ctx)
    assert abs(scores["cluster_purity"] - scores["cluster_purity.chance"]) < 0.08


def test_without_concepts_the_labels_are_the_ground_truth():
    ctx, _ = shapes_context(n=6)
    ctx.test.concepts = None
    ctx.test.y = torch.tensor([3, 3, 4, 4, 4, 5])
    scores = METRIC(spray_record([0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1]), ctx)
    assert scores["cluster_purity"] == pytest.approx(5 / 6)
    assert scores["cluster_purity.one_cluster"] == pytest.approx(3 / 6)


def test_unclustered_inputs_are_left_out():
    ctx, _ = shapes_context(n=4)
    ctx.test.concepts = None
    ctx.test.y = torch.tensor([1, 2, 2, 9])
    assert METRIC(spray_record([0, 0, 0, 1], [0, 1, 1, -1]), ctx)["cluster_purity"] == 1.0


def test_clear_errors_and_applicability():
    ctx, _ = shapes_context(n=4)
    with pytest.raises(ParamError, match=r"metric 'cluster_purity'\.concepts\[1\]: 'colours' is not one of "
                                         r"'colour', 'shape', 'texture'"):
        ClusterPurity(concepts=["shape", "colours"], n_permutations=2)
    with pytest.raises(ParamError, match=r"metric 'cluster_purity'\.concepts: items must be distinct"):
        ClusterPurity(concepts=["shape", "shape"], n_permutations=2)
    with pytest.raises(ParamError, match=r"metric 'cluster_purity'\.n_permutations: 0 is out of range"):
        ClusterPurity(concepts=["shape"], n_permutations=0)
    with pytest.raises(ValueError, match="SpRAy records"):
        Eigengap()(AttributionMap(np.zeros((1, 2)), [0], [0], {}), None)
    info = DATASETS["shapes"]
    assert Eigengap.applies(registry.get("spray"), info) and ClusterPurity.applies(registry.get("spray"), info)
    assert not Eigengap.applies(registry.get("gradient"), info)
