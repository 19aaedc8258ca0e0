"""DecText: decision-tree extraction with network-guided splits, Boz (KDD 2002; survey ref. [91]).

Boz extracts "regular C4.5 like Decision Trees" (not TREPAN's M-of-N trees) from a trained network, with
three contributions named in the paper's abstract, each implemented here:

1. **The network as oracle, with queries.**  The training examples are relabelled by the network, and every
   node is topped up to ``min_samples`` instances with *queries*: vectors drawn from the training
   distribution (the product of marginals of :mod:`nnxai.ops.feature_space`) restricted to the node's
   region (the tests on its path), labelled by the network; ``n_queries`` bounds them for the whole tree.
   Nodes are expanded breadth first, so the budget is spent level by level.
2. **Network-guided splits** (``split``).  The tests are C4.5's (:mod:`._c45`: multiway on a discrete
   attribute, binary thresholds on a real-valued one); the criterion that ranks them is

   * ``set_zero`` (SetZero): the attribute whose removal changes the network's decision most: every field
     of (up to ``n_probe`` of) the node's instances is set to zero in turn (a one-hot group: all its
     columns; a standardised real feature: 0, the training mean) and the fraction of instances whose
     network class changes is the score.  It sees attributes that act only jointly (MONK-1's ``a1 = a2``),
     where the class distribution of a single attribute's branches does not move.  A concept vector has no
     "zero" (every rendered object has a shape, a colour, a size): there the field is redrawn from its
     training marginal instead (removal by marginalisation; rows that no longer render are left out).
     When no field changes any decision, ``gain_ratio`` decides;
   * ``class_diff`` (ClassDiff): the test whose branches' network-class distributions differ most from the
     node's, ``sum_b n_b / n * TV(P_b, P)`` (total variation);
   * ``gain_ratio``: C4.5's own criterion, on the network's labels.

   A real-valued test's threshold is placed by information gain (as C4.5 does) among the cut points of
   step 3.
3. **Network-guided discretisation.**  A real-valued feature is tested only at the network's own cut
   points: for ``n_probe`` training examples, the feature is swept over ``n_grid`` equally spaced values of
   its training range (the rest of the example fixed) and, where the network's class changes between two
   grid values, the change point is located by bisection (``BISECTION_STEPS`` halvings); the cut points of
   a feature are the medians of the change points found in each grid interval.
4. **Pruning for the simplest tree with the highest fidelity.**  ``n_prune`` fresh queries from the
   training distribution, labelled by the network, form a pruning set; bottom up, a subtree becomes a leaf
   when the leaf agrees with the network on at least as many of them (:func:`._c45.prune_fidelity`:
   reduced-error pruning, which yields the smallest pruned tree of maximal pruning-set fidelity).
   ``n_prune = 0`` keeps the grown tree.

Growth stops at a node that is pure, holds fewer than ``2 * min_cases`` instances, is at ``max_depth`` or
has no admissible test.  The paper's own text was not available to this implementation beyond its abstract:
the formulas above (the SetZero and ClassDiff scores, the sweep and bisection of the discretisation, the
query distribution, breadth-first growth, ``max_depth``) are our reading of its named techniques, stated
here so that each can be checked.  CNNs on ``shapes`` are explained over its concept table (queries are
rendered, as TREPAN's); the result is a :class:`RuleSet` with one rule per leaf and ``tree``.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.pedagogical import _c45
from nnxai.methods.rule.pedagogical._oracle import Oracle
from nnxai.ops.feature_space import FeatureSpace, NodeModel, draw, predict_classes, sample
from nnxai.params import Choice, Int
from nnxai.registry import register

#: Halvings of a grid interval that locate a change of the network's class (precision: interval / 2^10).
BISECTION_STEPS = 10


@register("dectext")
class DecText(RuleExtractor):
    """DecText [91]: C4.5-like tree on network-labelled examples and queries, network-guided splits and
    discretisation, pruned for fidelity."""

    parameters = {
        "n_queries": Int("total budget of queries (network-labelled generated instances) that top the nodes up",
                         low=0),
        "min_samples": Int("instances wanted at every node; queries top the training examples up to it", low=1),
        "split": Choice("split criterion: SetZero (change of the network's decision when a feature is zeroed), "
                        "ClassDiff (difference of the branches' class distributions) or C4.5's gain ratio",
                        ("set_zero", "class_diff", "gain_ratio")),
        "n_probe": Int("examples probed by the network-guided discretisation and by SetZero at a node", low=1),
        "n_grid": Int("values of a real-valued feature's range swept by the discretisation", low=2),
        "n_prune": Int("fresh network-labelled queries of the fidelity pruning set (0: no pruning)", low=0),
        "max_depth": Int("largest depth of the tree (tests on a path)", low=1),
        "min_cases": Int("a test needs two branches with at least this many instances (C4.5's -m)", low=1),
    }

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        rng = np.random.default_rng(ctx.seed)
        oracle = Oracle(model, ctx)
        space, n_classes = oracle.space, int(ctx.info.n_classes)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        labels = predict_classes(model, ctx.train.x)       # training examples labelled on their real inputs
        probes = space.train[rng.permutation(len(space.train))[:self.params["n_probe"]]]
        cuts = network_cuts(space, oracle, probes, self.params["n_grid"], rng)
        grower = _Grower(space, oracle, self.params, n_classes, cuts, rng)
        root = grower.grow(labels)
        if self.params["n_prune"]:
            x_prune = sample(space, NodeModel.root(space), [], self.params["n_prune"], rng)
            _c45.prune_fidelity(root, space, x_prune, oracle.classes(x_prune, rng))
        return _c45.to_ruleset(root, space, class_names, n_queries=int(oracle.n_queries),
                               cuts={space.names[j]: [float(t) for t in c] for j, c in cuts.items()})


def network_cuts(space: FeatureSpace, oracle: Oracle, probes: np.ndarray, n_grid: int,
                 rng: np.random.Generator) -> dict[int, np.ndarray]:
    """The network's cut points of every real-valued feature (column -> sorted cuts): sweep each probe over
    ``n_grid`` values of the feature's training range, bisect every change of class, one median per
    grid interval."""
    cuts = {}
    for fld in space.fields:
        if fld.patterns is not None:
            continue
        j = fld.columns[0]
        lo, hi = float(space.train[:, j].min()), float(space.train[:, j].max())
        cuts[j] = np.zeros(0)
        if not hi > lo or not len(probes):
            continue
        grid = np.linspace(lo, hi, n_grid)
        sweep = np.repeat(probes, n_grid, axis=0)
        sweep[:, j] = np.tile(grid, len(probes))
        classes = _classes_where_valid(space, oracle, sweep, rng).reshape(len(probes), n_grid)
        change = (classes[:, :-1] != classes[:, 1:]) & (classes[:, :-1] >= 0) & (classes[:, 1:] >= 0)
        rows, cells = np.nonzero(change)
        if not len(rows):
            continue
        a, b, left = grid[cells].copy(), grid[cells + 1].copy(), classes[rows, cells]
        for _ in range(BISECTION_STEPS):
            mid = (a + b) / 2.0
            point = probes[rows].copy()
            point[:, j] = mid
            at_mid = _classes_where_valid(space, oracle, point, rng)
            same = (at_mid == left) | (at_mid < 0)          # an invalid midpoint: keep the lower half
            a, b = np.where(same, mid, a), np.where(same, b, mid)
        found = (a + b) / 2.0
        cuts[j] = np.array(sorted(float(np.median(found[cells == c])) for c in np.unique(cells)))
    return cuts


def _classes_where_valid(space: FeatureSpace, oracle: Oracle, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The network's class of every valid row, -1 for a row the space cannot realise."""
    out = np.full(len(x), -1, dtype=np.int64)
    ok = space.valid(x)
    if ok.any():
        out[ok] = oracle.classes(x[ok], rng)
    return out


