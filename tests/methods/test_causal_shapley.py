"""Causal Shapley values [107]: indirect credit on a chain, a closed form for linear SCMs, efficiency.

Closed form (linear ``f(x) = w·x + b`` on a linear-Gaussian SCM ``X = B X + c + σ ε``).  Write ``μ = E[X]``.
Under ``do(X_S = x_S)`` the means of the other variables solve ``m_j − μ_j = Σ_p B_jp (m_p − μ_p)``
with ``m_a = x_a`` on ``S``, so ``m_j − μ_j`` is a sum over directed paths ``π = (a → … → j)`` that start
in ``S`` and meet ``S`` nowhere else, of ``Π_π B · (x_a − μ_a)``.  Hence

    v(S) = w·μ + b + Σ_π  w_j Π_π B (x_a − μ_a) · 1[a ∈ S, no other node of π in S],

a sum over all directed paths (the length-0 path ``(a)`` included) of games
``g_π(S) = 1[a ∈ S] Π_{q ∈ π∖a} 1[q ∉ S]``.  In a random order of the players, ``a`` gains 1 in ``g_π``
iff it comes before the ``L`` other nodes of ``π`` (probability ``1/(L+1)``), and a node ``q ≠ a`` of
``π`` loses 1 iff ``a`` comes first and ``q`` second among them (``1/(L(L+1))``); other features are
dummies.  By linearity of the Shapley value,

    φ_i =   Σ_{π from i}                  w_j Π_π B (x_i − μ_i) / (L_π + 1)
          − Σ_{π ∋ i, i not its source a}  w_j Π_π B (x_a − μ_a) / (L_π (L_π + 1)).

On the chain ``X1 → X2`` (``X2 = β X1 + …``) with ``f = w_2 x_2``: ``φ_1 = w_2 β (x_1 − μ_1) / 2`` and
``φ_2 = w_2 (x_2 − μ_2) − w_2 β (x_1 − μ_1) / 2``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from nnxai.data import DATASETS, PreparedSplit, causal
from nnxai.data.causal import LinearGaussianSCM
from nnxai.methods.attribution.shapley.causal_shapley import CausalShapley
from nnxai.methods.base import model_traits
from nnxai.params import ParamError
from toy_models import LinearModel, tiny_mlp, toy_context


def chain_scm(beta=0.8) -> LinearGaussianSCM:
    return LinearGaussianSCM(("x1", "x2"), np.array([[0.0, 0.0], [beta, 0.0]]), np.array([0.5, -0.3]),
                             np.array([1.0, 0.6]))


def method(n_samples=8, batch_size=3) -> CausalShapley:
    return CausalShapley(n_explain=5, batch_size=batch_size, n_samples=n_samples)


def scm_split(scm: LinearGaussianSCM, n: int = 10) -> PreparedSplit:
    """A train split drawn from ``scm`` that records it in its meta, as prepared data sets do."""
    x = torch.from_numpy(scm.from_noise(np.random.default_rng(0).standard_normal((n, scm.n_features)))).float()
    return PreparedSplit(x=x, y=torch.zeros(n, dtype=torch.long), meta={"scm": scm.as_dict()})


def fitted(model, scm=causal.SCM, **params) -> CausalShapley:
    """:func:`method` fitted for ``model`` on a split of ``scm`` (seed 0)."""
    return method(**params).fit(model, scm_split(scm))


def directed_paths(coefficients: np.ndarray, start: int):
    """Every directed path from ``start`` (as node lists, the length-0 path included)."""
    out, stack = [], [[start]]
    while stack:
        path = stack.pop()
        out.append(path)
        stack.extend(path + [int(child)] for child in np.flatnonzero(coefficients[:, path[-1]]))
    return out


def closed_form(scm: LinearGaussianSCM, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    deviation = x - scm.mean()
    phi = np.zeros(scm.n_features)
    for source in range(scm.n_features):
        for path in directed_paths(scm.coefficients, source):
            length = len(path) - 1
            gain = w[path[-1]] * math.prod(scm.coefficients[b, a] for a, b in zip(path, path[1:])) * deviation[source]
            phi[source] += gain / (length + 1)
            for node in path[1:]:
                phi[node] -= gain / (length * (length + 1))
    return phi


def marginal_shapley(f, x: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Marginal Shapley values, ``v(S) = mean_k f(x_S, X^(k)_S̄)`` over observational rows: a slow reference."""
    d = len(x)

    def v(subset):
        rows = sample.clone()
        rows[:, list(subset)] = x[list(subset)]
        return f(rows).mean()

    phi = torch.zeros(d, dtype=torch.float64)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for size in range(d):
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for subset in itertools.combinations(others, size):
                phi[i] += weight * (v(subset + (i,)) - v(subset))
    return phi


