"""Disjunctions of interval conjunctions, the rules DeepRED merges (Zilke et al. 2016, step 4 of Algorithm 1).

A conjunction of tests ``unit > lo`` / ``unit <= hi`` over the units of one layer is stored as one interval
``(lo, hi]`` per unit (``-inf`` / ``inf`` where a unit is not tested), so **redundant terms** vanish by
construction: ``x > 0.4 AND x > 0.5`` is the interval ``(0.5, inf]`` (the paper's footnote example), and a
conjunction is **unsatisfiable** when an interval is empty (``x <= 0.1 AND x > 0.2``).  A DNF is a stack of
such rows (:class:`Dnf`); the product of two DNFs (every row of one AND every row of the other, the
substitution of a term by its rules) is computed for all pairs at once.

:class:`Domain` adds what the input layer's declared domain knows: a one-hot attribute has exactly one
column at 1 (MONK's ``a5=1 .. a5=4``), so a row is unsatisfiable when no value of an attribute meets its
tests, and an attribute's tests are rewritten as the fewest tests at 0.5 that allow the same values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

INF = float("inf")


@dataclass
class Dnf:
    """Rows of intervals ``(lo, hi]`` over ``n_units`` units: their disjunction."""

    lo: np.ndarray              # (rows, n_units)
    hi: np.ndarray

    @classmethod
    def true(cls, n_units: int) -> "Dnf":
        return cls(np.full((1, n_units), -INF), np.full((1, n_units), INF))

    @classmethod
    def of(cls, rows: Iterable[Iterable[tuple[int, str, float]]], n_units: int) -> "Dnf":
        """From conjunctions of ``(unit, op, threshold)`` tests (op ``>`` or ``<=``); empty ones dropped."""
        rows = list(rows)
        lo, hi = np.full((len(rows), n_units), -INF), np.full((len(rows), n_units), INF)
        for i, tests in enumerate(rows):
            for unit, op, threshold in tests:
                if op == ">":
                    lo[i, unit] = max(lo[i, unit], threshold)
                else:
                    hi[i, unit] = min(hi[i, unit], threshold)
        return cls(lo, hi).satisfiable()

    def __len__(self) -> int:
        return len(self.lo)

    def take(self, rows) -> "Dnf":
        return Dnf(self.lo[rows], self.hi[rows])

    def satisfiable(self) -> "Dnf":
        """The rows whose every interval is non-empty."""
        return self.take(np.all(self.lo < self.hi, axis=1))

    def tests(self, row: int) -> list[tuple[int, str, float]]:
        """The tests of one row, unit by unit: ``unit > lo`` then ``unit <= hi``."""
        out = []
        for unit in range(self.lo.shape[1]):
            if self.lo[row, unit] > -INF:
                out.append((unit, ">", float(self.lo[row, unit])))
            if self.hi[row, unit] < INF:
                out.append((unit, "<=", float(self.hi[row, unit])))
        return out

    def terms(self) -> set[tuple[int, float]]:
        """Every ``(unit, threshold)`` the rows test (both readings of a threshold are one term)."""
        rows, units = np.nonzero(self.lo > -INF)
        out = {(int(u), float(self.lo[r, u])) for r, u in zip(rows, units)}
        rows, units = np.nonzero(self.hi < INF)
        return out | {(int(u), float(self.hi[r, u])) for r, u in zip(rows, units)}

    def key(self) -> np.ndarray:
        return np.concatenate([self.lo, self.hi], axis=1)


def product(a: Dnf, b: Dnf) -> Dnf:
    """``a AND b`` multiplied out: every pair of rows intersected, the unsatisfiable pairs dropped."""
    lo = np.maximum(a.lo[:, None, :], b.lo[None, :, :]).reshape(-1, a.lo.shape[1])
    hi = np.minimum(a.hi[:, None, :], b.hi[None, :, :]).reshape(-1, a.lo.shape[1])
    return Dnf(lo, hi).satisfiable()


def unique(dnf: Dnf, labels: np.ndarray | None = None) -> tuple[Dnf, np.ndarray | None]:
    """Each (row, label) once, in a canonical order."""
    key = dnf.key() if labels is None else np.concatenate([dnf.key(), labels[:, None].astype(np.float64)], axis=1)
    if not len(key):
        return dnf, labels
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return dnf.take(first), None if labels is None else labels[first]


def drop_subsumed(dnf: Dnf, labels: np.ndarray) -> tuple[Dnf, np.ndarray]:
    """Without the rows implied by another row of the same label (every interval inside the other's); rows
    must be distinct (:func:`unique`)."""
    keep = np.ones(len(dnf), dtype=bool)
    for i in range(len(dnf)):
        inside = (labels == labels[i]) & np.all(dnf.lo[i] >= dnf.lo, axis=1) & np.all(dnf.hi[i] <= dnf.hi, axis=1)
        inside[i] = False
        keep[i] = not inside.any()
    return dnf.take(keep), labels[keep]


class Domain:
    """The input domain's categorical attributes: ``groups`` of ``(columns, patterns)``, ``patterns[k]`` the
    values the columns take for category ``k`` (one-hot rows, or ``[[0], [1]]`` for a lone 0/1 column)."""

    def __init__(self, groups: list[tuple[list[int], np.ndarray]]):
        self.groups = [(list(c), np.asarray(p, dtype=np.float64)) for c, p in groups]

    def clean(self, dnf: Dnf) -> Dnf:
        """Drop the rows that no input of the domain satisfies; write each attribute's tests canonically."""
        lo, hi = dnf.lo.copy(), dnf.hi.copy()
        keep = np.ones(len(dnf), dtype=bool)
        for columns, patterns in self.groups:
            allowed = np.all((patterns[None] > lo[:, None, columns]) & (patterns[None] <= hi[:, None, columns]), axis=2)
            keep &= allowed.any(axis=1)
            lo[:, columns], hi[:, columns] = self._canonical(columns, patterns, allowed)
        return Dnf(lo, hi).take(keep)

    @staticmethod
    def _canonical(columns: list[int], patterns: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fewest tests at 0.5 allowing exactly the ``allowed`` values: one ``> 0.5`` test for a single
        value (``<= 0.5`` for the value 0 of a lone column), else one ``<= 0.5`` per excluded value."""
        n = len(allowed)
        lo, hi = np.full((n, len(columns)), -INF), np.full((n, len(columns)), INF)
        count = allowed.sum(axis=1)
        single = count == 1
        value = np.argmax(allowed, axis=1)
        if len(columns) == 1:
            ones = single & (patterns[value, 0] > 0.5)
            lo[ones, 0], hi[single & ~ones, 0] = 0.5, 0.5
            return lo, hi
        hot = np.argmax(patterns, axis=1)                     # the column at 1 for each value
        lo[np.flatnonzero(single), hot[value[single]]] = 0.5
        partial = (count > 1) & (count < len(patterns))
        for k in range(len(patterns)):
            hi[partial & ~allowed[:, k], hot[k]] = 0.5
        return lo, hi
