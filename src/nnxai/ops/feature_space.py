"""TREPAN's membership queries [89]: feature spaces, the model of the input distribution, constrained sampling.

Craven & Shavlik (NIPS 1996, Sec. 2, "Membership queries and the oracle") draw query instances from a
model of the training distribution, one marginal per feature: the empirical distribution for discrete
features and a Gaussian kernel density estimate of width ``sigma = 1 / sqrt(m)`` (``m`` training examples in
the estimate) for real-valued ones.  To capture some dependence between features, the model of a node is
re-estimated from the training examples that reach it when a statistical test says that they are
distributed differently from the parent's model (Kolmogorov-Smirnov for real-valued, chi-square for
discrete features, at level ``significance``); otherwise the parent's model is kept.  Queries generated for
a node must satisfy the tests on the path from the root to it.

Adaptations, documented here once:

* ``sigma = std_j / sqrt(m)``: the paper's width for a feature of unit scale; tabular inputs are
  standardised (std 1), the concept table's size and position are in pixels.
* Constrained sampling is exact where it can be: the conjunction of all literals that must hold (every
  1-of-1 test and every n-of-n test on the path) gives an interval per feature and each marginal is sampled
  *truncated* to it (the kernel is chosen in proportion to its mass in the interval, then an inverse-CDF
  draw from the truncated Gaussian).  Proper M-of-N conditions (m < n) are then enforced by rejection.
  When rejection accepts too little after a few rounds, a constructive fallback picks, for every M-of-N
  condition and every query, ``m`` of its literals at random, forces them as intervals and keeps the queries
  that satisfy every condition (this is approximate: it oversamples regions where several literals hold).
  A node for which no valid query can be found gets fewer queries than asked for.
* ``shapes`` concept vectors are sampled as structured concepts (one categorical field per one-hot group:
  shape, texture, colour; continuous size, x, y), so every query is a valid concept record; a query whose
  centre does not fit its size is rejected, so :func:`nnxai.data.shapes.concepts_from_table` never has to
  clip, and the rendered image shows exactly the concept vector the tree sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import nn

from nnxai.explanations.records import condition_holds

#: Rejection rounds before the constructive fallback, and at most this many candidates per wanted query.
ROUNDS = 8
MAX_OVERSAMPLE = 200
BATCH = 512


@dataclass(frozen=True)
class Field:
    """One feature of the distribution model: a real-valued column (``patterns is None``) or a discrete
    variable whose category ``k`` writes ``patterns[k]`` into ``columns`` (a one-hot group, or a 0/1 column)."""

    columns: tuple[int, ...]
    patterns: np.ndarray | None = None


@dataclass
class FeatureSpace:
    """The features a tree tests, the training features and how to ask the network about new points.

    ``label(features, rng)`` returns the network's classes for feature vectors (tabular: the inputs
    themselves; concepts: rendered images); ``valid(features)`` says which vectors are realisable.
    """

    kind: str                                   # "inputs" | "concepts" (RuleSet.feature_space)
    names: list[str]
    fields: list[Field]
    train: np.ndarray                           # (n, d) float64
    label: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    valid: Callable[[np.ndarray], np.ndarray] = field(default=lambda f: np.ones(len(f), dtype=bool))

    @cached_property
    def scale(self) -> np.ndarray:
        """Standard deviation of every training feature (1 where constant): the kernels' unit."""
        std = self.train.std(axis=0) if len(self.train) else np.ones(self.train.shape[1])
        return np.where(std > 0, std, 1.0)


