"""MMD-critic [147]: the objective J_b (Eq. 4) and MMD² (Eq. 2) against direct sums, the greedy prototype search
against brute force (each step, and the 1 - 1/e bound of the exhaustive optimum where the paper's theorem
makes J_b monotone submodular), the witness function (Eq. 3) in closed form, the criticism search (Eq. 5)
against brute force, and the method end to end on planted clusters in a toy network's representation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

import nnxai.methods.example._mmd as mmd_module
from nnxai.data import DatasetInfo, PreparedSplit
from nnxai.methods.base import ExplainContext, explained_indices
from nnxai.methods.example._mmd import (
    KernelMatrix, RBFKernel, SquaredDistances, criticism_objective, greedy_criticisms, greedy_prototypes, mmd2,
    objective, witness,
)
from nnxai.methods.example.mmd_critic import MMDCritic, cross_validate_gamma
from nnxai.params import ParamError

INFO = DatasetInfo("toy", "tabular", 3, (2,), False, False, "test")


# -- direct computations, written from the paper's sums -------------------------------------------------------
def rbf_matrix(x: np.ndarray, gamma: float, labels=None) -> np.ndarray:
    n = len(x)
    k = np.array([[math.exp(-gamma * float(((x[i] - x[j]) ** 2).sum())) for j in range(n)] for i in range(n)])
    if labels is not None:
        k *= np.asarray(labels)[:, None] == np.asarray(labels)[None, :]
    return k


def mmd2_direct(k: np.ndarray, s) -> float:
    """Eq. (2) with X the data and Z = X_S, term by term."""
    n, m = len(k), len(s)
    xx = sum(k[i, j] for i in range(n) for j in range(n)) / n ** 2
    xz = sum(k[i, j] for i in range(n) for j in s) / (n * m)
    zz = sum(k[i, j] for i in s for j in s) / m ** 2
    return xx - 2 * xz + zz


def j_direct(k: np.ndarray, s) -> float:
    """Eq. (4): J_b(S) = (1/n²) Σ k - MMD²(X, X_S); J_b(∅) = 0."""
    return 0.0 if len(s) == 0 else k.mean() - mmd2_direct(k, list(s))


def _random_kernel(n: int, seed: int, labels=None):
    x = np.random.default_rng(seed).normal(size=(n, 3))
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    gamma = 1.0 / np.median(d2[np.triu_indices(n, 1)])
    return x, gamma, rbf_matrix(x, gamma, labels)


# -- the kernel and the objective -----------------------------------------------------------------------------
def test_objective_and_mmd2_equal_the_direct_sums():
    _, _, k = _random_kernel(12, 0)
    kern = KernelMatrix(k)
    rng = np.random.default_rng(1)
    for size in (1, 2, 3, 5, 12):
        s = sorted(rng.choice(12, size, replace=False).tolist())
        assert objective(kern, s) == pytest.approx(j_direct(k, s), abs=1e-12)
        assert mmd2(kern, s) == pytest.approx(mmd2_direct(k, s), abs=1e-12)
    assert objective(kern, []) == 0.0
    assert mmd2(kern, list(range(12))) == pytest.approx(0.0, abs=1e-12)      # X_S = X


@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize("cached", [True, False])
def test_rbf_kernel_equals_the_explicit_matrix(monkeypatch, local, cached):
    if not cached:
        monkeypatch.setattr(mmd_module, "CACHE_ENTRIES", 0)
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    x, gamma, k = _random_kernel(10, 2, labels if local else None)
    kern = RBFKernel(SquaredDistances(torch.tensor(x), torch.tensor(labels) if local else None), gamma)
    assert (kern.distances.matrix is not None) == cached
    np.testing.assert_allclose(kern.rows(range(10)).numpy(), k, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kern.colmean().numpy(), k.mean(0), rtol=1e-12)
    assert torch.equal(kern.diag(), torch.ones(10, dtype=torch.float64))


# -- greedy prototypes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("local", [False, True])
def test_each_greedy_step_is_the_brute_force_argmax(local):
    labels = np.array([0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 1])
    _, _, k = _random_kernel(11, 3, labels if local else None)
    selected, values, sums = greedy_prototypes(KernelMatrix(k), 6)
    chosen: list[int] = []
    for step in range(6):
        gains = {c: j_direct(k, chosen + [c]) for c in range(11) if c not in chosen}
        best = max(gains.values())
        expected = min(c for c, v in gains.items() if v >= best - 1e-13)        # ties: the lower position
        assert selected[step] == expected
        assert values[step] == pytest.approx(best, abs=1e-12)
        chosen.append(expected)
    np.testing.assert_allclose(sums.numpy(), k[selected].sum(0), atol=1e-12)


def _theorem_instance(n: int = 8):
    """Points whose RBF kernel meets the paper's diagonal-dominance condition (Theorem 3, as we read it:
    0 <= k_ij <= k_ii / (n³ + 2n² - 2n - 3) for i != j): γ puts the closest pair at half that bound."""
    x = np.random.default_rng(4).normal(size=(n, 2))
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    gamma = math.log(2 * (n ** 3 + 2 * n ** 2 - 2 * n - 3)) / d2[~np.eye(n, dtype=bool)].min()   # half the bound
    return rbf_matrix(x, gamma)


def test_greedy_is_within_1_minus_1_over_e_of_the_exhaustive_optimum():
    """Nemhauser, Wolsey & Fisher's bound needs a normalised monotone submodular function.  J_b is monotone
    submodular on the non-empty sets under the theorem's condition (checked here by enumeration), but
    J_b({x}) ≈ 2/n - 1 < 0 = J_b(∅): the bound is stated for f = J_b - c with f(∅) = 0, where c is the largest
    value of J_b(∅) that keeps monotonicity and submodularity at the empty set (enumerated too)."""
    k = _theorem_instance()
    n = len(k)
    off = k[~np.eye(n, dtype=bool)]
    assert 0 <= off.max() <= 1.0 / (n ** 3 + 2 * n ** 2 - 2 * n - 3)
    sets = [frozenset(c) for r in range(1, n + 1) for c in itertools.combinations(range(n), r)]
    value = {s: j_direct(k, sorted(s)) for s in sets}
    c = min(min(value[frozenset([x])] for x in range(n)),
            min(value[frozenset([x])] + value[frozenset([y])] - value[frozenset([x, y])]
                for x in range(n) for y in range(n) if x != y))
    value[frozenset()] = c
    everything = [frozenset()] + sets
    for t in everything:                                   # monotone and submodular, empty set included
        for x in set(range(n)) - t:
            gain_t = value[t | {x}] - value[t]
            assert gain_t >= -1e-15
            for y in t:
                assert value[(t - {y}) | {x}] - value[t - {y}] >= gain_t - 1e-15
    for m in range(1, 6):
        greedy, values, _ = greedy_prototypes(KernelMatrix(k), m)
        optimum = max(value[frozenset(s)] for s in itertools.combinations(range(n), m))
        assert values[-1] == pytest.approx(value[frozenset(greedy)], abs=1e-13)
        assert values[-1] - c >= (1 - 1 / math.e) * (optimum - c) - 1e-13
        assert values[-1] <= optimum + 1e-13


# -- witness function and criticisms --------------------------------------------------------------------------
def test_witness_in_closed_form():
    """Two clusters of identical points, A (3) and B (2), with kernel 1 inside a cluster and 0 across:
    witness(x) = mass of x's cluster - share of the prototypes in it."""
    block = np.zeros((5, 5))
    block[:3, :3] = block[3:, 3:] = 1.0
    far = RBFKernel(SquaredDistances(torch.tensor([[0.0], [0.0], [0.0], [50.0], [50.0]], dtype=torch.float64)), 1.0)
    for kern in (KernelMatrix(block), far):
        colmean = kern.colmean()
        for protos, expected in (([0], [0.6 - 1] * 3 + [0.4] * 2), ([0, 3], [0.6 - 0.5] * 3 + [0.4 - 0.5] * 2)):
            _, _, sums = greedy_prototypes(kern, 1) if protos == [0] else (None, None, kern.rows(protos).sum(0))
            np.testing.assert_allclose(witness(colmean, sums, len(protos)).numpy(), expected, atol=1e-15)
        assert mmd2(kern, [0]) == pytest.approx(0.52 - 1.2 + 1.0)       # (1/n²)Σk - 2(1/nm)Σk + (1/m²)Σk
        assert mmd2(kern, [0, 3]) == pytest.approx(0.52 - 1.0 + 0.5)


