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
