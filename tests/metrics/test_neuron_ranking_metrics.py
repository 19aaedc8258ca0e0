"""``probe_accuracy`` and ``ablation_drop`` [100] on a hand-made record over a network whose neurons are its
inputs: every accuracy and drop is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit
from nnxai.explanations import UnitConcepts
from nnxai.intervals import PerInput
from nnxai.methods.base import ExplainContext
from nnxai.methods.hidden_semantics.neuron_ranking import NeuronRanking
from nnxai.metrics.base import applicable_metrics
from nnxai.metrics.neuron_ranking import AblationDrop, ProbeAccuracy
from nnxai.params import ParamError


class Identity4(nn.Module):
    """Four neurons = the four inputs; the network predicts class 1 iff neuron 0 > 0.5."""

    architecture = "mlp"

    def __init__(self):
        super().__init__()
        self.act = nn.Identity()

    def forward(self, x):
        h = self.act(x)
        return torch.stack([torch.zeros(len(x)), h[:, 0] - 0.5], 1)

    def unit_layers(self):
        return {"fc1": self.act}


INFO = DatasetInfo(name="toy", kind="tabular", n_classes=2, input_shape=(4,), concepts=("a",))
# neuron 0 = the concept, except on input 3 (a probe error); the label is the concept
X = np.array([[1, 0.3, 0.2, 0.1], [0, 0.5, 0.1, 0.9], [1, 0.2, 0.8, 0.4], [0.9, 0.7, 0.3, 0.2],
              [0, 0.1, 0.6, 0.5], [0, 0.4, 0.9, 0.3]], dtype=np.float32)
A = np.array([1, 0, 1, 0, 0, 0], dtype=np.float32)


@pytest.fixture
def case():
    split = PreparedSplit(x=torch.from_numpy(X), y=torch.from_numpy(A.astype(np.int64)), concepts=A[:, None],
                          meta={"concept_features": ["a"]})
    ctx = ExplainContext(model=Identity4().eval(), dataset="toy", model_id="toy", info=INFO, train=split, test=split,
                         seed=7)
    neurons = [["fc1", k] for k in range(4)]
    record = UnitConcepts(units=[], concepts=["a"], meta={
        "probes": {"a": {"weights": [1.0, 0.0, 0.0, 0.01], "bias": -0.5}},
        "standardisation": {"mean": [0.0] * 4, "scale": [1.0] * 4}, "neurons": neurons,
        "ranking": [neurons[k] for k in (0, 3, 1, 2)], "test_indices": [0, 1, 2, 3, 4, 5],
        "prevalence": {"a": 0.25}, "params": {"batch_size": 4}})
    return record, ctx


def test_probe_accuracy_on_known_predictions(case):
    record, ctx = case
    out = ProbeAccuracy()(record, ctx, None)
    # probe logit x0 + 0.01 x3 - 0.5: right on inputs 0, 1, 2, 4, 5; input 3 (x0 = 0.9, concept 0) is wrong
    assert isinstance(out["probe_accuracy"], PerInput)
    assert list(out["probe_accuracy"].values) == [1, 1, 1, 0, 1, 1]
    assert out["probe_accuracy"] == pytest.approx(5 / 6) and out["probe_accuracy.a"] == pytest.approx(5 / 6)
    # the training majority is "absent": right on the 4 inputs without the concept
    assert out["probe_accuracy.majority"] == pytest.approx(4 / 6)


def test_ablation_drop_against_random_and_bottom_neurons(case):
    record, ctx = case
    out = AblationDrop(fraction=0.25, n_random=8)(record, ctx, None)        # one neuron of four
    assert out["ablation_drop.n_ablated"] == 1.0
    # top = neuron 0: the probe's logit becomes 0.01 x3 - 0.5 < 0: "absent" everywhere, right on 4 of 6 (it
    # was right on 5): input 3 turns right, inputs 0 and 2 wrong
    top = np.array([1, 0, 1, -1, 0, 0], dtype=float)
    assert list(out["ablation_drop.top"].values) == pytest.approx(top)
    # bottom = neuron 2, whose weight is 0: nothing changes
    assert list(out["ablation_drop.bottom"].values) == pytest.approx([0] * 6)
    # random: neuron 0 drawn k times of 8 (neurons 1-3 change no prediction) -> k/8 of the top drop
    rng = np.random.default_rng([7, 100])
    k = sum(int(rng.choice(4, size=1, replace=False)[0] == 0) for _ in range(8))
    assert list(out["ablation_drop.random"].values) == pytest.approx(top * k / 8)
    assert out["ablation_drop"] == pytest.approx(top.mean() * (1 - k / 8))
    assert out["ablation_drop.vs_bottom"] == pytest.approx(top.mean())
    # the network reads neuron 0 only: zeroed, it predicts class 0 everywhere: right on the 4 negatives; with
    # it, it is wrong on input 3 only
    net_top = np.array([1, 0, 1, -1, 0, 0], dtype=float)
    assert list(out["ablation_drop.network_top"].values) == pytest.approx(net_top)
    assert out["ablation_drop.network"] == pytest.approx(net_top.mean() * (1 - k / 8))
    assert out["ablation_drop.network_bottom"] == 0.0
    # the hooks are gone: the network predicts as before
    assert ctx.model(torch.from_numpy(X)).argmax(1).tolist() == [1, 0, 1, 1, 0, 0]


def test_bad_records_and_parameters(case):
    record, ctx = case
    with pytest.raises(ValueError, match="neuron_ranking"):
        ProbeAccuracy()(UnitConcepts(units=[], concepts=[], meta={}), ctx, None)
    record.meta["neurons"] = [["fc1", k] for k in range(5)]
    with pytest.raises(ValueError, match="neurons differ"):
        AblationDrop(fraction=0.5, n_random=1)(record, ctx, None)
    with pytest.raises(ParamError, match=r"'ablation_drop'\.fraction"):
        AblationDrop(fraction=1.0, n_random=1)


def test_the_metrics_judge_neuron_ranking_everywhere_it_runs():
    for name in ("shapes", "digits", "iris"):
        assert {"probe_accuracy", "ablation_drop"} <= set(applicable_metrics(NeuronRanking, DATASETS[name]))
