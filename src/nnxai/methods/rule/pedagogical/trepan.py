"""TREPAN: query-based extraction of an M-of-N decision tree from a trained network (survey ref. [89]).

Craven & Shavlik, "Extracting tree-structured representations of trained networks", NIPS 1996, Table 1:

1. The network is the oracle: it labels every training example and every *membership query*.
2. The tree is grown best-first: the queue is ordered by ``f(N) = reach(N) * (1 - fidelity(N))``, the estimated
   fraction of instances reaching node ``N`` times the estimated disagreement of ``N`` (as a leaf predicting its
   majority class) with the network there.
3. At every node at least ``min_samples`` instances are used: the training examples that reach it plus
   queries drawn from a model of the input distribution constrained by the tests on the node's path
   (:mod:`nnxai.ops.feature_space`), labelled by the network.
4. Splitting tests are M-of-N expressions found by beam search (width ``beam_width``, ``m <= max_m``) from the
   best single binary test, with the paper's operators m-of-n+1 and m+1-of-n+1 (:mod:`nnxai.methods.rule.pedagogical._mofn`).
5. Stopping: locally, a node stays a leaf when all its instances (training examples and queries) have the
   same network class, or when no single test is significant at level ``significance`` (the G-test of its
   information gain, Bonferroni-corrected over the candidate thresholds).  The paper's local criterion is a
   confidence bound on the purity ``p_c`` (leaf if ``P(p_c < 1 - eps) < delta``); it needs a second parameter
   ``eps`` that this project's configuration does not have, so the significance test above replaces it.
   Globally, the tree has at most ``max_leaves`` leaves (the paper bounds its size the same way).

Adaptations, all documented:

* ``n_queries`` is the *total* budget of membership queries for the whole tree; once it is spent, nodes are
  judged on the instances they already have.  Queries drawn at a node are passed on to its children together
  with the training examples (the paper's Table 1 passes the examples), so the budget goes further.
* ``reach(N)`` is estimated as the product, along the path, of the fraction of the parent's instances
  (examples and queries) that take the branch to ``N``.
* Image models are explained over the ``shapes`` concept table: a query is a new structured concept vector
  drawn from the training concepts' distribution model under the node's constraints, *rendered* with
  :func:`nnxai.data.shapes.render` and labelled by the CNN; training examples are labelled on their real
  images.  This is TREPAN's query generation carried over faithfully to images.

What follows from the gain criterion: a concept that no single test separates is out of reach.  On MONK-1,
(a1 = a2) or (a5 = 1), the root splits on a5 = 1, but under a5 != 1 the label is a1 = a2 and every single
one-hot test has exactly zero information gain there (P(a1 = a2 | a1 = k) = P(a1 = a2) = 1/3), so no test is
significant and the node stays a leaf; the M-of-N test 2-of-{a1 = k, a2 = k} would gain, but the beam only
refines a seed that the gain criterion picked (``tests/methods/test_trepan.py`` checks this on the robot space).

The output is a :class:`~nnxai.explanations.RuleSet` with one rule per leaf, whose conditions are the path's
M-of-N tests (a false branch is written as the complement ``(n-m+1)-of-{NOT l}``), so the rules are mutually
exclusive and exhaustive; ``tree`` holds ``depth``, ``n_leaves``, ``n_internal``, ``n_queries`` and the nodes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.explanations.records import condition_holds
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.pedagogical._mofn import find_split, negate
from nnxai.ops.feature_space import FeatureSpace, NodeModel, feature_space, predict_classes, sample
from nnxai.params import Float, Int
from nnxai.registry import register


@dataclass
class _Node:
    id: int
    depth: int
    conditions: list                  # path tests, as RuleSet conditions
    x: np.ndarray                     # instances: training examples reaching the node, then queries
    labels: np.ndarray                # the network's classes for them
    rows: np.ndarray                  # training rows reaching the node
    model: NodeModel
    reach: float
    test: dict | None = None
    children: list = field(default_factory=list)

    @property
    def prediction(self) -> int:
        return int(np.argmax(np.bincount(self.labels))) if len(self.labels) else -1

    @property
    def fidelity(self) -> float:
        return float(np.mean(self.labels == self.prediction)) if len(self.labels) else 1.0


@register("trepan")
class Trepan(RuleExtractor):
    """TREPAN [89]: best-first M-of-N tree grown on the network's answers to membership queries."""

    parameters = {
        "n_queries": Int("total budget of membership queries (network calls on generated instances) for the tree",
                         low=0),
        "min_samples": Int("instances wanted at every node (S_min of the paper); queries top the training "
                           "examples up to it", low=1),
        "max_leaves": Int("global limit on the number of leaves (rules)", low=1),
        "beam_width": Int("width of the beam search for M-of-N tests", low=1),
        "max_m": Int("largest m of an M-of-N test (1: disjunctions only on top of single tests)", low=1),
        "significance": Float("level of the statistical tests (split, refinement, local distribution)", low=0.0,
                              high=1.0, low_open=True, high_open=True),
    }

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        space = feature_space(model, ctx)
        n_classes = int(ctx.info.n_classes)
        labels = predict_classes(model, ctx.train.x)
        grower = _Grower(space, self.params, n_classes, np.random.default_rng(ctx.seed))
        nodes = grower.grow(labels)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        return _ruleset(nodes, space, class_names, grower.queries_used)


