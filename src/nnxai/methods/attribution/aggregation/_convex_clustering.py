"""Convex clustering of points with quadratic losses, and its path of solutions: the optimisation behind
MAME [68].

For points ``θ̂_1 … θ̂_n`` (rows of ``X``) with symmetric positive definite ``H_i`` (``d × d``), a graph with
edges ``l = (i, j)`` and weights ``w_l > 0``, and a fusion strength ``λ ≥ 0``, this module solves

    min_U  P(U) = Σ_i ½ (u_i − θ̂_i)ᵀ H_i (u_i − θ̂_i) + λ Σ_l w_l ||u_i − u_j||₂ ,          (1)

i.e. ``Σ_i g_i(u_i)`` with ``g_i(u) = ½ uᵀH_i u − c_iᵀu + const``, ``c_i = H_i θ̂_i``: any strongly convex
quadratic loss per point (MAME's LIME losses, [68] Eq. (1)).  With every ``H_i = I`` (``hessians=None``)
(1) is convex clustering (Hocking et al. 2011; Chi & Lange 2015), ``½ Σ_i ||u_i − θ̂_i||² + λ Σ_l w_l ||u_i −
u_j||``, and the code takes the scalar path that it always took.  At ``λ = 0`` every ``u_i = θ̂_i``; as ``λ``
grows the ``u_i`` fuse into shared values, and above a finite ``λ`` all equal ``θ* = (Σ H_i)⁻¹ Σ c_i`` (the
mean of the ``θ̂_i`` when ``H_i = I``).

Solver.  With ``A`` the edge-incidence matrix (``(A U)_l = u_i − u_j``) the Lagrangian
``Σ g_i(u_i) + <V, A U>`` is minimised by the primal point ``u_i(V) = H_i⁻¹ (c_i − (Aᵀ V)_i)``, and the dual of
(1) is ``max_V D(V) = −½ Σ_i (c_i − (AᵀV)_i)ᵀ H_i⁻¹ (c_i − (AᵀV)_i) + const`` subject to ``||v_l|| ≤ λ w_l``
(Chi & Lange 2015, Sec. 3.2, for ``H_i = I``: ``<V, A X> − ½ ||Aᵀ V||²``).  ``∇D(V) = A U(V)`` is
Lipschitz with constant ``||A H⁻¹ Aᵀ|| ≤ ||A M^{-1/2}||²``, ``M = diag(λ_min(H_i))`` (``H_i⁻¹ ≼ I / λ_min(H_i)``);
we maximise ``D`` by accelerated projected gradient ascent (FISTA with adaptive restart, the accelerated
form of Chi & Lange's AMA) with step ``1 / ||A M^{-1/2}||²`` (``1 / ||A||²`` when ``H_i = I``).  The
duality gap ``P(U(V)) − D(V) = λ Σ_l w_l ||(A U)_l|| − <V, A U>`` (the same expression for every ``H_i``)
bounds the distance to the solution: ``P`` is ``μ``-strongly convex, ``μ = min_i λ_min(H_i)``, so
``||U − U*||_F ≤ √(2 gap / μ)``.  Each ``λ`` is solved until ``gap ≤ μ (τ/4)²``, which keeps every pair
fused in ``U*`` within ``τ/2`` of each other; an edge counts as fused when ``||u_i − u_j|| ≤ τ`` (``τ =
fusion_tol ·`` the RMS distance of the ``θ̂_i`` to ``θ*``).  For ``H_i = I``: ``μ = 1``, gap ``≤ (τ/4)²``.

Path and tree.  ``λ`` runs over a geometric grid up to ``λ_max``, the certificate of full fusion
computed on a spanning tree of the graph (:func:`full_fusion_lambda`); each solve starts from the previous
dual.  Clusters are the connected components of the fused edges and are kept once formed, as in the
algorithmic-regularisation path of Weylandt, Nagorski & Allen (2020), which makes the levels a tree.
Keeping them, (1) is solved over ``U`` constant on the current clusters (:class:`Problem`: a cluster
carries ``H_c = Σ_{i∈c} H_i`` and ``c_c = Σ_{i∈c} c_i`` (for ``H_i = I``: its size ``n_c`` and ``n_c`` times
its centroid), edges between two clusters add their weights), which is the same objective on fewer points
up to a constant and converges fast once few clusters remain; ``M`` holds the ``λ_min(H_c)`` (``n_c``).
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


def fused_solution(x: np.ndarray, hessians: np.ndarray | None = None) -> np.ndarray:
    """``θ* = (Σ H_i)⁻¹ Σ H_i θ̂_i``, the solution of (1) once every point is fused (the mean of the ``θ̂_i``
    when ``hessians`` is ``None``)."""
    if hessians is None:
        return x.mean(0)
    return np.linalg.solve(hessians.sum(0), np.einsum("nij,nj->i", hessians, x))


def full_fusion_lambda(x: np.ndarray, graph: FusionGraph, hessians: np.ndarray | None = None) -> float:
    """A ``λ`` from which the solution of (1) is fully fused: ``u_i = θ*`` for all ``i`` is optimal iff some
    feasible ``V`` has ``(Aᵀ V)_i = r_i = c_i − H_i θ* = H_i (θ̂_i − θ*)`` (stationarity; ``Σ_i r_i = 0``).  On
    the spanning tree (the other edges' duals set to 0) that ``V`` is unique, ``v_l = ±Σ_{k below l} r_k``,
    and feasible iff ``λ ≥ max_l ||v_l|| / w_l``: the value returned.  On a graph that is a tree it is the
    smallest such ``λ``; on a larger graph an upper bound.  ``H_i = I``: ``r_i = θ̂_i − mean``."""
    if hessians is None:
        residual = x - x.mean(0)
    else:
        residual = np.einsum("nij,nj->ni", hessians, x - fused_solution(x, hessians))
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
    """Problem (1) restricted to ``U`` constant on clusters: ``Σ_c ½ (u_c − x̄_c)ᵀ H_c (u_c − x̄_c) + λ Σ W
    ||u_c − u_c'||`` over each cluster's own minimiser ``x̄_c = H_c⁻¹ c_c`` (``H_c = Σ H_i``, ``c_c = Σ c_i``;
    ``hessians`` ``None``: ``H_c = n_c I`` and ``x̄_c`` the centroid, with ``sizes`` ``n_c``), cluster edges
    ``(c, c')`` with summed weights ``W``."""

    centroids: np.ndarray   # (k, d) the x̄_c
    sizes: np.ndarray       # (k,) members per cluster
    edges: np.ndarray       # (E, 2) with c < c'
    weights: np.ndarray     # (E,)
    hessians: np.ndarray | None = None    # (k, d, d) the H_c; None: n_c I

    def __post_init__(self):
        k, e = len(self.centroids), len(self.edges)
        self.a = sparse.csr_matrix((np.tile([1.0, -1.0], e), (np.repeat(np.arange(e), 2), self.edges.ravel())),
                                   shape=(e, k))
        self.at = self.a.T.tocsr()
        if self.hessians is None:
            self.strength, self.inverses = self.sizes, None          # λ_min(n_c I) = n_c
        else:
            self.strength = np.linalg.eigvalsh(self.hessians)[:, 0]
            self.inverses = np.linalg.inv(self.hessians)
        scaled = (self.at @ self.a).toarray() / np.sqrt(np.outer(self.strength, self.strength))
        self.step = 1.0 / float(np.linalg.eigvalsh(scaled)[-1]) if e else 1.0

    def primal(self, v: np.ndarray) -> np.ndarray:
        """``U(V) = X̄ − H⁻¹ Aᵀ V`` (``= H⁻¹ (c − Aᵀ V)``), the minimiser of the Lagrangian."""
        if self.inverses is None:
            return self.centroids - (self.at @ v) / self.sizes[:, None]
        return self.centroids - (self.inverses @ (self.at @ v)[:, :, None])[:, :, 0]

    def gap(self, lam: float, v: np.ndarray, u: np.ndarray) -> float:
        """``P(U(V)) − D(V) = λ Σ W ||(A U)_l|| − <V, A U>`` (>= 0 for feasible ``V``)."""
        au = self.a @ u
        return float(lam * (self.weights * np.linalg.norm(au, axis=1)).sum() - (v * au).sum())

    def objective(self, lam: float, u: np.ndarray) -> float:
        au, r = self.a @ u, u - self.centroids
        fit = ((self.sizes[:, None] * r ** 2).sum() if self.hessians is None
               else np.einsum("ki,kij,kj->", r, self.hessians, r))
        return float(0.5 * fit + lam * (self.weights * np.linalg.norm(au, axis=1)).sum())


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


def restrict(x: np.ndarray, graph: FusionGraph, labels: np.ndarray, hessians: np.ndarray | None = None) -> Problem:
    """Problem (1) restricted to the partition ``labels`` (0 … k−1): each cluster's ``H_c``, ``c_c`` and own
    minimiser (the centroid when ``hessians`` is ``None``), sizes, cluster edges."""
    k = labels.max() + 1
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    cluster_hessians = None
    if hessians is None:
        centroids = np.zeros((k, x.shape[1]))
        np.add.at(centroids, labels, x)
        centroids /= sizes[:, None]
    else:
        cluster_hessians = np.zeros((k,) + hessians.shape[1:])
        linear = np.zeros((k, x.shape[1]))
        np.add.at(cluster_hessians, labels, hessians)
        np.add.at(linear, labels, np.einsum("nij,nj->ni", hessians, x))
        centroids = np.linalg.solve(cluster_hessians, linear[:, :, None])[:, :, 0]
    ends = np.sort(labels[graph.edges], axis=1)
    between = ends[:, 0] != ends[:, 1]
    pairs, inverse = np.unique(ends[between], axis=0, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=graph.weights[between], minlength=len(pairs))
    return Problem(centroids, sizes, pairs.reshape(-1, 2).astype(np.int64), weights, cluster_hessians)


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
    tolerance: float = 0.0      # the gap the solves aimed at, μ (τ/4)²


def strong_convexity(hessians: np.ndarray | None) -> float:
    """``μ = min_i λ_min(H_i)``, the modulus of strong convexity of (1) (1 when ``hessians`` is ``None``)."""
    return 1.0 if hessians is None else float(np.linalg.eigvalsh(hessians)[:, 0].min())


def clustering_path(x: np.ndarray, graph: FusionGraph, n_lambdas: int, lambda_ratio: float,
                    fusion_tol: float, max_iter: int, hessians: np.ndarray | None = None) -> list[Level]:
    """The tree of (1): the leaves (``λ = 0``: the ``θ̂_i``), then every grid ``λ`` whose partition differs
    from the one before, up to the root ``θ*`` at ``λ_max``.  ``λ`` runs geometrically from
    ``lambda_ratio · λ_max`` to ``λ_max``; ``hessians`` (n, d, d) are the ``H_i`` (``None``: all ``I``).

    At each ``λ`` the problem restricted to the current clusters is solved to gap ``μ (τ/4)²``; clusters
    whose solutions lie within ``τ`` of each other along an edge are merged and the restricted problem is
    solved again at the same ``λ`` until nothing merges.
    """
    x = np.asarray(x, dtype=np.float64)
    hessians = None if hessians is None else np.asarray(hessians, dtype=np.float64)
    n = len(x)
    labels = np.arange(n)
    levels = [Level(0.0, labels, x.copy(), 0.0, 0)]
    root = fused_solution(x, hessians)
    scale = np.sqrt(((x - root) ** 2).sum(1).mean())
    if scale == 0:
        return levels + [Level(0.0, np.zeros(n, dtype=np.int64), root[None], 0.0, 0)]
    tau = fusion_tol * scale
    tolerance = strong_convexity(hessians) * (tau / 4) ** 2
    lam_max = full_fusion_lambda(x, graph, hessians)
    grid = lam_max * np.geomspace(lambda_ratio, 1.0, n_lambdas)
    problem, v = restrict(x, graph, labels, hessians), None
    for lam in grid[:-1]:
        gap, iterations, before = 0.0, 0, labels.max()
        while True:
            sol = solve(problem, lam, tolerance, max_iter, v)
            gap, iterations = max(gap, sol.gap), iterations + sol.iterations
            merged = fuse(problem, sol.u, tau)
            if merged.max() == len(sol.u) - 1:
                v = sol.v
                break
            labels = merged[labels]
            new = restrict(x, graph, labels, hessians)
            v, problem = carry_dual(problem, sol.v, merged, new), new
            if labels.max() == 0:
                break
        if labels.max() < before:
            levels.append(Level(float(lam), labels, sol.u if labels.max() == len(sol.u) - 1 else
                                problem.centroids, gap, iterations, tolerance))
        if labels.max() == 0:
            break
    if labels.max() > 0:                               # at λ_max the solution is θ* (the mean), exactly
        levels.append(Level(float(grid[-1]), np.zeros(n, dtype=np.int64), root[None], 0.0, 0))
    return levels
