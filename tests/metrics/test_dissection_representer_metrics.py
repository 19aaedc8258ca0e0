"""``dissection_iou``, ``n_unique_detectors`` [21] and ``representer_fidelity`` [117] on hand-made records."""

from __future__ import annotations

import numpy as np
import pytest

from nnxai.data import DATASETS
from nnxai.explanations import Examples, UnitConcepts
from nnxai.methods.example.representer_points import RepresenterPoints
from nnxai.methods.hidden_semantics.network_dissection import NetworkDissection
from nnxai.metrics.base import applicable_metrics
from nnxai.metrics.examples import RepresenterFidelity
from nnxai.metrics.hidden_semantics import DissectionIoU, UniqueDetectors


def _unit(layer, k, concept, iou, detector=None):
    u = {"layer": layer, "unit": k, "concept": concept, "iou": iou, "score": iou}
    if detector is not None:
        u["detector"] = detector
    return u


@pytest.fixture
def units():
    return UnitConcepts(units=[
        _unit("conv1", 0, "colour=red", 0.10, True), _unit("conv1", 1, "colour=red", 0.06, True),
        _unit("conv1", 2, "background", 0.02, False),
        _unit("conv2", 0, "shape=circle", 0.30, True), _unit("conv2", 1, "texture=stripes", 0.01, False),
    ], concepts=["colour=red", "background", "shape=circle", "texture=stripes"])


def test_dissection_iou_means_and_detector_fraction(units):
    out = DissectionIoU()(units, None, None)
    assert out == pytest.approx({"dissection_iou": 0.49 / 5, "dissection_iou.conv1": 0.18 / 3,
                                 "dissection_iou.conv2": 0.31 / 2, "dissection_iou.detectors": 3 / 5})


def test_unique_detectors_counts_distinct_concepts(units):
    # red twice, circle once; stripes and background have no detector
    assert UniqueDetectors()(units, None, None) == {"n_unique_detectors": 2.0}


def test_detector_falls_back_to_the_records_threshold():
    record = UnitConcepts(units=[_unit("a", 0, "x", 0.05), _unit("a", 1, "y", 0.03), _unit("a", 2, "z", 0.2)],
                          concepts=["x", "y", "z"], meta={"params": {"iou_threshold": 0.04}})
    assert DissectionIoU()(record, None, None)["dissection_iou.detectors"] == pytest.approx(2 / 3)
    assert UniqueDetectors()(record, None, None) == {"n_unique_detectors": 2.0}
    record.meta = {}
    with pytest.raises(ValueError, match="iou_threshold"):
        UniqueDetectors()(record, None, None)
    with pytest.raises(ValueError, match="no units"):
        DissectionIoU()(UnitConcepts(units=[], concepts=[]), None, None)


def _examples(dec, head, net):
    return Examples(indices=list(range(len(dec))), targets=[0] * len(dec), examples=[[0]] * len(dec),
                    scores=[[0.0]] * len(dec),
                    extra={"decomposed_logits": np.asarray(dec).tolist(), "head_logits": np.asarray(head).tolist(),
                           "model_logits": np.asarray(net).tolist()})


def test_representer_fidelity_known_values():
    dec = np.array([[1.0, -1.0], [-2.0, 2.0], [0.5, -0.5], [0.1, -0.1]])
    # the network's logits: the decomposed ones plus an arbitrary per-input offset (softmax-invariant),
    # except the last input, whose prediction flips
    net = dec + np.array([[3.0], [-1.0], [0.0], [7.0]])
    net[3] = [6.9, 7.3]
    head = dec + np.array([[0.0, 0.02], [0.0, 0.0], [-0.01, 0.0], [0.0, 0.0]])
    out = RepresenterFidelity()(_examples(dec, head, net), None, None)
    centred = net - net.mean(1, keepdims=True)
    assert out["representer_fidelity"] == pytest.approx(np.corrcoef(dec.ravel(), centred.ravel())[0, 1])
    assert out["representer_fidelity.decomposition_error"] == pytest.approx(0.02)
    assert out["representer_fidelity.prediction_agreement"] == pytest.approx(3 / 4)
    p = lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True)  # noqa: E731
    assert out["representer_fidelity.probability_correlation"] == pytest.approx(
        np.corrcoef(p(dec).ravel(), p(net).ravel())[0, 1])
    # a per-input offset alone leaves the decomposition perfectly faithful
    exact = RepresenterFidelity()(_examples(dec[:3], dec[:3], net[:3]), None, None)
    assert exact["representer_fidelity"] == pytest.approx(1.0)
    assert exact["representer_fidelity.decomposition_error"] == 0.0
    assert exact["representer_fidelity.prediction_agreement"] == 1.0


def test_representer_fidelity_needs_the_decomposition():
    record = _examples([[1.0, 0.0]], [[1.0, 0.0]], [[1.0, 0.0]])
    del record.extra["head_logits"]
    with pytest.raises(ValueError, match="head_logits"):
        RepresenterFidelity()(record, None, None)
    with pytest.raises(ValueError, match="equal"):
        RepresenterFidelity()(_examples([[1.0, 0.0]], [[1.0, 0.0, 2.0]], [[1.0, 0.0]]), None, None)


def test_metrics_apply_to_their_methods():
    assert {"dissection_iou", "n_unique_detectors"} <= set(applicable_metrics(NetworkDissection, DATASETS["shapes"]))
    assert "representer_fidelity" in applicable_metrics(RepresenterPoints, DATASETS["iris"])
    assert "representer_fidelity" not in applicable_metrics(NetworkDissection, DATASETS["shapes"])
