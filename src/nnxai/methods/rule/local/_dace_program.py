"""The pieces of DACE [79] (:mod:`.dace`): its cost terms, the finite action set, the MILP of one input and
the rounds that solve it to proven optimality within a time limit.

Solving (``solve``).  HiGHS on the program over the whole candidate box leaves a large gap within seconds:
the big-M relaxation of a [32, 16] ReLU network is weak when every unit may switch.  The optimum is the
same on a much smaller region, and there the bounds are tight and most units are stable:

1. an incumbent: a beam search over actions of 1..``max_changes`` changes (``BEAM`` best partial actions by
   logit progress per unit of cost, extended by every single change) gives valid counterfactuals, the
   cheapest of cost ``C`` (an upper bound on the optimum ``v*``);
2. every feasible action with cost ``<= C`` has ``d_1M <= C − λ q_min`` (``q_min = min_n lrd_n d_k(x⁽ⁿ⁾)``
   bounds the 1-LOF term from below), so the program gets that row, and the ReLU bounds are tightened by
   LP over this region (:func:`._relu_milp.tightened_bounds`);
3. HiGHS solves the restricted program.  Its optimum ``v <= C`` is the optimum of the whole program (the
   restriction cut nothing better than ``C`` away).  Without an incumbent, ``C`` starts at the scale of the
   anchors' distances and doubles while the restricted program is infeasible or its optimum exceeds ``C``
   (then ``C`` becomes that optimum, which is feasible, and the next round is the last).

All of it is exact: the answer is the program's optimum, the rounds only spare HiGHS the branching.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from nnxai.methods.rule.local._relu_milp import (MilpBuilder, chain_forward, encode_relu_chain, require_class,
                                                 tightened_bounds)

#: Eigenvalues of Σ below this fraction of the largest are treated as 0 (pseudo-inverse).
RANK_TOL = 1e-9
#: Candidate values closer than this to ``x_d`` (a fraction of the grid step) are ``x_d`` itself (no change).
SAME = 1e-6
#: Partial actions kept per level of the incumbent's beam search.
BEAM = 20
#: Relative slack of the cost cap of a restricted program (so that the incumbent is feasible in it).
TOL = 1e-7


# -- cost terms ----------------------------------------------------------------------------------------------
def mahalanobis_matrix(train: np.ndarray) -> np.ndarray:
    """``M`` (R, D) with ``Mᵀ M = Σ⁺``, the (pseudo-)inverse of the ML covariance of ``train``: rows are the
    eigenvectors of Σ scaled by ``λ^{-1/2}`` (:mod:`.dace`)."""
    train = np.asarray(train, dtype=np.float64)
    cov = np.cov(train, rowvar=False, bias=True).reshape(train.shape[1], train.shape[1])
    values, vectors = np.linalg.eigh(cov)
    keep = values > RANK_TOL * values.max() if values.max() > 0 else np.zeros(len(values), bool)
    return (vectors[:, keep] / np.sqrt(values[keep])).T


def l1_mahalanobis(m: np.ndarray, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray:
    """``||M (x_cf − x)||_1`` (the paper's d_1M) for rows of ``x_cf``."""
    return np.abs((np.atleast_2d(x_cf) - x) @ m.T).sum(axis=1)


@dataclass
class LofReference:
    """``X*`` with the k-distance and local reachability density of every point (squared Euclidean)."""

    points: np.ndarray
    k_distance: np.ndarray
    lrd: np.ndarray

    @classmethod
    def fit(cls, points: np.ndarray, k: int) -> "LofReference":
        points = np.asarray(points, dtype=np.float64)
        k = min(int(k), len(points) - 1)
        if k < 1:
            raise ValueError(f"the LOF of DACE needs at least 2 training inputs of the desired class, got {len(points)}")
        from sklearn.neighbors import NearestNeighbors     # where used: every job imports the registry

        dist, idx = NearestNeighbors(n_neighbors=k, metric="sqeuclidean", algorithm="brute").fit(points).kneighbors()
        k_distance = dist[:, -1]
        reach = np.maximum(dist, k_distance[idx]).mean(axis=1)
        positive = reach[reach > 0]
        floor = 1e-6 * (np.median(positive) if len(positive) else 1.0)   # duplicates: no infinite density
        return cls(points, k_distance, 1.0 / np.maximum(reach, floor))

    def approx(self, x_cf: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """``q̂ = lrd(x⁽ⁿ⁾) · max(Δ, d_k(x⁽ⁿ⁾))`` with ``x⁽ⁿ⁾`` the anchor nearest to each row of ``x_cf``
        (ties: the lowest value, as the MILP may pick either)."""
        x_cf = np.atleast_2d(x_cf)
        z = self.points[anchors]
        d = (x_cf ** 2).sum(1)[:, None] - 2.0 * x_cf @ z.T + (z ** 2).sum(1)[None]
        d = np.maximum(d, 0.0)
        q = self.lrd[anchors][None] * np.maximum(d, self.k_distance[anchors][None])
        nearest = d <= d.min(axis=1, keepdims=True) + 1e-9 * (1.0 + d.min(axis=1, keepdims=True))
        return np.where(nearest, q, np.inf).min(axis=1)


def nearest_distinct(points: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` distinct rows of ``points`` nearest to ``x`` (squared Euclidean; stable order)."""
    _, first = np.unique(points, axis=0, return_index=True)
    first = np.sort(first)
    d = ((points[first] - x) ** 2).sum(axis=1)
    return first[np.argsort(d, kind="stable")[:n]]


# -- the finite action set -----------------------------------------------------------------------------------
@dataclass
class Settings:
    """The candidate values of one feature (or one-hot attribute): row ``s`` of ``values`` writes into
    ``columns``; ``current`` is ``x``'s own setting."""

    name: str
    columns: tuple
    values: np.ndarray
    labels: list
    current: int
    categorical: bool


def candidate_settings(fields, names: list[str], x: np.ndarray, train: np.ndarray, n_candidates: int) -> list[Settings]:
    """The finite action set of ``x``: categories of discrete fields, a grid over the training range of real
    ones (``n_candidates + 1`` values) and ``x_d`` itself."""
    out = []
    for f in fields:
        cols = tuple(f.columns)
        own = x[list(cols)]
        if f.patterns is not None:
            values = np.asarray(f.patterns, dtype=np.float64)
            match = np.flatnonzero(np.all(np.abs(values - own) <= SAME, axis=1))
            if not len(match):                                  # x is not one of the categories: keep it too
                values, match = np.vstack([values, own]), np.array([len(values)])
            group = names[cols[0]].split("=")[0] if "=" in names[cols[0]] else names[cols[0]]
            labels = [names[cols[int(np.argmax(v))]].split("=", 1)[-1] if len(cols) > 1 else f"{v[0]:g}"
                      for v in values]
            out.append(Settings(group, cols, values, labels, int(match[0]), True))
            continue
        column = train[:, cols[0]]
        grid = np.linspace(column.min(), column.max(), n_candidates + 1)
        step = (column.max() - column.min()) / n_candidates
        grid = np.concatenate([[own[0]], grid[np.abs(grid - own[0]) > SAME * max(step, 1e-12)]])
        out.append(Settings(names[cols[0]], cols, grid[:, None], [f"{v:.3g}" for v in grid], 0, False))
    return out


def input_box(fields, train: np.ndarray, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box every candidate of every explained input lies in: the training range, the inputs and the
    categories of the discrete fields; the global big-M bounds are computed once over it."""
    lo, hi = np.minimum(train.min(axis=0), inputs.min(axis=0)), np.maximum(train.max(axis=0), inputs.max(axis=0))
    for f in fields:
        if f.patterns is not None:
            cols = list(f.columns)
            lo[cols] = np.minimum(lo[cols], np.min(f.patterns, axis=0))
            hi[cols] = np.maximum(hi[cols], np.max(f.patterns, axis=0))
    return lo, hi


# -- one input's program ---------------------------------------------------------------------------------------
@dataclass
class Problem:
    """Everything the MILP of one input reads."""

    m: np.ndarray
    lof: LofReference
    anchors: np.ndarray
    settings: list
    layers: list
    bounds: list                  # big-M bounds valid on the whole candidate box
    x: np.ndarray
    desired: int
    lam: float
    max_changes: int
    margin: float

    def point(self, choice) -> np.ndarray:
        """The counterfactual of a choice of one setting per feature."""
        x_cf = self.x.copy()
        for s, c in zip(self.settings, choice):
            x_cf[list(s.columns)] = s.values[c]
        return x_cf

    def cost(self, points: np.ndarray) -> np.ndarray:
        """``d_1M + λ q̂`` of rows of counterfactuals (Eq. 1 as the MILP writes it)."""
        out = l1_mahalanobis(self.m, self.x, points)
        return out + self.lam * self.lof.approx(points, self.anchors) if self.lam > 0 else out

    def margin_of(self, points: np.ndarray) -> np.ndarray:
        """``logit_{y*} − max_{c≠y*} logit_c`` of the traced chain."""
        z = chain_forward(self.layers, np.atleast_2d(points))
        other = np.delete(z, self.desired, axis=1)
        return z[:, self.desired] - other.max(axis=1)

    @property
    def lof_floor(self) -> float:
        """``λ q_min``: no counterfactual's 1-LOF term is smaller."""
        if self.lam <= 0:
            return 0.0
        return float(self.lam * (self.lof.lrd[self.anchors] * self.lof.k_distance[self.anchors]).min())


def _inputs_and_choice(b: MilpBuilder, p: Problem, relaxed: bool):
    """π (one setting per feature), ``x'`` linked to π, the sparsity row and the ℓ1-Mahalanobis variables."""
    pi = [b.add_vars(len(s.values), 0.0, 1.0, integer=not relaxed) for s in p.settings]
    lo, hi = np.empty(len(p.x)), np.empty(len(p.x))
    for s in p.settings:
        lo[list(s.columns)], hi[list(s.columns)] = s.values.min(axis=0), s.values.max(axis=0)
    x_vars = b.add_vars(len(p.x), lo, hi)
    for s, v in zip(p.settings, pi):
        b.add_row(v, np.ones(len(v)), 1.0, 1.0)                                     # one setting per feature
        for k, j in enumerate(s.columns):                                            # x'_j = Σ_s v_{s,j} π_s
            b.add_row(np.append(v, x_vars[j]), np.append(-s.values[:, k], 1.0), 0.0, 0.0)
    changed = [v[i] for s, v in zip(p.settings, pi) for i in range(len(v)) if i != s.current]
    if changed:
        b.add_row(changed, np.ones(len(changed)), -np.inf, p.max_changes)
    delta = b.add_vars(len(p.m), 0.0, np.inf, cost=1.0)                             # δ_r >= ±(M (x' − x))_r
    for r, row in enumerate(p.m):
        b.add_row(np.append(x_vars, delta[r]), np.append(-row, 1.0), -row @ p.x, np.inf)
        b.add_row(np.append(x_vars, delta[r]), np.append(row, 1.0), row @ p.x, np.inf)
    return pi, x_vars, delta


def build_program(p: Problem, bounds, cap: float | None = None) -> tuple[MilpBuilder, list]:
    """The DACE MILP of one input (:mod:`.dace`), optionally restricted to cost ``<= cap`` (with the implied
    ``d_1M <= cap − λ q_min``); the builder and the π indices of every feature."""
    b = MilpBuilder()
    pi, x_vars, delta = _inputs_and_choice(b, p, relaxed=False)
    if cap is not None:
        b.add_row(delta, np.ones(len(delta)), -np.inf, cap - p.lof_floor)
    if p.lam > 0:
        _add_lof(b, p, pi, x_vars)
    if cap is not None:                                       # the objective itself, for HiGHS's propagation
        b.add_row(np.flatnonzero(b.cost), np.asarray(b.cost)[np.flatnonzero(b.cost)], -np.inf, cap)
    net = encode_relu_chain(b, p.layers, x_vars, bounds)
    require_class(b, net, p.desired, p.margin)
    return b, pi


def _add_lof(b: MilpBuilder, p: Problem, pi, x_vars) -> None:
    """The 1-LOF rows: ``μ`` picks the nearest anchor, ``ρ`` its reachability distance (:mod:`.dace`)."""
    z = p.lof.points[p.anchors]
    cols = np.concatenate(pi)
    # Δ_n = Σ_{d,s} c_{n,d,s} π_{d,s}: per-setting squared distances to anchor n
    per = [[((s.values - zn[list(s.columns)]) ** 2).sum(axis=1) for s in p.settings] for zn in z]
    c = np.stack([np.concatenate(rows) for rows in per])
    upper = np.array([sum(r.max() for r in rows) for rows in per])
    k_distance, lrd = p.lof.k_distance[p.anchors], p.lof.lrd[p.anchors]
    mu = b.add_vars(len(z), 0.0, 1.0, integer=True)
    rho = b.add_vars(len(z), 0.0, np.maximum(upper, k_distance), cost=p.lam * lrd)
    b.add_row(mu, np.ones(len(mu)), 1.0, 1.0)
    for n in range(len(z)):
        b.add_row([rho[n], mu[n]], [1.0, -k_distance[n]], 0.0, np.inf)                 # ρ_n >= d_k μ_n
        b.add_row(np.concatenate([[rho[n], mu[n]], cols]), np.concatenate([[1.0, -upper[n]], -c[n]]),
                  -upper[n], np.inf)                                                   # ρ_n >= Δ_n − U_n (1 − μ_n)
        for k in range(len(z)):
            if k != n:   # Δ_n − Δ_k = Σ_j −2 (z_nj − z_kj) x'_j + |z_n|² − |z_k|² <= U_n (1 − μ_n)
                b.add_row(np.append(x_vars, mu[n]), np.append(-2.0 * (z[n] - z[k]), upper[n]), -np.inf,
                          upper[n] - (z[n] @ z[n] - z[k] @ z[k]))


def _region(p: Problem, md_cap: float):
    """The LP relaxation of the candidate set with ``d_1M <= md_cap`` (for bound tightening)."""
    def region():
        b = MilpBuilder()
        _, x_vars, delta = _inputs_and_choice(b, p, relaxed=True)
        b.add_row(delta, np.ones(len(delta)), -np.inf, md_cap)
        return b, x_vars
    return region


# -- solving ---------------------------------------------------------------------------------------------------
def restrict(p: Problem, md_cap: float) -> tuple[Problem, list]:
    """``p`` without the candidate values no action of ``d_1M <= md_cap`` reaches, and, per feature, the
    original index of every kept setting.  With ``M`` of full rank, ``a = M⁻¹ (M a)``, so
    ``|a_d| <= ||M a||_1 max_r |M⁻¹_{d,r}|``; discrete fields and a singular ``M`` keep every setting."""
    if p.m.shape[0] != p.m.shape[1]:
        return p, [list(range(len(s.values))) for s in p.settings]
    reach = md_cap * np.abs(np.linalg.inv(p.m)).max(axis=1) * (1 + TOL) + TOL
    settings, kept = [], []
    for s in p.settings:
        if s.categorical:
            keep = np.arange(len(s.values))
        else:
            keep = np.flatnonzero((np.abs(s.values[:, 0] - p.x[s.columns[0]]) <= reach[s.columns[0]])
                                  | (np.arange(len(s.values)) == s.current))
        settings.append(replace(s, values=s.values[keep], labels=[s.labels[i] for i in keep],
                                current=int(np.flatnonzero(keep == s.current)[0])))
        kept.append(keep.tolist())
    return replace(p, settings=settings), kept


def incumbent(p: Problem) -> tuple[float, list | None]:
    """The cheapest valid action a beam search finds (module docstring, step 1): ``(cost, choice)``, or
    ``(inf, None)``."""
    base_margin = float(p.margin_of(p.x)[0])
    beam = np.array([[s.current for s in p.settings]])
    best = (np.inf, None)
    for _ in range(min(p.max_changes, len(p.settings))):
        choices = []
        for f, s in enumerate(p.settings):
            free = beam[beam[:, f] == s.current]
            options = np.array([o for o in range(len(s.values)) if o != s.current], dtype=np.int64)
            if len(free) and len(options):
                grown = np.repeat(free, len(options), axis=0)
                grown[:, f] = np.tile(options, len(free))
                choices.append(grown)
        if not choices:
            break
        choices = np.concatenate(choices)
        points = np.repeat(p.x[None], len(choices), axis=0)
        for f, s in enumerate(p.settings):
            points[:, list(s.columns)] = s.values[choices[:, f]]
        margins, costs = p.margin_of(points), p.cost(points)
        valid = margins >= p.margin
        if valid.any():
            k = int(np.argmin(np.where(valid, costs, np.inf)))
            if costs[k] < best[0]:
                best = (float(costs[k]), choices[k].tolist())
        progress = (margins - base_margin) / np.maximum(l1_mahalanobis(p.m, p.x, points), 1e-12)
        order = np.argsort(-np.where(valid, -np.inf, progress), kind="stable")[:BEAM]
        beam = choices[order[~valid[order]]]
        if not len(beam):
            break
    return best


@dataclass
class Solution:
    choice: list | None
    status: str                   # optimal | time_limit | infeasible
    rounds: int
    objective: float


def solve(p: Problem, node_limit: int, time_limit: float, mip_gap: float) -> Solution:
    """The optimum of the program of ``p`` (module docstring): HiGHS explores at most ``node_limit`` nodes
    per round, and the search stops after ``time_limit`` seconds whatever it has done."""
    deadline = time.perf_counter() + time_limit
    best_cost, best_choice = incumbent(p)
    floor = p.lof_floor
    scale = float(l1_mahalanobis(p.m, p.x, p.lof.points[p.anchors]).min()) + floor
    cap = best_cost if np.isfinite(best_cost) else max(scale, 1e-6)
    reach = np.zeros(len(p.x))
    for s in p.settings:
        reach[list(s.columns)] = np.abs(s.values - p.x[list(s.columns)]).max(axis=0)
    max_md = float((np.abs(p.m) @ reach).sum())                 # no action has a larger d_1M
    rounds, status = 0, "time_limit"
    while time.perf_counter() < deadline:
        rounds += 1
        cap = cap * (1 + TOL) + TOL               # the incumbent stays feasible despite rounding
        md_cap = cap - floor
        if md_cap >= max_md:                      # the cap cuts nothing: the whole program
            kept = [list(range(len(s.values))) for s in p.settings]
            program, pi = build_program(p, p.bounds)
        else:
            small, kept = restrict(p, md_cap)
            bounds = tightened_bounds(p.layers, _region(small, md_cap), known=p.bounds)
            program, pi = build_program(small, bounds, cap)
        result = program.solve(max(deadline - time.perf_counter(), 1e-3), mip_gap, node_limit)
        if result.x is not None:
            choice = [keep[int(np.argmax(result.x[v]))] for keep, v in zip(kept, pi)]
            cost = float(p.cost(p.point(choice)[None])[0])
            if cost < best_cost:
                best_cost, best_choice = cost, choice
        if result.status == 0 and (md_cap >= max_md or result.fun <= cap):
            return Solution(best_choice, "optimal", rounds, best_cost)
        if result.status == 0:
            cap = result.fun                      # feasible: the next round contains the optimum
        elif result.status == 2:
            if md_cap >= max_md:
                return Solution(None, "infeasible", rounds, np.inf)
            cap = best_cost if np.isfinite(best_cost) and cap < best_cost else 2.0 * cap
        else:                                     # a limit: HiGHS's node limit is reported as status 4
            status = "time_limit" if result.status == 1 else "node_limit"
            break
    return Solution(best_choice, status, rounds, best_cost)
