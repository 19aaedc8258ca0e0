"""GRG [85]: Greedy Rule Generation (Odajima, Hayashi, Tianxia & Setiono, Neural Networks 21, 2008), run
pedagogically on the network's answers for the training inputs.

The survey (Sec. III-A-2-b): Odajima et al. "followed the framework of NeuroLinear but use a greedy form of
sequential covering algorithm to extract rules".  GRG generates classification rules from data with
*discrete* attributes; a rule covers a *subspace* of the discrete input space (a box: a set of allowed values
per attribute, :mod:`nnxai.methods.rule.pedagogical._attributes`).  It is greedy in that every iteration
generates the best rule it can find and never revisits it; the paper's criteria of the best rule, in order:

1. the number of (not yet covered) samples it covers, more is better;
2. the size of the subspace it covers (number of attribute-value points), larger is better;
3. the number of attributes in its condition, fewer is better.

A rule may only cover samples of its own class (GRG's rules are consistent with the data).  The steps here:

1. Label the training inputs (at most ``max_samples`` of them, a seeded subsample) by the network and
   encode them as discrete attribute values (one-hot groups as categorical attributes; real features as
   ``n_bins`` equal-frequency intervals); the distinct patterns, each with the network's majority class and
   its number of samples, form GRG's table (:func:`~._attributes.pattern_table`).
2. Sequential covering: while a sample is uncovered and fewer than ``max_rules`` rules exist, generate the
   best rule (below), append it, mark the samples it covers as covered.
3. The best rule of an iteration: from every uncovered pattern (a seed; a one-point subspace of its class)
   the subspace is generalised one value at a time -- a categorical attribute may take any further value, an
   ordinal one extends its interval by one bin -- choosing at each step, among the generalisations that still
   cover no pattern of another class, the best by criteria 1-3; it stops when no consistent generalisation
   is left (a maximal consistent subspace).  The best of these rules by criteria 1-3 is generated (ties: the
   first seed in pattern order).

Choices where the paper leaves room or where this project differs, all stated:

* Pedagogical use (the brief of this project; the paper's own experiments run GRG both on the discretised
  hidden activations of a pruned network, the NeuroLinear framework, and directly on data sets with discrete
  attributes): the table is the inputs labelled by the network.
* The per-seed generalisation is a hill climb by the paper's criteria, not an exhaustive search over all
  subspaces (exponential in the attributes); ``tests/methods/rule/test_grg.py`` compares it with the
  exhaustive search on tiny tables.
* The rules form a decision list in the order generated; since every rule is consistent with all training
  patterns, the order only matters outside them.  The default class (inputs no rule covers) is the
  majority class of the samples left uncovered when ``max_rules`` stops the covering, else of all samples.
* ``max_rules`` bounds the size (the paper covers every sample); ``max_samples`` bounds the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.pedagogical import _attributes as attr_ops
from nnxai.ops.feature_space import feature_space, predict_classes
from nnxai.params import Int
from nnxai.registry import register

PARAMETERS = {
    "n_bins": Int("equal-frequency intervals a real-valued input is discretised into (GRG reads discrete "
                  "attributes; one-hot groups are used as they are)", low=2),
    "max_samples": Int("training inputs labelled by the network and covered (a seeded subsample beyond it)",
                       low=1),
    "max_rules": Int("at most this many rules; the covering stops there (the paper covers every sample)", low=1),
}


@dataclass
class Table:
    """GRG's input: distinct patterns ``values`` (P, A), their class, their number of samples."""

    attrs: list
    values: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    n_classes: int

    @property
    def offsets(self) -> np.ndarray:
        return attr_ops.offsets(self.attrs)


@dataclass
class Rule:
    box: np.ndarray          # flattened membership over every attribute's values
    prediction: int
    covered: float           # samples newly covered when generated (criterion 1)
    log_size: float          # criterion 2
    n_attributes: int        # criterion 3


@register("grg")
class GreedyRuleGeneration(RuleExtractor):
    """GRG [85]: greedy sequential covering by maximal consistent subspaces of the discretised inputs."""

    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    parameters = dict(PARAMETERS)

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        table, _ = network_table(model, ctx, self.params)
        rules, default = greedy_cover(table, self.params["max_rules"])
        return to_ruleset(table, rules, default, ctx, [attr_ops.conditions(table.attrs, r.box) for r in rules],
                          [r.prediction for r in rules])


