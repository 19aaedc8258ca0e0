"""ExpO [120]: the closed-form regularisers, the network's own local linear explanation, the ``stability``
metric, training on a planted table and the checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.active.attribution.expo import (Expo, ExpoExplanation, fidelity_penalty, perturbation_space, spread,
                                           stability_penalty)
from nnxai.data import planted
from nnxai.methods.base import AttributionMethod, model_traits
from nnxai.metrics.local_fidelity import LocalFidelity
from nnxai.metrics.stability import STABILITY_SEED, Stability
from nnxai.models import load_model, save_checkpoint
from nnxai.models.networks import MLP, build_network
from nnxai.ops.noise import input_noise
from nnxai.params import ParamError
from nnxai.training.trainer import TrainConfig, train_model
from toy_models import toy_context

TRAIN = dict(regulariser="fidelity", weight=1.0, sigma=0.5, patch=2, n_neighbours=24, n_inputs=4, every=1)
EXPLAIN = dict(n_explain=6, batch_size=3, n_samples=40, sigma=0.5, patch=2)


class LinearProbability(nn.Module):
    """Two classes with ``p_1(x) = 0.5 + w·x`` exactly (logits ``log p``): locally linear probabilities."""

    architecture = "cnn"

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        p = 0.5 + (x * self.w).flatten(1).sum(1)
        return torch.stack([1 - p, p], dim=1).log()


class Square(AttributionMethod):
    """Φ(x) = scale · x² (a map that moves with x), or a constant map; not registered."""

    parameters = {**AttributionMethod.parameters}

    def __init__(self, constant=False, **params):
        super().__init__(**params)
        self.constant = constant

    def attribute(self, model, inputs, target, baselines=None):
        return torch.ones_like(inputs) if self.constant else 3.0 * inputs ** 2


def lstsq_residual(z: np.ndarray, y: np.ndarray) -> float:
    """Mean squared residual of the least-squares fit of y (m, K) on [1, z] (m, d), by numpy."""
    design = np.hstack([np.ones((len(z), 1)), z])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return float(((y - design @ coef) ** 2).mean())


# -- the regularisers ([120] Alg. 1 and ExpO-Stability) -------------------------------------------------------

def test_fidelity_penalty_is_zero_for_a_linear_function_and_matches_lstsq_for_a_curved_one():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 20, 5, generator=gen, dtype=torch.float64)
    a, b = torch.randn(5, 4, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)
    assert fidelity_penalty(z @ a + b, z).item() == pytest.approx(0.0, abs=1e-20)
    curved = torch.stack([z.pow(2).sum(-1), torch.sin(z[..., 0]) * z[..., 1]], dim=-1)
    expected = np.mean([lstsq_residual(zi.numpy(), yi.numpy()) for zi, yi in zip(z, curved)])
    assert fidelity_penalty(curved, z).item() == pytest.approx(expected, rel=1e-10)
    assert expected > 0.01


def test_fidelity_penalty_through_a_network_is_zero_when_linear_and_has_gradients_when_curved():
    x = torch.randn(2, 6)
    offsets = 0.5 * torch.randn(2, 16, 6)
    neighbours = x[:, None] + offsets
    linear = nn.Linear(6, 3)
    assert fidelity_penalty(linear(neighbours), offsets).item() == pytest.approx(0.0, abs=1e-10)
    torch.manual_seed(0)
    net = MLP(6, 3, hidden=(16, 8))
    value = fidelity_penalty(net(neighbours.reshape(-1, 6)).reshape(2, 16, 3), offsets)
    value.backward()
    assert value.item() > 0
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_stability_penalty_matches_a_hand_computation():
    outputs = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]])
    centre = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # input 0: (1 + 4) / 2 = 2.5; input 1: 0; mean 1.25
    assert stability_penalty(outputs, centre).item() == pytest.approx(1.25)


def test_training_hook_regularises_every_kth_step_and_refuses_too_few_neighbours():
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.randint(0, 2, (40,))
    net = MLP(6, 2, hidden=(8,))
    active = Expo(**{**TRAIN, "every": 3, "n_neighbours": 10})
    active.setup(net, (x, y), None, torch.device("cpu"), 0)
    terms = [active.penalty(net, x[:8], y[:8], net(x[:8])) for _ in range(6)]
    assert [t is None for t in terms] == [False, True, True, False, True, True]
    terms[0].backward()
    assert net.features.fc1.weight.grad.abs().sum() > 0
    with pytest.raises(ParamError, match="at least 8"):
        Expo(**{**TRAIN, "n_neighbours": 7}).setup(net, (x, y), None, torch.device("cpu"), 0)
    Expo(**{**TRAIN, "regulariser": "stability", "n_neighbours": 2}).setup(net, (x, y), None, torch.device("cpu"), 0)


def test_image_neighbourhood_moves_whole_cells():
    index, d = perturbation_space((3, 4, 4), 2)
    assert d == 12
    offsets = torch.arange(12.0)[None]
    moved = spread(offsets, index)[0]
    assert torch.equal(moved[1, 2:, :2], torch.full((2, 2), 6.0))      # channel 1, third cell (row 1, col 0)


# -- the network's own explanation and the metrics on it ------------------------------------------------------

def linear_case():
    gen = torch.Generator().manual_seed(1)
    w = 0.01 * torch.randn(3, 4, 4, generator=gen)
    model = LinearProbability(w).eval()
    ctx = toy_context(model, torch.rand(20, 3, 4, 4, generator=gen), torch.rand(8, 3, 4, 4, generator=gen), 2)
    return w, model, ctx


def test_explanation_recovers_the_exact_local_linear_model():
    w, model, ctx = linear_case()
    method = ExpoExplanation(**EXPLAIN)
    record = method.explain(ctx)
    index, d = perturbation_space((3, 4, 4), 2)
    cell_sums = torch.zeros(d, dtype=torch.float64).index_add_(0, index.reshape(-1), w.double().reshape(-1))
    expected = cell_sums[index]                                       # β_j = Σ_{i in cell j} w_i
    for attribution, c in zip(record.attributions, record.targets):
        sign = 1.0 if c == 1 else -1.0
        assert np.allclose(attribution, sign * expected.numpy(), atol=1e-5)
    x = ctx.test.x[torch.as_tensor(record.indices)]
    p = model(x).softmax(1).double()
    chosen = p[torch.arange(len(x)), torch.as_tensor(record.targets)]
    assert np.allclose(record.meta["surrogate"]["intercept"], chosen.numpy(), atol=1e-6)


def test_local_fidelity_and_stability_vanish_on_a_linear_model():
    _, model, ctx = linear_case()
    method = ExpoExplanation(**EXPLAIN)
    record = method.explain(ctx)
    assert LocalFidelity.applies(ExpoExplanation, ctx.info) and Stability.applies(ExpoExplanation, ctx.info)
    fidelity = LocalFidelity(n_samples=30)(record, ctx, method)
    assert fidelity["local_fidelity"] == pytest.approx(0.0, abs=1e-12)
    stability = Stability(n_inputs=4, n_samples=3, sigma=0.1)(record, ctx, method)
    assert stability["stability"] == pytest.approx(0.0, abs=1e-9)


def test_stability_metric_is_zero_for_a_constant_map_and_matches_a_hand_computation():
    gen = torch.Generator().manual_seed(2)
    x_train, x_test = torch.randn(30, 5, generator=gen), torch.randn(6, 5, generator=gen)
    model = nn.Sequential(nn.Linear(5, 2))
    ctx = toy_context(model, x_train, x_test, 2, seed=4)
    from nnxai.explanations import AttributionMap
    record = AttributionMap(np.zeros((6, 5), dtype=np.float32), np.arange(6), np.zeros(6, dtype=np.int64))
    metric = Stability(n_inputs=4, n_samples=3, sigma=0.2)
    assert metric(record, ctx, Square(constant=True, n_explain=6, batch_size=2))["stability"] == 0.0
    got = metric(record, ctx, Square(n_explain=6, batch_size=2))
    std = x_train.double().std(0).numpy()
    values, relative = [], []
    for x in x_test[:4]:
        eps = input_noise(x, 3, 4 + STABILITY_SEED).double().numpy()
        xs = x.double().numpy()
        near = xs + 0.2 * std * eps
        dist = ((3 * near ** 2 - 3 * xs ** 2) ** 2).sum(1).mean()
        values.append(dist)
        relative.append(dist / ((3 * xs ** 2) ** 2).sum())
    assert got["stability"] == pytest.approx(np.mean(values), rel=1e-5)
    assert np.allclose(got["stability"].values, values, rtol=1e-5)
    assert got["stability.relative"] == pytest.approx(np.mean(relative), rel=1e-5)


# -- training on a planted table, and the checkpoint ----------------------------------------------------------

def neighbourhood_fidelity(model, x_train, x_test):
    ctx = toy_context(model, x_train, x_test, 2)
    method = ExpoExplanation(n_explain=40, batch_size=20, n_samples=60, sigma=0.5, patch=1)
    record = method.explain(ctx)
    return LocalFidelity(n_samples=60)(record, ctx, method)["local_fidelity"]


def test_expo_training_improves_neighbourhood_fidelity_on_a_planted_table():
    rows = planted.generate(500, 0)
    x, y = torch.as_tensor(rows["x"]), torch.as_tensor(rows["y"])
    train, test = (x[:400], y[:400]), x[400:]
    config = TrainConfig(epochs=15, batch_size=32, lr=0.005)
    scores = {}
    for name, active in (("plain", None), ("expo", Expo(**{**TRAIN, "patch": 1, "weight": 10.0}))):
        torch.manual_seed(0)
        net = MLP(12, 2, hidden=(32, 16))
        history = train_model(net, train, (x[:0], y[:0]), config, seed=0, progress=False, active=active)
        assert history[-1]["train_accuracy"] > 0.9
        scores[name] = neighbourhood_fidelity(net, train[0], test)
    assert "expo_fidelity" in history[-1]
    assert scores["expo"] < 0.7 * scores["plain"], scores   # measured: 0.021 vs 0.040


def test_checkpoint_round_trip_keeps_the_network_and_its_explanation(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 2, (64,))
    kwargs = {"n_features": 6, "n_classes": 2, "hidden": [8, 6], "activation": "relu"}
    name, built = Expo(**TRAIN).build("mlp", kwargs, None)
    assert (name, built) == ("mlp", kwargs)                      # ExpO keeps the base network
    net = build_network(name, **built)
    train_model(net, (x, y), (x[:0], y[:0]), TrainConfig(epochs=2, batch_size=16), seed=0, progress=False,
                active=Expo(**{**TRAIN, "patch": 1, "n_neighbours": 10}))
    path = save_checkpoint(tmp_path / "expo.pt", net, {"architecture": name, "arch_kwargs": built, "variant": "expo",
                                                       "active": "expo"})
    loaded = load_model(path)
    assert loaded.extras == {} and model_traits(loaded)["architecture"] == "mlp"
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    params = {**EXPLAIN, "patch": 1}
    records = [ExpoExplanation(**params).explain(toy_context(m, x, x[:10], 2)) for m in (net.eval(), loaded)]
    assert np.array_equal(records[0].attributions, records[1].attributions)
