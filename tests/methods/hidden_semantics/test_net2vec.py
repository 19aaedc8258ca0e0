"""Net2Vec [99]: the paper's α-balanced loss on known values, a planted concept that two filters encode and no
single filter does, and the record against a slow recomputation from its stored embeddings and from the
Network Dissection baseline written straight from the paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import nn

from nnxai.data import DATASETS, PreparedSplit, shapes
from nnxai.explanations import UnitConcepts
from nnxai.methods.base import ExplainContext
from nnxai.methods.hidden_semantics.net2vec import (Net2Vec, _BalancedBCE, average_precision, balance_alpha,
                                                    presence_loss, segmentation_loss)
from nnxai.models.networks import ConvNet
from nnxai.params import ParamError

CONCEPTS = [n for n in shapes.MASK_NAMES if n != "evidence"]
IDX = {n: shapes.MASK_NAMES.index(n) for n in shapes.MASK_NAMES}
PARAMS = {"n_train": 120, "n_images": 60, "quantile": 0.995, "max_iter": 30, "batch_size": 60}


def _split(x, d):
    return PreparedSplit(x=torch.as_tensor(x), y=torch.from_numpy(d["y"]), concepts=d["concepts"],
                         masks=d["masks"], meta={"mask_names": list(shapes.MASK_NAMES)})


def _ctx(model, train, test, seed=0):
    return ExplainContext(model=model, dataset="shapes", model_id="toy", info=DATASETS["shapes"],
                          train=train, test=test, seed=seed)


@pytest.fixture(scope="module")
def data():
    return shapes.generate(120, 21), shapes.generate(60, 22)


# -- the loss and the scores on known values --------------------------------------------------------------------

def test_segmentation_loss_on_known_values():
    # one image, one concept, two pixels: σ(0) = 1/2 on a foreground pixel, σ(ln 3) = 3/4 on a background one
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]], dtype=torch.float64)
    masks = torch.tensor([[[[True, False]]]])
    loss = segmentation_loss(logits, masks, torch.tensor([0.75]))
    # -(0.75 log 1/2 + 0.25 log 1/4) / 2 = (0.75 + 0.5) ln 2 / 2
    assert loss.shape == (1,) and loss.item() == pytest.approx(0.625 * math.log(2.0), rel=1e-12)
    # α = 1 - foreground share: 1 of 2 pixels here, 1 of 4 in the second concept
    two = torch.tensor([[[[1, 0]], [[0, 0]]], [[[0, 0]], [[1, 0]]]], dtype=torch.bool)
    assert balance_alpha(two).tolist() == [0.75, 0.75]
    masks3 = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    masks3[0, 0, 0, 0] = True
    assert balance_alpha(masks3).tolist() == [0.75]
    # per concept, each averaged over its own images and pixels
    logits2 = torch.zeros(2, 2, 1, 2, dtype=torch.float64)
    out = segmentation_loss(logits2, two, torch.tensor([0.5, 0.25]))
    # every σ = 1/2: concept 0 has 1 fg + 3 bg pixels: (0.5 + 3 * 0.5) ln 2 / 4; concept 1: (0.25 + 3 * 0.75) ln 2 / 4
    assert out.tolist() == pytest.approx([0.5 * math.log(2.0), 0.625 * math.log(2.0)], rel=1e-12)


def test_the_fitted_loss_and_its_gradient_are_the_papers():
    # the fit sums L_1 over the concepts with a hand-written gradient: both against autograd of Eq. 2
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    masks = torch.rand(3, 2, 4, 5, generator=gen) < 0.3
    alpha = balance_alpha(masks).double()
    reference = segmentation_loss(logits, masks, alpha).sum()
    g_ref, = torch.autograd.grad(reference, logits)
    omega = torch.where(masks, alpha[None, :, None, None], 1 - alpha[None, :, None, None]) / 20 / 3
    fused = _BalancedBCE.apply(logits, omega, masks.double())
    g_fused, = torch.autograd.grad(fused, logits)
    assert fused.item() == pytest.approx(reference.item(), rel=1e-12)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-12, atol=1e-15)


def test_presence_loss_on_known_values():
    logits = torch.tensor([[math.log(3.0)], [0.0]], dtype=torch.float64)     # σ = 3/4 (present), 1/2 (absent)
    present = torch.tensor([[True], [False]])
    loss = presence_loss(logits, present, torch.tensor([0.5]))
    assert loss.item() == pytest.approx(-(0.5 * math.log(0.75) + 0.5 * math.log(0.5)) / 2, rel=1e-12)


def test_average_precision_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(200), 1)                  # ten distinct values: many ties
    labels = rng.random((200, 3)) < [0.1, 0.5, 0.9]
    ours = average_precision(scores, labels)
    for c in range(3):
        assert ours[c] == pytest.approx(average_precision_score(labels[:, c], scores), abs=1e-12)
    assert np.isnan(average_precision(scores, np.zeros((200, 1), bool))[0])


# -- a planted concept: two filters encode it, no single one does ------------------------------------------------

class TwoFilterNet(nn.Module):
    """Input channels: RGB, the circle-or-square mask, the square mask, uniform noise.

    Layer ``full`` (32x32): unit 0 = circle ∪ square, unit 1 = square (both scaled by 1 + 0.1 noise so that the
    values inside a mask differ), unit 2 = the noise.  ``shape=circle`` is unit 0 without unit 1: a known
    combination of two filters, ``w_0 > 0 > w_1``; unit 0 alone also segments the squares.
    """

    architecture = "cnn"

    def __init__(self):
        super().__init__()
        self.act = nn.Identity()

    def forward(self, x):
        noise = x[:, 5]
        units = self.act(torch.stack([x[:, 3] * (1 + 0.1 * noise), x[:, 4] * (1 + 0.1 * noise), noise], dim=1))
        return units.mean((2, 3))[:, :2]

    def unit_layers(self):
        return {"full": self.act}


def _planted_inputs(d, seed):
    masks = d["masks"]
    either = (masks[:, IDX["shape=circle"]] | masks[:, IDX["shape=square"]])[:, None].astype(np.float32)
    square = masks[:, IDX["shape=square"]][:, None].astype(np.float32)
    noise = np.random.default_rng(seed).random((len(masks), 1, 32, 32), dtype=np.float32)
    return np.concatenate([d["x"], either, square, noise], axis=1)


def test_two_filter_concept_is_recovered_and_beats_the_best_single_filter(data):
    train_d, test_d = data
    circle, square = IDX["shape=circle"], IDX["shape=square"]
    # the single-filter threshold passes as many training pixels as circle ∪ square holds: unit 0 then
    # segments exactly circle ∪ square (Network Dissection at its best for this unit)
    n_pix = train_d["masks"][:, 0].size
    n_either = int((train_d["masks"][:, circle] | train_d["masks"][:, square]).sum())
    q = (n_pix - n_either - 0.5) / (n_pix - 1)
    model = TwoFilterNet()
    ctx = _ctx(model, _split(_planted_inputs(train_d, 1), train_d), _split(_planted_inputs(test_d, 2), test_d))
    record = Net2Vec(**{**PARAMS, "quantile": q}).explain(ctx)
    s = record.meta["scores"]["full"]["shape=circle"]
    # the multi-filter probe recovers the circle exactly on held-out images
    assert s["seg_iou"] > 0.99
    # the best single filter is unit 0, and its held-out IoU is |circle| / |circle ∪ square|
    test_masks = test_d["masks"]
    expected = test_masks[:, circle].sum() / (test_masks[:, circle] | test_masks[:, square]).sum()
    assert s["single_filter"] == 0 and s["single_iou"] == pytest.approx(expected, abs=1e-12)
    assert s["single_iou"] < 0.6 and s["gain"] == pytest.approx(s["seg_iou"] - s["single_iou"]) and s["gain"] > 0.35
    # the embedding is the planted combination: unit 0 for, unit 1 against, the noise unit hardly used
    w = np.asarray(record.meta["embeddings"]["full"]["shape=circle"]["segmentation_standardised"])
    assert w[0] > 0 > w[1] and abs(w[2]) < 0.1 * min(w[0], -w[1])
    # the square is one filter's job: unit 1 segments it alone, so the single filter does as well
    sq = record.meta["scores"]["full"]["shape=square"]
    assert sq["single_filter"] == 1 and sq["single_iou"] == pytest.approx(1.0) and sq["seg_iou"] > 0.99
    # classification: presence of a circle is unit 0's mean minus unit 1's: separable, AP 1
    assert s["cls_ap"] == pytest.approx(1.0) and s["cls_accuracy"] == pytest.approx(1.0)


# -- the record against slow recomputations ------------------------------------------------------------------------

def _maps(model, x):
    acts = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, name=name: acts.__setitem__(name, o.detach()))
             for name, m in model.unit_layers().items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return acts


def test_record_matches_a_recomputation_from_its_embeddings(data):
    train_d, test_d = data
    torch.manual_seed(4)
    model = ConvNet(3, 2, widths=(4, 5, 6)).eval()
    params = {**PARAMS, "n_train": 40, "n_images": 30, "quantile": 0.99, "max_iter": 10}
    ctx = _ctx(model, _split(train_d["x"], train_d), _split(test_d["x"], test_d))
    record = Net2Vec(**params).explain(ctx)
    train_idx, test_idx = record.meta["train_indices"], record.meta["test_indices"]
    assert len(train_idx) == 40 and len(test_idx) == 30 and record.meta["headline_layer"] == "conv3"
    keep = [IDX[c] for c in CONCEPTS]
    test_masks = test_d["masks"][test_idx][:, keep]
    train_masks = train_d["masks"][train_idx][:, keep]
    test_acts = _maps(model, torch.from_numpy(test_d["x"][test_idx]))
    train_acts = _maps(model, torch.from_numpy(train_d["x"][train_idx]))
    for layer in ("conv1", "conv3"):
        a = test_acts[layer].double()
        up = F.interpolate(a, size=(32, 32), mode="bilinear", align_corners=False).numpy()
        # the single-filter baseline from the paper: numpy quantile over all training positions, best filter
        # by training set IoU, scored on the test images
        # (float32 upsampling compared in float64, as Network Dissection's own reference test does)
        tr = train_acts[layer]
        thr = np.array([np.quantile(tr[:, k].numpy().astype(np.float64), 0.99) for k in range(tr.shape[1])])
        tr_up = F.interpolate(tr, size=(32, 32), mode="bilinear", align_corners=False).numpy().astype(np.float64)
        tr_up = tr_up > thr[None, :, None, None]
        te_up = F.interpolate(test_acts[layer], size=(32, 32), mode="bilinear", align_corners=False).numpy()
        te_up = te_up.astype(np.float64) > thr[None, :, None, None]
        for c, concept in enumerate(CONCEPTS):
            emb = record.meta["embeddings"][layer][concept]
            s = record.meta["scores"][layer][concept]
            # multi-filter: σ(Σ_k w_k up(A_k) + b) > 0.5 with the raw weights, per-image sums of the set IoU
            m = np.tensordot(np.asarray(emb["segmentation"]), up, axes=([0], [1])) + emb["segmentation_bias"] > 0
            inter = sum(np.logical_and(m[i], test_masks[i, c]).sum() for i in range(len(m)))
            union = sum(np.logical_or(m[i], test_masks[i, c]).sum() for i in range(len(m)))
            assert s["seg_iou"] == pytest.approx(inter / union, abs=2.0 / union), (layer, concept)
            train_iou = [np.logical_and(tr_up[:, k], train_masks[:, c]).sum()
                         / max(np.logical_or(tr_up[:, k], train_masks[:, c]).sum(), 1) for k in range(len(thr))]
            k = int(np.argmax(train_iou))
            assert s["single_filter"] == k, (layer, concept)
            te_inter = np.logical_and(te_up[:, k], test_masks[:, c]).sum()
            te = te_inter / np.logical_or(te_up[:, k], test_masks[:, c]).sum()
            assert s["single_iou"] == pytest.approx(te, abs=1e-9), (layer, concept)
            # classification: the raw embedding on the spatial means, AP as scikit-learn computes it
            present = test_masks[:, c].any((1, 2))
            if concept == "background":         # in every image: nothing to classify
                assert s["cls_ap"] is None and s["cls_accuracy"] is None
                continue
            logit = a.mean((2, 3)).numpy() @ np.asarray(emb["classification"]) + emb["classification_bias"]
            p = 1 / (1 + np.exp(-logit))
            assert s["cls_ap"] == pytest.approx(average_precision_score(present, p), abs=1e-6), (layer, concept)
            assert s["cls_accuracy"] == pytest.approx(((p > 0.5) == present).mean(), abs=1.5 / len(p))


def test_explain_record_on_convnet(data, tmp_path):
    train_d, test_d = data
    torch.manual_seed(0)
    model = ConvNet(3, 2, widths=(4, 4, 4)).eval()
    method = Net2Vec(**{**PARAMS, "n_train": 30, "n_images": 20, "max_iter": 5})
    record = method.explain(_ctx(model, _split(train_d["x"], train_d), _split(test_d["x"], test_d)))
    assert isinstance(record, UnitConcepts) and record.concepts == CONCEPTS
    assert [(u["layer"], u["unit"]) for u in record.units] == [(l, k) for l in ("conv1", "conv2", "conv3")
                                                                for k in range(4)]
    assert all(u["concept"] in CONCEPTS and -1.0 <= u["score"] <= 1.0 for u in record.units)
    for u in record.units:          # the label is the largest normalised weight
        assert u["score"] == pytest.approx(max(u["weights"].values())) and u["weights"][u["concept"]] == u["score"]
    assert record.meta["method"] == "net2vec" and record.meta["n_images"] == 20
    loaded = UnitConcepts.load(record.save(tmp_path / "net2vec.json"))
    assert loaded.units == record.units and loaded.meta["scores"] == record.meta["scores"]
    again = Net2Vec(**method.params).explain(_ctx(model, _split(train_d["x"], train_d), _split(test_d["x"], test_d)))
    assert again.units == record.units and again.meta["embeddings"] == record.meta["embeddings"]


def test_needs_masks_and_a_fit(data):
    train_d, test_d = data
    model = ConvNet(3, 2, widths=(4, 4, 4)).eval()
    ctx = _ctx(model, _split(train_d["x"], train_d), _split(test_d["x"], test_d))
    with pytest.raises(RuntimeError, match="fit"):
        Net2Vec(**PARAMS).label_units(model, ctx)
    no_masks = PreparedSplit(x=ctx.train.x, y=ctx.train.y)
    with pytest.raises(ValueError, match="masks"):
        Net2Vec(**PARAMS).fit(model, no_masks, info=DATASETS["shapes"])
    assert Net2Vec.why_not(DATASETS["digits"], {"architecture": "cnn", "activation": "relu"})
    assert Net2Vec.why_not(DATASETS["iris"], {"architecture": "mlp", "activation": "relu"})


@pytest.mark.parametrize("bad, expected", [({"quantile": 1.0}, "> 0 and < 1"), ({"n_train": 0}, ">= 1"),
                                           ({"max_iter": 0}, ">= 1"), ({"n_images": -1}, ">= 1")])
def test_bad_params_are_named(bad, expected):
    (name, value), = bad.items()
    with pytest.raises(ParamError, match=rf"'net2vec'\.{name}: {value} is out of range, expected {expected}"):
        Net2Vec(**{**PARAMS, **bad})
