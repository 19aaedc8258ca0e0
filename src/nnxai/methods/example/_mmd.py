"""The kernel computations of MMD-critic [147] (Kim, Khanna, Koyejo, NeurIPS 2016), vectorised over the
candidates and written for kernels too large to hold: every quantity needs only the column means of the
kernel matrix (computed in row chunks) and the rows of the points selected so far.

Notation of the paper: data ``X = {x_1..x_n}``, a prototype set ``S`` (``|S| = m``), ``k`` a kernel.

* Eq. (2), the biased MMD²: ``MMD²(X, X_S) = (1/n²) Σ_ij k(x_i, x_j) - (2/(n m)) Σ_{i, j∈S} k(x_i, x_j)
  + (1/m²) Σ_{i,j∈S} k(x_i, x_j)``;
* Eq. (4), the prototype objective: ``J_b(S) = (1/n²) Σ_ij k(x_i, x_j) - MMD²(X, X_S)
  = (2/(n m)) Σ_{i∈[n], j∈S} k(x_i, x_j) - (1/m²) Σ_{i,j∈S} k(x_i, x_j)``, ``J_b(∅) = 0``, maximised greedily
  (Alg. 1: add the candidate with the largest ``J_b(S ∪ {c})`` until ``|S| = m``);
* Eq. (3), the witness function: ``witness(x) = (1/n) Σ_i k(x, x_i) - (1/m) Σ_{j∈S} k(x, x_j)`` (positive
  where the data have mass the prototypes miss, negative where the prototypes over-represent them);
* Eq. (5), the criticism objective: ``L(C) = Σ_{l∈C} |witness(x_l)| + log det K_{C,C}``, maximised greedily
  over the non-prototypes; the log-determinant gain of adding ``c`` is the log of its Schur complement
  ``k_cc - k_Cc^T K_CC^{-1} k_Cc``, kept for every candidate by rank-one updates (the incremental Cholesky
  factor of ``K_CC``), so a step costs ``O(n |C|)``.

Kernels: :class:`KernelMatrix` (an explicit matrix: tests, small sets) and :class:`RBFKernel`, ``k(x, y) =
exp(-γ ||x - y||²)`` (paper Sec. 4) on :class:`SquaredDistances`, optionally *local* (the paper's
MMD-local: ``k(x, y)`` if ``x`` and ``y`` have the same label, else 0, a block-diagonal kernel; the
reference code's default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from nnxai.methods.example._latent import euclidean_distances, squared_distances

ROW_CHUNK = 1024                 # kernel rows held at once when column means are summed (memory only)
CACHE_ENTRIES = 16_000_000       # the n x n squared-distance matrix is kept below this (128 MB float64)
MEDIAN_SAMPLE = 2000             # points whose pairwise distances give the median of the bandwidth rule
SCHUR_FLOOR = 1e-12              # a candidate's Schur complement below this counts as linearly dependent


class KernelMatrix:
    """An explicit ``(n, n)`` kernel matrix."""

    def __init__(self, matrix):
        self.matrix = torch.as_tensor(matrix, dtype=torch.float64)
        if self.matrix.dim() != 2 or self.matrix.shape[0] != self.matrix.shape[1]:
            raise ValueError(f"a kernel matrix must be square, got shape {tuple(self.matrix.shape)}")
        self.n = len(self.matrix)

    def rows(self, idx) -> torch.Tensor:
        return self.matrix[torch.as_tensor(idx, dtype=torch.long)]

    def colmean(self) -> torch.Tensor:
        return self.matrix.mean(0)

    def diag(self) -> torch.Tensor:
        return self.matrix.diagonal().clone()


class SquaredDistances:
    """``||x_i - x_j||²`` over one point set: a cached matrix while it fits ``CACHE_ENTRIES``, else rows
    computed on demand.  Self-distances are exactly 0.  With ``labels`` (the local kernel) the distance
    between points of different labels is ``+inf``, so that every RBF kernel on it is 0 there: the mask is
    applied once, not once per bandwidth."""

    def __init__(self, features: torch.Tensor, labels=None, matrix: torch.Tensor | None = None):
        self.features = features.double()
        self.n = len(features)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if self.labels is not None and len(self.labels) != self.n:
            raise ValueError(f"{len(self.labels)} labels for {self.n} points")
        if matrix is None and self.n * self.n <= CACHE_ENTRIES:
            matrix = self._compute(torch.arange(self.n))
        self.matrix = matrix

    def _compute(self, idx: torch.Tensor) -> torch.Tensor:
        d2 = squared_distances(self.features[idx], self.features)
        d2[torch.arange(len(idx)), idx] = 0.0
        if self.labels is not None:
            d2.masked_fill_(self.labels[idx][:, None] != self.labels[None, :], math.inf)
        return d2

    def rows(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        return self.matrix.index_select(0, idx) if self.matrix is not None else self._compute(idx)

    def subset(self, positions) -> "SquaredDistances":
        """The distances among ``features[positions]`` (a cross-validation fold)."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        sub = None if self.matrix is None else self.matrix.index_select(0, positions).index_select(1, positions)
        labels = None if self.labels is None else self.labels[positions]
        return SquaredDistances(self.features[positions], labels, sub)