def test_each_criticism_step_is_the_brute_force_argmax():
    _, _, k = _random_kernel(10, 5)
    kern = KernelMatrix(k)
    protos, _, sums = greedy_prototypes(kern, 3)
    w = witness(kern.colmean(), sums, 3)
    crits, values = greedy_criticisms(kern, protos, 4, w)
    chosen: list[int] = []
    for step in range(4):
        score = {}
        for c in set(range(10)) - set(protos) - set(chosen):
            s = chosen + [c]
            score[c] = float(np.abs(w.numpy()[s]).sum() + np.linalg.slogdet(k[np.ix_(s, s)])[1])
        best = max(score.values())
        expected = min(c for c, v in score.items() if v >= best - 1e-12)
        assert crits[step] == expected and values[step] == pytest.approx(best, abs=1e-10)
        assert criticism_objective(kern, crits[:step + 1], w) == pytest.approx(best, abs=1e-10)
        chosen.append(expected)
    assert not set(crits) & set(protos)


def test_log_determinant_keeps_the_criticisms_diverse():
    """A: 4 identical points, B: 2, C: 1 (kernel 1 within, 0 across).  The prototype is in A (J_b({a}) =
    8/7 - 1 is the largest); the witness is -3/7 on A, 2/7 on B, 1/7 on C.  The first criticism is another A
    point; a second one from A would make K_CC singular, so the next is from B, though A's |witness| is larger."""
    k = np.zeros((7, 7))
    k[:4, :4] = k[4:6, 4:6] = k[6:, 6:] = 1.0
    kern = KernelMatrix(k)
    protos, _, sums = greedy_prototypes(kern, 1)
    assert protos == [0]
    w = witness(kern.colmean(), sums, 1)
    np.testing.assert_allclose(w.numpy(), [-3 / 7] * 4 + [2 / 7] * 2 + [1 / 7], atol=1e-15)
    crits, values = greedy_criticisms(kern, protos, 3, w)
    assert crits == [1, 4, 6]
    assert values == pytest.approx([3 / 7, 3 / 7 + 2 / 7, 3 / 7 + 2 / 7 + 1 / 7])


