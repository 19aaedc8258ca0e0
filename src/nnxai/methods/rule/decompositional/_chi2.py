"""Chi2 discretisation (Liu & Setiono, "Chi2: feature selection and discretization of numeric attributes",
IEEE ICTAI 1995), which NeuroLinear [84] applies to the hidden units' activation values.

Chi2 is ChiMerge (Kerber 1992) with the significance level chosen automatically:

* **ChiMerge at level alpha.**  Sort an attribute's values, one interval per distinct value; repeatedly merge
  the adjacent pair of intervals with the lowest

      chi^2 = sum_{i=1,2} sum_{j=1..k} (A_ij - E_ij)^2 / E_ij,   E_ij = R_i C_j / N  (0.1 where it is 0)

  (``A_ij``: patterns of class ``j`` in interval ``i``; ``R_i``, ``C_j``: its row and column sums; ``N``:
  the pair's patterns; ``k``: classes) while that lowest value is below the chi^2 quantile of level alpha
  with ``k - 1`` degrees of freedom.
* **Phase 1.**  Starting at alpha = 0.5, merge every attribute at alpha, then decrease alpha to the next
  level of :data:`LEVELS`, as long as the inconsistency rate of the discretised data stays at most
  ``delta``; the last discretisation within ``delta`` is kept.
* **Phase 2.**  Each attribute in turn is merged further at its own next level while the inconsistency
  rate stays within ``delta``; an attribute whose merge would exceed it is left as it is.  An attribute
  merged into a single interval is irrelevant (Chi2's feature selection).

The inconsistency rate: patterns with the same discretised values form a group; a group counts its size
minus its majority class; the rate is the sum over groups divided by the number of patterns.  Chi2 takes
``delta`` = the rate of the undiscretised data; NeuroLinear's data are the activations labelled by the
network's classes, a function of them, so that rate is 0.
"""

from __future__ import annotations

import numpy as np

#: The significance levels Chi2 steps through (its decreSigLevel), from its starting level 0.5.
LEVELS = (0.5, 0.25, 0.2, 0.1, 0.05, 0.025, 0.01, 0.005, 0.0025, 0.001, 0.0005, 0.0001)


class _Attribute:
    """One attribute's sorted distinct values, its intervals (first value index of each) and class counts."""

    def __init__(self, values: np.ndarray, labels: np.ndarray, n_classes: int):
        self.distinct, inverse = np.unique(values, return_inverse=True)
        self.counts = np.zeros((len(self.distinct), n_classes))
        np.add.at(self.counts, (inverse.reshape(-1), labels), 1)
        self.starts = np.arange(len(self.distinct))

    def copy_state(self):
        return self.starts.copy(), self.counts.copy()

    def restore(self, state) -> None:
        self.starts, self.counts = state[0].copy(), state[1].copy()

    def merge(self, threshold: float) -> None:
        """ChiMerge: merge the adjacent pair of lowest chi^2 while it is below ``threshold``."""
        while len(self.starts) > 1:
            chi = pair_chi2(self.counts[:-1], self.counts[1:])
            i = int(np.argmin(chi))
            if chi[i] >= threshold:
                return
            self.counts[i] += self.counts[i + 1]
            self.counts = np.delete(self.counts, i + 1, axis=0)
            self.starts = np.delete(self.starts, i + 1)

    def cuts(self) -> np.ndarray:
        """Thresholds between the intervals: midway between the last value of one and the first of the next."""
        return (self.distinct[self.starts[1:] - 1] + self.distinct[self.starts[1:]]) / 2

    def codes(self, values: np.ndarray) -> np.ndarray:
        """Interval index of each value: ``cuts[k-1] < v <= cuts[k]``."""
        return np.searchsorted(self.cuts(), values, side="left")


def pair_chi2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """chi^2 of every pair of adjacent intervals (rows of ``a`` and ``b``: class counts)."""
    pair = np.stack([a, b], axis=1)                       # (pairs, 2, k)
    rows = pair.sum(2, keepdims=True)
    cols = pair.sum(1, keepdims=True)
    expected = rows * cols / np.maximum(pair.sum((1, 2), keepdims=True), 1e-300)
    expected = np.where(expected == 0, 0.1, expected)
    return ((pair - expected) ** 2 / expected).sum((1, 2))


def inconsistency(codes: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """The inconsistency rate of discretised rows ``codes`` (n, m) with classes ``labels``."""
    if len(codes) == 0:
        return 0.0
    _, group = np.unique(codes, axis=0, return_inverse=True)
    counts = np.zeros((group.max() + 1, n_classes))
    np.add.at(counts, (group.reshape(-1), labels), 1)
    return float((counts.sum(1) - counts.max(1)).sum() / len(codes))


def chi2(values: np.ndarray, labels: np.ndarray, n_classes: int, delta: float) -> list:
    """Cut points of every column of ``values`` (n, m) by Chi2 with inconsistency bound ``delta``."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    if len(present) < 2 or values.shape[1] == 0:
        return [np.zeros(0) for _ in range(values.shape[1])]
    remap = np.searchsorted(present, labels)
    k = len(present)
    attrs = [_Attribute(values[:, j], remap, k) for j in range(values.shape[1])]

    def rate() -> float:
        return inconsistency(np.column_stack([a.codes(values[:, j]) for j, a in enumerate(attrs)]), remap, k)

    def threshold(level: float) -> float:
        from scipy import stats     # imported where used: every job imports the registry

        return float(stats.chi2.ppf(1 - level, k - 1))

    # Phase 1: one level for all attributes
    saved = [a.copy_state() for a in attrs]
    last = -1
    for i, level in enumerate(LEVELS):
        for a in attrs:
            a.merge(threshold(level))
        if rate() > delta:
            for a, s in zip(attrs, saved):
                a.restore(s)
            break
        saved, last = [a.copy_state() for a in attrs], i
    # Phase 2: per attribute, further down while consistent
    level_of = [last] * len(attrs)
    mergeable = [True] * len(attrs)
    while any(mergeable):
        for j, a in enumerate(attrs):
            if not mergeable[j]:
                continue
            if level_of[j] + 1 >= len(LEVELS) or len(a.starts) == 1:
                mergeable[j] = False
                continue
            state = a.copy_state()
            a.merge(threshold(LEVELS[level_of[j] + 1]))
            if rate() > delta:
                a.restore(state)
                mergeable[j] = False
            else:
                level_of[j] += 1
    return [a.cuts() for a in attrs]
