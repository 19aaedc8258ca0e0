"""The prototype autoencoder of Li et al. [76]: the loss terms of Eq. 1 in closed form, the decoder's output
size, the training hooks, the metric on known values, the self-explanation and a checkpoint round trip."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nnxai.active.base import ACTIVE
from nnxai.active.example.prototype_network import (
    PrototypeAutoencoder, PrototypeNetworkExamples, r1_term, r2_term, reconstruction_term, squared_distances,
)
from nnxai.metrics.prototype_closeness import PrototypeCloseness, nearest_patch_distances
from nnxai.models import build_network, load_model, save_checkpoint
from nnxai.training.trainer import TrainConfig, train_model

PARAMS = {"n_prototypes": 3, "latent_channels": 2, "reconstruction_weight": 0.05, "r1_weight": 0.05,
          "r2_weight": 0.05}


def small(shape=(1, 28, 28), n_classes=2, m=3):
    return build_network("prototype_autoencoder", in_channels=shape[0], n_classes=n_classes, widths=[4, 4, 4],
                         activation="relu", n_prototypes=m, latent_channels=2, image_height=shape[1],
                         image_width=shape[2])


def test_r1_r2_closed_form_on_planted_latents():
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])         # three encoded inputs
    p = torch.tensor([[1.0, 0.0], [0.0, 6.0]])                      # two prototypes
    d = squared_distances(z, p)
    assert torch.allclose(d, torch.tensor([[1.0, 36.0], [4.0, 45.0], [17.0, 4.0]]))
    # R1: each prototype's nearest input: p1 -> z1 (1), p2 -> z3 (4); mean 2.5
    assert r1_term(d).item() == pytest.approx(2.5)
    # R2: each input's nearest prototype: 1, 4, 4; mean 3
    assert r2_term(d).item() == pytest.approx(3.0)
    x, g = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert reconstruction_term(g, x).item() == pytest.approx(4.0)   # summed over the 4 pixels, mean over inputs


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (1, 30, 27)])
def test_decoder_gives_images_of_the_input_size(shape):
    model = small(shape)
    x = torch.rand(2, *shape)
    assert model.decode(model.encode(x)).shape == x.shape
    assert model.decode_prototypes().shape == (3, *shape)
    assert model.embed(x).shape == (2, 3)
    # the classifier reads the squared distances: logits = w(p(f(x)))
    z = model.encode(x)
    expected = ((z[:, None] - model.prototypes[None]) ** 2).sum(2) @ model.classifier.weight.T + model.classifier.bias
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_penalty_is_the_weighted_sum_of_the_paper_terms():
    torch.manual_seed(0)
    model = small()
    active = ACTIVE["prototype_network"](**PARAMS)
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 0, 1, 0, 1])
    model.train()
    logits = model(x)
    got = active.penalty(model, x, y, logits)
    z = model.encode(x)
    d = ((z[:, None] - model.prototypes[None]) ** 2).sum(2)
    expected = 0.05 * ((model.decode(z) - x) ** 2).sum((1, 2, 3)).mean() + 0.05 * d.min(0).values.mean() \
        + 0.05 * d.min(1).values.mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_pulls_prototypes_to_the_data_and_round_trips(tmp_path):
    torch.manual_seed(0)
    n = 64
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 28, 28) * 0.2
    x[y == 1, :, 8:20, 8:20] += 0.8                                  # class 1: a bright square
    info = SimpleNamespace(input_shape=(1, 28, 28), n_classes=2, name="toy")
    active = ACTIVE["prototype_network"](**{**PARAMS, "r1_weight": 1.0})
    name, kwargs = active.build("cnn", {"in_channels": 1, "n_classes": 2, "widths": [4, 4, 4],
                                        "activation": "relu"}, info)
    model = build_network(name, **kwargs)
    before = nearest_patch_distances(model, x).mean()
    prototypes_before = model.prototypes.detach().clone()
    history = train_model(model, (x, y), (x[:0], y[:0]), TrainConfig(epochs=4, batch_size=16, lr=0.01), seed=0,
                          progress=False, active=active, info=info)
    after = nearest_patch_distances(model, x)
    assert after.mean() < before                                      # R1 moved the prototypes to the data
    # ... the prototype parameters themselves, not only the encoder: against the same (final) encoding of
    # the data, the trained prototypes are nearer to their nearest encoded input than the initial ones
    with torch.no_grad():
        z = model.eval().encode(x)
    assert not torch.equal(model.prototypes.detach(), prototypes_before)
    nearest_after = squared_distances(z, model.prototypes.detach()).min(0).values
    nearest_before = squared_distances(z, prototypes_before).min(0).values
    assert nearest_after.mean() < nearest_before.mean(), (nearest_after, nearest_before)   # measured 1.50 < 3.15
    assert history[-1]["active"]["r1_train"] == pytest.approx(after.mean().item(), rel=1e-4)

    path = save_checkpoint(tmp_path / "pn.pt", model, {"architecture": name, "arch_kwargs": kwargs,
                                                         "active": "prototype_network"})
    loaded = load_model(path)
    assert isinstance(loaded, PrototypeAutoencoder)
    assert torch.equal(loaded.prototypes, model.prototypes)
    assert torch.equal(loaded(x), model.eval()(x))
    assert torch.equal(loaded.decode_prototypes(), model.decode_prototypes())


def test_metric_on_known_values():
    model = small(m=2)
    x = torch.rand(5, 1, 28, 28)
    z = model.encode(x).detach()
    with torch.no_grad():
        model.prototypes.copy_(torch.stack([z[3], z[1] + 0.5]))       # one on an input, one 0.5 off per dim
    ctx = SimpleNamespace(model=model, train=SimpleNamespace(x=x), device=torch.device("cpu"))
    out = PrototypeCloseness()(None, ctx)
    dim = z.shape[1]
    nearest_second = min(((z[i] - z[1] - 0.5) ** 2).sum().item() for i in range(5))
    assert list(out["prototype_closeness"].values) == pytest.approx([0.0, nearest_second], abs=1e-9)
    assert nearest_second <= 0.25 * dim + 1e-6
    decoded = model.decode_prototypes().detach()
    pixel = [min(((decoded[j] - x[i]) ** 2).mean().item() for i in range(5)) for j in range(2)]
    assert list(out["prototype_closeness.pixel"].values) == pytest.approx(pixel, rel=1e-5)


def test_self_explanation_lists_the_nearest_prototypes():
    torch.manual_seed(1)
    model = small(m=3).eval()
    train = SimpleNamespace(x=torch.rand(10, 1, 28, 28), y=torch.zeros(10, dtype=torch.long))
    test = SimpleNamespace(x=torch.rand(4, 1, 28, 28), y=torch.zeros(4, dtype=torch.long))
    ctx = SimpleNamespace(model=model, test=test, train=train, seed=0, device=torch.device("cpu"))
    record = PrototypeNetworkExamples(n_explain=4, top_k=2).select(model, ctx)
    with torch.no_grad():
        d_test = model.embed(test.x[record.indices])
        d_train = model.embed(train.x)
    for row, ids in enumerate(record.extra["prototype_ids"]):
        assert ids == d_test[row].argsort()[:2].tolist()
        assert record.scores[row] == pytest.approx(d_test[row, ids].tolist(), rel=1e-5)
        assert record.examples[row] == d_train[:, ids].argmin(0).tolist()
    assert torch.tensor(record.extra["decoded_prototypes"]).shape == (3, 1, 28, 28)
