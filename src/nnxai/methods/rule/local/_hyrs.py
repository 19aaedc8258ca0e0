"""Hybrid Rule Sets (HyRS) of Wang [80]: candidate rules and the simulated-annealing search of the substitute.

The model ([80] Sec. 2): rule sets ``R_k`` (one per class ``k``; [80] has a positive and a negative set) and
the black box ``f_b``.  An input covered by some rule takes the class of the first covering set in the order
``R_{K-1}, ..., R_0`` (for two classes: a positive rule first, as in [80]); an input no rule covers is left
to ``f_b``.  The objective ([80] Eq. 3; the authors' code ``obj``) on the ``N`` train examples is

    L(R) = err(R; f_b) / N + θ₁ |R| + θ₂ (1 - cover(R)) ,

``err`` the hybrid's errors against the targets (the train labels in [80]), ``|R|`` the number of rules
(interpretability), ``cover`` the fraction of examples the rules decide (transparency).  ``θ₂`` prices
coverage: the larger it is, the more of the input space the rules take from the network.

Rule space ([80] Sec. 3.1): the features are binarised (0/1 columns and their negations; a continuous
column's quantile edges ``x > q`` and ``x <= q``, the authors' ``binary_code``), frequent itemsets of at
most ``max_len`` items are mined among the examples of each class (support ``≥ min_support`` of the class,
Apriori level by level; [80] uses FP-growth, which finds the same sets), itemsets with the same coverage of
the train split are merged into the shortest, and the ``n_rules`` of highest precision above the class's
prior are kept per class (the authors' screening).  Choice: each level keeps only its ``n_rules`` most
precise itemsets, which are also the ones extended (FP-growth would enumerate all; this bounds time and
memory on wide continuous tables, and an itemset below a level's ``n_rules`` best rarely survives the
final screening).  A second screen follows from the objective: removing a rule of support ``s`` from
any solution changes ``L`` by at most ``-θ₁ + (1 + θ₂) s / N``, so a rule with ``s < θ₁ N / (1 + θ₂)``
is in no optimum and is dropped (a bound in the spirit of [80]'s Theorem 2, derived here).

Search ([80] Alg. 1; the authors' ``train`` and ``propose_rs``): simulated annealing from the empty set
(every example to the network) over ``n_iterations`` steps at temperature ``T_t = T₀^{t/n}`` (the authors'
schedule, from 1 down to ``T₀``), accepting a neighbour with probability ``min(1, exp(-(L' - L)/T_t))``;
the best solution seen is returned, and in the last quarter every step starts from it (the authors' code).
A neighbour: with probability 1/3 an error is drawn and fixed — a wrong rule is cut (or replaced by
another rule of its class that does not cover the example), a network error gets a rule of the right class
covering it —, with 1/3 a rule is cut, with 1/3 one is added ("expand"); when nothing is misclassified
cut and expand are equally likely, and when every example is covered only cuts are proposed.  The rule
to cut or add is, with probability 3/4, the one that lowers ``L`` most (the authors score additions by
the objective and cuts by precision; here both use ``L``), else a random one.  [80]'s bound on the number
of rules is enforced: a solution of ``L_best / θ₁`` rules or more costs more than the best seen, so no
rule is added to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnxai.explanations.records import literal_holds


@dataclass
class Items:
    """Binary items over the features: one literal each, and whether it holds on every train row."""

    literals: list
    holds: np.ndarray                 # (n, m) bool

    @property
    def features(self) -> np.ndarray:
        return np.array([lit["feature"] for lit in self.literals], dtype=np.int64)


def binarise(features: np.ndarray, n_bins: int) -> Items:
    """0/1 columns as ``x = 1`` / ``x = 0``; other columns as ``x > q`` / ``x <= q`` per quantile edge ``q``."""
    features = np.asarray(features, dtype=np.float64)
    literals = []
    for j in range(features.shape[1]):
        column = features[:, j]
        if np.all((column == 0) | (column == 1)):
            edges = [0.5]
        else:
            edges = np.unique(np.quantile(column, np.arange(1, n_bins) / n_bins))
            edges = [float(e) for e in edges if column.min() <= e < column.max()]
        for edge in edges:
            literals += [{"feature": j, "op": ">", "threshold": float(edge)},
                         {"feature": j, "op": "<=", "threshold": float(edge)}]
    holds = np.stack([literal_holds(lit, features) for lit in literals], axis=1) if literals else \
        np.zeros((len(features), 0), dtype=bool)
    return Items(literals, holds)


@dataclass
class Candidates:
    """The rule space: each rule an itemset (item indices) predicting ``classes[r]``; ``cover`` its train rows."""

    itemsets: list
    classes: np.ndarray               # (R,) int
    cover: np.ndarray                 # (R, n) bool
    precision: np.ndarray             # (R,)


def mine(items: Items, target: np.ndarray, n_classes: int, min_support: float, max_len: int,
         n_rules: int) -> Candidates:
    """Frequent itemsets per class, merged, screened by precision (module docstring)."""
    sets, classes, covers, precisions = [], [], [], []
    for c in range(n_classes):
        for itemset, cover, precision in _mine_class(items, target == c, min_support, max_len, n_rules):
            sets.append(itemset)
            classes.append(c)
            covers.append(cover)
            precisions.append(precision)
    n = items.holds.shape[0]
    return Candidates(sets, np.array(classes, dtype=np.int64),
                      np.array(covers, dtype=bool).reshape(len(sets), n), np.array(precisions, dtype=np.float64))


def _mine_class(items: Items, positive: np.ndarray, min_support: float, max_len: int, n_rules: int) -> list:
    """``(itemset, cover, precision)`` of the ``n_rules`` most precise frequent itemsets for one class."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return []
    need = max(1, math.ceil(min_support * n_pos))
    holds = items.holds
    h_all = holds.astype(np.float32)
    h_pos = (holds & positive[:, None]).astype(np.float32)
    features, ops = items.features, np.array([lit["op"] for lit in items.literals])
    found: dict[bytes, tuple] = {}
    level, covers = [()], np.ones((1, len(positive)), dtype=bool)      # the empty itemset, to extend
    for _ in range(max_len):
        c = covers.astype(np.float32)
        pos_ext, all_ext = c @ h_pos, c @ h_all            # (itemsets, items): counts of itemset + item
        last = np.array([s[-1] if s else -1 for s in level])
        ok = (pos_ext >= need) & (np.arange(holds.shape[1])[None, :] > last[:, None])
        for s, itemset in enumerate(level):                # one test per column, or an interval
            for i in itemset:
                ok[s] &= (features != features[i]) | (ops != ops[i])
        rows, cols = np.nonzero(ok)
        if not len(rows):
            break
        precision = pos_ext[rows, cols] / all_ext[rows, cols]
        keep = np.lexsort((-all_ext[rows, cols], -precision))[:n_rules]      # this level's most precise
        level = [level[rows[k]] + (int(cols[k]),) for k in keep]
        covers = covers[rows[keep]] & holds[:, cols[keep]].T
        for itemset, cover, p in zip(level, covers, precision[keep]):       # the shortest of a coverage stays
            found.setdefault(np.packbits(cover).tobytes(), (itemset, cover, float(p)))
    prior = n_pos / len(positive)
    ranked = sorted((v for v in found.values() if v[2] > prior), key=lambda v: (-v[2], -int(v[1].sum()), len(v[0])))
    return ranked[:n_rules]


