"""Convex clustering and its path of solutions: the optimisation behind MAME [68].

For points ``θ̂_1 … θ̂_n`` (rows of ``X``), a graph with edges ``l = (i, j)`` and weights ``w_l > 0``, and
a fusion strength ``λ ≥ 0``, convex clustering (Hocking et al. 2011; Chi & Lange 2015) solves

    min_U  P(U) = ½ Σ_i ||u_i − θ̂_i||² + λ Σ_l w_l ||u_i − u_j||₂ .                    (1)

At ``λ = 0`` every ``u_i = θ̂_i``; as ``λ`` grows the ``u_i`` fuse into shared values, and above a finite
``λ`` all equal the mean of the ``θ̂_i``.

Solver.  The dual of (1) (Chi & Lange 2015, Sec. 3.2) is ``max_V D(V) = <V, A X> − ½ ||Aᵀ V||²`` subject
to ``||v_l|| ≤ λ w_l``, with ``A`` the edge-incidence matrix (``(A U)_l = u_i − u_j``) and the primal
point ``U(V) = X − Aᵀ V``.  We maximise it by accelerated projected gradient ascent (FISTA with adaptive
restart, the accelerated form of Chi & Lange's AMA), step ``1 / ||A||²``.  The duality gap
``P(U(V)) − D(V) = λ Σ_l w_l ||(A U)_l|| − <V, A U>`` bounds the distance to the solution: ``P`` is
1-strongly convex, so ``||U − U*||_F ≤ √(2 gap)``.  Each ``λ`` is solved until ``gap ≤ (τ/4)²``, which
keeps every pair fused in ``U*`` within ``τ/2`` of each other; an edge counts as fused when
``||u_i − u_j|| ≤ τ`` (``τ = fusion_tol ·`` the RMS distance of the ``θ̂_i`` to their mean).

Path and tree.  ``λ`` runs over a geometric grid up to ``λ_max``, the certificate of full fusion
computed on a spanning tree of the graph (:func:`full_fusion_lambda`); each solve starts from the previous
dual.  Clusters are the connected components of the fused edges and are kept once formed, as in the
algorithmic-regularisation path of Weylandt, Nagorski & Allen (2020), which makes the levels a tree.
Keeping them, (1) is solved over ``U`` constant on the current clusters (:class:`Problem`: cluster sizes
``n_c`` weigh the first term, edges between two clusters add their weights), which is the same objective
on fewer points and converges fast once few clusters remain; the step becomes ``1 / ||A N^{-1/2}||²``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph


@dataclass(frozen=True)
class FusionGraph:
    """Edges ``(i, j)`` with ``i < j`` over ``n`` points, their weights, and which of them form a spanning
    tree."""

    n: int
    edges: np.ndarray      # (E, 2) int
    weights: np.ndarray    # (E,) float
    tree: np.ndarray       # (E,) bool


def knn_tree_graph(points: np.ndarray, n_neighbors: int) -> FusionGraph:
    """Unit-weight graph of the ``n_neighbors`` nearest neighbours of every point (Euclidean), joined with
    a minimum spanning tree so that it is connected (a disconnected graph would never fuse into a root)."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if n < 2:
        raise ValueError(f"convex clustering needs at least 2 points, got {n}")
    k = min(n_neighbors, n - 1)
    sq = (points ** 2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * points @ points.T, 0.0))
    masked = dist.copy()
    np.fill_diagonal(masked, np.inf)
    nearest = np.argsort(masked, axis=1, kind="stable")[:, :k]
    knn = {(min(i, j), max(i, j)) for i in range(n) for j in nearest[i]}
    # A constant offset keeps zero distances (duplicates) as edges; it does not change which tree is minimal.
    offset = dist + dist.max() + 1.0
    np.fill_diagonal(offset, 0.0)
    mst = csgraph.minimum_spanning_tree(offset).tocoo()
    tree_edges = {(int(min(i, j)), int(max(i, j))) for i, j in zip(mst.row, mst.col)}
    edges = np.array(sorted(knn | tree_edges), dtype=np.int64)
    tree = np.array([tuple(e) in tree_edges for e in edges.tolist()])
    return FusionGraph(n, edges, np.ones(len(edges)), tree)


