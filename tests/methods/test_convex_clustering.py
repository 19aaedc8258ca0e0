"""The convex-clustering path behind MAME [68]: closed forms, an independent optimality certificate, and a
planted hierarchy."""

from __future__ import annotations

import numpy as np
import pytest

from nnxai.methods.attribution.aggregation import _convex_clustering as cc


def two_points(distance: float):
    x = np.array([[0.0, 0.0], [distance, 0.0]])
    graph = cc.knn_tree_graph(x, 1)
    return x, graph, cc.restrict(x, graph, np.arange(2))


@pytest.mark.parametrize("lam", [0.3, 0.9, 1.0, 1.7])
def test_two_points_follow_the_closed_form(lam):
    # ½||u1−x1||² + ½||u2−x2||² + λ||u1−u2||: each moves λ towards the other until they meet at λ = d/2.
    x, _, problem = two_points(2.0)
    u = cc.solve(problem, lam, 1e-14, 10_000).u
    expected = np.array([[min(lam, 1.0), 0.0], [2.0 - min(lam, 1.0), 0.0]])
    np.testing.assert_allclose(u, expected, atol=1e-6)


def test_full_fusion_lambda_is_exact_for_two_points_and_a_certificate_in_general():
    x, graph, _ = two_points(2.0)
    assert cc.full_fusion_lambda(x, graph) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    graph = cc.knn_tree_graph(x, 3)
    lam = cc.full_fusion_lambda(x, graph)
    sol = cc.solve(cc.restrict(x, graph, np.arange(30)), lam, 1e-12, 50_000)
    np.testing.assert_allclose(sol.u, np.broadcast_to(x.mean(0), x.shape), atol=1e-4)


def independent_gap(x, edges, weights, lam, u, v):
    """P(U) − D(V) written out with a dense incidence matrix, after checking that V is dual feasible and that
    U is the primal point of V."""
    a = np.zeros((len(edges), len(x)))
    a[np.arange(len(edges)), edges[:, 0]], a[np.arange(len(edges)), edges[:, 1]] = 1.0, -1.0
    assert (np.linalg.norm(v, axis=1) <= lam * weights + 1e-9).all()
    np.testing.assert_allclose(u, x - a.T @ v, atol=1e-9)
    primal = 0.5 * ((u - x) ** 2).sum() + lam * (weights * np.linalg.norm(a @ u, axis=1)).sum()
    dual = (v * (a @ x)).sum() - 0.5 * ((a.T @ v) ** 2).sum()
    return primal - dual


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.8])
def test_the_solution_is_certified_optimal_by_weak_duality(fraction):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5))
    graph = cc.knn_tree_graph(x, 4)
    lam = fraction * cc.full_fusion_lambda(x, graph)
    sol = cc.solve(cc.restrict(x, graph, np.arange(40)), lam, 1e-8, 100_000)
    gap = independent_gap(x, graph.edges, graph.weights, lam, sol.u, sol.v)
    assert 0 <= gap <= 1e-7
    # Any other point is no better: P(U) <= P(U + δ) for random δ (a second, cruder check of optimality).
    problem = cc.restrict(x, graph, np.arange(40))
    best = problem.objective(lam, sol.u)
    assert all(best <= problem.objective(lam, sol.u + 1e-3 * rng.normal(size=sol.u.shape)) for _ in range(20))


def test_the_restricted_problem_is_the_objective_on_cluster_constant_points():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 3))
    graph = cc.knn_tree_graph(x, 3)
    labels = np.array([0, 0, 1, 2, 1, 3, 3, 0, 2, 4, 4, 4])
    problem = cc.restrict(x, graph, labels)
    full = cc.restrict(x, graph, np.arange(12))

    def difference(u):
        return full.objective(0.7, u[labels]) - problem.objective(0.7, u)

    # They differ by a constant (the within-cluster scatter), whatever the cluster values.
    assert difference(rng.normal(size=(5, 3))) == pytest.approx(difference(rng.normal(size=(5, 3))))


