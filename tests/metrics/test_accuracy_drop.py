"""``accuracy_drop`` (filter CAR pruning, Abbasi-Asl & Yu, 2nd survey [51]): the pruned sets in closed form,
and the three drops on a planted network where one filter per layer carries the decision and the other is dead:
least-CAR pruning costs nothing, most-CAR pruning costs every positive, random pruning (every 1-subset of 2:
exact) half of that."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.data import DATASETS, PreparedSplit
from nnxai.intervals import PerInput
from nnxai.methods.base import ExplainContext
from nnxai.methods.hidden_semantics.filter_car import FilterCAR
from nnxai.metrics.base import metrics
from nnxai.metrics.filter_car import AccuracyDrop, pruning_sets
from nnxai.models.networks import build_network

METHOD = {"n_heldout": 200, "batch_size": 400}
METRIC = {"fraction": 0.5, "n_random": 10, "n_inputs": 150}


def test_pruning_sets_in_closed_form():
    rng = np.random.default_rng(0)
    sets = pruning_sets(np.array([0.3, 0.0, 0.1, 0.2]), 2, 6, rng)
    assert [s.tolist() for s in sets["least"]] == [[1, 2]] and [s.tolist() for s in sets["most"]] == [[0, 3]]
    assert sorted(s.tolist() for s in sets["random"]) == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    ties = pruning_sets(np.array([0.0, 0.0, 0.0, 0.5]), 1, 2, rng)        # ties by filter index
    assert ties["least"][0].tolist() == [0] and ties["most"][0].tolist() == [3]
    drawn = pruning_sets(np.zeros(10), 3, 5, rng)["random"]                 # C(10, 3) = 120 > 5: 5 draws
    assert len(drawn) == 5 and all(len(set(s.tolist())) == 3 for s in drawn)
    with pytest.raises(ValueError, match="prune 5 of 4"):
        pruning_sets(np.zeros(4), 5, 1, rng)


def _planted():
    """widths [2, 2, 2]: filter 0 of each layer carries channel 0 to the class-1 logit, filter 1 is dead."""
    net = build_network("cnn", in_channels=1, n_classes=2, widths=[2, 2, 2], activation="relu").eval()
    f = net.features
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for conv in (f.conv1, f.conv2, f.conv3):
            conv.weight[0, 0, 1, 1] = 1.0
            conv.bias[1] = -1.0
        net.classifier.weight[1, 0] = 1.0
        x = torch.from_numpy(np.random.default_rng(0).random((400, 1, 8, 8), dtype=np.float32))
        net.classifier.bias[1] = -float(net.embed(x)[:, 0].median())
        y = net(x).argmax(1)
    split = PreparedSplit(x=x, y=y)
    ctx = ExplainContext(model=net, dataset="toy", model_id="planted", info=DATASETS["shapes"], train=split,
                         test=split, seed=0)
    return net, ctx


def test_least_costs_nothing_most_every_positive_random_half():
    net, ctx = _planted()
    method = FilterCAR(**METHOD)
    record = method.label_units(net, ctx)
    metric = AccuracyDrop(**METRIC)
    out = metric(record, ctx, method)
    rows = metric.scored_inputs(len(ctx.test.y), record.meta["indices"], ctx.seed)
    assert len(rows) == 150 and not set(rows.tolist()) & set(record.meta["indices"])
    positive = float((ctx.test.y.numpy()[rows] == 1).mean())
    assert 0.3 < positive < 0.7
    assert isinstance(out["accuracy_drop"], PerInput) and len(out["accuracy_drop"].values) == 150
    assert out["accuracy_drop"] == 0.0                                       # k = 1: the dead filter
    assert out["accuracy_drop.most"] == pytest.approx(positive, abs=1e-12)   # the decisive filter
    assert out["accuracy_drop.random"] == pytest.approx(positive / 2, abs=1e-12)
    for layer in ("conv1", "conv2", "conv3"):
        assert out[f"accuracy_drop.{layer}"] == 0.0
        assert out[f"accuracy_drop.most.{layer}"] == pytest.approx(positive, abs=1e-12)
        assert out[f"accuracy_drop.random.{layer}"] == pytest.approx(positive / 2, abs=1e-12)


def test_k_rounds_up_and_scored_inputs_must_exist():
    net, ctx = _planted()
    method = FilterCAR(**METHOD)
    record = method.label_units(net, ctx)
    # ceil(0.6 * 2) = 2: every filter pruned, whichever the ranking: the three drops are equal
    out = AccuracyDrop(**{**METRIC, "fraction": 0.6})(record, ctx, method)
    assert out["accuracy_drop"] == out["accuracy_drop.random"] == out["accuracy_drop.most"] > 0.3
    # ceil(0.2 * 2) = 1: as fraction 0.5
    assert AccuracyDrop(**{**METRIC, "fraction": 0.2})(record, ctx, method)["accuracy_drop"] == 0.0
    metric = AccuracyDrop(**METRIC)
    with pytest.raises(ValueError, match="all 10 test inputs"):
        metric.scored_inputs(10, list(range(10)), 0)
    record.meta.pop("indices")
    with pytest.raises(ValueError, match="filter_car records"):
        metric(record, ctx, FilterCAR(**METHOD))


def test_registered_lower_is_better_for_hidden_semantics():
    cls = metrics()["accuracy_drop"]
    assert cls is AccuracyDrop and cls.higher_is_better is False and cls.kinds == frozenset({"hidden_semantics"})
