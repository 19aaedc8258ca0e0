"""TREPAN's splitting tests [89]: the best single binary test, then a beam search over M-of-N expressions.

Craven & Shavlik (NIPS 1996, Sec. 2, "Splitting tests"): an M-of-N test ``m-of-{l1, ..., ln}`` holds when at
least ``m`` of its literals hold.  The search starts from the best single binary test (information gain,
thresholds of real-valued features at the midpoints between consecutive values, as in C4.5/ID3) and
applies two operators to every test in the beam: *m-of-n+1* (add a literal, keep ``m``: ``2-of-{a, b}`` →
``2-of-{a, b, c}``) and *m+1-of-n+1* (add a literal and raise ``m``: ``2-of-{a, b}`` → ``3-of-{a, b, c}``).
The beam keeps the ``beam_width`` best tests and the search stops when it no longer changes.

Here, as in the paper, a feature appears at most once in a test, and ``m <= max_m``.  A refinement enters the
beam only if it raises the information gain of the test it came from and if the instances it moves across
the split differ in class from those it leaves behind (a G-test, i.e. the likelihood-ratio chi-square of
the information gain, at level ``significance``, Bonferroni-corrected for the number of candidate literals),
so that literals which only move a handful of instances are not added.  The operators are closed under
negation (``NOT m-of-L = (n-m+1)-of-{NOT l : l in L}``), so starting the search from one orientation of the
seed literal loses nothing.

A literal is ``(feature, gt, threshold)``: ``x[feature] > threshold`` if ``gt`` else ``x[feature] <= threshold``.
A test is ``(m, literals)``.
"""

from __future__ import annotations

import numpy as np

Literal = tuple[int, bool, float]
Test = tuple[int, tuple[Literal, ...]]


def entropy(counts: np.ndarray) -> np.ndarray:
    """Entropy (nats) of class-count vectors along the last axis."""
    from scipy import special  # lazy: scipy.stats costs ~1 s per job start
    total = counts.sum(-1, keepdims=True)
    p = counts / np.where(total > 0, total, 1.0)
    return -special.xlogy(p, p).sum(-1)