class Hybrid:
    """The hybrid's prediction and objective for a set of selected rules (module docstring)."""

    def __init__(self, rules: Candidates, target: np.ndarray, network: np.ndarray, n_classes: int,
                 theta_rule: float, theta_coverage: float):
        self.rules, self.target, self.network = rules, target, network
        self.n_classes, self.n = n_classes, len(target)
        self.theta_rule, self.theta_coverage = theta_rule, theta_coverage
        self.by_class = [np.flatnonzero(rules.classes == c) for c in range(n_classes)]
        #: Per class, its rules' train coverage as a contiguous float matrix (rows in ``by_class`` order).
        self.class_matrix = [np.ascontiguousarray(rules.cover[idx], dtype=np.float32) for idx in self.by_class]

    def class_cover(self, selected) -> np.ndarray:
        out = np.zeros((self.n_classes, self.n), dtype=bool)
        for r in selected:
            out[self.rules.classes[r]] |= self.rules.cover[r]
        return out

    def predict(self, selected) -> tuple[np.ndarray, np.ndarray]:
        """(prediction, covered) on the train rows: the first covering class from K-1 down, else the network."""
        cover = self.class_cover(selected)
        pred, covered = self.network.copy(), np.zeros(self.n, dtype=bool)
        for c in range(self.n_classes - 1, -1, -1):
            fires = cover[c] & ~covered
            pred[fires] = c
            covered |= cover[c]
        return pred, covered

    def objective(self, selected) -> float:
        pred, covered = self.predict(selected)
        return float((pred != self.target).sum() / self.n + self.theta_rule * len(selected)
                     + self.theta_coverage * (~covered).sum() / self.n)

    def add_gains(self, selected, c: int) -> np.ndarray:
        """``L(S ∪ {r}) - L(S)`` for every rule ``r`` of class ``c`` (in ``by_class[c]`` order), vectorised."""
        cover = self.class_cover(selected)
        pred, covered = self.predict(selected)
        changes = ~cover[c:].any(axis=0)                 # not yet decided by class c or a class before it
        wrong_after = (self.target != c).astype(np.float32)
        delta_err = (changes * (wrong_after - (pred != self.target))).astype(np.float32)
        newly = (changes & ~covered).astype(np.float32)
        m = self.class_matrix[c]
        return (m @ delta_err) / self.n + self.theta_rule - self.theta_coverage * (m @ newly) / self.n


