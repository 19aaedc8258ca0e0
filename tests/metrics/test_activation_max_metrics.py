"""``activation_reached``, ``class_confidence`` and ``tv_norm`` (activation maximisation, [71], [93]-[98]) on
hand-made records and a network whose activations are known in closed form.

``MeanNet``: the unit layer ``id`` is the input itself (unit ``c`` = the spatial mean of channel ``c``), and
the logits are ``2 · (mean of channel 0, mean of channel 1)``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS, PreparedSplit
from nnxai.explanations import UnitConcepts, UnitImages
from nnxai.methods.hidden_semantics.activation_max import ActivationMax
from nnxai.metrics.activation_max import ActivationReached, ClassConfidence, TVNorm, auc
from nnxai.metrics.base import applicable_metrics

COLUMNS = list(DATASETS["shapes"].concepts)


class MeanNet(nn.Module):
    architecture = "cnn"

    def __init__(self):
        super().__init__()
        self.act = nn.Identity()
        self.classifier = nn.Linear(2, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(2 * torch.eye(2))
            self.classifier.bias.zero_()

    def forward(self, x):
        return self.classifier(self.act(x).mean((2, 3))[:, :2])

    def unit_layers(self):
        return {"id": self.act}


def constant_images(values) -> torch.Tensor:
    """One 3x4x4 image per row of ``values`` (a value per channel), constant over space."""
    v = torch.as_tensor(values, dtype=torch.float32)
    return v[:, :, None, None].expand(len(v), 3, 4, 4).clone()


REAL = constant_images([[0.0, 0.0, 0.0], [0.2, 0.1, 0.0], [0.4, 0.1, 0.0], [1.0, 0.6, 0.0]])


def ctx(test_x=REAL, concepts=None, info=None, train_concepts=None):
    test = PreparedSplit(x=test_x, y=torch.zeros(len(test_x), dtype=torch.long), concepts=concepts)
    train = PreparedSplit(x=test_x, y=torch.zeros(len(test_x), dtype=torch.long), concepts=train_concepts)
    info = info or SimpleNamespace(name="toy", kind="image", concepts=tuple(COLUMNS), planted_rule=None)
    return SimpleNamespace(model=MeanNet().eval(), test=test, train=train, info=info, dataset="toy", seed=0)


def record(units, images, concepts=(), low=0.0, high=1.0):
    return UnitImages(units=units, concepts=list(concepts), images=np.asarray(images, dtype=np.float32),
                      meta={"input_range": [low, high]})


def test_activation_reached_is_relative_to_the_real_mean_and_max():
    units = [{"layer": "id", "unit": 0, "regulariser": "l2"},
             {"layer": "logits", "unit": 0, "regulariser": "robust"},
             {"layer": "id", "unit": 2, "regulariser": "l2"}]          # channel 2 is 0 on every real input
    images = constant_images([[0.7, 0.0, 0.0], [1.3, 0.0, 0.0], [0.0, 0.0, 0.5]])
    out = ActivationReached()(record(units, images), ctx(), None)
    # unit id:0 real means 0, .2, .4, 1 -> mean .4, max 1: (0.7 - 0.4) / 0.6 = 0.5
    # logit 0 = 2 · mean ch0: real 0, .4, .8, 2 (mean .8, max 2); image 2.6 -> (2.6 - .8) / 1.2 = 1.5
    assert out["activation_reached"] == pytest.approx(1.0)
    assert out["activation_reached.l2"] == pytest.approx(0.5)
    assert out["activation_reached.robust"] == pytest.approx(1.5)
    assert out["activation_reached.id"] == pytest.approx(0.5)
    assert out["activation_reached.logits"] == pytest.approx(1.5)
    assert out["activation_reached.above_real_max"] == pytest.approx(0.5)
    assert np.isnan(out["activation_reached"].values[2])                # no spread on real inputs: undefined
    assert "activation_reached.concept_auc" not in out                   # no concept named, no table


def test_concept_auc_and_match_against_the_real_labels():
    table = np.zeros((4, len(COLUMNS)), dtype=np.float32)
    table[:, COLUMNS.index("texture=stripes")] = [0, 0, 1, 1]            # the two strongest real inputs
    table[:, COLUMNS.index("colour=red")] = [1, 0, 0, 1]
    units = [{"layer": "id", "unit": 0, "regulariser": "l2", "concept": "texture=stripes"},
             {"layer": "id", "unit": 0, "regulariser": "none", "concept": "colour=red"},
             {"layer": "logits", "unit": 0, "regulariser": "none"}]
    images = constant_images([[0.7, 0, 0], [0.7, 0, 0], [0.7, 0, 0]])
    rec = record(units, images, concepts=["texture=stripes", "colour=red", "texture=solid"])
    out = ActivationReached()(rec, ctx(concepts=table), None)
    # unit id:0 on real inputs 0, .2, .4, 1: stripes [0 0 1 1] -> AUC 1; red [1 0 0 1] -> 2 of 4 pairs -> 0.5;
    # solid = not stripes -> AUC 0.  Stripes is the unit's best concept.
    assert out["activation_reached.concept_auc"] == pytest.approx(0.75)
    assert out["activation_reached.concept_auc.l2"] == pytest.approx(1.0)
    assert out["activation_reached.concept_auc.none"] == pytest.approx(0.5)
    assert out["activation_reached.concept_match"] == pytest.approx(0.5)


def test_auc_is_sklearns():
    from sklearn.metrics import roc_auc_score

    g = np.random.default_rng(0)
    scores, labels = g.integers(0, 5, 200).astype(float), g.random(200) < 0.3       # many ties
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert math.isnan(auc(scores, np.zeros(200, dtype=bool)))


def test_class_confidence_is_the_softmax_of_the_class():
    units = [{"layer": "logits", "unit": 0, "regulariser": "l2"}, {"layer": "logits", "unit": 1, "regulariser": "l2"},
             {"layer": "id", "unit": 0, "regulariser": "l2"}]
    images = constant_images([[0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    out = ClassConfidence()(record(units, images), ctx(), None)
    p0 = 1 / (1 + math.exp(-1.0))                                          # logits (1, 0)
    assert out["class_confidence"] == pytest.approx((p0 + (1 - p0)) / 2)
    assert list(out["class_confidence"].values) == pytest.approx([p0, 1 - p0])
    assert out["class_confidence.l2"] == pytest.approx(0.5)
    assert "class_confidence.rule" not in out                              # no planted rule


def test_class_confidence_rule_reads_the_probes_with_the_generators_rule():
    info = DATASETS["shapes"]                 # positive iff texture=stripes and shape != triangle
    train_table = np.zeros((4, len(COLUMNS)), dtype=np.float32)
    striped_circle = {"shape=circle": 0.8, "shape=square": 0.1, "shape=triangle": 0.1, "texture=stripes": 0.9,
                      "colour=red": 0.5, "colour=green": 0.3, "colour=blue": 0.2}
    solid_triangle = {**striped_circle, "shape=circle": 0.1, "shape=triangle": 0.8, "texture=stripes": 0.2}
    units = [{"layer": "logits", "unit": 1, "regulariser": "robust", "probe": striped_circle},   # shows positive
             {"layer": "logits", "unit": 0, "regulariser": "robust", "probe": solid_triangle},   # shows negative
             {"layer": "logits", "unit": 0, "regulariser": "l2", "probe": striped_circle}]      # positive, not 0
    images = constant_images([[0.1, 0, 0]] * 3)
    out = ClassConfidence()(record(units, images), ctx(info=info, train_concepts=train_table), None)
    assert out["class_confidence.rule"] == pytest.approx(2 / 3)
    assert out["class_confidence.rule.robust"] == pytest.approx(1.0)
    assert out["class_confidence.rule.l2"] == pytest.approx(0.0)


def test_tv_norm_known_values():
    stripes = (torch.arange(4) % 2).float().expand(3, 4, 4)                 # columns 0 1 0 1
    flat = torch.full((3, 4, 4), 0.5)
    units = [{"layer": "id", "unit": 0, "regulariser": "none"}, {"layer": "id", "unit": 0, "regulariser": "robust"}]
    out = TVNorm()(record(units, torch.stack([stripes, flat])), ctx(), None)
    assert out["tv_norm.none"] == pytest.approx(3 / 4) and out["tv_norm.robust"] == 0.0
    assert out["tv_norm"] == pytest.approx(3 / 8)
    assert out["tv_norm.real"] == 0.0                                      # the real inputs are constant images
    # over the input range: the same image on a 0..2 scale is half as rough
    out2 = TVNorm()(record(units, torch.stack([2 * stripes, flat]), high=2.0), ctx(), None)
    assert out2["tv_norm.none"] == pytest.approx(3 / 4)


def test_directions_applicability_and_clear_errors():
    assert ActivationReached.higher_is_better and ClassConfidence.higher_is_better
    assert TVNorm.higher_is_better is False
    ours = {"activation_reached", "class_confidence", "tv_norm"}
    assert ours <= set(applicable_metrics(ActivationMax, DATASETS["digits"]))     # beside the universal ones
    wrong = UnitConcepts(units=[{"layer": "a", "unit": 0, "concept": "x", "score": 0.1}], concepts=["x"])
    for metric in (ActivationReached(), ClassConfidence(), TVNorm()):
        with pytest.raises(ValueError, match="UnitImages"):
            metric(wrong, ctx(), None)
    no_class = record([{"layer": "id", "unit": 0, "regulariser": "l2"}], constant_images([[0, 0, 0]]))
    with pytest.raises(ValueError, match="no class visualisation"):
        ClassConfidence()(no_class, ctx(), None)