def test_chain_gives_the_cause_indirect_credit_that_marginal_shapley_denies():
    scm = chain_scm(beta=0.8)
    model = LinearModel(torch.tensor([[0.0, 0.0], [0.0, 3.0]]), torch.tensor([0.0, 0.5]))  # logit 1 = 3 x2 + 0.5
    x = torch.tensor([[1.5, 0.2], [-1.0, 0.7], [0.4, -2.0]])
    target = torch.ones(3, dtype=torch.long)
    parts = fitted(model, scm).decompose(model, x, target)

    mu = scm.mean()
    dev1, dev2 = x[:, 0].double() - mu[0], x[:, 1].double() - mu[1]
    torch.testing.assert_close(parts["phi"][:, 0], 3.0 * 0.8 * dev1 / 2, rtol=0, atol=1e-5)
    torch.testing.assert_close(parts["phi"][:, 1], 3.0 * dev2 - 3.0 * 0.8 * dev1 / 2, rtol=0, atol=1e-5)
    assert (parts["phi"][:, 0].abs() > 0.1).all()
    torch.testing.assert_close(parts["direct"][:, 0], torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(parts["indirect"][:, 0], parts["phi"][:, 0], rtol=0, atol=1e-6)

    sample = torch.from_numpy(scm.from_noise(np.random.default_rng(0).standard_normal((500, 2)))).float()
    f = lambda rows: model(rows)[:, 1].double()                                      # noqa: E731
    for row in x:
        marginal = marginal_shapley(f, row, sample)
        assert marginal[0] == 0.0 and abs(marginal[1]) > 0.1


def test_an_effect_does_not_explain_its_cause():
    # f reads only the cause X1: intervening on the effect X2 changes nothing, so X2 gets nothing.
    scm = chain_scm(beta=0.8)
    model = LinearModel(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    x = torch.tensor([[1.5, 0.2], [-1.0, 0.7]])
    parts = fitted(model, scm).decompose(model, x, torch.ones(2, dtype=torch.long))
    torch.testing.assert_close(parts["phi"][:, 1], torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(parts["phi"][:, 0], 2.0 * (x[:, 0].double() - 0.5), rtol=0, atol=1e-5)


def test_closed_form_for_a_linear_model_on_a_linear_gaussian_scm():
    scm = dataclasses.replace(causal.SCM, intercepts=np.array([0.3, -0.2, 0.1, 0.4, -0.5, 0.2]))
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(2, 6, generator=gen)
    model = LinearModel(weight, torch.tensor([0.1, -0.4]))
    x = torch.randn(4, 6, generator=gen)
    target = torch.tensor([0, 1, 1, 0])
    phi = fitted(model, scm, n_samples=4).decompose(model, x, target)["phi"].numpy()
    for row, t, got in zip(x.double().numpy(), target.tolist(), phi):
        np.testing.assert_allclose(got, closed_form(scm, weight[t].double().numpy(), row), rtol=0, atol=2e-5)


def test_efficiency_and_the_direct_indirect_split_on_a_relu_mlp():
    model = tiny_mlp(3, n_features=6, n_classes=2)
    x = torch.from_numpy(causal.generate(5, 11)["x"])
    target = torch.tensor([0, 1, 0, 1, 1])
    parts = fitted(model, n_samples=200).decompose(model, x, target)
    logit = model(x).detach().double().gather(1, target[:, None])[:, 0]
    # v̂(N) = f(x) up to float32 rounding of the batched forward pass
    torch.testing.assert_close(parts["phi"].sum(1), logit - parts["expected"], rtol=0, atol=1e-6)
    torch.testing.assert_close(parts["direct"] + parts["indirect"], parts["phi"], rtol=0, atol=1e-12)
    # v̂(∅) estimates E[f_c(X)] under the SCM (4 standard errors of 100 antithetic pairs)
    big = model(torch.from_numpy(causal.generate(20000, 12)["x"])).detach().double()
    expected, spread = big[:, target].mean(0), big[:, target].std(0)
    assert ((parts["expected"] - expected).abs() < 4 * spread / math.sqrt(100)).all()


def test_applies_only_to_data_with_a_known_graph():
    traits = model_traits(tiny_mlp(0, n_features=6, n_classes=2))
    assert CausalShapley.why_not(DATASETS["causal"], traits) is None
    assert "causal graph" in CausalShapley.why_not(DATASETS["iris"], traits)
    assert CausalShapley.why_not(DATASETS["shapes"], traits) is not None


def test_bad_parameters_and_inputs_are_clear_errors():
    with pytest.raises(ParamError, match=r"'causal_shapley'\.n_samples: 7 is odd; .* must be even"):
        CausalShapley(n_explain=5, batch_size=3, n_samples=7)
    with pytest.raises(ParamError, match=r"'causal_shapley'\.n_samples: 0 is out of range, expected >= 2"):
        CausalShapley(n_explain=5, batch_size=3, n_samples=0)
    model = tiny_mlp(0, n_features=5, n_classes=2)
    with pytest.raises(ValueError, match=r"inputs must be \(N, 6\)"):
        fitted(model)(model, torch.zeros(2, 5), torch.tensor([0, 1]))


def test_the_scm_is_fitted_from_the_train_split():
    model = tiny_mlp(0, n_features=2, n_classes=2)
    x, target = torch.tensor([[1.5, 0.2]]), torch.tensor([1])
    unfitted = method()
    with pytest.raises(RuntimeError, match=r"'causal_shapley' learns from the train split: call fit"):
        unfitted(model, x, target)
    with pytest.raises(RuntimeError, match="call fit"):
        unfitted.decompose(model, x, target)
    with pytest.raises(ValueError, match="need the causal graph of the data"):
        unfitted.fit(model, PreparedSplit(x=x, y=target))                  # no SCM recorded, no known graph
    chain = chain_scm(0.3)
    assert unfitted.fit(model, scm_split(chain)).scm_.same_as(chain)     # the split's own SCM
    causal_info = DATASETS["causal"]
    assert method().fit(model, PreparedSplit(x=x, y=target), info=causal_info).scm_ is causal.SCM
    with pytest.raises(ValueError, match="another SCM"):
        method().fit(model, scm_split(chain), info=causal_info)


def test_the_fitted_seed_draws_the_noise():
    model = tiny_mlp(1, n_features=6, n_classes=2)
    x, target = torch.from_numpy(causal.generate(3, 11)["x"]), torch.tensor([0, 1, 1])
    split = scm_split(causal.SCM)
    seed_0 = method().fit(model, split).decompose(model, x, target)["phi"]
    seed_3 = method().fit(model, split, seed=3).decompose(model, x, target)["phi"]
    assert not torch.allclose(seed_0, seed_3)
    torch.testing.assert_close(method().fit(model, split, seed=3).decompose(model, x, target)["phi"], seed_3,
                               rtol=0, atol=0)


def causal_context(seed=0):
    model = tiny_mlp(seed, n_features=6, n_classes=2)
    ctx = toy_context(model, torch.from_numpy(causal.generate(40, 1)["x"]),
                      torch.from_numpy(causal.generate(9, 2)["x"]), 2, seed=seed)
    ctx.info = dataclasses.replace(ctx.info, name="causal")
    return model, ctx


def test_explain_records_the_decomposition_and_checks_the_data_graph():
    model, ctx = causal_context()
    record = method(n_samples=10).explain(ctx)
    direct, indirect = np.array(record.meta["direct_effect"]), np.array(record.meta["indirect_effect"])
    np.testing.assert_allclose(direct + indirect, record.attributions, rtol=0, atol=1e-6)
    logits = model(ctx.test.x[record.indices]).detach().double().numpy()
    total = logits[np.arange(len(record.targets)), record.targets] - np.array(record.meta["expected_value"])
    np.testing.assert_allclose(record.attributions.sum(1), total, rtol=0, atol=1e-5)
    assert record.meta["scm"] == causal.SCM.as_dict()

    ctx.train.meta = {"scm": dataclasses.replace(causal.SCM, noise_std=np.ones(6)).as_dict()}
    with pytest.raises(ValueError, match="another SCM"):
        method(n_samples=10).explain(ctx)


def test_shapley_error_metric_scores_the_monte_carlo_error():
    from nnxai.metrics.shapley_error import ShapleyError

    metric = ShapleyError(max_players=13, reference_permutations=10, max_inputs=9)
    weight = torch.randn(2, 6, generator=torch.Generator().manual_seed(8))
    linear = LinearModel(weight, torch.tensor([0.2, -0.1]))
    _, ctx = causal_context()
    ctx.model = linear
    exact = method(n_samples=4)
    scores = metric(exact.explain(ctx), ctx, exact)
    assert scores["shapley_error"] < 1e-5 and scores["shapley_error.exact"] == 1.0   # antithetic: exact if linear
    model, ctx = causal_context(seed=2)
    coarse, fine = method(n_samples=2), method(n_samples=40)
    error_coarse = metric(coarse.explain(ctx), ctx, coarse)["shapley_error"]
    error_fine = metric(fine.explain(ctx), ctx, fine)["shapley_error"]
    assert error_fine < error_coarse and error_fine < 0.5
