"""Discrete attributes of a tabular feature space, and rules over them as boxes (the "subspaces" of GRG [85]).

GRG works on data with discrete attributes; Gyan [86] generalises rules over attribute values.  Both read
the inputs through :class:`Attribute`:

* a one-hot group ``a=1, a=2, ...`` (a categorical field of :func:`nnxai.ops.feature_space.feature_space`,
  MONK's attributes) is one *categorical* attribute whose values are the group's columns; a condition on it
  is any proper subset of its values;
* a lone indicator column ``x=v`` is a categorical attribute with the two values "0" and "1";
* a real-valued feature is discretised into at most ``n_bins`` equal-frequency intervals of the training
  values (an *ordinal* attribute); a condition on it is an interval of consecutive bins, i.e. one or two
  thresholds.  GRG itself takes discrete data and leaves the discretisation to its user (in Odajima et al.'s
  neural-network experiments what is discretised are the hidden activations, NeuroLinear's framework);
  equal-frequency bins of the inputs are this module's choice, stated here.

A rule is a *box*: one boolean membership vector over every attribute's values, flattened over the
attributes (``offsets``); an attribute whose values are all in the box is unconstrained.  :func:`conditions`
writes a box as :class:`~nnxai.explanations.RuleSet` conditions that hold exactly on the box for valid
inputs (one-hot groups, real values): for a categorical attribute the shorter of "one of S" and "none of the
complement" (``a2=3 <= 0.5`` is "a2 != 3"), for an ordinal one its thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnxai.ops.feature_space import FeatureSpace


@dataclass(frozen=True)
class Attribute:
    """One discrete attribute: its name, the input columns that encode it and its values.

    ``kind``: ``"group"`` (one-hot columns, value ``k`` is column ``columns[k]``), ``"indicator"`` (one 0/1
    column, values "0" and "1") or ``"ordinal"`` (one real column, value ``k`` is the bin
    ``(edges[k-1], edges[k]]``).  ``domain``: a key shared by attributes whose values are the same
    constants (one-hot groups with the same value names), ``None`` where no other attribute can share them.
    """

    name: str
    kind: str
    columns: tuple[int, ...]
    values: tuple[str, ...]
    edges: tuple[float, ...] = ()
    domain: tuple[str, ...] | None = None

    @property
    def card(self) -> int:
        return len(self.values)


def attributes(space: FeatureSpace, n_bins: int) -> list[Attribute]:
    """The discrete attributes of a tabular feature space (constant real features get none)."""
    out = []
    for fld in space.fields:
        cols = tuple(int(c) for c in fld.columns)
        names = [space.names[c] for c in cols]
        if fld.patterns is not None and len(cols) > 1:
            base = names[0].split("=")[0]
            values = tuple(n.split("=", 1)[1] if "=" in n else n for n in names)
            out.append(Attribute(base, "group", cols, values, domain=values))
        elif fld.patterns is not None:
            out.append(Attribute(names[0], "indicator", cols, ("0", "1")))
        else:
            edges = _equal_frequency_edges(space.train[:, cols[0]], n_bins)
            if len(edges):
                labels = tuple(f"bin{k}" for k in range(len(edges) + 1))
                out.append(Attribute(names[0], "ordinal", cols, labels, edges=tuple(edges)))
    return out


def _equal_frequency_edges(column: np.ndarray, n_bins: int) -> list[float]:
    """Inner cut points at the ``k / n_bins`` quantiles of the training values, distinct, below the maximum
    (a bin is ``(edge_{k-1}, edge_k]``, so no bin is empty on the training values)."""
    qs = np.quantile(column, np.arange(1, n_bins) / n_bins, method="inverted_cdf")
    return [float(e) for e in np.unique(qs) if e < column.max()]


def encode(attrs: list[Attribute], x: np.ndarray) -> np.ndarray:
    """Attribute values ``(n, n_attributes)`` int64 of inputs ``x`` ``(n, d)``."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty((len(x), len(attrs)), dtype=np.int64)
    for a, attr in enumerate(attrs):
        cols = x[:, list(attr.columns)]
        if attr.kind == "group":
            out[:, a] = np.argmax(cols, axis=1)
        elif attr.kind == "indicator":
            out[:, a] = cols[:, 0] > 0.5
        else:
            out[:, a] = np.searchsorted(np.asarray(attr.edges), cols[:, 0], side="left")
    return out


