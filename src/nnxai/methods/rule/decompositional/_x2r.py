"""Perfect rules from a table of discrete attributes: the rule generator of NeuroRule's RX [83] and of
NeuroLinear [84], after X2R (Liu & Tan, "X2R: a fast rule generator", IEEE SMC 1995).

A table holds rows of value indices (``n_values[a]`` values of attribute ``a``, in order: cluster values
ordered by activation, intervals, 0/1 inputs), a weight per row (its frequency) and a target.  A rule is a
conjunction of conditions ``(a, lo, hi)``, "the value of attribute ``a`` lies in ``lo..hi``" (a single value
when ``lo == hi``).

X2R, as used here:

1. **Generation** (:func:`cover`).  While a row of the class is uncovered, take the uncovered row of largest
   weight and find the *shortest* conjunction of its attribute values that covers no row of another class
   (sizes 1, 2, ... in turn; among those of the smallest size the one covering the most uncovered weight).
   Where the subsets of a size are too many to list (more than ``MAX_SUBSETS``), the row's full pattern is
   pruned greedily instead (step 2), a documented shortcut of the exhaustive search.
2. **Pruning**.  A condition is dropped when the rule stays perfect without it; for ordered values a
   condition is widened towards either end as long as the rule stays perfect (widened to every value it
   disappears).  Rules whose rows the other rules of the class cover are removed.
3. **Default rule** (:func:`decision_list`).  Every class gets its perfect cover; the class whose cover is
   largest (rules, then conditions) becomes the default, and the others' rules are listed before it.  All
   listed rules are perfect, so the list classifies every row of the table as its target.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

#: Largest number of candidate subsets of one size listed for one row.
MAX_SUBSETS = 20000

Condition = tuple[int, int, int]


class Table:
    """Rows of value indices ``(n, k)`` with weights; ``eq[a][v]`` marks the rows where attribute ``a``
    takes value ``v``."""

    def __init__(self, values: np.ndarray, n_values: list, weights: np.ndarray | None = None):
        self.values = np.asarray(values, dtype=np.int64).reshape(len(values), -1)
        self.n_values = [int(v) for v in n_values]
        self.weights = np.ones(len(self.values)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.eq = [[self.values[:, a] == v for v in range(self.n_values[a])] for a in range(self.values.shape[1])]

    def holds(self, conditions) -> np.ndarray:
        """Rows satisfying every condition."""
        out = np.ones(len(self.values), dtype=bool)
        for a, lo, hi in conditions:
            out &= (self.values[:, a] >= lo) & (self.values[:, a] <= hi)
        return out


def _shortest(table: Table, row: int, positive: np.ndarray, uncovered: np.ndarray) -> list | None:
    """The shortest perfect conjunction of ``row``'s values with the most uncovered weight (step 1)."""
    k = table.values.shape[1]
    if k == 0:
        return None
    pattern = table.values[row]
    eq = np.stack([table.eq[a][pattern[a]] for a in range(k)])          # (k, n)
    negative = ~positive
    for size in range(1, k + 1):
        if math.comb(k, size) > MAX_SUBSETS:
            return None
        combos = np.array(list(itertools.combinations(range(k), size)), dtype=np.int64)
        covers = np.logical_and.reduce(eq[combos], axis=1)               # (C, n)
        ok = ~(covers & negative).any(1)
        if ok.any():
            gain = (covers[ok] & uncovered) @ table.weights
            total = covers[ok] @ table.weights
            best = np.lexsort((-total, -gain))[0]
            return [(int(a), int(pattern[a]), int(pattern[a])) for a in combos[ok][best]]
    return None


def _perfect(table: Table, conditions, positive: np.ndarray) -> bool:
    return not (table.holds(conditions) & ~positive).any()


def generalise(table: Table, conditions: list, positive: np.ndarray) -> list:
    """Step 2 for one rule: drop conditions, then widen the remaining ones, while the rule stays perfect."""
    conditions = list(conditions)
    for cond in list(conditions):
        trial = [c for c in conditions if c != cond]
        if _perfect(table, trial, positive):
            conditions = trial
    out = []
    for idx, (a, lo, hi) in enumerate(conditions):
        rest = out + conditions[idx + 1:]
        while lo > 0 and _perfect(table, rest + [(a, lo - 1, hi)], positive):
            lo -= 1
        while hi < table.n_values[a] - 1 and _perfect(table, rest + [(a, lo, hi + 1)], positive):
            hi += 1
        if not (lo == 0 and hi == table.n_values[a] - 1):
            out.append((a, lo, hi))
    return out


def drop_redundant(table: Table, rules: list, positive: np.ndarray) -> list:
    """Remove rules whose positive rows the other rules cover (smallest coverage first)."""
    rules = list(rules)
    covers = [table.holds(r) & positive for r in rules]
    for i in sorted(range(len(rules)), key=lambda i: covers[i] @ table.weights):
        others = np.zeros(len(positive), dtype=bool)
        for j, c in enumerate(covers):
            if j != i and rules[j] is not None:
                others |= c
        if not (covers[i] & ~others).any():
            rules[i] = None
    return [r for r in rules if r is not None]


def cover(table: Table, positive: np.ndarray) -> list:
    """Conjunctions covering every ``positive`` row and no other (X2R steps 1-2); rows of ``positive`` whose
    very pattern also occurs among the negatives cannot be covered and are left out."""
    positive = np.asarray(positive, dtype=bool)
    uncovered = positive.copy()
    rules = []
    while uncovered.any():
        candidates = np.flatnonzero(uncovered)
        row = int(candidates[np.argmax(table.weights[candidates])])
        rule = _shortest(table, row, positive, uncovered)
        if rule is None:
            full = [(a, int(v), int(v)) for a, v in enumerate(table.values[row])]
            rule = full if _perfect(table, full, positive) else None
        if rule is None:
            uncovered[row] = False
            continue
        rule = generalise(table, rule, positive)
        rules.append(rule)
        uncovered &= ~table.holds(rule)
    return drop_redundant(table, rules, positive)


def size(rules: list) -> tuple[int, int]:
    return len(rules), sum(len(r) for r in rules)


def decision_list(table: Table, labels: np.ndarray, n_classes: int) -> tuple[list, int]:
    """X2R's decision list: ``[(conditions, class, support weight)]`` and the default class (step 3)."""
    labels = np.asarray(labels)
    covers = {c: cover(table, labels == c) for c in range(n_classes) if (labels == c).any()}
    if not covers:
        return [], 0
    weight = {c: float(table.weights[labels == c].sum()) for c in covers}
    default = max(covers, key=lambda c: (*size(covers[c]), weight[c], -c))
    rules = []
    for c in sorted(covers):
        if c == default:
            continue
        ranked = sorted(covers[c], key=lambda r: -float(table.holds(r) @ table.weights))
        rules += [(r, c, float(table.holds(r) @ table.weights)) for r in ranked]
    return rules, default


def collapse(values: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows, each with its majority label (ties: the smaller class) and its count: the "small data
    set" NeuroLinear hands to the rule generator."""
    distinct, inverse = np.unique(np.asarray(values).reshape(len(values), -1), axis=0, return_inverse=True)
    counts = np.zeros((len(distinct), n_classes))
    np.add.at(counts, (inverse.reshape(-1), np.asarray(labels)), 1)
    return distinct, counts.argmax(1), counts.sum(1)