# -- the method on planted clusters ---------------------------------------------------------------------------
class Identity(nn.Module):
    """``embed(x) = x``; the head gives class c near centre c."""

    architecture = "mlp"

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(2, 3)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor(CENTRES, dtype=torch.float32))
            self.classifier.bias.copy_(-0.5 * (torch.tensor(CENTRES, dtype=torch.float32) ** 2).sum(1))

    def embed(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.classifier(self.embed(x))


CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 8.66]])   # an equilateral triangle, side 10
SIZES = (25, 20, 15)


def _clusters(rng, sizes, spread=0.1):
    x = np.vstack([CENTRES[c] + rng.normal(0.0, spread, (n, 2)) for c, n in enumerate(sizes)])
    return torch.tensor(x, dtype=torch.float32), torch.tensor(np.repeat(np.arange(3), sizes))


@pytest.fixture(scope="module")
def ctx():
    rng = np.random.default_rng(6)
    x_train, y_train = _clusters(rng, SIZES)
    x_test, y_test = _clusters(rng, (4, 4, 4))
    return ExplainContext(model=Identity().eval(), dataset="toy", model_id="identity", info=INFO,
                          train=PreparedSplit(x=x_train, y=y_train), test=PreparedSplit(x=x_test, y=y_test), seed=2)