class _Grower:
    """Breadth-first growth of the DecText tree on examples and queries."""

    def __init__(self, space: FeatureSpace, oracle: Oracle, params: dict, n_classes: int, cuts: dict,
                 rng: np.random.Generator):
        self.space, self.oracle, self.p, self.n_classes, self.cuts, self.rng = space, oracle, params, n_classes, cuts, rng
        self.budget = int(params["n_queries"])
        self.root_model = NodeModel.root(space)
        self.n_nodes = 0

    def _node(self, depth, conditions, x, labels, support, fallback) -> _c45.TreeNode:
        node = _c45.TreeNode(self.n_nodes, depth, conditions, x, labels, self.n_classes, fallback, support)
        self.n_nodes += 1
        want = min(self.p["min_samples"] - len(x), self.budget)
        if want > 0:
            queries = sample(self.space, self.root_model, conditions, want, self.rng)
            self.budget -= len(queries)
            if len(queries):
                node.x = np.concatenate([node.x, queries])
                node.labels = np.concatenate([node.labels, self.oracle.classes(queries, self.rng)])
        return node

    def grow(self, train_labels: np.ndarray) -> _c45.TreeNode:
        majority = int(np.argmax(np.bincount(train_labels, minlength=self.n_classes))) if len(train_labels) else 0
        root = self._node(0, [], self.space.train, train_labels, len(train_labels), majority)
        n_train = np.full(len(root.x), False)
        n_train[:len(train_labels)] = True
        queue = deque([(root, frozenset(), n_train)])
        while queue:
            node, used, is_train = queue.popleft()
            if len(np.unique(node.labels)) < 2 or len(node.labels) < 2 * self.p["min_cases"] or \
                    node.depth >= self.p["max_depth"]:
                continue
            split = self._split(node, used)
            if split is None:
                continue
            node.split = split
            branch = split.assign(self.space, node.x)
            for b, cond in enumerate(split.conditions):
                rows = branch == b
                child = self._node(node.depth + 1, node.conditions + [cond], node.x[rows], node.labels[rows],
                                   int(np.sum(is_train[rows])), node.prediction)
                child_train = np.concatenate([is_train[rows], np.zeros(len(child.x) - int(rows.sum()), bool)])
                node.children.append(child)
                queue.append((child, used | ({split.field} if split.kind == "category" else set()), child_train))
        return root

    def _split(self, node: _c45.TreeNode, used: frozenset) -> _c45.Split | None:
        criterion = self.p["split"]
        splits = _c45.candidate_splits(self.space, node.x, node.labels, self.n_classes, set(used),
                                       self.p["min_cases"], "gain_ratio" if criterion == "gain_ratio" else "gain",
                                       self.cuts)
        if not splits:
            return None
        if criterion == "class_diff":
            scores = [class_diff(self.space, s, node.x, node.labels, self.n_classes) for s in splits]
            best = int(np.argmax(scores))
            return splits[best] if scores[best] > 1e-12 else None
        if criterion == "set_zero":
            fields = [s.field for s in splits]
            scores = set_zero_scores(self.space, self.oracle, node.x, fields, self.p["n_probe"], self.rng)
            best = int(np.argmax(scores))
            if scores[best] > 0:
                return splits[best]
        return _c45.choose(splits, "gain_ratio")


