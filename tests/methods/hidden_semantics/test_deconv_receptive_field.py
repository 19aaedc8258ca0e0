"""Deconvnet projections of the top-9 activations (Zeiler & Fergus, 2nd survey [14]): the receptive field in
closed form, the projection against a slow deconvnet written straight from the paper (unpool with switches,
rectify, transposed filters), and a planted red-detector filter whose top images, projections and concept are
known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnxai.data import DATASETS, PreparedSplit, shapes
from nnxai.explanations import UnitImages, load_explanation
from nnxai.methods.base import ExplainContext, model_traits
from nnxai.methods.hidden_semantics._conv_units import receptive_box, receptive_size, trace_steps
from nnxai.methods.hidden_semantics.deconv_receptive_field import DeconvReceptiveField, deconv_projection
from nnxai.models.networks import build_network

N = 200
PARAMS = {"n_images": N, "n_filters": 4, "n_top": 9, "batch_size": 64}


@pytest.fixture(scope="module")
def data():
    return shapes.generate(N, 5)


def _ctx(model, d, seed=0):
    split = PreparedSplit(x=torch.from_numpy(d["x"]), y=torch.from_numpy(d["y"]), concepts=d["concepts"],
                          masks=d["masks"], meta={"mask_names": list(shapes.MASK_NAMES)})
    return ExplainContext(model=model, dataset="shapes", model_id="toy", info=DATASETS["shapes"], train=split,
                          test=split, seed=seed)


def _random_net(seed=0, in_channels=3):
    torch.manual_seed(seed)
    return build_network("cnn", in_channels=in_channels, n_classes=2, widths=[4, 6, 8], activation="relu").eval()


def _red_net():
    """conv1 filter 0 = relu(R - G - B) read at the centre tap; every other weight and bias 0 (dead filters)."""
    net = build_network("cnn", in_channels=3, n_classes=2, widths=[4, 4, 4], activation="relu").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.features.conv1.weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
    return net


def test_receptive_fields_in_closed_form():
    # conv(3, pad 1) - pool 2 - conv(3, pad 1) - pool 2 - conv(3, pad 1): 3, 3+1, 4+2*2 = 8, 8+2, 10+2*4 = 18
    net = _random_net()
    x = torch.zeros(1, 3, 32, 32)
    layers = net.unit_layers()
    sizes = {name: receptive_size(trace_steps(net, x, m)) for name, m in layers.items()}
    assert sizes == {"conv1": (3, 3), "conv2": (8, 8), "conv3": (18, 18)}
    # conv3 position r reads pixels 4r - 7 .. 4r + 10; conv2 position r: 2r - 3 .. 2r + 4
    assert receptive_box(trace_steps(net, x, layers["conv3"]), 0, 5) == [-7, 13, 11, 31]
    assert receptive_box(trace_steps(net, x, layers["conv2"]), 3, 0) == [3, -3, 11, 5]
    assert receptive_box(trace_steps(net, x, layers["conv1"]), 7, 9) == [6, 8, 9, 11]


def _slow_deconvnet(net, x, layer, unit, row, col):
    """Zeiler & Fergus Sec. 2.1 for the ConvNet, layer by layer: the feature maps with one activation kept,
    then rectify, filter with the transposed filters and unpool with the recorded switches, down to pixels."""
    f = net.features
    convs = [f.conv1, f.conv2, f.conv3]
    a, switches = x, []
    maps = []
    for i, conv in enumerate(convs):
        a = F.relu(conv(a))
        maps.append(a)
        if i < 2:
            pooled, idx = F.max_pool2d(a, 2, return_indices=True)
            switches.append((idx, a.shape[-2:]))
            a = pooled
    depth = int(layer[-1])
    s = torch.zeros_like(maps[depth - 1])
    s[0, unit, row, col] = maps[depth - 1][0, unit, row, col]
    for i in reversed(range(depth)):
        s = F.relu(s)                                                       # rectification
        s = F.conv_transpose2d(s, convs[i].weight, padding=1)               # transposed filters, no bias
        if i > 0:
            idx, size = switches[i - 1]
            s = F.max_unpool2d(s, idx, 2, output_size=size)                 # unpooling with the switches
    return s[0]


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3"])
def test_projection_equals_the_papers_deconvnet(data, layer):
    net = _random_net(1)
    x = torch.from_numpy(data["x"][:6])
    with torch.no_grad():
        acts = {}
        hook = net.unit_layers()[layer].register_forward_hook(lambda _m, _i, o: acts.__setitem__("a", o))
        net(x)
        hook.remove()
    a = acts["a"]
    units = torch.arange(6) % a.shape[1]
    flat = a[torch.arange(6), units].flatten(1).argmax(1)                 # each image's strongest position
    rows, cols = flat // a.shape[-1], flat % a.shape[-1]
    got = deconv_projection(net, net.unit_layers()[layer], x, units, rows, cols)
    assert got.abs().sum() > 0
    for b in range(6):
        want = _slow_deconvnet(net, x[b:b + 1], layer, int(units[b]), int(rows[b]), int(cols[b]))
        torch.testing.assert_close(got[b], want, rtol=1e-5, atol=1e-6)
        # nothing outside the receptive field
        top, left, bottom, right = receptive_box(trace_steps(net, x, net.unit_layers()[layer]), int(rows[b]),
                                                 int(cols[b]))
        outside = torch.ones(32, 32, dtype=torch.bool)
        outside[max(top, 0):bottom, max(left, 0):right] = False
        assert float(got[b][:, outside].abs().max()) == 0.0


@pytest.fixture(scope="module")
def red_record(data):
    net = _red_net()
    return DeconvReceptiveField(**PARAMS).label_units(net, _ctx(net, data)), net


def test_planted_red_filter_top9_projection_and_concept(data, red_record):
    record, _ = red_record
    unit = next(u for u in record.units if u["layer"] == "conv1" and u["unit"] == 0)
    x = data["x"].astype(np.float64)
    response = np.maximum(x[:, 0] - x[:, 1] - x[:, 2], 0).reshape(N, -1)
    peak = response.max(1)
    # the 9 largest peaks (pixels are multiples of 1/255: ties may be ordered otherwise in float32)
    np.testing.assert_allclose(unit["activations"], np.sort(peak)[::-1][:9], rtol=1e-6)
    order = np.array(unit["test_indices"])
    assert len(set(order.tolist())) == 9
    np.testing.assert_allclose(peak[order], unit["activations"], rtol=1e-6)
    for (r, c), i in zip(unit["positions"], order):
        assert response[i].reshape(32, 32)[r, c] == pytest.approx(peak[i], rel=1e-6)
    # receptive field 3x3 around the peak; the projection is W^T at its centre: (a, -a, -a), zero elsewhere
    i_unit = record.units.index(unit)
    inputs, projections = record.images[i_unit][:, :, :, :3, :3]
    for j, (a, (r, c)) in enumerate(zip(unit["activations"], unit["positions"])):
        assert unit["boxes"][j] == [r - 1, c - 1, r + 2, c + 2]
        want = np.zeros((3, 3, 3), dtype=np.float32)
        want[:, 1, 1] = [a, -a, -a]
        np.testing.assert_allclose(projections[j], want, rtol=1e-6, atol=1e-7)
        padded = np.pad(data["x"][order[j]], ((0, 0), (1, 1), (1, 1)))
        np.testing.assert_array_equal(inputs[j], padded[:, r:r + 3, c:c + 3])
    # the projected pixel lies on a red object in each of the 9 images: colour=red holds all the energy
    assert unit["concept"] == "colour=red" and unit["shares"]["colour=red"] == 1.0
    assert record.concepts == [n for n in shapes.MASK_NAMES if n != "evidence"]


def test_dead_filters_project_nothing_and_get_no_concept(red_record):
    record, _ = red_record
    assert len(record.units) == 12 and record.images.shape == (12, 2, 9, 3, 18, 18)
    for unit, images in zip(record.units, record.images):
        if (unit["layer"], unit["unit"]) == ("conv1", 0):
            continue
        assert "concept" not in unit and max(unit["activations"]) == 0.0
        assert not images[1].any()


def test_random_filter_subset_is_seeded(data):
    net = _random_net(2)
    params = {**PARAMS, "n_images": 40, "n_filters": 3}
    a = DeconvReceptiveField(**params).label_units(net, _ctx(net, data, seed=4))
    b = DeconvReceptiveField(**params).label_units(net, _ctx(net, data, seed=4))
    chosen = [(u["layer"], u["unit"]) for u in a.units]
    assert chosen == [(u["layer"], u["unit"]) for u in b.units]
    assert np.array_equal(a.images, b.images)
    for layer in ("conv1", "conv2", "conv3"):                # 3 of 4, 6 and 8 filters, ascending, distinct
        ks = [k for name, k in chosen if name == layer]
        assert len(ks) == 3 and ks == sorted(set(ks))
    # only searched images appear, and each filter's activations are sorted
    for u in a.units:
        assert u["activations"] == sorted(u["activations"], reverse=True)


def test_record_round_trip_and_one_channel_images(tmp_path):
    d = {"x": np.random.default_rng(0).random((30, 1, 28, 28), dtype=np.float32), "y": np.zeros(30, dtype=np.int64)}
    net = _random_net(3, in_channels=1)
    split = PreparedSplit(x=torch.from_numpy(d["x"]), y=torch.from_numpy(d["y"]))
    ctx = ExplainContext(model=net, dataset="digits", model_id="toy", info=DATASETS["digits"], train=split,
                         test=split, seed=0)
    record = DeconvReceptiveField(**{**PARAMS, "n_images": 30}).label_units(net, ctx)
    assert record.images.shape[1:] == (2, 9, 1, 18, 18) and record.concepts == []
    assert all("concept" not in u for u in record.units)
    path = record.save(tmp_path / "deconv_receptive_field.npz")
    again = load_explanation(path)
    assert isinstance(again, UnitImages) and np.array_equal(again.images, record.images)
    assert again.units == record.units


def test_applicability_and_clear_errors(data):
    sigmoid = build_network("cnn", in_channels=3, n_classes=2, widths=[4, 4, 4], activation="sigmoid")
    reason = DeconvReceptiveField.why_not(DATASETS["shapes"], model_traits(sigmoid))
    assert reason and "relu" in reason
    assert DeconvReceptiveField.check_run({**PARAMS, "n_images": 2000}, DATASETS["shapes"], 1000) is None
    assert "n_top" in DeconvReceptiveField.check_run({**PARAMS, "n_images": 5}, DATASETS["shapes"], 1000)
    assert "n_top" in DeconvReceptiveField.check_run(PARAMS, DATASETS["shapes"], 8)
    net = _red_net()
    with pytest.raises(ValueError, match="n_top=9"):
        DeconvReceptiveField(**{**PARAMS, "n_images": 5}).label_units(net, _ctx(net, data))
