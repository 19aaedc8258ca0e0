"""Nearest training examples in the penultimate space [146]: the ranking against brute force over all pairs,
a planted embedding whose neighbours are known (the input space would give others), and the contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DatasetInfo, PreparedSplit
from nnxai.methods.base import ExplainContext, explained_indices
from nnxai.methods.example.nearest_neighbours import NearestNeighbours
from nnxai.params import ParamError

INFO = DatasetInfo("toy", "tabular", 3, (5,), False, False, "test")


class Planted(nn.Module):
    """``embed(x) = x[:, :2] * 10``: the first two inputs are the representation, the other three are
    distractors the network ignores; a linear head on top."""

    architecture = "mlp"

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.project = nn.Linear(5, 2, bias=False)
        self.classifier = nn.Linear(2, n_classes)
        with torch.no_grad():
            self.project.weight.zero_()
            self.project.weight[0, 0] = self.project.weight[1, 1] = 10.0
            self.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]]))
            self.classifier.bias.zero_()

    def embed(self, x):
        return self.project(x.flatten(1))

    def forward(self, x):
        return self.classifier(self.embed(x))


CENTRES = np.array([[3.0, 0.0], [-2.0, 2.0], [-2.0, -2.0]])   # cluster c sits where class c wins


def _points(rng, per_cluster: int):
    """Tight clusters in the two embedded inputs, large distractors in the others."""
    signal = np.repeat(CENTRES, per_cluster, axis=0) + rng.normal(0.0, 0.05, (3 * per_cluster, 2))
    distractor = rng.normal(0.0, 30.0, (3 * per_cluster, 3))
    cluster = np.repeat(np.arange(3), per_cluster)
    return torch.tensor(np.hstack([signal / 10.0, distractor]), dtype=torch.float32), torch.tensor(cluster)


@pytest.fixture(scope="module")
def ctx():
    rng = np.random.default_rng(0)
    x_train, y_train = _points(rng, 20)
    x_test, y_test = _points(rng, 4)
    y_train = y_train.clone()
    y_train[0] = 1                                   # one mislabelled training point in cluster 0
    return ExplainContext(model=Planted().eval(), dataset="toy", model_id="planted", info=INFO,
                          train=PreparedSplit(x=x_train, y=y_train), test=PreparedSplit(x=x_test, y=y_test), seed=5)


def _method(**over):
    return NearestNeighbours(**{"n_explain": 10, "k": 4, "distance": "euclidean", **over})


def _brute_force(model, ctx, idx, k, distance):
    """Every (test, train) pair's distance in model.embed, one pair at a time; stable ranking."""
    with torch.no_grad():
        f_tr = model.embed(ctx.train.x).double().numpy()
        f_te = model.embed(ctx.test.x[idx]).double().numpy()
    ranks, scores = [], []
    for a in f_te:
        if distance == "euclidean":
            d = np.array([np.sqrt(((a - b) ** 2).sum()) for b in f_tr])
            order = np.argsort(d, kind="stable")[:k]
        else:
            d = np.array([a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for b in f_tr])
            order = np.argsort(-d, kind="stable")[:k]
        ranks.append(order.tolist())
        scores.append(d[order].tolist())
    return ranks, scores


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_neighbours_equal_brute_force_over_all_pairs(ctx, distance):
    record = _method(distance=distance, n_explain=12).explain(ctx)
    idx = explained_indices(len(ctx.test.x), 12, ctx.seed)
    ranks, scores = _brute_force(ctx.model, ctx, idx, 4, distance)
    assert record.indices == idx.tolist()
    assert record.examples == ranks
    np.testing.assert_allclose(record.scores, scores, rtol=1e-9, atol=1e-9)
    assert record.extra["score"] == {"euclidean": "euclidean_distance", "cosine": "cosine_similarity"}[distance]


def test_planted_neighbours_are_the_inputs_cluster_not_its_input_space_neighbours(ctx):
    record = _method(n_explain=12, k=19).explain(ctx)
    cluster = np.repeat(np.arange(3), 20)
    for t, row in zip(record.indices, record.examples):
        assert set(cluster[row]) == {int(ctx.test.y[t])}          # all 19 from the test input's own cluster
    # in the input space the distractors dominate: there the nearest points are mostly of other clusters
    d_input = torch.cdist(ctx.test.x[record.indices].double(), ctx.train.x.double())
    own = np.array([(cluster[d_input[r].argsort()[:19].numpy()] == int(ctx.test.y[t])).mean()
                    for r, t in enumerate(record.indices)])
    assert own.mean() < 0.6


def test_targets_and_neighbour_labels(ctx):
    record = _method(n_explain=12).explain(ctx)
    with torch.no_grad():
        pred = ctx.model(ctx.test.x[record.indices]).argmax(1).tolist()
    assert record.targets == pred == ctx.test.y[record.indices].tolist()    # the planted head is right
    assert record.extra["neighbour_labels"] == ctx.train.y[torch.tensor(record.examples)].tolist()
    assert record.extra["n_train"] == 60 and record.meta["method"] == "nearest_neighbours"


def test_cosine_ignores_the_norm():
    """Cosine ranks by direction only: the far point almost in the input's direction is its nearest by
    cosine, the close point in another direction its nearest by Euclidean distance."""
    x_train = torch.tensor([[0.1, 0.0, 0, 0, 0], [0.0, 0.1, 0, 0, 0], [0.5, 0.48, 0, 0, 0]])
    x_test = torch.tensor([[0.08, 0.1, 0, 0, 0]])
    c = ExplainContext(model=Planted().eval(), dataset="toy", model_id="planted", info=INFO,
                       train=PreparedSplit(x=x_train, y=torch.tensor([0, 1, 2])),
                       test=PreparedSplit(x=x_test, y=torch.tensor([0])))
    assert _method(n_explain=1, k=1).explain(c).examples == [[1]]
    cos = _method(n_explain=1, k=1, distance="cosine").explain(c)
    assert cos.examples == [[2]] and cos.scores[0][0] == pytest.approx(
        (0.8 * 5.0 + 1.0 * 4.8) / (np.hypot(0.8, 1.0) * np.hypot(5.0, 4.8)))


def test_model_mode_and_parameters_are_left_alone(ctx):
    model = Planted().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    c = ExplainContext(model=model, dataset="toy", model_id="planted", info=INFO, train=ctx.train, test=ctx.test)
    _method().explain(c)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_clear_errors(ctx):
    with pytest.raises(ParamError, match="distance"):
        _method(distance="manhattan")
    with pytest.raises(ParamError, match="k"):
        _method(k=0)

    class NoEmbed(nn.Module):
        architecture = "mlp"

        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(5, 3)

        def forward(self, x):
            return self.classifier(x)

    c = ExplainContext(model=NoEmbed(), dataset="toy", model_id="x", info=INFO, train=ctx.train, test=ctx.test)
    with pytest.raises(ValueError, match="embed"):
        _method().explain(c)
