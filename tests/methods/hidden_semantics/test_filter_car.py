"""Filter CAR (Abbasi-Asl & Yu, 2nd survey [51]) on planted networks: one filter per layer carries the decision
(its CAR is the largest, and equals the share of the class it decides), a dead filter's CAR is 0, the class and
concept its pruning hurts are the planted ones; the fast suffix evaluation against pruning by a hook on the
whole network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.data import DATASETS, PreparedSplit, shapes
from nnxai.methods.base import ExplainContext
from nnxai.methods.hidden_semantics.filter_car import FilterCAR, SuffixRunner, pruned_predictions
from nnxai.models.networks import build_network

PARAMS = {"n_heldout": 300, "batch_size": 500}


def decisive_net(in_channels: int = 1) -> torch.nn.Module:
    """widths [2, 2, 2]: filter 0 of each layer passes channel 0 on (centre tap 1), filter 1 is dead (bias -1);
    the GAP of conv3's filter 0 minus a threshold is the logit of class 1 (class 0's logit is 0)."""
    net = build_network("cnn", in_channels=in_channels, n_classes=2, widths=[2, 2, 2], activation="relu").eval()
    f = net.features
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        f.conv1.weight[0, 0, 1, 1] = 1.0
        for conv in (f.conv2, f.conv3):
            conv.weight[0, 0, 1, 1] = 1.0
        for conv in (f.conv1, f.conv2, f.conv3):
            conv.bias[1] = -1.0
        net.classifier.weight[1, 0] = 1.0
    return net


def _toy_ctx(net, n=400, seed=0):
    """Uniform 1x8x8 inputs labelled by the planted network itself (accuracy 1): class 1 iff the statistic it
    reads exceeds its median."""
    x = torch.from_numpy(np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32))
    with torch.no_grad():
        stat = net.embed(x)[:, 0]
        threshold = float(stat.median())
        net.classifier.bias[1] = -threshold
        y = net(x).argmax(1)
    split = PreparedSplit(x=x, y=y)
    return ExplainContext(model=net, dataset="toy", model_id="planted", info=DATASETS["shapes"], train=split,
                          test=split, seed=seed)


def _unit(record, layer, k):
    return next(u for u in record.units if u["layer"] == layer and u["unit"] == k)


def test_decisive_filter_has_the_largest_car_and_a_dead_filter_zero():
    net = decisive_net()
    ctx = _toy_ctx(net)
    record = FilterCAR(**PARAMS).label_units(net, ctx)
    assert record.meta["accuracy"] == 1.0 and record.meta["suffix_fast_path"] == dict.fromkeys(["conv1", "conv2",
                                                                                               "conv3"], True)
    y = ctx.test.y.numpy()[record.meta["indices"]]
    positive = float((y == 1).mean())
    assert 0.3 < positive < 0.7
    for layer in ("conv1", "conv2", "conv3"):
        decisive, dead = _unit(record, layer, 0), _unit(record, layer, 1)
        # pruned, the logit of class 1 is minus the threshold: every input is called class 0
        assert decisive["car"] == pytest.approx(positive, abs=1e-12) and decisive["score"] == decisive["car"]
        assert decisive["rank"] == 1 and decisive["class"] == 1 and decisive["class_reduction"] == 1.0
        assert decisive["class_reductions"][0] == 0.0
        assert dead["car"] == 0.0 and dead["rank"] == 2 and dead["accuracy_pruned"] == 1.0
    assert record.concepts == [] and all("concept" not in u for u in record.units)
    assert len(record.meta["indices"]) == 200                 # at most half the test split


def test_suffix_path_equals_pruning_by_a_hook_on_the_whole_network():
    torch.manual_seed(0)
    net = build_network("cnn", in_channels=3, n_classes=3, widths=[4, 6, 8], activation="relu").eval()
    x = torch.randn(50, 3, 16, 16)
    for name, layer in net.unit_layers().items():
        maps = {}
        handle = layer.register_forward_hook(lambda _m, _i, o: maps.__setitem__("a", o.detach()))
        with torch.no_grad():
            logits = net(x)
        handle.remove()
        fast = SuffixRunner(net, layer, x, maps["a"], logits)
        slow = SuffixRunner(net, layer, x, maps["a"], logits)
        slow.fast = None
        assert fast.fast is not None
        prunes = [np.array([k]) for k in range(maps["a"].shape[1])] + [np.array([0, 2])]
        got, want = (pruned_predictions(r, maps["a"], prunes, 120) for r in (fast, slow))
        np.testing.assert_array_equal(got, want)

        def zero(_m, _i, o, k=1):
            o = o.clone()
            o[:, k] = 0
            return o

        handle = layer.register_forward_hook(zero)
        with torch.no_grad():
            direct = net(x).argmax(1).numpy()
        handle.remove()
        np.testing.assert_array_equal(got[1], direct)


def red_net() -> torch.nn.Module:
    """shapes: conv1 filter 0 = relu(R - G - B - 0.3) (red pixels only), passed on by filter 0 of conv2 and
    conv3; class 1 iff its GAP is positive, i.e. iff a red object is seen.  Every other filter is dead."""
    net = build_network("cnn", in_channels=3, n_classes=2, widths=[3, 3, 3], activation="relu").eval()
    f = net.features
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        f.conv1.weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
        f.conv1.bias[0] = -0.3
        f.conv2.weight[0, 0, 1, 1] = 1.0
        f.conv3.weight[0, 0, 1, 1] = 1.0
        net.classifier.weight[1, 0] = 1.0
        net.classifier.bias[1] = -1e-6
    return net


def test_planted_red_filter_is_tied_to_colour_red_and_the_positive_class():
    d = shapes.generate(300, 9)
    net = red_net()
    x = torch.from_numpy(d["x"])
    with torch.no_grad():
        y = net(x).argmax(1)                               # the network's own labels: accuracy 1
    split = PreparedSplit(x=x, y=y, masks=d["masks"], meta={"mask_names": list(shapes.MASK_NAMES),
                                                           "class_names": list(shapes.CLASS_NAMES)})
    ctx = ExplainContext(model=net, dataset="shapes", model_id="planted", info=DATASETS["shapes"], train=split,
                         test=split, seed=1)
    record = FilterCAR(**{**PARAMS, "n_heldout": 300}).label_units(net, ctx)
    assert len(record.meta["indices"]) == 150                 # at most half the test split
    red = shapes.MASK_NAMES.index("colour=red")
    held = np.asarray(record.meta["indices"])
    shows_red, labels = d["masks"][held, red].any((1, 2)), y.numpy()[held]
    assert (labels[shows_red] == 1).mean() > 0.9 and (labels[~shows_red] == 0).all()
    for layer in ("conv1", "conv2", "conv3"):
        unit = _unit(record, layer, 0)
        assert unit["class"] == 1 and unit["class_name"] == "positive"
        assert unit["concept"] == "colour=red"
        # every positive image is red: pruning costs the red images all their positives, the others nothing
        assert unit["concept_reduction"] == pytest.approx((labels[shows_red] == 1).mean(), abs=1e-12)
        assert unit["concept_reductions"]["colour=green"] == 0.0 == unit["concept_reductions"]["colour=blue"]
        for dead in (1, 2):
            assert _unit(record, layer, dead)["car"] == 0.0 and "concept" not in _unit(record, layer, dead)
    assert "background" not in record.concepts and "evidence" not in record.concepts


def test_train_mode_model_is_restored_and_errors_are_clear():
    net = decisive_net().train()
    ctx = _toy_ctx(net.eval())
    net.train()
    FilterCAR(**PARAMS).label_units(net, ctx)
    assert all(m.training for m in net.modules())
    assert FilterCAR.check_run({**PARAMS, "n_heldout": 5000}, DATASETS["shapes"], 1000) is None
    assert "halved" in FilterCAR.check_run(PARAMS, DATASETS["shapes"], 1)
