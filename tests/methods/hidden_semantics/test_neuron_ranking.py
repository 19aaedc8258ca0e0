"""Neuron ranking by linguistic correlation analysis [100]: the ranking algorithm on known weights and against a
reference written from the paper, the probe against an independent minimisation of the paper's elastic-net
objective, and a planted network whose known neurons carry the concepts (ranked first; ablating them costs more
accuracy than ablating random ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit, shapes
from nnxai.explanations import UnitConcepts
from nnxai.methods.base import ExplainContext
from nnxai.methods.hidden_semantics.neuron_ranking import NeuronRanking, concept_targets, fit_probe, neuron_ordering
from nnxai.metrics.neuron_ranking import AblationDrop, ProbeAccuracy
from nnxai.models.networks import MLP, ConvNet
from nnxai.params import ParamError

PARAMS = {"n_train": 400, "n_inputs": 200, "lambda_l1": 1e-3, "lambda_l2": 1e-3, "max_iter": 1000, "tol": 1e-4,
          "search_stride": 100, "n_top_inputs": 5, "batch_size": 100}
BINARY = ["shape=circle", "shape=square", "shape=triangle", "texture=stripes", "colour=red", "colour=green",
          "colour=blue"]


# -- the ranking algorithm -----------------------------------------------------------------------------------------

def test_neuron_ordering_on_known_weights():
    w = np.array([[4.0, 0.0, 1.0, 0.0, 0.0],      # concept 0: neuron 0 holds 80 % of its mass, neuron 2 the rest
                  [0.0, 0.0, 0.0, -3.0, 1.0]])    # concept 1: neuron 3 (75 %, sign ignored), neuron 4
    order, cutoffs = neuron_ordering(w, 4)
    # share 0: each concept's top neuron (0 and 3, larger share first); shares 1/4..3/4 add nothing; share 1:
    # the rest of each concept's mass (4 at 25 %, then 2 at 20 %); neuron 1, weighted by no probe, comes last
    assert order == [0, 3, 4, 2, 1]
    assert cutoffs == [2, 2, 2, 2, 4]


def _reference_top(w_row: np.ndarray, share: float) -> set[int]:
    """Straight from the paper: the fewest neurons, by |weight| descending, whose weights reach `share` of the
    concept's total mass."""
    chosen, mass = set(), 0.0
    for k in sorted(range(len(w_row)), key=lambda j: -abs(w_row[j])):
        if mass >= share * np.abs(w_row).sum() * (1 - 1e-12) and chosen:
            break
        if abs(w_row[k]) > 0:
            chosen.add(k)
        mass += abs(w_row[k])
    return chosen


def test_neuron_ordering_agrees_with_a_reference_from_the_paper():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 30)) * (rng.random((4, 30)) < 0.6)        # sparse, like an elastic-net probe
    stride = 20
    order, cutoffs = neuron_ordering(w, stride)
    assert sorted(order) == list(range(30))
    union: set[int] = set()
    for step, cut in enumerate(cutoffs):
        for row in w:
            union |= _reference_top(row, step / stride)
        assert set(order[:cut]) == union, step


# -- the probe solves the paper's objective ----------------------------------------------------------------------

def _objective(theta, b, z, y, l1, l2):
    s = np.where(y == 1, 1.0, -1.0)
    return np.logaddexp(0.0, -s * (z @ theta + b)).mean() + l1 * np.abs(theta).sum() + l2 * (theta ** 2).sum()


def test_probe_minimises_the_elastic_net_objective():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(150, 5))
    y = (rng.random(150) < 1 / (1 + np.exp(-(1.5 * z[:, 0] - z[:, 1] + 0.3)))).astype(np.int64)
    l1, l2 = 0.02, 0.05
    theta, b, _ = fit_probe(z, y, l1, l2, max_iter=100000, tol=1e-10, seed=0)
    # independent: L-BFGS-B on theta = u - v, u, v >= 0 (the L1 term becomes linear and smooth)

    def f(p):
        u, v, bias = p[:5], p[5:10], p[10]
        s = np.where(y == 1, 1.0, -1.0)
        m = z @ (u - v) + bias
        sig = 1 / (1 + np.exp(s * m))
        g_m = -s * sig / len(y)
        g_theta = z.T @ g_m + 2 * l2 * (u - v)
        val = np.logaddexp(0.0, -s * m).mean() + l1 * (u + v).sum() + l2 * ((u - v) ** 2).sum()
        return val, np.r_[g_theta + l1, -g_theta + l1, g_m.sum()]

    res = minimize(f, np.zeros(11), jac=True, method="L-BFGS-B", bounds=[(0, None)] * 10 + [(None, None)],
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000})
    ref = res.x[:5] - res.x[5:10]
    assert theta == pytest.approx(ref, abs=2e-4) and b == pytest.approx(res.x[10], abs=2e-4)
    assert _objective(theta, b, z, y, l1, l2) == pytest.approx(res.fun, abs=1e-8)
    # a strong L1 term zeroes weights exactly, at the lasso's optimality conditions: the likelihood's gradient
    # g is -λ1 sign(θ_k) where θ_k != 0 and within [-λ1, λ1] where θ_k = 0
    sparse, b1, _ = fit_probe(z, y, 0.05, 0.0, max_iter=100000, tol=1e-12, seed=0)
    g = z.T @ (1 / (1 + np.exp(-(z @ sparse + b1))) - y) / len(y)
    assert (sparse == 0).sum() >= 2 and sparse[0] > 0
    assert np.all(np.abs(g[sparse == 0]) <= 0.05 + 1e-6)
    assert g[sparse != 0] == pytest.approx(-0.05 * np.sign(sparse[sparse != 0]), abs=1e-5)