@torch.no_grad()
def predict_classes(model: nn.Module, x: torch.Tensor | np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """The network's class for every input, in batches, in eval mode (the previous mode is restored)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def split_features(split, kind: str) -> np.ndarray:
    """Features of a prepared split in a feature space: flattened inputs, or the concept table."""
    if kind == "concepts":
        if split.concepts is None:
            raise ValueError("rules over concepts need a split with a concept table (split.concepts is None)")
        return np.asarray(split.concepts, dtype=np.float64)
    return split.x.reshape(len(split.x), -1).numpy().astype(np.float64)


def feature_space(model: nn.Module, ctx) -> FeatureSpace:
    """Tabular inputs for tabular data sets (one-hot ``attribute=value`` columns, as MONK's, form one
    categorical field per attribute, so that every query is a valid instance); the concept table (rendered
    to query) for ``shapes``."""
    info = ctx.info
    if info.kind == "tabular":
        train = split_features(ctx.train, "inputs")
        names = list(ctx.train.meta.get("feature_names") or [f"x{j}" for j in range(train.shape[1])])
        shape = tuple(info.input_shape)
        fields = _one_hot_fields(names) if any("=" in n for n in names) else [Field((j,)) for j in range(len(names))]
        return FeatureSpace("inputs", names, fields, train,
                            lambda f, rng: predict_classes(model, torch.as_tensor(f).reshape(-1, *shape)))
    if info.has_concepts and hasattr(info, "render"):
        return concept_space(model, info, split_features(ctx.train, "concepts"))
    raise ValueError(f"{info.name} has neither tabular inputs nor a concept table it can render to query")


def _one_hot_fields(names: list[str]) -> list[Field]:
    """Fields of a concept table: each ``group=value`` family of columns is one categorical field (one-hot
    rows), every other column a field of its own (binary ``x=v`` columns alone in their group, numbers)."""
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        groups.setdefault(name.split("=")[0] if "=" in name else name, []).append(j)
    fields = []
    for columns in groups.values():
        if len(columns) > 1:
            fields.append(Field(tuple(columns), np.eye(len(columns))))
        elif "=" in names[columns[0]]:
            fields.append(Field(tuple(columns), np.array([[0.0], [1.0]])))
        else:
            fields.append(Field(tuple(columns)))
    return fields


def concept_space(model: nn.Module, info, train: np.ndarray) -> FeatureSpace:
    """A data set's concept table (``info.concepts``) as structured fields; queries are rendered by the data
    set (``info.render``, checked by ``info.renderable``) and shown to ``model``."""
    names = list(info.concepts)

    def label(features, rng):
        out = []
        for i in range(0, len(features), BATCH):
            images, _ = info.render(features[i:i + BATCH], rng)
            out.append(predict_classes(model, images))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    return FeatureSpace("concepts", names, _one_hot_fields(names), train, label, info.renderable)


@dataclass
class NodeModel:
    """Per field, the training rows whose values make up that field's marginal at a node."""

    rows: list[np.ndarray]

    @classmethod
    def root(cls, space: FeatureSpace) -> "NodeModel":
        return cls([np.arange(len(space.train))] * len(space.fields))

    def child(self, space: FeatureSpace, reaching: np.ndarray, significance: float) -> "NodeModel":
        """Keep the parent's marginal of a field unless the training rows reaching the child differ from
        it at level ``significance`` (two-sample KS test; chi-square for discrete fields)."""
        rows = []
        for fld, parent in zip(space.fields, self.rows):
            local = _field_values(space, fld, reaching)
            base = _field_values(space, fld, parent)
            rows.append(reaching if len(local) >= 2 and _differs(fld, local, base, significance) else parent)
        return NodeModel(rows)


def _field_values(space: FeatureSpace, fld: Field, rows: np.ndarray) -> np.ndarray:
    values = space.train[np.ix_(rows, fld.columns)]
    if fld.patterns is None:
        return values[:, 0]
    return np.argmax(np.all(values[:, None, :] == fld.patterns[None], axis=2), axis=1)


def _differs(fld: Field, local: np.ndarray, base: np.ndarray, significance: float) -> bool:
    from scipy import stats  # lazy: scipy.stats costs ~1 s per job start
    if fld.patterns is None:
        return stats.ks_2samp(local, base).pvalue < significance
    k = len(fld.patterns)
    table = np.stack([np.bincount(local, minlength=k), np.bincount(base, minlength=k)])
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return False
    return stats.chi2_contingency(table, correction=False).pvalue < significance


def literal_bounds(conditions: list[dict], d: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval ``(lo, hi]`` per feature implied by the literals that must all hold (m = n conditions)."""
    lo, hi = np.full((1, d), -np.inf), np.full((1, d), np.inf)
    for cond in conditions:
        if cond["m"] == len(cond["literals"]):
            for lit in cond["literals"]:
                _tighten(lo, hi, np.ones(1, dtype=bool), lit)
    return lo[0], hi[0]


def _tighten(lo: np.ndarray, hi: np.ndarray, rows: np.ndarray, lit: dict) -> None:
    """Intersect the intervals of ``rows`` with the literal's half-line (in place)."""
    j, t = lit["feature"], float(lit["threshold"])
    if lit["op"] == ">":
        lo[rows, j] = np.maximum(lo[rows, j], t)
    else:
        hi[rows, j] = np.minimum(hi[rows, j], t)


def draw(space: FeatureSpace, model: NodeModel, lo: np.ndarray, hi: np.ndarray, n: int,
         rng: np.random.Generator) -> np.ndarray:
    """``n`` vectors from the node's product of marginals, each feature truncated to ``(lo, hi]``: one
    interval per feature (shape ``(d,)``) or one per row (``(n, d)``).  Rows for which a discrete field has
    no allowed category, or a real-valued feature an empty interval, are NaN."""
    lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
    out = np.empty((n, space.train.shape[1]))
    scale = space.scale
    for fld, rows in zip(space.fields, model.rows):
        if fld.patterns is None:
            j = fld.columns[0]
            centres = space.train[rows, j]
            sigma = scale[j] / np.sqrt(max(len(rows), 1))
            out[:, j] = _per_group(np.stack([lo[:, j], hi[:, j]], axis=1), n,
                                   lambda ab, k: _truncated_kde(centres, sigma, ab[0], ab[1], k, rng))
        else:
            cols = list(fld.columns)
            counts = np.bincount(_field_values(space, fld, rows), minlength=len(fld.patterns)).astype(float)
            pat = fld.patterns[None]
            allowed = np.all((pat > lo[:, None, cols]) & (pat <= hi[:, None, cols]), axis=2)  # (1 or n, K)
            cat = _per_group(allowed, n, lambda mask, k: _categorical(mask, counts, k, rng))
            known = ~np.isnan(cat)
            out[:, cols] = np.nan
            out[np.ix_(known, cols)] = fld.patterns[cat[known].astype(np.int64)]
    return out


def _per_group(keys: np.ndarray, n: int, fn) -> np.ndarray:
    """``fn(key, count)`` once per distinct row of ``keys``; a single row of keys serves all ``n`` rows."""
    if len(keys) == 1:
        return fn(keys[0], n)
    out = np.empty(n)
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for g, key in enumerate(groups):
        idx = np.flatnonzero(inverse == g)
        out[idx] = fn(key, len(idx))
    return out


def _categorical(mask: np.ndarray, counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Empirical distribution restricted to the allowed categories (uniform if they have no mass)."""
    if not mask.any():
        return np.full(n, np.nan)
    p = np.where(mask, counts, 0.0)
    p = p / p.sum() if p.sum() > 0 else mask / mask.sum()
    return rng.choice(len(p), size=n, p=p).astype(np.float64)


def _truncated_kde(centres: np.ndarray, sigma: float, a: float, b: float, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``n`` draws from the Gaussian KDE on ``centres`` truncated to ``(a, b]``."""
    from scipy import special  # lazy: scipy.stats costs ~1 s per job start
    if len(centres) == 0 or not a < b:
        return np.full(n, np.nan)
    za, zb = (a - centres) / sigma, (b - centres) / sigma
    upper = za > 0                      # work in the upper tail there: 1 - ndtr(z) underflows, ndtr(-z) not
    fa = np.where(upper, special.ndtr(-zb), special.ndtr(za))
    fb = np.where(upper, special.ndtr(-za), special.ndtr(zb))
    mass = np.clip(fb - fa, 0.0, None)
    if not mass.sum() > 0:
        return _uniform_fallback(centres, sigma * np.sqrt(len(centres)), a, b, n, rng)
    pick = rng.choice(len(centres), size=n, p=mass / mass.sum())
    u = fa[pick] + (fb[pick] - fa[pick]) * rng.random(n)
    z = special.ndtri(np.clip(u, 1e-300, 1.0))
    x = centres[pick] + sigma * np.where(upper[pick], -z, z)
    return np.clip(x, np.nextafter(a, np.inf), b)


def _uniform_fallback(centres, spread, a, b, n, rng):
    """The interval holds no kernel mass (far outside the data): uniform on its part near the data."""
    lo = a if np.isfinite(a) else min(centres.min(), b) - spread
    hi = b if np.isfinite(b) else max(centres.max(), a) + spread
    return np.clip(lo + (hi - lo) * rng.random(n), np.nextafter(a, np.inf), b)


def sample(space: FeatureSpace, model: NodeModel, conditions: list[dict], n: int,
           rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` query vectors from the node's model that satisfy every condition of the path."""
    d = space.train.shape[1]
    lo, hi = literal_bounds(conditions, d)
    if n <= 0 or np.any(lo >= hi):
        return np.zeros((0, d))
    soft = [c for c in conditions if c["m"] < len(c["literals"])]
    kept, need, rate = [], n, 1.0
    for _ in range(ROUNDS):
        batch = draw(space, model, lo, hi, int(min(np.ceil(1.2 * need / rate), MAX_OVERSAMPLE * n)), rng)
        ok = _satisfied(space, soft, batch)
        rate = max(ok.mean(), 1.0 / MAX_OVERSAMPLE)
        kept.append(batch[ok][:need])
        need -= len(kept[-1])
        if need == 0:
            break
    for _ in range(ROUNDS if soft and need else 0):
        batch = _constructive(space, model, lo, hi, soft, 4 * need, rng)
        ok = _satisfied(space, soft, batch)
        kept.append(batch[ok][:need])
        need -= len(kept[-1])
        if need == 0:
            break
    return np.concatenate(kept)


def _satisfied(space: FeatureSpace, conditions: list[dict], x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x).any(axis=1)
    x = np.where(ok[:, None], x, 0.0)
    ok &= space.valid(x)
    for cond in conditions:
        ok &= condition_holds(cond, x)
    return ok


def _constructive(space, model, lo, hi, soft, n, rng):
    """Force ``m`` randomly chosen literals of every M-of-N condition, per query, as extra intervals."""
    lo, hi = np.tile(lo, (n, 1)), np.tile(hi, (n, 1))
    for cond in soft:
        lits = cond["literals"]
        chosen = np.argsort(rng.random((n, len(lits))), axis=1)[:, :cond["m"]]
        for k, lit in enumerate(lits):
            _tighten(lo, hi, np.any(chosen == k, axis=1), lit)
    return draw(space, model, lo, hi, n, rng)