def planted_hierarchy(rng, per_subgroup=10, dims=4):
    groups = np.array([[10.0] * dims, [-10.0] * dims])
    offsets = np.array([[2.0, -2.0] * (dims // 2), [-2.0, 2.0] * (dims // 2)])
    sub = np.repeat(np.arange(4), per_subgroup)
    x = groups[sub // 2] + offsets[sub % 2] + 0.2 * rng.normal(size=(len(sub), dims))
    return x, sub


def partitions_equal(a, b) -> bool:
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def test_the_path_recovers_a_planted_hierarchy_as_a_tree():
    rng = np.random.default_rng(3)
    x, sub = planted_hierarchy(rng)
    levels = cc.clustering_path(x, cc.knn_tree_graph(x, 5), 40, 1e-4, 1e-3, 20_000)
    partitions = [lv.labels for lv in levels]
    assert len(set(partitions[0])) == len(x) and len(set(partitions[-1])) == 1
    assert any(partitions_equal(p, sub) for p in partitions)          # the 4 subgroups
    assert any(partitions_equal(p, sub // 2) for p in partitions)     # the 2 groups
    for finer, coarser in zip(partitions, partitions[1:]):            # nested: a tree
        assert len(set(zip(finer, coarser))) == len(set(finer)) > len(set(coarser))
    two = next(lv for lv in levels if lv.labels.max() == 1)
    # At the 2-group level the coefficients sit between each group's mean and the overall mean (shrinkage).
    for c in range(2):
        mean = x[two.labels == c].mean(0)
        assert np.linalg.norm(two.centres[c] - x.mean(0)) < np.linalg.norm(mean - x.mean(0))


def test_a_solve_cut_short_says_so_in_its_gap():
    rng = np.random.default_rng(5)
    x, _ = planted_hierarchy(rng)
    levels = cc.clustering_path(x, cc.knn_tree_graph(x, 5), 10, 1e-3, 1e-3, 1)
    inner = [lv for lv in levels[1:] if lv.iterations]
    assert inner and all(lv.gap > lv.tolerance > 0 for lv in inner)


# -- per-point quadratic losses: g_i(u) = ½ (u − θ̂_i)ᵀ H_i (u − θ̂_i) -------------------------------------------

def random_quadratics(rng, n, d, spread=1.0):
    """``n`` SPD matrices with eigenvalues in [0.5, 4] (condition ~8) and points θ̂_i."""
    q = np.linalg.qr(rng.normal(size=(n, d, d)))[0]
    eig = rng.uniform(0.5, 4.0, size=(n, d))
    return spread * rng.normal(size=(n, d)), np.einsum("nij,nj,nkj->nik", q, eig, q)


def quadratic_objective(x, hessians, edges, weights, lam, u):
    """P(U) of (1) written out directly, for U of shape (n, d)."""
    r = u - x
    return (0.5 * np.einsum("ni,nij,nj->", r, hessians, r)
            + lam * (weights * np.linalg.norm(u[edges[:, 0]] - u[edges[:, 1]], axis=1)).sum())


def scipy_solution(x, hessians, edges, weights, lam):
    """An independent solve of (1): L-BFGS on the objective with the norms smoothed, sqrt(||δ||² + ε²), ε = 1e-9,
    started from the leaves; then polished once more from its own result."""
    from scipy.optimize import minimize

    n, d = x.shape
    eps2 = 1e-18

    def fun(flat):
        u = flat.reshape(n, d)
        r, diff = u - x, u[edges[:, 0]] - u[edges[:, 1]]
        norms = np.sqrt((diff ** 2).sum(1) + eps2)
        hr = np.einsum("nij,nj->ni", hessians, r)
        grad = hr.copy()
        g = lam * weights[:, None] * diff / norms[:, None]
        np.add.at(grad, edges[:, 0], g)
        np.add.at(grad, edges[:, 1], -g)
        return 0.5 * (r * hr).sum() + lam * (weights * norms).sum(), grad.ravel()

    u = x.ravel()
    for _ in range(2):
        u = minimize(fun, u, jac=True, method="L-BFGS-B", options={"maxiter": 20_000, "ftol": 1e-15,
                                                                    "gtol": 1e-12}).x
    return u.reshape(n, d)


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.4, 0.9])
def test_the_quadratic_solver_agrees_with_an_independent_solver(fraction):
    rng = np.random.default_rng(11)
    x, hessians = random_quadratics(rng, 8, 3)
    graph = cc.knn_tree_graph(x, 2)
    lam = fraction * cc.full_fusion_lambda(x, graph, hessians)
    problem = cc.restrict(x, graph, np.arange(8), hessians)
    sol = cc.solve(problem, lam, 1e-13, 200_000)
    other = scipy_solution(x, hessians, graph.edges, graph.weights, lam)
    mine = quadratic_objective(x, hessians, graph.edges, graph.weights, lam, sol.u)
    theirs = quadratic_objective(x, hessians, graph.edges, graph.weights, lam, other)
    assert mine <= theirs + 1e-9                                  # never worse than the independent optimum
    # Strong convexity (μ = min λ_min(H_i)): ||U − U*||² <= 2 (P(U) − P*) / μ, so the independent point lies
    # within sqrt(2 (P(theirs) − P(mine)) / μ) of ours (smoothing leaves L-BFGS short of the kinks).
    mu = cc.strong_convexity(hessians)
    assert np.linalg.norm(sol.u - other) <= np.sqrt(2 * max(theirs - mine, 0.0) / mu) + 1e-5
    assert np.linalg.norm(sol.u - other) < 5e-3
    # The restricted problem's objective is (1) (the identity: no constant here, every cluster a point).
    assert problem.objective(lam, sol.u) == pytest.approx(mine, abs=1e-9)


def test_the_quadratic_solution_satisfies_the_kkt_conditions():
    rng = np.random.default_rng(12)
    x, hessians = random_quadratics(rng, 25, 4)
    graph = cc.knn_tree_graph(x, 3)
    lam = 0.12 * cc.full_fusion_lambda(x, graph, hessians)
    sol = cc.solve(cc.restrict(x, graph, np.arange(25), hessians), lam, 1e-12, 200_000)
    a = np.zeros((len(graph.edges), 25))
    a[np.arange(len(graph.edges)), graph.edges[:, 0]], a[np.arange(len(graph.edges)), graph.edges[:, 1]] = 1.0, -1.0
    # Stationarity H_i (u_i − θ̂_i) + (Aᵀ V)_i = 0, dual feasibility, and v_l = λ w_l (Au)_l/||(Au)_l|| on unfused edges.
    np.testing.assert_allclose(np.einsum("nij,nj->ni", hessians, sol.u - x) + a.T @ sol.v, 0.0, atol=1e-9)
    assert (np.linalg.norm(sol.v, axis=1) <= lam * graph.weights + 1e-9).all()
    au = a @ sol.u
    apart = np.linalg.norm(au, axis=1) > 1e-3
    assert apart.any() and (~apart).any()
    np.testing.assert_allclose(sol.v[apart], lam * graph.weights[apart, None] * au[apart]
                               / np.linalg.norm(au[apart], axis=1, keepdims=True), atol=1e-5)


def test_identity_hessians_reproduce_the_convex_clustering_path():
    rng = np.random.default_rng(3)
    x, sub = planted_hierarchy(rng)
    graph = cc.knn_tree_graph(x, 5)
    eye = np.broadcast_to(np.eye(x.shape[1]), (len(x),) + (x.shape[1],) * 2)
    scalar = cc.clustering_path(x, graph, 40, 1e-4, 1e-3, 20_000)
    dense = cc.clustering_path(x, graph, 40, 1e-4, 1e-3, 20_000, hessians=eye)
    assert [lv.lam for lv in dense] == pytest.approx([lv.lam for lv in scalar], rel=1e-12)
    for a, b in zip(scalar, dense):
        assert np.array_equal(a.labels, b.labels) and a.tolerance == pytest.approx(b.tolerance)
        np.testing.assert_allclose(b.centres, a.centres, atol=1e-9)
    assert cc.full_fusion_lambda(x, graph, eye) == pytest.approx(cc.full_fusion_lambda(x, graph), rel=1e-12)


def test_the_identity_path_keeps_the_squared_distance_solver_solutions():
    # Values of the solver before it took per-point quadratics (commit cd9897c), on a fixed problem.
    x = np.array([[0.0, 0.0], [1.0, 0.2], [4.0, 4.0], [5.0, 3.5], [4.5, 5.0]])
    graph = cc.knn_tree_graph(x, 2)
    levels = cc.clustering_path(x, graph, 12, 1e-3, 1e-3, 50_000)
    assert [lv.labels.tolist() for lv in levels] == OLD_LABELS
    for level, centres in zip(levels, OLD_CENTRES):
        np.testing.assert_allclose(level.centres, centres, atol=1e-6)


def chain(n):
    edges = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    return cc.FusionGraph(n, edges, np.ones(n - 1), np.ones(n - 1, dtype=bool))


def test_the_quadratic_full_fusion_lambda_is_sharp_on_a_tree():
    rng = np.random.default_rng(13)
    x, hessians = random_quadratics(rng, 6, 3)
    graph = chain(6)
    lam = cc.full_fusion_lambda(x, graph, hessians)
    root = np.linalg.solve(hessians.sum(0), np.einsum("nij,nj->i", hessians, x))
    problem = cc.restrict(x, graph, np.arange(6), hessians)
    at = cc.solve(problem, lam, 1e-12, 50_000)
    assert at.gap <= 1e-12
    np.testing.assert_allclose(at.u, np.broadcast_to(root, x.shape), atol=1e-6)
    below = cc.solve(problem, 0.97 * lam, 1e-12, 50_000)
    assert below.gap <= 1e-12
    spread = np.linalg.norm(below.u - below.u.mean(0), axis=1).max()
    assert spread > 1e-2                        # not fully fused 3 % below the certificate (gap: error < 2e-6)
    # The fused point is optimal at λ_max: the residuals pushed up the chain are the duals, all feasible.
    residual = np.einsum("nij,nj->ni", hessians, x - root)
    duals = np.cumsum(residual, axis=0)[:-1]
    assert np.linalg.norm(duals, axis=1).max() == pytest.approx(lam)


OLD_LABELS = [[0, 1, 2, 3, 4], [0, 0, 1, 2, 3], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]
OLD_CENTRES = [[[0.0, 0.0], [1.0, 0.2], [4.0, 4.0], [5.0, 3.5], [4.5, 5.0]],
               [[0.8873522, 0.4977801], [4.10447, 3.8015059], [4.330928, 3.8721607], [4.2898977, 4.0307732]],
               [[1.2295573, 0.8417166], [4.0136285, 3.6721889]], [[2.9, 2.54]]]