def full_fusion_lambda(x: np.ndarray, graph: FusionGraph) -> float:
    """A ``λ`` from which the solution of (1) is fully fused: on the spanning tree, the dual variables that
    make ``u_i = mean(θ̂)`` optimal are unique, ``v_l = ±Σ_{k below l} (θ̂_k − mean)``; they are feasible iff
    ``λ ≥ max_l ||v_l|| / w_l``."""
    residual = x - x.mean(0)
    edges, weights = graph.edges[graph.tree], graph.weights[graph.tree]
    adj = sparse.coo_matrix((np.arange(1, len(edges) + 1), (edges[:, 0], edges[:, 1])), shape=(graph.n, graph.n))
    order, parent = csgraph.breadth_first_order(adj.tocsr(), 0, directed=False, return_predecessors=True)
    edge_of = {}
    for l, (i, j) in enumerate(edges.tolist()):
        edge_of[(i, j)] = edge_of[(j, i)] = l
    below = residual.copy()
    need = 0.0
    for node in order[::-1][:-1]:                       # leaves first, the root (order[0]) last
        up = parent[node]
        below[up] += below[node]
        need = max(need, np.linalg.norm(below[node]) / weights[edge_of[(node, up)]])
    return float(need)


def project(v: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Each row ``v_l`` projected onto the ball ``||v_l|| <= radius_l``."""
    norms = np.linalg.norm(v, axis=1)
    return v * np.minimum(1.0, radius / np.maximum(norms, 1e-300))[:, None]


@dataclass
class Problem:
    """Problem (1) restricted to ``U`` constant on clusters: ``½ Σ_c n_c ||u_c − x̄_c||² + λ Σ W ||u_c − u_c'||``
    over cluster centroids ``x̄_c`` (sizes ``n_c``), cluster edges ``(c, c')`` with summed weights ``W``."""

    centroids: np.ndarray   # (k, d)
    sizes: np.ndarray       # (k,)
    edges: np.ndarray       # (E, 2) with c < c'
    weights: np.ndarray     # (E,)

    def __post_init__(self):
        k, e = len(self.centroids), len(self.edges)
        self.a = sparse.csr_matrix((np.tile([1.0, -1.0], e), (np.repeat(np.arange(e), 2), self.edges.ravel())),
                                   shape=(e, k))
        self.at = self.a.T.tocsr()
        scaled = (self.at @ self.a).toarray() / np.sqrt(np.outer(self.sizes, self.sizes))
        self.step = 1.0 / float(np.linalg.eigvalsh(scaled)[-1]) if e else 1.0

    def primal(self, v: np.ndarray) -> np.ndarray:
        """``U(V) = X̄ − N⁻¹ Aᵀ V``, the minimiser of the Lagrangian."""
        return self.centroids - (self.at @ v) / self.sizes[:, None]

    def gap(self, lam: float, v: np.ndarray, u: np.ndarray) -> float:
        """``P(U(V)) − D(V) = λ Σ W ||(A U)_l|| − <V, A U>`` (>= 0 for feasible ``V``)."""
        au = self.a @ u
        return float(lam * (self.weights * np.linalg.norm(au, axis=1)).sum() - (v * au).sum())

    def objective(self, lam: float, u: np.ndarray) -> float:
        au = self.a @ u
        return float(0.5 * (self.sizes[:, None] * (u - self.centroids) ** 2).sum()
                     + lam * (self.weights * np.linalg.norm(au, axis=1)).sum())


@dataclass
class Solution:
    u: np.ndarray
    v: np.ndarray
    gap: float
    iterations: int


def solve(problem: Problem, lam: float, tol: float, max_iter: int, v0: np.ndarray | None = None) -> Solution:
    """Maximise the dual of ``problem`` at ``lam`` by FISTA with adaptive restart until the duality gap is
    ``<= tol`` or ``max_iter`` iterations have run, starting from dual ``v0`` (projected)."""
    radius = lam * problem.weights
    if len(problem.edges) == 0:
        return Solution(problem.centroids.copy(), np.zeros((0, problem.centroids.shape[1])), 0.0, 0)
    v = project(np.zeros((len(problem.edges), problem.centroids.shape[1])) if v0 is None else v0, radius)
    y, t, gap, it = v.copy(), 1.0, np.inf, 0
    for it in range(1, max_iter + 1):
        grad = problem.a @ problem.primal(y)                  # ∇D(y) = A U(y)
        v_next = project(y + problem.step * grad, radius)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        if (grad * (v_next - v)).sum() < 0:                  # adaptive restart (O'Donoghue & Candès 2015)
            y, t_next = v_next, 1.0
        else:
            y = v_next + ((t - 1) / t_next) * (v_next - v)
        v, t = v_next, t_next
        if it % 10 == 0 or it == max_iter:
            gap = problem.gap(lam, v, problem.primal(v))
            if gap <= tol:
                break
    u = problem.primal(v)
    return Solution(u, v, problem.gap(lam, v, u), it)


def restrict(x: np.ndarray, graph: FusionGraph, labels: np.ndarray) -> Problem:
    """Problem (1) restricted to the partition ``labels`` (0 … k−1): centroids, sizes, cluster edges."""
    k = labels.max() + 1
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    centroids = np.zeros((k, x.shape[1]))
    np.add.at(centroids, labels, x)
    centroids /= sizes[:, None]
    ends = np.sort(labels[graph.edges], axis=1)
    between = ends[:, 0] != ends[:, 1]
    pairs, inverse = np.unique(ends[between], axis=0, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=graph.weights[between], minlength=len(pairs))
    return Problem(centroids, sizes, pairs.reshape(-1, 2).astype(np.int64), weights)


def carry_dual(old: Problem, v: np.ndarray, merged: np.ndarray, new: Problem) -> np.ndarray:
    """Warm start after merging clusters (``merged[c]``: new cluster of old cluster ``c``): the duals of old
    edges that join the same new pair are summed, with their orientation; ``||Σ v|| <= λ Σ w`` stays true."""
    ends = merged[old.edges]
    keep = ends[:, 0] != ends[:, 1]
    sign = np.where(ends[keep, 0] < ends[keep, 1], 1.0, -1.0)
    index = {tuple(p): i for i, p in enumerate(new.edges.tolist())}
    rows = [index[tuple(sorted(p))] for p in ends[keep].tolist()]
    out = np.zeros((len(new.edges), v.shape[1]))
    np.add.at(out, rows, sign[:, None] * v[keep])
    return out


def canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel 0, 1, … in order of each cluster's first member."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse]


def fuse(problem: Problem, u: np.ndarray, tau: float) -> np.ndarray:
    """New cluster of each current cluster: components of the edges with ``||u_c − u_c'|| <= tau``."""
    k = len(u)
    close = problem.edges[np.linalg.norm(u[problem.edges[:, 0]] - u[problem.edges[:, 1]], axis=1) <= tau]
    graph = sparse.coo_matrix((np.ones(len(close)), (close[:, 0], close[:, 1])), shape=(k, k))
    return canonical(csgraph.connected_components(graph, directed=False)[1])


@dataclass
class Level:
    lam: float
    labels: np.ndarray          # (n,) cluster of each point
    centres: np.ndarray         # (k, d) cluster-level coefficient vectors
    gap: float                  # duality gap reached (0: exact)
    iterations: int
    tolerance: float = 0.0      # the gap the solves aimed at, (τ/4)²


def clustering_path(x: np.ndarray, graph: FusionGraph, n_lambdas: int, lambda_ratio: float,
                    fusion_tol: float, max_iter: int) -> list[Level]:
    """The tree of (1): the leaves (``λ = 0``), then every grid ``λ`` whose partition differs from the one
    before, up to the root at ``λ_max``.  ``λ`` runs geometrically from ``lambda_ratio · λ_max`` to ``λ_max``.

    At each ``λ`` the problem restricted to the current clusters is solved to gap ``(τ/4)²``; clusters whose
    solutions lie within ``τ`` of each other along an edge are merged and the restricted problem is solved
    again at the same ``λ`` until nothing merges.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    labels = np.arange(n)
    levels = [Level(0.0, labels, x.copy(), 0.0, 0)]
    scale = np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean())
    if scale == 0:
        return levels + [Level(0.0, np.zeros(n, dtype=np.int64), x.mean(0, keepdims=True), 0.0, 0)]
    tau = fusion_tol * scale
    lam_max = full_fusion_lambda(x, graph)
    grid = lam_max * np.geomspace(lambda_ratio, 1.0, n_lambdas)
    problem, v = restrict(x, graph, labels), None
    for lam in grid[:-1]:
        gap, iterations, before = 0.0, 0, labels.max()
        while True:
            sol = solve(problem, lam, (tau / 4) ** 2, max_iter, v)
            gap, iterations = max(gap, sol.gap), iterations + sol.iterations
            merged = fuse(problem, sol.u, tau)
            if merged.max() == len(sol.u) - 1:
                v = sol.v
                break
            labels = merged[labels]
            new = restrict(x, graph, labels)
            v, problem = carry_dual(problem, sol.v, merged, new), new
            if labels.max() == 0:
                break
        if labels.max() < before:
            levels.append(Level(float(lam), labels, sol.u if labels.max() == len(sol.u) - 1 else
                                problem.centroids, gap, iterations, (tau / 4) ** 2))
        if labels.max() == 0:
            break
    if labels.max() > 0:                               # at λ_max the solution is the mean, exactly
        levels.append(Level(float(grid[-1]), np.zeros(n, dtype=np.int64), x.mean(0, keepdims=True), 0.0, 0))
    return levels