class _Grower:
    """The best-first loop of the paper's Table 1."""

    def __init__(self, space: FeatureSpace, params: dict, n_classes: int, rng: np.random.Generator):
        self.space, self.p, self.n_classes, self.rng = space, params, n_classes, rng
        self.budget = int(params["n_queries"])
        self.queries_used = 0
        self.nodes: list[_Node] = []

    def _new(self, depth, conditions, x, labels, rows, model, reach) -> _Node:
        node = _Node(len(self.nodes), depth, conditions, x, labels, rows, model, reach)
        self.nodes.append(node)
        self._top_up(node)
        return node

    def _top_up(self, node: _Node) -> None:
        """Draw membership queries until the node has ``min_samples`` instances (or the budget is spent)."""
        want = min(self.p["min_samples"] - len(node.x), self.budget)
        if want <= 0:
            return
        queries = sample(self.space, node.model, node.conditions, want, self.rng)
        self.budget -= len(queries)
        self.queries_used += len(queries)
        if len(queries):
            node.x = np.concatenate([node.x, queries])
            node.labels = np.concatenate([node.labels, self.space.label(queries, self.rng)])

    def grow(self, train_labels: np.ndarray) -> list[_Node]:
        space = self.space
        root = self._new(0, [], space.train, train_labels, np.arange(len(space.train)), NodeModel.root(space), 1.0)
        queue: list = []
        self._push(queue, root)
        n_leaves = 1
        while queue and n_leaves < self.p["max_leaves"]:
            node = heapq.heappop(queue)[2]
            test = find_split(node.x, node.labels, self.n_classes, self.p["beam_width"], self.p["max_m"],
                              self.p["significance"])
            if test is None:
                continue
            node.test = test
            holds = condition_holds(test, node.x)
            row_holds = condition_holds(test, space.train[node.rows])
            for outcome, cond in ((False, negate(test)), (True, test)):
                branch = holds == outcome
                rows = node.rows[row_holds == outcome]
                child = self._new(node.depth + 1, node.conditions + [cond], node.x[branch], node.labels[branch],
                                  rows, node.model.child(space, rows, self.p["significance"]),
                                  node.reach * float(branch.mean()))
                node.children.append(child)
                self._push(queue, child)
            n_leaves += 1
        return self.nodes

    @staticmethod
    def _push(queue: list, node: _Node) -> None:
        if len(np.unique(node.labels)) > 1:        # a pure node stays a leaf (local stopping criterion)
            heapq.heappush(queue, (-node.reach * (1.0 - node.fidelity), node.id, node))


def _ruleset(nodes: list[_Node], space: FeatureSpace, class_names: list, queries_used: int) -> RuleSet:
    leaves = [n for n in _depth_first(nodes[0]) if not n.children]
    rules = [{"conditions": n.conditions, "prediction": n.prediction, "support": int(len(n.rows))} for n in leaves]
    tree_nodes = [{"id": n.id, "depth": n.depth, "test": n.test, "children": [c.id for c in n.children] or None,
                   "prediction": n.prediction, "reach": n.reach, "fidelity": n.fidelity,
                   "n_instances": int(len(n.x)), "n_train": int(len(n.rows))} for n in nodes]
    tree = {"depth": max(n.depth for n in leaves), "n_leaves": len(leaves), "n_internal": len(nodes) - len(leaves),
            "n_queries": int(queries_used), "nodes": tree_nodes}
    return RuleSet(rules=rules, default=nodes[0].prediction, feature_names=list(space.names),
                   class_names=class_names, feature_space=space.kind, tree=tree)


def _depth_first(node: _Node):
    yield node
    for child in node.children:
        yield from _depth_first(child)