def network_table(model: nn.Module, ctx: ExplainContext, params: dict) -> tuple[Table, np.ndarray]:
    """Step 1: the training inputs (seeded subsample of ``max_samples``) labelled by the network, as GRG's
    table of discrete patterns; also the rows used."""
    space = feature_space(model, ctx)
    rows = np.arange(len(space.train))
    if len(rows) > params["max_samples"]:
        rows = np.sort(np.random.default_rng(ctx.seed).choice(len(rows), params["max_samples"], replace=False))
    attrs = attr_ops.attributes(space, params["n_bins"])
    n_classes = int(ctx.info.n_classes)
    labels = predict_classes(model, ctx.train.x[rows])
    patterns, classes, weights, _ = attr_ops.pattern_table(attr_ops.encode(attrs, space.train[rows]), labels,
                                                           n_classes)
    return Table(attrs, patterns, classes, weights, n_classes), rows


def greedy_cover(table: Table, max_rules: int) -> tuple[list[Rule], int]:
    """Step 2: sequential covering; returns the rules in order and the default class."""
    uncovered = np.ones(len(table.values), dtype=bool)
    rules: list[Rule] = []
    while uncovered.any() and len(rules) < max_rules:
        rule = best_rule(table, uncovered)
        uncovered &= ~attr_ops.covers(table.attrs, rule.box, table.values)
        rules.append(rule)
    pool = uncovered if uncovered.any() else np.ones_like(uncovered)
    default = int(np.argmax(np.bincount(table.labels[pool], weights=table.weights[pool],
                                        minlength=table.n_classes))) if len(pool) else 0
    return rules, default


def best_rule(table: Table, uncovered: np.ndarray) -> Rule:
    """Step 3: the best of the maximal consistent subspaces grown from every uncovered pattern."""
    seeds = np.flatnonzero(uncovered)
    grown = grow(table, seeds, uncovered)
    key = np.lexsort((np.arange(len(seeds)), grown.n_attributes, -np.round(grown.log_size, 9), -grown.covered))
    k = key[0]
    return Rule(grown.boxes[k].copy(), int(table.labels[seeds[k]]), float(grown.covered[k]),
                float(grown.log_size[k]), int(grown.n_attributes[k]))


@dataclass
class Grown:
    boxes: np.ndarray        # (S, V) bool
    covered: np.ndarray      # (S,) uncovered samples of the seed's class in the box
    log_size: np.ndarray     # (S,)
    n_attributes: np.ndarray  # (S,)


