"""DACE [79]: the big-M encoding is the network, the MILP's counterfactual is the brute-force optimum of the
paper's cost on small networks (continuous grid and MONK's one-hot robots), every counterfactual is valid.

The brute force re-implements the cost from its definition (ℓ1-Mahalanobis with ``Mᵀ M = Σ⁺``; the 1-LOF
``lrd_k(x⁽ⁿ⁾) max(Δ, d_k(x⁽ⁿ⁾))`` with ``x⁽ⁿ⁾`` the nearest anchor, lrd and k-distance from a plain numpy
k-nearest-neighbour computation) and enumerates every action of at most ``max_changes`` changes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit, monks
from nnxai.methods.base import ExplainContext, explained_indices
from nnxai.methods.rule.local._dace_program import mahalanobis_matrix, nearest_distinct
from nnxai.methods.rule.local._relu_milp import (affine_relu_chain, box_region, chain_forward, interval_bounds,
                                                 solve_forward, tightened_bounds)
from nnxai.methods.rule.local.dace import DACE
from nnxai.metrics.counterfactual_cost import Cost, Plausibility, Validity
from nnxai.models.networks import build_network
from nnxai.training.trainer import TrainConfig, train_model

PARAMS = {"n_explain": 6, "lam": 1.0, "n_neighbors": 5, "n_anchors": 200, "n_candidates": 8, "max_changes": 2,
          "margin": 1e-3, "node_limit": 100000, "time_limit": 120.0, "mip_gap": 0.0}


def relu_mlp(sizes, seed):
    torch.manual_seed(seed)
    net = build_network("mlp", n_features=sizes[0], n_classes=sizes[-1], hidden=list(sizes[1:-1]), activation="relu")
    return net.eval()


def context(model, x_train, y_train, x_test, names=None, info=None):
    d = x_train.shape[1]
    info = info or DatasetInfo("toy", "tabular", int(max(y_train.max(), 1)) + 1, (d,), False, False, "test toy")
    meta = {"class_names": ["no", "yes"], "feature_names": names or [f"x{j}" for j in range(d)]}

    def split(x, y):
        return PreparedSplit(x=torch.as_tensor(x, dtype=torch.float32), y=torch.as_tensor(y, dtype=torch.long), meta=meta)

    return ExplainContext(model=model, dataset="toy", model_id="baseline", info=info, train=split(x_train, y_train),
                          test=split(x_test, np.zeros(len(x_test), dtype=np.int64)), seed=0)


# -- the encoding ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tight", [False, True])
def test_big_m_encoding_reproduces_the_network(tight):
    """Inputs fixed, the MILP's hidden values and logits are the network's (every unit of the wide box is
    unstable, so the binaries and big-M rows decide)."""
    model = relu_mlp([3, 8, 6, 3], seed=1)
    layers = affine_relu_chain(model)
    lo, hi = -np.full(3, 2.0), np.full(3, 2.0)
    bounds = tightened_bounds(layers, box_region(lo, hi)) if tight else interval_bounds(layers, lo, hi)[:-1]
    assert sum(((l < 0) & (h > 0)).sum() for l, h in bounds) >= 8
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: seen.__setitem__(k, o.detach().double().numpy()))
             for k, m in enumerate(model.unit_layers().values())]
    try:
        for x in np.random.default_rng(0).uniform(-2, 2, size=(12, 3)):
            with torch.no_grad():
                logits = model(torch.as_tensor(x[None], dtype=torch.float32)).double().numpy()[0]
            hidden, out = solve_forward(layers, x, bounds)
            for k, h in enumerate(hidden):
                np.testing.assert_allclose(h, seen[k][0], atol=1e-5)
            np.testing.assert_allclose(out, logits, atol=1e-5)
    finally:
        for h in hooks:
            h.remove()


def test_chain_composes_linear_maps_and_refuses_other_layers():
    from nnxai.active.attribution.dualnet import DualNetOperator

    net = DualNetOperator(4, 2, hidden=(5,)).eval()
    net.set_mask(torch.tensor([1.0, 0.0, 0.5, 1.0]))
    x = np.random.default_rng(1).normal(size=(7, 4))
    with torch.no_grad():
        expected = net(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(chain_forward(affine_relu_chain(net), x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="not a Linear/ReLU chain"):
        affine_relu_chain(build_network("mlp", n_features=4, n_classes=2, hidden=[5], activation="sigmoid"))


def test_mahalanobis_matrix_whitens_and_ignores_constant_directions():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.7]])
    m = mahalanobis_matrix(x)
    np.testing.assert_allclose(m.T @ m, np.linalg.inv(np.cov(x, rowvar=False, bias=True)), rtol=1e-8, atol=1e-10)
    one_hot = monks.one_hot(monks.attribute_space())            # each group sums to 1: singular covariance
    m = mahalanobis_matrix(one_hot)
    np.testing.assert_allclose(m.T @ m, np.linalg.pinv(np.cov(one_hot, rowvar=False, bias=True), rcond=1e-9, hermitian=True),
                               atol=1e-8)


# -- brute force ----------------------------------------------------------------------------------------------
def lof_parts(points, k):
    """k-distance and lrd of every point (squared Euclidean, the point itself excluded), plain numpy."""
    d = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    near = np.take_along_axis(d, order, axis=1)
    k_distance = near[:, -1]
    reach = np.maximum(near, k_distance[order]).mean(axis=1)
    return k_distance, 1.0 / reach


def brute_force(model, x, desired, candidates, x_train, y_train, params, anchors):
    """The minimum of d_1M + λ q̂ over ``candidates`` (rows) that the network puts in ``desired`` with the
    margin."""
    m = mahalanobis_matrix(x_train)
    star = x_train[y_train == desired]
    k_distance, lrd = lof_parts(star, params["n_neighbors"])
    z, kd, lr = star[anchors], k_distance[anchors], lrd[anchors]
    with torch.no_grad():
        logits = model(torch.as_tensor(candidates, dtype=torch.float64).float()).double().numpy()
    margin = logits[:, desired] - np.delete(logits, desired, axis=1).max(axis=1)
    d = ((candidates[:, None] - z[None]) ** 2).sum(-1)
    nearest = d <= d.min(axis=1, keepdims=True) + 1e-9
    q = np.where(nearest, lr[None] * np.maximum(d, kd[None]), np.inf).min(axis=1)
    cost = np.abs((candidates - x) @ m.T).sum(axis=1) + params["lam"] * q
    cost[margin < params["margin"]] = np.inf
    return cost.min()


def grid_candidates(x, x_train, n, max_changes):
    grids = [np.concatenate([[x[j]], np.linspace(x_train[:, j].min(), x_train[:, j].max(), n + 1)])
             for j in range(len(x))]
    points = np.array(list(itertools.product(*grids)))
    return points[(np.abs(points - x) > 1e-9).sum(axis=1) <= max_changes]


def diamond_net() -> nn.Module:
    """2-4-2 ReLU MLP, class 1 inside the skewed diamond ``1.0 x0⁺ + 1.3 x0⁻ + 0.8 (x1 − 0.3)⁺ + 1.1 (x1 − 0.3)⁻ < 1``
    (hand-set weights: the counterfactual of an inside point leaves it through one of four faces)."""
    model = relu_mlp([2, 4, 2], seed=0)
    with torch.no_grad():
        model.features.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        model.features.fc1.bias.copy_(torch.tensor([0.0, 0.0, -0.3, 0.3]))
        model.classifier.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.0], [-1.0, -1.3, -0.8, -1.1]]))
        model.classifier.bias.copy_(torch.tensor([0.0, 1.0]))
    return model


@pytest.mark.parametrize("lam,max_changes", [(0.0, 2), (1.0, 2), (1.0, 1)])
def test_optimal_against_brute_force_on_a_2_4_2_network(lam, max_changes):
    rng = np.random.default_rng(3)
    x_train = rng.normal(size=(60, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]])
    model = diamond_net()
    y_train = model(torch.as_tensor(x_train, dtype=torch.float32)).argmax(1).numpy()
    assert 10 <= y_train.sum() <= 50, "both classes must be populated"
    x_test = rng.normal(size=(6, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]])
    params = {**PARAMS, "lam": lam, "max_changes": max_changes}
    ctx = context(model, x_train, y_train, x_test)
    record = DACE(**params).explain(ctx)
    feasible = []
    for i, entry in zip(record.indices, record.explanations):
        x = x_test[i]
        assert entry["desired"] != entry["original"]
        star = x_train[y_train == entry["desired"]]
        anchors = nearest_distinct(star, x, params["n_anchors"])
        best = brute_force(model, x, entry["desired"], grid_candidates(x, x_train, params["n_candidates"], max_changes),
                           x_train, y_train, params, anchors)
        feasible.append(np.isfinite(best))
        if not np.isfinite(best):             # no action of <= max_changes changes reaches the other class
            assert entry["status"] == "infeasible" and entry["counterfactual"] is None
            continue
        assert entry["status"] == "optimal" and entry["valid"]
        assert entry["cost"]["objective"] == pytest.approx(best, rel=1e-6, abs=1e-9)
        assert len(entry["changes"]) <= max_changes
    assert Validity()(record, ctx)["validity"] == np.mean(feasible)
    if max_changes == 2:
        assert all(feasible)
    costs = Cost()(record, ctx)
    np.testing.assert_allclose(costs["cost"].values, [e["cost"]["l1_mahalanobis"] if e["cost"] else np.nan
                                                      for e in record.explanations])


# -- MONK's robots --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def monks1():
    splits, meta = DATASETS["monks1"].build({"train": None, "val": None, "test": None}, 0, ".")
    x, y = torch.as_tensor(splits["train"]["x"]), torch.as_tensor(splits["train"]["y"])
    model = build_network("mlp", n_features=17, n_classes=2, hidden=[32, 16], activation="relu")
    train_model(model, (x, y), (x, y), TrainConfig(epochs=40, batch_size=32, lr=0.005), seed=0, progress=False)
    model.eval()
    tr = PreparedSplit(x=x.float(), y=y.long(), meta=meta)
    te = PreparedSplit(x=torch.as_tensor(splits["test"]["x"]), y=torch.as_tensor(splits["test"]["y"]), meta=meta)
    return ExplainContext(model=model, dataset="monks1", model_id="baseline", info=DATASETS["monks1"], train=tr,
                          test=te, seed=0)


def test_monks_counterfactuals_are_optimal_robots(monks1):
    """Each counterfactual is a robot (one value per attribute), classified as the desired class, and no robot
    within ``max_changes`` attribute changes has a lower cost (the whole 432-robot space is enumerated)."""
    params = {**PARAMS, "n_explain": 4, "n_anchors": 10, "max_changes": 3, "n_neighbors": 10}
    record = DACE(**params).explain(monks1)
    ctx = monks1
    assert Validity()(record, ctx)["validity"] == 1.0
    x_train, y_train = ctx.train.x.double().numpy(), ctx.train.y.numpy()
    robots = monks.one_hot(monks.attribute_space()).astype(np.float64)
    for i, entry in zip(record.indices, record.explanations):
        x = ctx.test.x[i].double().numpy()
        x_cf = np.asarray(entry["counterfactual"])
        assert entry["status"] == "optimal"
        assert all(x_cf[list(g)].sum() == 1.0 and set(x_cf[list(g)]) <= {0.0, 1.0} for g in monks.GROUPS)
        changed = (monks.attributes_of(robots) != monks.attributes_of(x[None])).sum(axis=1)
        assert len(entry["changes"]) == (monks.attributes_of(x_cf[None]) != monks.attributes_of(x[None])).sum()
        star = x_train[y_train == entry["desired"]]
        anchors = nearest_distinct(star, x, params["n_anchors"])
        best = brute_force(ctx.model, x, entry["desired"], robots[changed <= params["max_changes"]], x_train,
                           y_train, params, anchors)
        assert entry["cost"]["objective"] == pytest.approx(best, rel=1e-6)
        assert entry["text"].startswith("change a") and "class" in entry["text"]
    plaus = Plausibility(n_neighbors=10)(record, ctx)["plausibility"]
    assert np.all(np.isfinite(plaus.values)) and np.all(plaus.values > 0.5)


def test_plausibility_is_one_inside_the_data_and_large_outside():
    rng = np.random.default_rng(4)
    x_train = rng.normal(size=(200, 2))
    y_train = np.zeros(200, dtype=np.int64)
    model = relu_mlp([2, 3, 2], seed=0)
    ctx = context(model, x_train, y_train, np.zeros((2, 2)))
    from nnxai.explanations import LocalRules

    record = LocalRules(indices=[0, 1], targets=[1, 1], explanations=[
        {"text": "inside", "conditions": [], "counterfactual": [0.0, 0.0], "desired": 0},
        {"text": "outside", "conditions": [], "counterfactual": [8.0, 8.0], "desired": 0}],
        feature_names=["x0", "x1"], class_names=["no", "yes"], feature_space="inputs")
    values = Plausibility(n_neighbors=10)(record, ctx)["plausibility"].values
    assert values[0] == pytest.approx(1.0, abs=0.25) and values[1] > 5.0


def test_explained_indices_are_the_seeded_sample(monks1):
    record = DACE(**{**PARAMS, "n_explain": 2, "n_anchors": 5, "max_changes": 2}).explain(monks1)
    assert record.indices == explained_indices(len(monks1.test.y), 2, 0).tolist()
    assert record.feature_space == "inputs" and record.meta["method"] == "dace"