# -- concepts -----------------------------------------------------------------------------------------------------

def test_concepts_are_the_binary_columns_else_the_class_label():
    d = shapes.generate(30, 5)
    split = PreparedSplit(x=torch.from_numpy(d["x"]), y=torch.from_numpy(d["y"]), concepts=d["concepts"],
                          meta={"concept_features": list(shapes.CONCEPT_FEATURES)})
    names, targets, source = concept_targets(split, DATASETS["shapes"])
    assert names == BINARY and source == "concept table"
    np.testing.assert_array_equal(targets, d["concepts"][:, :7].astype(np.int64))
    y3 = torch.tensor([0, 2, 1, 2])
    names, targets, source = concept_targets(PreparedSplit(x=torch.zeros(4, 2), y=y3,
                                                           meta={"class_names": ["a", "b", "c"]}), DATASETS["iris"])
    assert names == ["class=a", "class=b", "class=c"] and source == "class label"
    np.testing.assert_array_equal(targets, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])
    names, targets, _ = concept_targets(PreparedSplit(x=torch.zeros(3, 2), y=torch.tensor([1, 0, 1])),
                                        DATASETS["breast_cancer"])
    assert names == ["class=1"] and targets[:, 0].tolist() == [1, 0, 1]


# -- a planted network ---------------------------------------------------------------------------------------------

class PlantedMLP(nn.Module):
    """Inputs ``[a, b, n0, n1, m0..m7]``; hidden units ``h0 = a + 0.3 n0``, ``h1 = b + 0.3 n1`` and eight noise
    units ``h2..h9 = m0..m7``; the network predicts ``a`` from ``h0`` alone."""

    architecture = "mlp"

    def __init__(self):
        super().__init__()
        self.act = nn.Identity()

    def forward(self, x):
        h = self.act(torch.cat([x[:, :2] + 0.3 * x[:, 2:4], x[:, 4:12]], 1))
        logit = h[:, 0] - 0.5
        return torch.stack([-logit, logit], 1)

    def unit_layers(self):
        return {"fc1": self.act}


TOY = DatasetInfo(name="toy", kind="tabular", n_classes=2, input_shape=(12,), concepts=("a", "b"))


def _planted_split(n, seed):
    rng = np.random.default_rng(seed)
    ab = (rng.random((n, 2)) < 0.5).astype(np.float32)
    x = np.concatenate([ab, rng.normal(size=(n, 10)).astype(np.float32)], 1)
    return PreparedSplit(x=torch.from_numpy(x), y=torch.from_numpy(ab[:, 0].astype(np.int64)), concepts=ab,
                         meta={"concept_features": ["a", "b"]})


@pytest.fixture(scope="module")
def planted():
    model = PlantedMLP().eval()
    ctx = ExplainContext(model=model, dataset="toy", model_id="planted", info=TOY, train=_planted_split(400, 0),
                         test=_planted_split(200, 1), seed=0)
    return model, ctx, NeuronRanking(**PARAMS).explain(ctx)


def test_planted_neurons_are_ranked_first_and_named(planted):
    _model, ctx, record = planted
    assert {tuple(n) for n in record.meta["ranking"][:2]} == {("fc1", 0), ("fc1", 1)}
    units = {u["unit"]: u for u in record.units}
    assert units[0]["concept"] == "a" and units[0]["sign"] == 1 and units[0]["rank"] <= 2
    assert units[1]["concept"] == "b" and units[1]["sign"] == 1 and units[1]["rank"] <= 2
    assert sorted(u["rank"] for u in record.units) == list(range(1, 11))
    # the neuron carrying `a` is largest on inputs that show `a`
    test_a = ctx.test.concepts[:, 0]
    assert all(test_a[i] == 1 for i in units[0]["top_inputs"]) and len(units[0]["top_inputs"]) == 5
    assert units[0]["top_activations"] == sorted(units[0]["top_activations"], reverse=True)
    # the probes read their concept well on held-out inputs (0.3 noise: ~95 %)
    assert record.meta["accuracy"]["a"] > 0.85 and record.meta["accuracy"]["b"] > 0.85