def class_diff(space: FeatureSpace, split: _c45.Split, x: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """``sum_b n_b / n * TV(P_b, P)``: how far the branches' class distributions are from the node's."""
    branch = split.assign(space, x)
    node = np.bincount(labels, minlength=n_classes) / len(labels)
    score = 0.0
    for b in np.unique(branch):
        sub = labels[branch == b]
        p = np.bincount(sub, minlength=n_classes) / len(sub)
        score += len(sub) / len(labels) * 0.5 * float(np.abs(p - node).sum())
    return score


def set_zero_scores(space: FeatureSpace, oracle: Oracle, x: np.ndarray, fields: list[int], n_probe: int,
                    rng: np.random.Generator) -> np.ndarray:
    """SetZero: per field, the fraction of (up to ``n_probe``) instances whose network class changes when the
    field is zeroed (redrawn from its training marginal in a concept space, which has no zero)."""
    probe = x[rng.permutation(len(x))[:n_probe]]
    concepts = space.kind == "concepts"
    if concepts:          # compare rendered with rendered: the labels of real training images are not
        d = x.shape[1]    # renderings of their concept vectors
        before = _classes_where_valid(space, oracle, probe, rng)
        fresh = draw(space, NodeModel.root(space), np.full(d, -np.inf), np.full(d, np.inf), len(probe), rng)
    else:
        before = oracle.classes(probe, rng)
    scores = np.zeros(len(fields))
    for k, f in enumerate(fields):
        cols = list(space.fields[f].columns)
        changed = probe.copy()
        changed[:, cols] = fresh[:, cols] if concepts else 0.0
        after = _classes_where_valid(space, oracle, changed, rng)
        valid = (after >= 0) & (before >= 0)
        scores[k] = float(np.mean(after[valid] != before[valid])) if valid.any() else 0.0
    return scores
