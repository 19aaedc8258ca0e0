"""The predicates of an input and the perturbation distribution ``D(z|A)`` of Anchors [65], per modality.

Tables ([65] Sec. 4, "tabular classification"): continuous features are discretised into quantile bins
of the train split (``n_bins = 4``: the quartiles of [65]); the predicates of ``x`` are, per continuous
feature and quantile edge ``q``, ``x_j > q`` or ``x_j <= q``, whichever ``x`` satisfies (the authors'
ordinal predicates: an anchor may keep a one-sided range wider than ``x``'s bin), and per 0/1 column
(MONK's one-hot inputs, taken as they are) ``x_j = 1`` or ``x_j = 0`` as in ``x``.  A candidate anchor
keeps no predicate its others imply (:meth:`TableSpace.normalise`).
``D(z|A)`` samples the train split conditioned on the anchor: a train row is drawn at random, and every
*field* the anchor constrains (a one-hot group ``a5=1 .. a5=4``, or a single column) is replaced by that
field of a train row drawn among those that satisfy the anchor's predicates on it (the authors' tabular
sampler), so every draw is a valid instance and features outside the anchor keep the data's distribution.
``D(z)`` (no anchor) is the train split itself: the coverage of ``A`` is the fraction of train rows that
satisfy it (the expectation of the authors' estimate from rows drawn from the train split).

Images ([65] Sec. 4, "image classifier"): the predicates are the SLIC superpixels of ``x``
(:func:`~nnxai.methods.attribution.perturbation.lime.superpixels`, shared with LIME); ``D(z|A)`` keeps the
anchor's superpixels and each other superpixel with probability 1/2, and fills the absent ones with the
reference value ``fill`` (zeros or the per-channel train mean; [65]'s code greys superpixels out with
their own mean colour, or pastes other images' pixels: a constant fill is this project's LIME choice, so
the two methods perturb alike).  The coverage of ``A`` under ``D(z)`` is exactly ``2^-|A|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnxai.explanations.records import literal_holds
from nnxai.ops.superpixels import compose, superpixels
from nnxai.ops.feature_space import predict_classes


def fields_of(names: list[str]) -> list[tuple[int, ...]]:
    """Columns drawn together: each ``group=value`` family of two or more columns (one-hot), else one column."""
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        groups.setdefault(name.split("=")[0] if "=" in name else f"\0{j}", []).append(j)
    return [tuple(cols) for cols in groups.values()]


def literal(feature: int, op: str, threshold: float) -> dict:
    return {"feature": int(feature), "op": op, "threshold": float(threshold)}


class TableModel:
    """What ``D`` needs of a table, learnt from the train split: binary columns, quantile edges, fields."""

    def __init__(self, train: np.ndarray, names: list[str], n_bins: int):
        self.train = np.asarray(train, dtype=np.float64)
        self.names = list(names)
        self.binary = np.all((self.train == 0) | (self.train == 1), axis=0)
        quantiles = np.arange(1, n_bins) / n_bins
        self.edges = [np.unique(np.quantile(self.train[:, j], quantiles)) if not self.binary[j] else np.zeros(0)
                      for j in range(self.train.shape[1])]
        self.fields = fields_of(self.names)
        self.field_of = {j: f for f, cols in enumerate(self.fields) for j in cols}
        #: Fields that are one-hot groups on the train split (every row has exactly one 1 among them).
        self.one_hot = {f for f, cols in enumerate(self.fields)
                        if len(cols) > 1 and self.binary[list(cols)].all()
                        and np.all(self.train[:, list(cols)].sum(axis=1) == 1)}

    def predicates(self, x: np.ndarray) -> list[dict]:
        """The predicates ``x`` satisfies (module docstring), in column order."""
        out = []
        for j, value in enumerate(np.asarray(x, dtype=np.float64)):
            if self.binary[j]:
                out.append(literal(j, ">" if value > 0.5 else "<=", 0.5))
            else:
                out.extend(literal(j, ">" if value > edge else "<=", edge) for edge in self.edges[j])
        return out

    def holds(self, literals: list[dict]) -> np.ndarray:
        rows = np.ones(len(self.train), dtype=bool)
        for lit in literals:
            rows &= literal_holds(lit, self.train)
        return rows


@dataclass
class TableSpace:
    """``D(z|A)`` around one table row ``x``."""

    model: TableModel
    x: np.ndarray
    input_shape: tuple

    def __post_init__(self):
        self.predicates = self.model.predicates(self.x)

    def normalise(self, anchor: tuple) -> tuple:
        """``anchor`` without the predicates its others imply; the set of instances is unchanged.  In a
        one-hot group ``a1=2`` implies ``a1!=1``, and ``a5!=2, a5!=3, a5!=4`` (x has a5=1) is ``a5=1``; of the
        bounds on a continuous column only the tightest lower and the tightest upper one stay."""
        groups: dict[int, list[int]] = {}
        for i in anchor:
            groups.setdefault(self.model.field_of[self.predicates[i]["feature"]], []).append(i)
        out = []
        for f, ids in groups.items():
            cols = self.model.fields[f]
            if f in self.model.one_hot:
                positive = next(i for i, lit in enumerate(self.predicates)
                                if lit["feature"] in cols and lit["op"] == ">")
                if positive in ids or len(ids) == len(cols) - 1:
                    ids = [positive]
            elif not self.model.binary[cols[0]]:
                lower = [i for i in ids if self.predicates[i]["op"] == ">"]
                upper = [i for i in ids if self.predicates[i]["op"] == "<="]
                ids = ([max(lower, key=lambda i: self.predicates[i]["threshold"])] if lower else []) + \
                      ([min(upper, key=lambda i: self.predicates[i]["threshold"])] if upper else [])
            out.extend(ids)
        return tuple(sorted(out))

    def coverage(self, literals: list[dict]) -> float:
        return float(self.model.holds(literals).mean())

    def draw(self, literals: list[dict], n: int, rng: np.random.Generator) -> torch.Tensor:
        train = self.model.train
        rows = train[rng.integers(0, len(train), size=n)].copy()
        by_field: dict[int, list[dict]] = {}
        for lit in literals:
            by_field.setdefault(self.model.field_of[lit["feature"]], []).append(lit)
        for f, lits in sorted(by_field.items()):
            cols = list(self.model.fields[f])
            allowed = np.flatnonzero(self.model.holds(lits))
            if len(allowed):
                rows[:, cols] = train[np.ix_(allowed[rng.integers(0, len(allowed), size=n)], cols)]
            else:       # no train row has x's values on this field: keep x's own
                rows[:, cols] = self.x[cols]
        return torch.as_tensor(rows, dtype=torch.float32).reshape(n, *self.input_shape)


@dataclass
class ImageSpace:
    """``D(z|A)`` around one image ``x``: superpixels kept or filled with the reference."""

    x: torch.Tensor
    segments: torch.Tensor
    reference: torch.Tensor

    @property
    def n_superpixels(self) -> int:
        return int(self.segments.max()) + 1

    @property
    def predicates(self) -> list[dict]:
        return [literal(s, ">", 0.5) for s in range(self.n_superpixels)]

    def normalise(self, anchor: tuple) -> tuple:
        return tuple(sorted(anchor))

    def coverage(self, literals: list[dict]) -> float:
        return 0.5 ** len({lit["feature"] for lit in literals})

    def draw(self, literals: list[dict], n: int, rng: np.random.Generator) -> torch.Tensor:
        coins = rng.random((n, self.n_superpixels)) < 0.5
        coins[:, [lit["feature"] for lit in literals]] = True
        on = torch.as_tensor(coins, dtype=self.x.dtype, device=self.x.device)
        return compose(on, self.segments.expand_as(self.x), self.x, self.reference)


def image_space(x: torch.Tensor, n_segments: int, compactness: float, reference: torch.Tensor) -> ImageSpace:
    return ImageSpace(x, superpixels(x, n_segments, compactness), reference)


def agreement(model, space, anchors: list[list[dict]], n: int, target: int, rng: np.random.Generator) -> np.ndarray:
    """``(len(anchors), n)`` bool: whether the model gives class ``target`` to each draw from ``D(z|A)``."""
    if not anchors or n <= 0:
        return np.zeros((len(anchors), max(n, 0)), dtype=bool)
    inputs = torch.cat([space.draw(lits, n, rng) for lits in anchors])
    return (predict_classes(model, inputs) == target).reshape(len(anchors), n)