def gain(true_counts: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Information gain (nats) of binary partitions given the class counts of their true side."""
    n, n_true = total.sum(), true_counts.sum(-1)
    weighted = n_true * entropy(true_counts) + (n - n_true) * entropy(total - true_counts)
    out = entropy(total) - weighted / n
    return np.where((n_true > 0) & (n_true < n), out, -np.inf)


def p_value(g_nats: float, n: int, n_classes: int) -> float:
    """p-value of the G-test ``G = 2 n IG`` with ``n_classes - 1`` degrees of freedom."""
    from scipy import stats  # lazy: scipy.stats costs ~1 s per job start
    if n_classes < 2:
        return 1.0
    return float(stats.chi2.sf(2.0 * n * max(g_nats, 0.0), n_classes - 1))


def literal_holds(lit: Literal, x: np.ndarray) -> np.ndarray:
    j, gt, t = lit
    return x[:, j] > t if gt else x[:, j] <= t


def n_true(test: Test, x: np.ndarray) -> np.ndarray:
    return sum((literal_holds(lit, x).astype(np.int64) for lit in test[1]), np.zeros(len(x), np.int64))


def to_condition(test: Test) -> dict:
    """The :class:`~nnxai.explanations.RuleSet` form of a test."""
    return {"m": int(test[0]), "literals": [{"feature": int(j), "op": ">" if gt else "<=", "threshold": float(t)}
                                            for j, gt, t in test[1]]}


def negate(cond: dict) -> dict:
    """``NOT m-of-{l1..ln}`` as ``(n-m+1)-of-{NOT l1 .. NOT ln}``: the false branch as a condition."""
    flip = {">": "<=", "<=": ">"}
    lits = [{**lit, "op": flip[lit["op"]]} for lit in cond["literals"]]
    return {"m": len(lits) - cond["m"] + 1, "literals": lits}


def _thresholds(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``i`` of a sorted column where a cut between ``xs[i]`` and ``xs[i+1]`` is possible."""
    idx = np.flatnonzero(xs[:-1] < xs[1:])
    return idx, (xs[idx] + xs[idx + 1]) / 2.0


def best_single_test(x: np.ndarray, y: np.ndarray) -> tuple[Literal | None, float, int]:
    """Best literal ``x_j > t`` by information gain; also its gain and the number of candidates tried.

    ``y`` is one-hot ``(n, K)``.
    """
    total = y.sum(0)
    best, best_gain, n_candidates = None, -np.inf, 0
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        idx, cuts = _thresholds(x[order, j])
        if not len(idx):
            continue
        n_candidates += len(idx)
        g = gain(total - np.cumsum(y[order], axis=0)[idx], total)
        k = int(np.argmax(g))
        if g[k] > best_gain:
            best, best_gain = (j, True, float(cuts[k])), float(g[k])
    return best, best_gain, n_candidates


def _refinements(x: np.ndarray, y: np.ndarray, test: Test, max_m: int) -> list[tuple[float, Test, float, int]]:
    """Best literal per (operator, feature, orientation): ``(gain, new test, moved-set G p-value, n tried)``."""
    m, lits = test
    total = y.sum(0)
    count = n_true(test, x)
    used = {lit[0] for lit in lits}
    out = []
    for m_new in (m, m + 1):                     # m-of-n+1, m+1-of-n+1
        if m_new > max_m:
            continue
        base = y[count >= m_new].sum(0)          # true whatever the new literal says
        swing = np.flatnonzero(count == m_new - 1)  # true iff the new literal holds
        if len(swing) < 2:
            continue
        ys = y[swing]
        for j in range(x.shape[1]):
            if j in used:
                continue
            order = np.argsort(x[swing, j], kind="stable")
            idx, cuts = _thresholds(x[swing[order], j])
            if not len(idx):
                continue
            below = np.cumsum(ys[order], axis=0)[idx]
            for gt, added in ((True, ys.sum(0) - below), (False, below)):
                g = gain(base + added, total)
                k = int(np.argmax(g))
                new = (m_new, lits + ((j, gt, float(cuts[k])),))
                out.append((float(g[k]), new, _moved_p(x, y, test, new), len(idx)))
    return out


def _moved_p(x: np.ndarray, y: np.ndarray, old: Test, new: Test) -> float:
    """G-test p-value: do the instances whose outcome the refinement flips differ in class from those that
    stay on the side they leave?"""
    before, after = n_true(old, x) >= old[0], n_true(new, x) >= new[0]
    moved = before != after
    side = before == before[moved][0] if moved.any() else np.zeros(len(x), bool)
    stay = side & ~moved
    if not moved.any() or not stay.any():
        return 1.0
    counts = np.stack([y[moved].sum(0), y[stay].sum(0)])
    counts = counts[:, counts.sum(0) > 0]
    return p_value(float(gain(counts[0], counts.sum(0))), int(counts.sum()), counts.shape[1])


def _key(test: Test) -> tuple:
    return test[0], tuple(sorted(test[1]))


def mofn_search(x: np.ndarray, y: np.ndarray, seed: Literal, seed_gain: float, beam_width: int, max_m: int,
                significance: float) -> tuple[Test, float]:
    """Beam search from the single test ``seed``; returns the best M-of-N test and its gain."""
    beam = [(seed_gain, (1, (seed,)))]
    for _ in range(x.shape[1] * max_m + 1):      # every step adds a literal: at most d of them
        cands = [(parent_gain, c) for parent_gain, parent in beam for c in _refinements(x, y, parent, max_m)]
        n_tried = max(sum(c[3] for _, c in cands), 1)
        pool = {_key(t): (g, t) for g, t in beam}
        for parent_gain, (g, t, p, _) in cands:
            if g > parent_gain + 1e-12 and p < significance / n_tried:
                pool.setdefault(_key(t), (g, t))
        new = sorted(pool.values(), key=lambda gt: (-gt[0], _key(gt[1])))[:beam_width]
        if [_key(t) for _, t in new] == [_key(t) for _, t in beam]:
            break
        beam = new
    best_gain, best = beam[0]
    return best, best_gain


def find_split(x: np.ndarray, labels: np.ndarray, n_classes: int, beam_width: int, max_m: int,
               significance: float) -> dict | None:
    """The node's M-of-N test as a condition, or ``None`` if no single test is significant (the node is
    a leaf: its oracle labels show no dependence on any feature at level ``significance``, Bonferroni over
    the candidate thresholds)."""
    y = np.eye(n_classes)[labels]
    present = int((y.sum(0) > 0).sum())
    if present < 2:
        return None
    seed, seed_gain, n_candidates = best_single_test(x, y)
    if seed is None or p_value(seed_gain, len(x), present) >= significance / max(n_candidates, 1):
        return None
    test, _ = mofn_search(x, y, seed, seed_gain, beam_width, max_m, significance)
    return to_condition(test)