class RBFKernel:
    """``k(x_i, x_j) = exp(-γ ||x_i - x_j||²)`` on ``distances`` (0 across labels when they carry labels:
    the local kernel)."""

    def __init__(self, distances: SquaredDistances, gamma: float):
        if not (gamma > 0 and math.isfinite(gamma)):
            raise ValueError(f"the RBF bandwidth γ must be positive and finite, got {gamma!r}")
        self.distances, self.gamma, self.n = distances, float(gamma), distances.n

    def rows(self, idx) -> torch.Tensor:
        return torch.exp(self.distances.rows(idx) * -self.gamma)

    def colmean(self) -> torch.Tensor:
        total = torch.zeros(self.n, dtype=torch.float64)
        matrix = self.distances.matrix
        for start in range(0, self.n, ROW_CHUNK):  # the kernel is symmetric: row sums are column sums
            stop = min(start + ROW_CHUNK, self.n)
            if matrix is not None:                 # a view of the cached rows, one temporary per chunk
                total += matrix[start:stop].mul(-self.gamma).exp_().sum(0)
            else:
                total += self.rows(torch.arange(start, stop)).sum(0)
        return total / self.n

    def diag(self) -> torch.Tensor:
        return torch.ones(self.n, dtype=torch.float64)


def median_squared_distance(features: torch.Tensor, seed: int) -> float:
    """Median of ``||x_i - x_j||²`` over the pairs ``i < j`` of a seeded sample of at most ``MEDIAN_SAMPLE``
    points (the scale the bandwidth multipliers refer to).  1.0 when every distance is 0 (a constant
    representation: every bandwidth then gives the same all-ones kernel)."""
    n = len(features)
    if n > MEDIAN_SAMPLE:
        features = features[np.sort(np.random.default_rng(seed).permutation(n)[:MEDIAN_SAMPLE])]
    d2 = squared_distances(features, features)
    pairs = d2[torch.triu_indices(len(d2), len(d2), offset=1).unbind()]
    median = float(pairs.median()) if len(pairs) else 0.0
    if median > 0:
        return median
    positive = pairs[pairs > 0]
    return float(positive.median()) if len(positive) else 1.0


def objective(kernel, selected: Sequence[int], colmean: torch.Tensor | None = None) -> float:
    """``J_b(S)`` of Eq. (4) for the set ``selected`` (0 for the empty set)."""
    s = torch.as_tensor(list(selected), dtype=torch.long)
    if len(s) == 0:
        return 0.0
    colmean = kernel.colmean() if colmean is None else colmean
    m = len(s)
    return float(2.0 * colmean[s].sum() / m - kernel.rows(s)[:, s].sum() / (m * m))


def mmd2(kernel, selected: Sequence[int], colmean: torch.Tensor | None = None) -> float:
    """``MMD²(X, X_S)`` of Eq. (2): ``(1/n²) Σ_ij k(x_i, x_j) - J_b(S)``."""
    colmean = kernel.colmean() if colmean is None else colmean
    return float(colmean.mean()) - objective(kernel, selected, colmean)


