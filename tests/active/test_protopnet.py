"""ProtoPNet [123]: the class-connection initialisation, Clst/Sep in closed form, the penalty against a brute-force
λ1 Clst + λ2 Sep, the push onto training patches
of the prototype's class, the L1 last-layer step, the metric after the push, the self-explanation and a
checkpoint round trip."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nnxai.active.base import ACTIVE
from nnxai.active.example.protopnet import (
    EPSILON, ProtoPNetCNN, ProtoPNetExamples, activation_box, cluster_separation, optimise_last_layer,
    push_prototypes, similarity, wrong_class_l1,
)
from nnxai.metrics.prototype_closeness import PrototypeCloseness
from nnxai.models import build_network, load_model, save_checkpoint
from nnxai.training.trainer import TrainConfig, train_model

PARAMS = {"prototypes_per_class": 2, "prototype_depth": 4, "clst_weight": 0.8, "sep_weight": 0.08,
          "warm_epochs": 1, "last_layer_l1": 1e-4, "last_layer_lr": 1e-4, "last_layer_epochs": 2,
          "last_layer_batch_size": 16}
INFO = SimpleNamespace(input_shape=(1, 16, 16), n_classes=2, name="toy")


def small(n_classes=2, per_class=2):
    return build_network("protopnet_cnn", in_channels=1, n_classes=n_classes, widths=[4, 4, 4], activation="relu",
                         prototypes_per_class=per_class, prototype_depth=4)


def toy_data(n=48):
    torch.manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 16, 16) * 0.2
    x[y == 1, :, 4:10, 4:10] += 0.8
    return x, y


def test_class_connections_and_similarity():
    model = small(n_classes=3, per_class=2)
    w = model.classifier.weight
    assert model.classifier.bias is None
    expected = torch.full((3, 6), -0.5)
    for k in range(3):
        expected[k, 2 * k:2 * k + 2] = 1.0
    assert torch.equal(w.detach(), expected)
    assert model.prototype_classes().tolist() == [0, 0, 1, 1, 2, 2]
    assert similarity(torch.tensor(0.0)).item() == pytest.approx(torch.log(torch.tensor(1 / EPSILON)).item())
    # the forward pass: max over patches of the similarity = similarity of the min distance, brute force
    x = torch.rand(3, 1, 16, 16)
    z = model.latent(x)
    patches = z.flatten(2).transpose(1, 2)                                     # (n, P, D)
    p = model.prototype_vectors.flatten(1)
    d = ((patches[:, :, None] - p[None, None]) ** 2).sum(3)                   # (n, P, m)
    g = torch.log((d + 1) / (d + EPSILON)).max(1).values
    assert torch.allclose(model(x), g @ w.T, atol=1e-4)


def test_cluster_and_separation_closed_form():
    d = torch.tensor([[1.0, 5.0, 2.0, 7.0], [3.0, 0.5, 9.0, 4.0]])            # (n=2, m=4)
    identity = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # p0, p1 of class 0; p2, p3 of 1
    clst, sep = cluster_separation(d, identity, torch.tensor([0, 1]))
    assert clst.item() == pytest.approx((1.0 + 4.0) / 2)                       # own-class minima: 1, 4
    assert sep.item() == pytest.approx(-(2.0 + 0.5) / 2)                       # other-class minima: 2, 0.5


def test_penalty_is_the_weighted_cluster_and_separation_costs_by_brute_force():
    # penalty() = λ1 Clst + λ2 Sep (Sec. 2.2), against min distances computed patch by patch, without the
    # network's distance_maps/min_distances or cluster_separation
    torch.manual_seed(1)
    model = small(n_classes=3, per_class=2)
    active = ACTIVE["protopnet"](**{**PARAMS, "clst_weight": 0.8, "sep_weight": 0.08})
    x, y = torch.rand(5, 1, 16, 16), torch.tensor([0, 1, 2, 1, 0])
    model.train()
    logits = model(x)                                                       # caches the batch's min distances
    got = active.penalty(model, x, y, logits)
    with torch.no_grad():
        patches = model.latent(x).flatten(2).transpose(1, 2)               # (n, P, D)
    protos = model.prototype_vectors.detach().flatten(1)                    # (m, D)
    classes = [j // 2 for j in range(6)]
    clst, sep = 0.0, 0.0
    for i in range(5):
        dist = [min(float(((patch - protos[j]) ** 2).sum()) for patch in patches[i]) for j in range(6)]
        clst += min(dist[j] for j in range(6) if classes[j] == int(y[i])) / 5
        sep -= min(dist[j] for j in range(6) if classes[j] != int(y[i])) / 5
    expected = 0.8 * clst + 0.08 * sep
    flipped = 0.8 * clst - 0.08 * sep
    assert abs(expected - flipped) > 1e-3                                  # the test tells the two signs apart
    assert got.item() == pytest.approx(expected, rel=1e-4)
    assert got.item() != pytest.approx(flipped, rel=1e-4)
    # without the cached distances (another batch size than the last forward), the same value
    model._min_distances = None
    assert active.penalty(model, x, y, None).item() == pytest.approx(expected, rel=1e-4)
    got.backward()
    assert model.prototype_vectors.grad is not None and model.prototype_vectors.grad.abs().sum() > 0


def test_push_puts_each_prototype_on_a_training_patch_of_its_class():
    x, y = toy_data()
    model = small()
    with torch.no_grad():
        old = model.prototype_vectors.detach().flatten(1).clone()
        z = model.latent(x)
    push_prototypes(model, x, y, torch.device("cpu"))
    classes = model.prototype_classes()
    for j in range(len(classes)):
        i, (row, col) = int(model.push_index[j]), model.push_location[j].long().tolist()
        assert y[i] == classes[j]
        assert torch.equal(model.prototype_vectors[j, :, 0, 0], z[i, :, row, col])
        # the nearest patch of its class to the old prototype, by brute force
        own = z[y == classes[j]].flatten(2).transpose(1, 2).reshape(-1, z.shape[1])
        assert ((own - old[j]) ** 2).sum(1).min().item() == pytest.approx(((z[i, :, row, col] - old[j]) ** 2).sum().item(),
                                                                         abs=1e-6)
    ctx = SimpleNamespace(model=model, train=SimpleNamespace(x=x), device=torch.device("cpu"))
    assert PrototypeCloseness()(None, ctx)["prototype_closeness"] == pytest.approx(0.0, abs=1e-9)


def test_last_layer_l1_shrinks_the_wrong_class_connections():
    torch.manual_seed(0)
    y = torch.arange(200) % 2
    identity = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    sims = torch.rand(200, 4) + 3.0 * identity[:, y].T                       # own prototypes more similar
    start = identity.T + -0.5 * (1 - identity.T)
    kwargs = dict(lr=1e-2, epochs=20, batch_size=20, seed=0)
    with_l1 = optimise_last_layer(start, sims, y, identity, l1=0.05, **kwargs)
    without = optimise_last_layer(start, sims, y, identity, l1=0.0, **kwargs)
    assert wrong_class_l1(with_l1, identity) < wrong_class_l1(start, identity)
    assert wrong_class_l1(with_l1, identity) < wrong_class_l1(without, identity)
    assert ((sims @ with_l1.T).argmax(1) == y).all()


def test_training_stages_and_checkpoint_round_trip(tmp_path):
    x, y = toy_data()
    active = ACTIVE["protopnet"](**PARAMS)
    name, kwargs = active.build("cnn", {"in_channels": 1, "n_classes": 2, "widths": [4, 4, 4],
                                        "activation": "relu"}, INFO)
    model = build_network(name, **kwargs)
    backbone = [p.detach().clone() for p in model.features.parameters()]
    seen = {}

    class Spy(type(active)):
        def after_epoch(self, model, epoch):
            if epoch == 1:   # after the warm-up epoch: the backbone did not move, the class connections neither
                seen["backbone_frozen"] = all(torch.equal(a, b) for a, b in zip(backbone, model.features.parameters()))
                seen["last_fixed"] = torch.equal(model.classifier.weight, torch.tensor([[1.0, 1, -0.5, -0.5],
                                                                                       [-0.5, -0.5, 1, 1]]))
            return super().after_epoch(model, epoch)

    spy = Spy(**PARAMS)
    history = train_model(model, (x, y), (x[:0], y[:0]), TrainConfig(epochs=2, batch_size=16, lr=0.01), seed=0,
                          progress=False, active=spy, info=INFO)
    assert seen == {"backbone_frozen": True, "last_fixed": True}
    assert not all(torch.equal(a, b) for a, b in zip(backbone, model.features.parameters()))   # joint epoch
    record = history[-1]["active"]
    assert record["pushed"] == 4 and (model.push_index >= 0).all()

    path = save_checkpoint(tmp_path / "ppn.pt", model, {"architecture": name, "arch_kwargs": kwargs,
                                                          "active": "protopnet"})
    loaded = load_model(path)
    assert isinstance(loaded, ProtoPNetCNN)
    assert torch.equal(loaded.push_index, model.push_index) and torch.equal(loaded.push_location, model.push_location)
    assert torch.equal(loaded(x), model.eval()(x))

    # the self-explanation: most similar prototypes, the images they were pushed onto
    ctx = SimpleNamespace(model=loaded, test=SimpleNamespace(x=x[:5], y=y[:5]), train=SimpleNamespace(x=x, y=y),
                          seed=0, device=torch.device("cpu"))
    out = ProtoPNetExamples(n_explain=5, top_k=2).select(loaded, ctx)
    with torch.no_grad():
        sims = loaded.embed(x[out.indices])
    for row, ids in enumerate(out.extra["prototype_ids"]):
        assert torch.allclose(torch.tensor(out.scores[row]), sims[row].topk(2).values, atol=1e-5)
        assert torch.allclose(sims[row, ids], sims[row].topk(2).values, atol=1e-5)
        assert out.examples[row] == [int(loaded.push_index[j]) for j in ids]
    for box in out.extra["push_box"]:
        top, left, bottom, right = box
        assert 0 <= top < bottom <= 16 and 0 <= left < right <= 16


def test_activation_box_marks_the_peak():
    grid = torch.zeros(8, 8)
    grid[2, 5] = 10.0
    top, left, bottom, right = activation_box(grid, 32, 32)
    assert top <= 2 * 4 + 2 < bottom and left <= 5 * 4 + 2 < right and bottom - top < 16