def grow(table: Table, seeds: np.ndarray, uncovered: np.ndarray) -> Grown:
    """Hill-climb every seed's one-point subspace to a maximal consistent one, all seeds at once.

    ``inside[s, p, a]``: pattern ``p`` has a value of attribute ``a`` that seed ``s``'s box allows; a pattern
    outside the box on exactly one attribute enters it when that value is added, so one ``bincount`` gives,
    for every seed and every candidate value, the samples it would add and whether it would add a pattern of
    another class."""
    attrs, values, labels, weights = table.attrs, table.values, table.labels, table.weights
    off = table.offsets
    n_vals, n_attr, n_seed, n_pat = int(off[-1]), len(attrs), len(seeds), len(values)
    attr_of = np.repeat(np.arange(n_attr), np.diff(off))
    card = np.array([a.card for a in attrs], dtype=np.int64)
    ordinal = np.array([a.kind == "ordinal" for a in attrs], dtype=bool)[attr_of]
    same_prev = np.r_[False, attr_of[1:] == attr_of[:-1]]
    same_next = np.r_[attr_of[:-1] == attr_of[1:], False]

    seed_class = labels[seeds]
    positive = (labels[None, :] == seed_class[:, None]) & uncovered[None, :]          # (S, P)
    negative = labels[None, :] != seed_class[:, None]
    boxes = np.zeros((n_seed, n_vals), dtype=bool)
    boxes[np.arange(n_seed)[:, None], off[:-1][None, :] + values[seeds]] = True
    inside = values[None, :, :] == values[seeds][:, None, :]                         # (S, P, A)
    fails = n_attr - inside.sum(axis=2)
    counts = np.ones((n_seed, n_attr), dtype=np.int64)
    covered = weights[seeds].astype(np.float64)
    log_size = np.zeros(n_seed)
    n_attributes = np.full(n_seed, int((card > 1).sum()), dtype=np.int64)
    active = np.ones(n_seed, dtype=bool)
    while active.any():
        s_idx, p_idx = np.nonzero((fails == 1) & active[:, None])
        failing = np.argmin(inside[s_idx, p_idx], axis=1)
        key = s_idx * n_vals + off[failing] + values[p_idx, failing]
        gain = np.bincount(key, weights=weights[p_idx] * positive[s_idx, p_idx],
                           minlength=n_seed * n_vals).reshape(n_seed, n_vals)
        clash = np.bincount(key, weights=negative[s_idx, p_idx], minlength=n_seed * n_vals).reshape(n_seed, n_vals)
        adjacent = np.zeros_like(boxes)
        adjacent[:, 1:] |= boxes[:, :-1] & same_prev[1:]
        adjacent[:, :-1] |= boxes[:, 1:] & same_next[:-1]
        valid = ~boxes & (clash == 0) & (~ordinal | adjacent) & active[:, None]
        k = counts[:, attr_of]
        after_cov = covered[:, None] + gain
        after_size = log_size[:, None] + np.log(k + 1) - np.log(k)
        after_attrs = n_attributes[:, None] - (k + 1 == card[attr_of])
        choice, has = _lexicographic_best(valid, after_cov, after_size, after_attrs)
        active &= has
        sel = np.flatnonzero(has)
        if not len(sel):
            break
        pick = choice[sel]
        a_sel = attr_of[pick]
        v_sel = pick - off[a_sel]
        boxes[sel, pick] = True
        entering = values[:, a_sel].T == v_sel[:, None]                                # (k, P)
        fails[sel] -= entering
        inside[sel[:, None], np.arange(n_pat)[None, :], a_sel[:, None]] |= entering
        covered[sel] = after_cov[sel, pick]
        log_size[sel] = after_size[sel, pick]
        n_attributes[sel] = after_attrs[sel, pick]
        counts[sel, a_sel] += 1
    return Grown(boxes, covered, log_size, n_attributes)


def _lexicographic_best(valid, cov, size, n_attrs) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first column among ``valid`` ones with the most ``cov``, then the largest ``size``, then
    the fewest ``n_attrs``; and whether the row has a valid column."""
    has = valid.any(axis=1)
    best = valid & (cov == np.max(np.where(valid, cov, -np.inf), axis=1, keepdims=True))
    size = np.round(size, 9)
    best &= size == np.max(np.where(best, size, -np.inf), axis=1, keepdims=True)
    best &= n_attrs == np.min(np.where(best, n_attrs, np.iinfo(np.int64).max), axis=1, keepdims=True)
    return np.argmax(best, axis=1), has


def to_ruleset(table: Table, rules: list, default: int, ctx: ExplainContext, conditions: list[list],
               predictions: list[int], covers: list[np.ndarray] | None = None) -> RuleSet:
    """A decision list of the rules (``support``: training samples a rule decides, i.e. the first rule that
    covers them; ``covers``: each rule's coverage of the table's patterns, from its box by default)."""
    if covers is None:
        covers = [attr_ops.covers(table.attrs, r.box, table.values) for r in rules]
    undecided = np.ones(len(table.values), dtype=bool)
    out = []
    for cond, pred, cov in zip(conditions, predictions, covers):
        out.append({"conditions": cond, "prediction": int(pred), "support": int(table.weights[cov & undecided].sum())})
        undecided &= ~cov
    names = list(ctx.train.meta.get("feature_names") or [f"x{j}" for j in range(int(ctx.train.x.shape[1]))])
    class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(table.n_classes)])
    return RuleSet(rules=out, default=int(default), feature_names=names, class_names=class_names,
                   feature_space="inputs")
