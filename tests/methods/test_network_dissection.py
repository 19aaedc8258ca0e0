"""Network Dissection [21]: planted concept detectors, chance-level noise units, the paper's threshold and
IoU against a slow re-implementation written straight from the paper."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnxai.data import DATASETS, PreparedSplit, shapes
from nnxai.explanations import UnitConcepts
from nnxai.methods.base import ExplainContext
from nnxai.methods.hidden_semantics.network_dissection import NetworkDissection
from nnxai.models.networks import ConvNet
from nnxai.params import ParamError

N = 240
CIRCLE, STRIPES = shapes.MASK_NAMES.index("shape=circle"), shapes.MASK_NAMES.index("texture=stripes")
CONCEPTS = [n for n in shapes.MASK_NAMES if n != "evidence"]


@pytest.fixture(scope="module")
def data():
    return shapes.generate(N, 11)


def _split(x, d):
    return PreparedSplit(x=torch.as_tensor(x), y=torch.from_numpy(d["y"]), concepts=d["concepts"],
                         masks=d["masks"], meta={"mask_names": list(shapes.MASK_NAMES)})


def _ctx(model, x, d, seed=0):
    split = _split(x, d)
    return ExplainContext(model=model, dataset="shapes", model_id="toy", info=DATASETS["shapes"],
                          train=split, test=split, seed=seed)


class PlantedNet(nn.Module):
    """Input channels: RGB, the circle mask, the stripes mask, uniform noise.

    Layer ``full`` (32x32): unit 0 = circle mask, unit 1 = stripes mask (both scaled by 1 + 0.1 noise so
    that the values inside a mask differ), unit 2 = the noise.  Layer ``half`` = 2x2 average pool of it.
    """

    architecture = "cnn"

    def __init__(self):
        super().__init__()
        self.act_full, self.act_half = nn.Identity(), nn.Identity()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        noise = x[:, 5]
        units = torch.stack([x[:, 3] * (1 + 0.1 * noise), x[:, 4] * (1 + 0.1 * noise), noise], dim=1)
        half = self.act_half(self.pool(self.act_full(units)))
        return half.mean((2, 3))[:, :2]

    def unit_layers(self):
        return {"full": self.act_full, "half": self.act_half}


@pytest.fixture(scope="module")
def planted(data):
    noise = np.random.default_rng(0).random((N, 1, 32, 32), dtype=np.float32)
    masks = data["masks"][:, [CIRCLE, STRIPES]].astype(np.float32)
    return np.concatenate([data["x"], masks, noise], axis=1)


def _label(model, ctx, **over):
    params = {"n_images": N, "quantile": 0.995, "iou_threshold": 0.04, "batch_size": 64, **over}
    return NetworkDissection(**params).label_units(model, ctx)


def _unit(record, layer, k):
    return next(u for u in record.units if u["layer"] == layer and u["unit"] == k)


def test_planted_circle_unit_gets_iou_one_and_its_label(data, planted):
    # Choose the quantile so that exactly as many pixels pass the threshold as the circle mask holds:
    # a unit that copies the mask then segments it exactly (IoU = 1).
    n_pix, n_circle = N * 32 * 32, int(data["masks"][:, CIRCLE].sum())
    q = (n_pix - n_circle - 0.5) / (n_pix - 1)
    record = _label(PlantedNet(), _ctx(PlantedNet(), planted, data), quantile=q)
    circle = _unit(record, "full", 0)
    assert circle["concept"] == "shape=circle" and circle["detector"]
    assert circle["iou"] == pytest.approx(1.0, abs=1e-12)
    # at half resolution the bilinear upsampling blurs the edges, but the label survives
    half = _unit(record, "half", 0)
    assert half["concept"] == "shape=circle" and half["iou"] > 0.8
    # the stripes unit passes a random n_circle-pixel subset of the stripes mask
    stripes = _unit(record, "full", 1)
    assert stripes["concept"] == "texture=stripes"
    n_stripes = int(data["masks"][:, STRIPES].sum())
    assert stripes["iou"] == pytest.approx(n_circle / n_stripes, abs=1e-12)


def test_noise_unit_scores_chance_iou_and_is_no_detector(data, planted):
    record = _label(PlantedNet(), _ctx(PlantedNet(), planted, data))
    noise = _unit(record, "full", 2)
    assert not noise["detector"] and noise["iou"] < 0.02
    # M_k is a random 0.5 % of pixels independent of L_c: E IoU ~ q p / (p + q - q p), p = mask coverage
    q = 0.005
    for c in CONCEPTS:
        p = data["masks"][:, shapes.MASK_NAMES.index(c)].mean()
        chance = q * p / (p + q - q * p)
        assert noise["ious"][c] == pytest.approx(chance, rel=0.35, abs=4e-4), c


def test_threshold_is_the_empirical_quantile(data, planted):
    record = _label(PlantedNet(), _ctx(PlantedNet(), planted, data), quantile=0.98, batch_size=50)
    x = torch.from_numpy(planted)
    noise = x[:, 5]
    full = torch.stack([x[:, 3] * (1 + 0.1 * noise), x[:, 4] * (1 + 0.1 * noise), noise], 1)
    half = F.avg_pool2d(full, 2)
    for layer, act in (("full", full), ("half", half)):
        for k in range(3):
            expected = np.quantile(act[:, k].numpy().astype(np.float64).ravel(), 0.98)
            assert _unit(record, layer, k)["threshold"] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def _reference_dissection(model, x, masks, q):
    """Slow reference from the paper: all activations kept, numpy quantile, per-image IoU sums."""
    acts = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, name=name: acts.__setitem__(name, o.detach()))
             for name, m in model.unit_layers().items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    out = {}
    for name, a in acts.items():
        thr = np.array([np.quantile(a[:, k].numpy().astype(np.float64), q) for k in range(a.shape[1])])
        up = F.interpolate(a, size=masks.shape[-2:], mode="bilinear", align_corners=False).numpy()
        seg = up.astype(np.float64) > thr[None, :, None, None]
        inter = np.zeros((a.shape[1], masks.shape[1]))
        union = np.zeros_like(inter)
        for k in range(a.shape[1]):
            for c in range(masks.shape[1]):
                inter[k, c] = np.logical_and(seg[:, k], masks[:, c]).sum()
                union[k, c] = np.logical_or(seg[:, k], masks[:, c]).sum()
        out[name] = (thr, np.where(union > 0, inter / np.maximum(union, 1), 0.0))
    return out


def test_matches_slow_reference_on_a_random_convnet(data):
    torch.manual_seed(3)
    model = ConvNet(3, 2, widths=(6, 5, 4)).eval()
    n = 48
    record = _label(model, _ctx(model, data["x"][:n], {k: v[:n] for k, v in data.items()}),
                    n_images=n, quantile=0.99, batch_size=20)
    keep = [shapes.MASK_NAMES.index(c) for c in CONCEPTS]
    ref = _reference_dissection(model, torch.from_numpy(data["x"][:n]), data["masks"][:n][:, keep], 0.99)
    for layer, (thr, iou) in ref.items():
        units = [u for u in record.units if u["layer"] == layer]
        assert len(units) == len(thr)
        np.testing.assert_allclose([u["threshold"] for u in units], thr, rtol=1e-12, atol=1e-15)
        got = np.array([[u["ious"][c] for c in CONCEPTS] for u in units])
        np.testing.assert_allclose(got, iou, rtol=0, atol=1e-12)
        assert [u["concept"] for u in units] == [CONCEPTS[i] for i in iou.argmax(1)]
        assert [u["detector"] for u in units] == list(iou.max(1) > 0.04)


def test_explain_record_on_convnet(data, tmp_path):
    torch.manual_seed(0)
    model = ConvNet(3, 2, widths=(4, 4, 4)).eval()
    method = NetworkDissection(n_images=100, quantile=0.995, iou_threshold=0.04, batch_size=40)
    record = method.explain(_ctx(model, data["x"], data))
    assert record.concepts == CONCEPTS and "background" in record.concepts and "evidence" not in record.concepts
    assert [(u["layer"], u["unit"]) for u in record.units] == [(l, k) for l in ("conv1", "conv2", "conv3")
                                                                for k in range(4)]
    assert record.meta["n_images"] == 100 and record.meta["method"] == "network_dissection"
    assert isinstance(record, UnitConcepts)
    loaded = UnitConcepts.load(record.save(tmp_path / "network_dissection.json"))   # JSON round trip
    assert loaded.units == record.units and loaded.concepts == record.concepts
    again = method.explain(_ctx(model, data["x"], data))
    assert again.units == record.units


@pytest.mark.parametrize("bad, expected", [({"quantile": 1.0}, "> 0 and < 1"), ({"quantile": 0}, "> 0 and < 1"),
                                           ({"quantile": 1.5}, "> 0 and < 1"), ({"n_images": 0}, ">= 1"),
                                           ({"batch_size": -2}, ">= 1"), ({"iou_threshold": -0.1}, ">= 0 and < 1"),
                                           ({"iou_threshold": 1.0}, ">= 0 and < 1")])
def test_bad_params_are_named(bad, expected):
    params = {"n_images": 10, "quantile": 0.995, "iou_threshold": 0.04, "batch_size": 5, **bad}
    (name, value), = bad.items()
    message = rf"'network_dissection'\.{name}: {value} is out of range, expected {expected}"
    with pytest.raises(ParamError, match=message):
        NetworkDissection(**params)


def test_needs_masks(data):
    model = ConvNet(3, 2, widths=(4, 4, 4)).eval()
    ctx = _ctx(model, data["x"], data)
    ctx.test = PreparedSplit(x=ctx.test.x, y=ctx.test.y)
    with pytest.raises(ValueError, match="masks"):
        _label(model, ctx, n_images=10)
    assert NetworkDissection.why_not(DATASETS["digits"], {"architecture": "cnn", "activation": "relu"})
    assert NetworkDissection.why_not(DATASETS["iris"], {"architecture": "mlp", "activation": "relu"})