def test_ablating_the_top_neurons_costs_more_than_random_or_bottom_ones(planted):
    _model, ctx, record = planted
    acc = ProbeAccuracy()(record, ctx, None)
    assert float(acc["probe_accuracy.a"]) == pytest.approx(record.meta["accuracy"]["a"], abs=1e-12)
    assert float(acc["probe_accuracy"]) == pytest.approx(np.mean(list(record.meta["accuracy"].values())), abs=1e-12)
    out = AblationDrop(fraction=0.2, n_random=20)(record, ctx, None)
    assert out["ablation_drop.n_ablated"] == 2.0
    # zeroing h0 and h1 leaves both probes at chance: a drop of about 0.45; 2 random neurons of 10 hit a
    # given one of them 20 % of the time; the bottom two carry nothing
    assert out["ablation_drop.top"] > 0.3 and out["ablation_drop"] > 0.2
    assert out["ablation_drop.top"] > out["ablation_drop.random"] > out["ablation_drop.bottom"] - 1e-12
    assert abs(out["ablation_drop.bottom"]) < 0.03
    assert out["ablation_drop.network_top"] > 0.3 and out["ablation_drop.network"] > 0.2
    assert out["ablation_drop.network_bottom"] == 0.0


# -- on the project's networks ---------------------------------------------------------------------------------------

def test_explain_record_on_convnet_and_mlp(tmp_path):
    d_train, d_test = shapes.generate(120, 31), shapes.generate(40, 32)

    def split(d):
        return PreparedSplit(x=torch.from_numpy(d["x"]), y=torch.from_numpy(d["y"]), concepts=d["concepts"],
                             meta={"concept_features": list(shapes.CONCEPT_FEATURES)})

    torch.manual_seed(0)
    model = ConvNet(3, 2, widths=(4, 5, 6)).eval()
    ctx = ExplainContext(model=model, dataset="shapes", model_id="toy", info=DATASETS["shapes"],
                         train=split(d_train), test=split(d_test), seed=3)
    params = {**PARAMS, "n_train": 120, "n_inputs": 30}
    record = NeuronRanking(**params).explain(ctx)
    assert isinstance(record, UnitConcepts) and record.concepts == BINARY
    assert [(u["layer"], u["unit"]) for u in record.units] == [(l, k) for l, n in (("conv1", 4), ("conv2", 5),
                                                                                   ("conv3", 6)) for k in range(n)]
    assert sorted(u["rank"] for u in record.units) == list(range(1, 16))
    assert all(u["concept"] in BINARY or (u["concept"] is None and u["score"] == 0) for u in record.units)
    assert record.meta["concept_source"] == "concept table" and len(record.meta["test_indices"]) == 30
    loaded = UnitConcepts.load(record.save(tmp_path / "neuron_ranking.json"))
    assert loaded.units == record.units and loaded.meta["ranking"] == record.meta["ranking"]
    again = NeuronRanking(**params).explain(ExplainContext(model=model, dataset="shapes", model_id="toy",
                                                           info=DATASETS["shapes"], train=split(d_train),
                                                           test=split(d_test), seed=3))
    assert again.units == record.units
    # an MLP on a table without concepts probes the class label, one-vs-rest
    rng = np.random.default_rng(0)
    x, y = torch.from_numpy(rng.normal(size=(90, 4)).astype(np.float32)), torch.from_numpy(np.arange(90) % 3)
    table = PreparedSplit(x=x, y=y, meta={"class_names": ["setosa", "versicolor", "virginica"]})
    mlp = MLP(4, 3, hidden=(6, 5)).eval()
    rec = NeuronRanking(**{**params, "n_train": 90, "n_inputs": 90}).explain(
        ExplainContext(model=mlp, dataset="iris", model_id="toy", info=DATASETS["iris"], train=table, test=table))
    assert rec.concepts == ["class=setosa", "class=versicolor", "class=virginica"]
    assert rec.meta["concept_source"] == "class label" and len(rec.units) == 11


def test_needs_a_fit_and_named_parameters(planted):
    model, ctx, _ = planted
    with pytest.raises(RuntimeError, match="fit"):
        NeuronRanking(**PARAMS).label_units(model, ctx)
    with pytest.raises(ParamError, match=r"'neuron_ranking'\.lambda_l1: -0\.1 is out of range, expected >= 0"):
        NeuronRanking(**{**PARAMS, "lambda_l1": -0.1})
    with pytest.raises(ParamError, match=r"'neuron_ranking'\.tol: 0 is out of range, expected > 0"):
        NeuronRanking(**{**PARAMS, "tol": 0})
    constant = PreparedSplit(x=ctx.train.x, y=ctx.train.y, concepts=np.zeros((400, 2), np.float32),
                             meta={"concept_features": ["a", "b"]})
    with pytest.raises(ValueError, match="constant"):
        NeuronRanking(**PARAMS).fit(model, constant, info=TOY)