def greedy_prototypes(kernel, m: int, colmean: torch.Tensor | None = None):
    """Alg. 1: ``m`` prototypes, each the candidate with the largest ``J_b(S ∪ {c})``.

    Returns ``(selected, values, proto_sums)``: the positions in selection order, ``J_b`` after each step,
    and ``Σ_{j∈S} k(x_j, x)`` for every point (the prototype term of the witness function).  All candidates
    are scored at once from the running sums ``a = Σ_{j∈S} colmean_j`` and ``b = Σ_{i,j∈S} k_ij``:
    ``J_b(S ∪ {c}) = 2 (a + colmean_c) / (s + 1) - (b + 2 Σ_{j∈S} k_jc + k_cc) / (s + 1)²``.  Ties go to the
    lower position.
    """
    n = kernel.n
    if not 1 <= m <= n:
        raise ValueError(f"cannot select {m} prototypes from {n} points")
    colmean = kernel.colmean() if colmean is None else colmean
    diag = kernel.diag()
    proto_sums = torch.zeros(n, dtype=torch.float64)
    taken = torch.zeros(n, dtype=torch.bool)
    a = b = 0.0
    selected, values = [], []
    for s in range(m):
        gain = 2.0 * (a + colmean) / (s + 1) - (b + 2.0 * proto_sums + diag) / (s + 1) ** 2
        gain[taken] = -math.inf
        c = int(torch.argmax(gain))                  # the first maximum: the lower position on ties
        selected.append(c)
        values.append(float(gain[c]))
        a += float(colmean[c])
        b += float(2.0 * proto_sums[c] + diag[c])
        proto_sums += kernel.rows([c])[0]
        taken[c] = True
    return selected, values, proto_sums


def witness(colmean: torch.Tensor, proto_sums: torch.Tensor, m: int) -> torch.Tensor:
    """Eq. (3) at every data point: ``(1/n) Σ_i k(x, x_i) - (1/m) Σ_{j∈S} k(x, x_j)``."""
    return colmean - proto_sums / m


def greedy_criticisms(kernel, prototypes: Sequence[int], count: int, witness_values: torch.Tensor):
    """Eq. (5) greedily: ``count`` criticisms among the non-prototypes, each maximising
    ``|witness(c)| + log(k_cc - k_Cc^T K_CC^{-1} k_Cc)`` (the gain of ``L``).  Returns ``(selected, values)``:
    positions in selection order and ``L(C)`` after each step."""
    n = kernel.n
    taken = torch.zeros(n, dtype=torch.bool)
    taken[torch.as_tensor(list(prototypes), dtype=torch.long)] = True
    if count > int((~taken).sum()):
        raise ValueError(f"cannot select {count} criticisms from the {int((~taken).sum())} non-prototypes")
    schur = kernel.diag().clone()                    # k_cc - ||e_c||², e_c the Cholesky column of c
    factors: list[torch.Tensor] = []
    magnitude = witness_values.abs()
    selected, values, total = [], [], 0.0
    for _ in range(count):
        gain = magnitude + torch.log(schur.clamp_min(SCHUR_FLOOR))
        gain[taken] = -math.inf
        c = int(torch.argmax(gain))
        selected.append(c)
        total += float(gain[c])
        values.append(total)
        row = kernel.rows([c])[0]
        pivot = math.sqrt(max(float(schur[c]), SCHUR_FLOOR))
        e = row.clone()
        for f in factors:
            e -= f[c] * f
        e /= pivot
        factors.append(e)
        schur -= e * e
        taken[c] = True
    return selected, values


def criticism_objective(kernel, criticisms: Sequence[int], witness_values: torch.Tensor) -> float:
    """``L(C)`` of Eq. (5), computed directly (``slogdet`` of ``K_CC``)."""
    c = torch.as_tensor(list(criticisms), dtype=torch.long)
    if len(c) == 0:
        return 0.0
    sign, logdet = torch.linalg.slogdet(kernel.rows(c)[:, c])
    return float(witness_values[c].abs().sum() + (logdet if sign > 0 else -math.inf))


def nearest_prototype(queries: torch.Tensor, prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index into prototypes, Euclidean distance)`` of each query's nearest prototype (ties: lower index):
    the 1-NN prototype classifier of the paper's evaluation (Sec. 5.1)."""
    d = euclidean_distances(queries, prototypes)
    order = torch.sort(d, dim=1, stable=True).indices[:, 0]
    return order, d[torch.arange(len(d)), order]