def offsets(attrs: list[Attribute]) -> np.ndarray:
    """Start of each attribute's values in a flattened box, and the total as last entry."""
    return np.concatenate([[0], np.cumsum([attr.card for attr in attrs])]).astype(np.int64)


def point_box(attrs: list[Attribute], values: np.ndarray) -> np.ndarray:
    """The box holding only the point ``values`` (one value per attribute)."""
    off = offsets(attrs)
    box = np.zeros(off[-1], dtype=bool)
    box[off[:-1] + np.asarray(values)] = True
    return box


def covers(attrs: list[Attribute], box: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bool per row of ``values`` ``(n, n_attributes)``: whether the point lies in the box."""
    off = offsets(attrs)
    return np.all(box[off[:-1][None, :] + values], axis=1)


def box_log_size(attrs: list[Attribute], box: np.ndarray) -> float:
    """log of the number of attribute-value points in the box."""
    off = offsets(attrs)
    return float(sum(np.log(box[off[a]:off[a + 1]].sum()) for a in range(len(attrs))))


def n_constrained(attrs: list[Attribute], box: np.ndarray) -> int:
    off = offsets(attrs)
    return int(sum(not box[off[a]:off[a + 1]].all() for a in range(len(attrs))))


def conditions(attrs: list[Attribute], box: np.ndarray) -> list[dict]:
    """The box as RuleSet conditions (an attribute with all its values gives none)."""
    off = offsets(attrs)
    out = []
    for a, attr in enumerate(attrs):
        out += value_conditions(attr, box[off[a]:off[a + 1]])
    return out


def value_conditions(attr: Attribute, allowed: np.ndarray) -> list[dict]:
    """Conditions that hold exactly when the attribute takes one of the ``allowed`` values."""
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.all():
        return []
    if not allowed.any():
        raise ValueError(f"attribute {attr.name!r}: a box must allow at least one value")
    if attr.kind == "indicator":
        return [_cond(attr.columns[0], ">" if allowed[1] else "<=", 0.5)]
    if attr.kind == "ordinal":
        inside = np.flatnonzero(allowed)
        lo, hi = int(inside[0]), int(inside[-1])
        if hi - lo + 1 != len(inside):
            raise ValueError(f"ordinal attribute {attr.name!r}: allowed bins {inside.tolist()} are not an interval")
        conds = [_cond(attr.columns[0], ">", attr.edges[lo - 1])] if lo > 0 else []
        return conds + ([_cond(attr.columns[0], "<=", attr.edges[hi])] if hi < attr.card - 1 else [])
    inside, outside = np.flatnonzero(allowed), np.flatnonzero(~allowed)
    if len(inside) <= len(outside):
        lits = [{"feature": attr.columns[k], "op": ">", "threshold": 0.5} for k in inside]
        return [{"m": 1, "literals": lits}]
    return [_cond(attr.columns[k], "<=", 0.5) for k in outside]


def _cond(feature: int, op: str, threshold: float) -> dict:
    return {"m": 1, "literals": [{"feature": int(feature), "op": op, "threshold": float(threshold)}]}


def pattern_table(values: np.ndarray, labels: np.ndarray, n_classes: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct attribute-value patterns of the rows, the network's majority class of each (ties: the
    lower class), how many rows each holds, and each row's pattern.  Discretising real inputs can put rows
    the network labels differently into one pattern; the majority keeps the table consistent (GRG's input is
    a table of discrete patterns, each with one class)."""
    patterns, inverse = np.unique(values, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.zeros((len(patterns), n_classes))
    np.add.at(counts, (inverse, labels), 1.0)
    return patterns, np.argmax(counts, axis=1), counts.sum(axis=1), inverse
