"""``concept_seg_iou`` and ``single_vs_multi_filter_gain`` [99] on hand-made Net2Vec records."""

from __future__ import annotations

import math

import pytest

from nnxai.data import DATASETS
from nnxai.explanations import UnitConcepts
from nnxai.intervals import PerInput
from nnxai.methods.hidden_semantics.net2vec import Net2Vec
from nnxai.metrics.base import applicable_metrics
from nnxai.metrics.net2vec import ConceptSegIoU, SingleVsMultiFilterGain


def _entry(seg, single, cls_ap=None, single_cls=None):
    return {"seg_iou": seg, "single_iou": single, "cls_ap": cls_ap, "single_cls_ap": single_cls}


@pytest.fixture
def record():
    scores = {
        "conv1": {"a": _entry(0.2, 0.1), "b": _entry(0.4, 0.4), "c": _entry(None, None)},
        "conv2": {"a": _entry(0.6, 0.3, 0.9, 0.7), "b": _entry(0.5, 0.1, 0.8, 0.8), "c": _entry(0.1, 0.2, None, None)},
    }
    return UnitConcepts(units=[{"layer": "conv2", "unit": 0, "concept": "a", "score": 1.0}], concepts=["a", "b", "c"],
                        meta={"scores": scores, "headline_layer": "conv2"})


def test_concept_seg_iou_means_over_concepts_at_the_headline_layer_and_per_layer(record):
    out = ConceptSegIoU()(record, None, None)
    assert out["concept_seg_iou"] == pytest.approx(1.2 / 3) and isinstance(out["concept_seg_iou"], PerInput)
    assert list(out["concept_seg_iou"].values) == pytest.approx([0.6, 0.5, 0.1])
    assert out["concept_seg_iou.conv2"] == pytest.approx(1.2 / 3)
    assert out["concept_seg_iou.conv1"] == pytest.approx(0.3)                  # the None concept is left out
    assert out["concept_seg_iou.single"] == pytest.approx(0.6 / 3)
    assert out["concept_seg_iou.cls_ap"] == pytest.approx(0.85)


def test_gain_is_multi_minus_single_filter(record):
    out = SingleVsMultiFilterGain()(record, None, None)
    assert out["single_vs_multi_filter_gain"] == pytest.approx((0.3 + 0.4 - 0.1) / 3)
    assert out["single_vs_multi_filter_gain.conv1"] == pytest.approx(0.05)
    assert out["single_vs_multi_filter_gain.cls_ap"] == pytest.approx(0.1)
    assert SingleVsMultiFilterGain.higher_is_better and ConceptSegIoU.higher_is_better


def test_undefined_everywhere_is_nan_and_a_foreign_record_is_refused(record):
    record.meta["scores"] = {"conv2": {"a": _entry(None, None)}}
    assert math.isnan(ConceptSegIoU()(record, None, None)["concept_seg_iou"])
    with pytest.raises(ValueError, match="net2vec"):
        ConceptSegIoU()(UnitConcepts(units=[], concepts=[], meta={}), None, None)
    record.meta["headline_layer"] = "conv9"
    with pytest.raises(ValueError, match="headline_layer"):
        SingleVsMultiFilterGain()(record, None, None)


def test_the_metrics_judge_net2vec_where_there_are_masks():
    assert {"concept_seg_iou", "single_vs_multi_filter_gain"} <= set(applicable_metrics(Net2Vec, DATASETS["shapes"]))
    assert not {"concept_seg_iou", "single_vs_multi_filter_gain"} & set(applicable_metrics(Net2Vec, DATASETS["digits"]))