def anneal(hybrid: Hybrid, n_iterations: int, t0: float, rng: np.random.Generator) -> tuple[list, float]:
    """[80] Alg. 1 (module docstring): the best rule selection found and its objective."""
    current: list = []
    obj = best_obj = hybrid.objective(current)
    best: list = []
    for t in range(n_iterations):
        if t > 0.75 * n_iterations:
            current, obj = list(best), best_obj
        bound = math.floor(best_obj / hybrid.theta_rule) if hybrid.theta_rule > 0 else math.inf
        proposal = _propose(hybrid, current, bound, rng)
        new_obj = hybrid.objective(proposal)
        if new_obj < best_obj - 1e-12:
            best, best_obj = sorted(proposal), new_obj
        temperature = t0 ** (t / n_iterations)
        if new_obj <= obj or rng.random() < math.exp(-(new_obj - obj) / temperature):
            current, obj = proposal, new_obj
    return best, best_obj


def _propose(hybrid: Hybrid, current: list, bound: float, rng: np.random.Generator) -> list:
    pred, covered = hybrid.predict(current)
    errors = np.flatnonzero(pred != hybrid.target)
    can_add = len(current) + 1 <= bound
    if covered.all() or not can_add:
        return _cut(hybrid, current, None, None, rng) if current else list(current)
    u = rng.random()
    if errors.size and u < 1 / 3:
        ex = int(rng.choice(errors))
        if covered[ex]:
            c = int(pred[ex])
            out = _cut(hybrid, current, c, ex, rng)
            if rng.random() < 0.5:
                out = _add(hybrid, out, c, ex, covering=False, rng=rng)
            return out
        return _add(hybrid, current, int(hybrid.target[ex]), ex, covering=True, rng=rng)
    cut = u < 2 / 3 if errors.size else u < 1 / 2
    if cut and current:
        return _cut(hybrid, current, None, None, rng)
    return _add(hybrid, current, int(rng.integers(hybrid.n_classes)), None, covering=True, rng=rng)


def _cut(hybrid: Hybrid, current: list, c, ex, rng) -> list:
    """Remove a rule (of class ``c`` covering example ``ex`` when given): the best for ``L`` or, 1/4, random."""
    pool = [r for r in current if (c is None or hybrid.rules.classes[r] == c)
            and (ex is None or hybrid.rules.cover[r, ex])]
    if not pool:
        pool = list(current)
    if not pool:
        return list(current)
    if rng.random() < 0.25:
        drop = pool[int(rng.integers(len(pool)))]
    else:
        drop = min(pool, key=lambda r: hybrid.objective([s for s in current if s != r]))
    return [s for s in current if s != drop]


def _add(hybrid: Hybrid, current: list, c: int, ex, covering: bool, rng) -> list:
    """Add a rule of class ``c`` (covering ``ex``, or not covering it): the best for ``L`` or, 1/4, random."""
    rules = hybrid.by_class[c]
    ok = ~np.isin(rules, current)
    if ex is not None:
        ok &= hybrid.rules.cover[rules, ex] == covering
    if not ok.any():
        return list(current)
    if rng.random() < 0.25:
        pick = int(rng.choice(rules[ok]))
    else:
        gains = np.where(ok, hybrid.add_gains(current, c), np.inf)
        pick = int(rules[int(np.argmin(gains))])
    return sorted(current + [pick])


def support_bound(theta_rule: float, theta_coverage: float, n: int) -> float:
    """Smallest train support a rule of an optimal solution can have: ``θ₁ N / (1 + θ₂)``."""
    return theta_rule * n / (1 + theta_coverage)