def _method(**over):
    # γ = 16 / median: the median pair is in two clusters (most pairs are), so across clusters k ≈ e^-16
    return MMDCritic(**{"n_explain": 12, "n_prototypes": 3, "n_criticisms": 2, "kernel": "global",
                        "gamma_grid": [16.0], "cv_folds": 2, **over})


@pytest.mark.parametrize("kernel", ["global", "local"])
def test_planted_clusters_get_one_prototype_each(ctx, kernel):
    """Masses 25/60, 20/60, 15/60: in the block limit MMD² is Σ_c (mass_c - share_c)², smallest with one
    prototype per cluster (0.014, against 0.097 for the best set that leaves a cluster out)."""
    record = _method(kernel=kernel).explain(ctx)
    extra = record.extra
    assert sorted(extra["prototype_classes"]) == [0, 1, 2]
    assert extra["prototype_classes"][:2] == [0, 1]                         # greedy: heaviest cluster first
    assert extra["prototype_witness"] == pytest.approx([25 / 60 - 1 / 3, 20 / 60 - 1 / 3, 15 / 60 - 1 / 3], abs=0.01)
    assert extra["mmd2"] == pytest.approx((25 / 60 - 1 / 3) ** 2 + (15 / 60 - 1 / 3) ** 2, abs=0.01)
    assert extra["objective"][-1] == pytest.approx(
        objective(RBFKernel(SquaredDistances(ctx.train.x.double(), ctx.train.y if kernel == "local" else None),
                            extra["gamma"]), extra["prototypes"]), abs=1e-9)
    assert len(extra["criticisms"]) == 2 and not set(extra["criticisms"]) & set(extra["prototypes"])
    assert record.indices == explained_indices(12, 12, ctx.seed).tolist()
    assert extra["nearest_prototype_class"] == ctx.test.y[record.indices].tolist() == record.targets
    for t, (p,), (d,) in zip(record.indices, record.examples, record.scores):
        assert d == pytest.approx(float(torch.dist(ctx.test.x[t].double(), ctx.train.x[p].double())), rel=1e-9)


def test_cross_validation_matches_a_one_nearest_neighbour_classifier(ctx):
    """The held-out accuracies equal scikit-learn's 1-NN on each fold's prototypes; the best multiplier wins."""
    rng = np.random.default_rng(7)
    x = ctx.train.x.double() + torch.tensor(rng.normal(0.0, 2.0, (60, 2)))   # noisy: the accuracies differ
    y = ctx.train.y
    dist = SquaredDistances(x)
    median = 50.0
    grid = [0.05, 1.0, 16.0]
    best, accuracies = cross_validate_gamma(dist, y, grid, median, 3, 3, seed=11)
    parts = np.array_split(np.random.default_rng(11).permutation(60), 3)
    for g, acc in zip(grid, accuracies):
        correct = 0
        for f, held in enumerate(parts):
            fit = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != f]))
            protos, _, _ = greedy_prototypes(KernelMatrix(rbf_matrix(x.numpy()[fit], g / median)), 3)
            knn = KNeighborsClassifier(n_neighbors=1).fit(x.numpy()[fit][protos], y.numpy()[fit][protos])
            correct += int((knn.predict(x.numpy()[held]) == y.numpy()[held]).sum())
        assert acc == pytest.approx(correct / 60)
    assert best == grid[min(range(3), key=lambda i: (-accuracies[i], abs(math.log(grid[i])), grid[i]))]
    assert cross_validate_gamma(dist, y, [2.0], median, 3, 3, seed=11) == (2.0, [])


def test_model_left_alone_and_clear_errors(ctx):
    model = Identity().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    c = ExplainContext(model=model, dataset="toy", model_id="identity", info=INFO, train=ctx.train, test=ctx.test)
    _method().explain(c)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="distinct training points"):
        _method(n_prototypes=50, n_criticisms=20).explain(ctx)
    with pytest.raises(ParamError, match="kernel"):
        _method(kernel="gaussian")
    with pytest.raises(ParamError, match="gamma_grid"):
        _method(gamma_grid=[0.0])
    with pytest.raises(ValueError, match="prototypes from"):
        greedy_prototypes(KernelMatrix(np.eye(3)), 4)
