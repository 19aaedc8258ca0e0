"""CDRP [77]: all-one gates are the identity; on a CNN whose class evidence is planted in one channel per layer,
the critical routing path is exactly that chain; the metrics read the gates and the model.

Parameters are the paper's (30 SGD iterations, learning rate 0.1, momentum 0.9, γ = 0.05), as in the config.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.data import DatasetInfo, PreparedSplit
from nnxai.explanations import LocalRules
from nnxai.methods.base import ExplainContext
from nnxai.methods.rule.local.cdrp import CDRP, channel_counts, gated
from nnxai.metrics.routing_paths import GateSparsity, PathFidelity
from nnxai.models.networks import ConvNet

PARAMS = {"n_explain": 12, "batch_size": 5, "steps": 30, "lr": 0.1, "momentum": 0.9, "gamma": 0.05}
#: The channel of each layer that carries the class evidence.
PLANTED = {"conv1": 2, "conv2": 1, "conv3": 3}


def planted_cnn() -> ConvNet:
    """ConvNet (1 input channel, widths 4-4-4, 2 classes) in which only ``PLANTED`` channels reach the logits.

    The planted chain passes the image's brightness through (centre taps 1); class 1's logit is
    ``8 · GAP(conv3[PLANTED]) − 2``, class 0's is 0, so bright images are class 1.  Every other channel
    responds to the image (random taps, positive biases) but feeds only other off-path channels, and the
    classifier reads none of them: their gates have no distillation gradient."""
    torch.manual_seed(0)
    net = ConvNet(1, 2, widths=(4, 4, 4))
    source = {"conv1": 0, "conv2": PLANTED["conv1"], "conv3": PLANTED["conv2"]}   # the chain's input channel
    with torch.no_grad():
        for name, conv in (("conv1", net.features.conv1), ("conv2", net.features.conv2),
                           ("conv3", net.features.conv3)):
            c = PLANTED[name]
            w = torch.rand_like(conv.weight) * 0.3
            w[c] = 0.0
            w[c, source[name], 1, 1] = 1.0
            conv.weight.copy_(w)
            conv.bias.fill_(0.1)
            conv.bias[c] = 0.0
        net.classifier.weight.zero_()
        net.classifier.weight[1, PLANTED["conv3"]] = 8.0
        net.classifier.bias.copy_(torch.tensor([0.0, -2.0]))
    return net.eval()


def image_context(model, images):
    info = DatasetInfo("toy", "image", 2, tuple(images.shape[1:]), False, False, "test toy")
    split = PreparedSplit(x=images, y=torch.zeros(len(images), dtype=torch.long), meta={"class_names": ["dark", "bright"]})
    return ExplainContext(model=model, dataset="toy", model_id="baseline", info=info, train=split, test=split, seed=0)


def test_all_one_gates_are_the_identity():
    model = ConvNet(3, 4, widths=(5, 6, 7)).eval()
    x = torch.rand(6, 3, 16, 16)
    counts = channel_counts(model, x)
    assert counts == {"conv1": 5, "conv2": 6, "conv3": 7}
    with torch.no_grad():
        plain = model(x)
        with gated(model, {name: torch.ones(len(x), c) for name, c in counts.items()}):
            ones = model(x)
        with gated(model, {"conv2": torch.zeros(len(x), 6)}):
            closed = model(x)
    assert torch.equal(plain, ones)
    assert not any(m._forward_hooks for m in model.modules())
    expected = model.classifier(torch.zeros(len(x), 7) + torch.relu(model.features.conv3.bias))  # conv2 closed
    torch.testing.assert_close(closed, expected)


def test_critical_path_is_the_planted_chain():
    model = planted_cnn()
    images = torch.rand(12, 1, 8, 8) * 0.6 + 0.4                   # bright: class 1
    with torch.no_grad():
        assert (model(images).argmax(1) == 1).all()
    ctx = image_context(model, images)
    record = CDRP(**PARAMS).explain(ctx)
    for entry in record.explanations:
        assert entry["critical"] == {name: [c] for name, c in PLANTED.items()}, entry["text"]
        assert all(entry["gates"][name][c] > 0.1 for name, c in PLANTED.items())
        assert entry["prediction_gated"] == 1
    sparsity = GateSparsity()(record, ctx)
    assert sparsity["gate_sparsity"] == pytest.approx(9 / 12)
    fidelity = PathFidelity()(record, ctx)
    assert fidelity["path_fidelity"] == 1.0 and fidelity["path_fidelity.gated"] == 1.0
    assert record.feature_space == "channels" and len(record.feature_names) == 12
    assert record.targets == [1] * 12


def test_path_fidelity_reads_the_gates():
    """A path that closes the planted chain loses the class; one that keeps it keeps the class."""
    model = planted_cnn()
    images = torch.rand(2, 1, 8, 8) * 0.6 + 0.4
    ctx = image_context(model, images)

    def entry(chain_open):
        gates = {name: [0.0] * 4 for name in PLANTED}
        for name, c in PLANTED.items():
            gates[name][c] = 1.0 if chain_open else 0.0
        return {"text": "", "conditions": [], "gates": gates}

    record = LocalRules(indices=[0, 1], targets=[1, 1], explanations=[entry(True), entry(False)],
                        feature_names=[], class_names=["dark", "bright"], feature_space="channels")
    assert PathFidelity()(record, ctx)["path_fidelity"].values.tolist() == [1.0, 0.0]
    assert GateSparsity()(record, ctx)["gate_sparsity"].values.tolist() == [0.75, 1.0]


def test_batches_are_independent():
    model = planted_cnn()
    images = torch.rand(6, 1, 8, 8)
    ctx = image_context(model, images)
    whole = CDRP(**{**PARAMS, "n_explain": 6, "batch_size": 6}).explain(ctx)
    split = CDRP(**{**PARAMS, "n_explain": 6, "batch_size": 1}).explain(ctx)
    for a, b in zip(whole.explanations, split.explanations):
        for name in a["gates"]:
            np.testing.assert_allclose(a["gates"][name], b["gates"][name], atol=1e-5)
