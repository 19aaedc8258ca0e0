"""C4.5-style decision-tree induction over a feature space, shared by the pedagogical tree extractors of
Krishnan et al. [90] (ID3 / C5.0 on network-labelled prototypes) and DecText [91] ("C4.5 like" trees).

The tree is Quinlan's (C4.5: Programs for Machine Learning, 1993, Ch. 2-4; ID3: Machine Learning 1, 1986):

* tests on one field of the space (:class:`nnxai.ops.feature_space.Field`): a discrete field (a one-hot group
  such as MONK's ``a1=1, a1=2, a1=3`` or the shapes concepts, or one 0/1 column) is split *multiway*, one
  branch per value (C4.5's default for discrete attributes); a real-valued field by a binary threshold
  ``x_j <= t`` / ``x_j > t``.  A discrete field is not tested twice on a path (it is constant below);
* ``gain``: ID3's information gain ``H(node) - sum_b n_b / n H(b)`` (bits); ``gain_ratio``: C4.5's gain
  divided by the split information ``-sum_b n_b / n log2(n_b / n)``, chosen among the tests whose gain is at
  least the average gain of the tests considered (Quinlan 1993, Sec. 2.2), with the threshold of a
  real-valued field chosen by gain and its gain reduced by ``log2(candidates) / n`` (C4.5 release 8,
  Quinlan 1996, "Improved use of continuous attributes in C4.5");
* a test is admissible only when at least two branches hold ``min_cases`` instances (C4.5's ``-m``);
  a node is a leaf when it is pure, holds fewer than ``2 * min_cases`` instances, reaches ``max_depth`` or
  has no admissible test with positive gain;  a leaf predicts its majority class (the parent's for an
  empty branch of a multiway split, as C4.5);
* :func:`prune_pessimistic`: C4.5's error-based pruning (Ch. 4): a subtree is replaced by a leaf when
  ``N * U_CF(E, N)`` of the leaf is at most the sum of its leaves' ``N_l * U_CF(E_l, N_l)`` + 0.1, where
  ``U_CF(E, N)`` is the upper ``CF`` confidence limit of the binomial error rate as C4.5 computes it
  (:func:`added_errors`).  C4.5's "subtree raising" (grafting a branch in place of its parent) is not done;
* :func:`prune_fidelity`: reduced-error pruning against the network's labels (DecText's pruning): bottom
  up, a subtree becomes a leaf when the leaf agrees with at least as many pruning instances; this gives the
  smallest pruned tree of highest pruning-set fidelity (Esposito, Malerba & Semeraro, IEEE TPAMI 1997,
  Theorem on REP).

Real-valued thresholds are midpoints between consecutive distinct values (C4.5 takes the lower value; the
midpoint classifies the same instances), or, where a caller passes them (DecText's network-guided
discretisation), given candidate cut points.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from nnxai.explanations import RuleSet
from nnxai.ops.feature_space import FeatureSpace

CRITERIA = ("gain", "gain_ratio")


@dataclass
class Split:
    """A test on one field: ``conditions[b]`` is branch ``b``'s RuleSet condition; ``assign`` maps rows."""

    field: int
    conditions: list
    kind: str                         # "category" | "threshold"
    feature: int | None = None        # the column of a threshold test
    threshold: float | None = None
    gain: float = 0.0
    ratio: float = 0.0

    def assign(self, space: FeatureSpace, x: np.ndarray) -> np.ndarray:
        """Branch index of every row of ``x``."""
        if self.kind == "threshold":
            return (x[:, self.feature] > self.threshold).astype(np.int64)
        return field_values(space, self.field, x)

    def describe(self, space: FeatureSpace) -> dict:
        fld = space.fields[self.field]
        if self.kind == "threshold":
            return {"kind": "threshold", "feature": int(self.feature), "name": space.names[self.feature],
                    "threshold": float(self.threshold), "gain": float(self.gain)}
        return {"kind": "category", "features": [int(c) for c in fld.columns],
                "names": [space.names[c] for c in fld.columns], "gain": float(self.gain)}


@dataclass
class TreeNode:
    """A node: its instances (``x``, network ``labels``), the path's conditions, its test and children."""

    id: int
    depth: int
    conditions: list
    x: np.ndarray
    labels: np.ndarray
    n_classes: int
    fallback: int                      # class of an empty node (its parent's majority)
    support: int = 0                   # training examples / prototypes reaching it (RuleSet support)
    split: Split | None = None
    children: list = field(default_factory=list)

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.n_classes)

    @property
    def prediction(self) -> int:
        return int(np.argmax(self.counts)) if len(self.labels) else int(self.fallback)

    @property
    def is_leaf(self) -> bool:
        return not self.children


# -- evaluating splits -------------------------------------------------------------------------------------
def entropy(counts: np.ndarray) -> np.ndarray:
    """Entropy in bits of class counts along the last axis (0 for an empty set)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=-1, keepdims=True)
    p = np.divide(counts, n, out=np.zeros_like(counts), where=n > 0)
    return -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def partition_scores(branch_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Information gain and gain ratio of partitions: ``branch_counts`` is ``(..., branches, classes)``."""
    branch_counts = np.asarray(branch_counts, dtype=np.float64)
    sizes = branch_counts.sum(axis=-1)
    n = sizes.sum(axis=-1)
    w = np.divide(sizes, n[..., None], out=np.zeros_like(sizes), where=n[..., None] > 0)
    gain = entropy(branch_counts.sum(axis=-2)) - np.sum(w * entropy(branch_counts), axis=-1)
    split_info = -np.sum(np.where(w > 0, w * np.log2(np.where(w > 0, w, 1.0)), 0.0), axis=-1)
    ratio = np.divide(gain, split_info, out=np.zeros_like(gain), where=split_info > 1e-12)
    return gain, ratio


def field_values(space: FeatureSpace, f: int, x: np.ndarray) -> np.ndarray:
    """The category index of discrete field ``f`` in every row (the pattern it matches; argmax of a one-hot)."""
    cols = list(space.fields[f].columns)
    if len(cols) == 1:                  # a 0/1 column: patterns [[0], [1]] (nnxai.ops.feature_space)
        return (x[:, cols[0]] > 0.5).astype(np.int64)
    return np.argmax(x[:, cols], axis=1).astype(np.int64)


def category_conditions(space: FeatureSpace, f: int) -> list[dict]:
    """One RuleSet condition per category of discrete field ``f`` (it holds for exactly that category)."""
    cols = list(space.fields[f].columns)
    if len(cols) == 1:
        return [{"m": 1, "literals": [{"feature": cols[0], "op": op, "threshold": 0.5}]} for op in ("<=", ">")]
    return [{"m": 1, "literals": [{"feature": c, "op": ">", "threshold": 0.5}]} for c in cols]


def threshold_split(x: np.ndarray, labels: np.ndarray, n_classes: int, j: int, f: int, min_cases: int,
                    cuts: np.ndarray | None = None, criterion: str = "gain") -> Split | None:
    """The best binary test ``x_j <= t`` of a real-valued field by gain (C4.5 ranks thresholds by gain), among
    ``cuts`` (given) or the midpoints of consecutive distinct values; ``None`` when none is admissible."""
    values = x[:, j]
    order = np.argsort(values, kind="stable")
    sorted_v = values[order]
    distinct = np.unique(sorted_v)
    if cuts is None:
        candidates = (distinct[:-1] + distinct[1:]) / 2.0
    else:
        cuts = np.asarray(cuts, dtype=np.float64)
        candidates = cuts[(cuts >= distinct[0]) & (cuts < distinct[-1])] if len(distinct) else cuts[:0]
    if len(candidates) == 0:
        return None
    onehot = np.eye(n_classes)[labels[order]]
    cum = np.vstack([np.zeros(n_classes), np.cumsum(onehot, axis=0)])
    left = cum[np.searchsorted(sorted_v, candidates, side="right")]
    total = cum[-1]
    counts = np.stack([left, total[None] - left], axis=1)            # (candidates, 2, classes)
    sizes = counts.sum(axis=2)
    ok = (sizes >= min_cases).all(axis=1)
    if not ok.any():
        return None
    gain, ratio = partition_scores(counts)
    gain = np.where(ok, gain, -np.inf)
    best = int(np.argmax(gain))
    g, r = float(gain[best]), float(ratio[best])
    if criterion == "gain_ratio":       # C4.5 release 8: the cost of choosing among the candidate thresholds
        g -= np.log2(len(candidates)) / len(labels)
        w = sizes[best] / sizes[best].sum()
        r = g / float(-np.sum(w * np.log2(w)))
    t = float(candidates[best])
    conds = [{"m": 1, "literals": [{"feature": j, "op": op, "threshold": t}]} for op in ("<=", ">")]
    return Split(f, conds, "threshold", feature=j, threshold=t, gain=g, ratio=r)


def category_split(space: FeatureSpace, x: np.ndarray, labels: np.ndarray, n_classes: int, f: int,
                   min_cases: int) -> Split | None:
    """The multiway test on discrete field ``f``; ``None`` unless two branches hold ``min_cases`` instances."""
    k = len(space.fields[f].patterns)
    values = field_values(space, f, x)
    counts = np.zeros((k, n_classes))
    np.add.at(counts, (values, labels), 1.0)
    if (counts.sum(axis=1) >= min_cases).sum() < 2:
        return None
    gain, ratio = partition_scores(counts)
    return Split(f, category_conditions(space, f), "category", gain=float(gain), ratio=float(ratio))


def candidate_splits(space: FeatureSpace, x: np.ndarray, labels: np.ndarray, n_classes: int, used: set,
                     min_cases: int, criterion: str, cuts: dict | None = None) -> list[Split]:
    """The admissible test of every field (the best threshold of a real-valued one), in field order."""
    out = []
    for f, fld in enumerate(space.fields):
        if fld.patterns is None:
            j = fld.columns[0]
            split = threshold_split(x, labels, n_classes, j, f, min_cases,
                                    None if cuts is None else cuts.get(j, np.zeros(0)), criterion)
        elif f in used:
            continue
        else:
            split = category_split(space, x, labels, n_classes, f, min_cases)
        if split is not None:
            out.append(split)
    return out


def choose(splits: list[Split], criterion: str) -> Split | None:
    """ID3: the largest gain; C4.5: the largest gain ratio among tests of at least average gain (gain > 0)."""
    positive = [s for s in splits if s.gain > 1e-12]
    if not positive:
        return None
    if criterion == "gain":
        return max(positive, key=lambda s: s.gain)
    average = float(np.mean([s.gain for s in positive]))
    eligible = [s for s in positive if s.gain >= average - 1e-12]
    return max(eligible, key=lambda s: s.ratio)


# -- growing ---------------------------------------------------------------------------------------------
def children_of(node: TreeNode, split: Split, space: FeatureSpace, new_id) -> list[TreeNode]:
    """Partition ``node``'s instances by ``split`` into new children (ids from ``new_id()``)."""
    branch = split.assign(space, node.x)
    out = []
    for b, cond in enumerate(split.conditions):
        rows = branch == b
        out.append(TreeNode(new_id(), node.depth + 1, node.conditions + [cond], node.x[rows], node.labels[rows],
                            node.n_classes, node.prediction))
    return out


def grow(space: FeatureSpace, x: np.ndarray, labels: np.ndarray, n_classes: int, criterion: str,
         min_cases: int, max_depth: int | None = None) -> list[TreeNode]:
    """Grow a tree on fixed labelled instances (ID3 / C4.5); returns every node, the root first."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    nodes: list[TreeNode] = []

    def new_id() -> int:
        return len(nodes)

    root = TreeNode(0, 0, [], x, labels, n_classes, int(np.argmax(np.bincount(labels, minlength=n_classes)))
                    if len(labels) else 0, support=len(labels))
    nodes.append(root)
    queue = deque([(root, frozenset())])
    while queue:
        node, used = queue.popleft()
        if len(np.unique(node.labels)) < 2 or len(node.labels) < 2 * min_cases or \
                (max_depth is not None and node.depth >= max_depth):
            continue
        split = choose(candidate_splits(space, node.x, node.labels, n_classes, set(used), min_cases, criterion),
                       criterion)
        if split is None:
            continue
        node.split = split
        for child in children_of(node, split, space, new_id):
            child.support = len(child.labels)
            nodes.append(child)
            node.children.append(child)
            queue.append((child, used | ({split.field} if split.kind == "category" else set())))
    return nodes


# -- pruning ---------------------------------------------------------------------------------------------
#: C4.5's table of the normal deviate for a confidence level (release 8, ``stats.c``), linearly interpolated.
_CF_LEVELS = (0.0, 0.001, 0.005, 0.01, 0.05, 0.10, 0.20, 0.40, 1.00)
_CF_DEVIATES = (4.0, 3.09, 2.58, 2.33, 1.65, 1.28, 0.84, 0.25, 0.00)


def added_errors(n: float, errors: float, cf: float) -> float:
    """C4.5's extra errors of a leaf with ``errors`` of ``n`` at confidence ``cf``: ``n * U_CF(E, N) - E``.

    Exact for ``E = 0`` (``U = 1 - CF^(1/N)``), interpolated for ``0 < E < 1``, else the normal approximation
    of the binomial upper limit with C4.5's deviate table; Quinlan 1993, Ch. 4 tabulates ``U_25%(0, 6) =
    0.206`` and ``U_25%(1, 16) = 0.157``.
    """
    if n <= 0:
        return 0.0
    if errors < 1e-6:
        return n * (1.0 - cf ** (1.0 / n))
    if errors < 0.9999:
        base = n * (1.0 - cf ** (1.0 / n))
        return base + errors * (added_errors(n, 1.0, cf) - base)
    if errors + 0.5 >= n:
        return 0.67 * (n - errors)
    k = next(i for i, level in enumerate(_CF_LEVELS) if level >= cf)
    lo, hi = _CF_LEVELS[k - 1], _CF_LEVELS[k]
    z = _CF_DEVIATES[k - 1] + (_CF_DEVIATES[k] - _CF_DEVIATES[k - 1]) * (cf - lo) / (hi - lo)
    c = z * z
    e = errors + 0.5
    upper = (e + c / 2 + np.sqrt(c * (e * (1.0 - e / n) + c / 4))) / (n + c)
    return float(n * upper - errors)


def _leaf_estimate(node: TreeNode, cf: float) -> float:
    """Estimated errors ``N * U_CF(E, N)`` of ``node`` as a leaf."""
    n = len(node.labels)
    errors = n - (int(node.counts.max()) if n else 0)
    return errors + added_errors(n, errors, cf)


def prune_pessimistic(root: TreeNode, cf: float) -> None:
    """C4.5's error-based pruning at confidence ``cf`` (Quinlan 1993, Ch. 4), bottom up, in place."""

    def visit(node: TreeNode) -> float:
        if node.is_leaf:
            return _leaf_estimate(node, cf)
        subtree = sum(visit(child) for child in node.children)
        as_leaf = _leaf_estimate(node, cf)
        if as_leaf <= subtree + 0.1:
            node.children, node.split = [], None
            return as_leaf
        return subtree

    visit(root)


def prune_fidelity(root: TreeNode, space: FeatureSpace, x: np.ndarray, labels: np.ndarray) -> None:
    """Reduced-error pruning against the network's ``labels`` of the pruning instances ``x``, in place: a
    subtree becomes a leaf when that leaf agrees with the network on at least as many of them."""

    def visit(node: TreeNode, rows: np.ndarray) -> int:
        as_leaf = int(np.sum(labels[rows] == node.prediction))
        if node.is_leaf:
            return as_leaf
        branch = node.split.assign(space, x[rows])
        subtree = sum(visit(child, rows[branch == b]) for b, child in enumerate(node.children))
        if as_leaf >= subtree:
            node.children, node.split = [], None
            return as_leaf
        return subtree

    visit(root, np.arange(len(x)))


def route(root: TreeNode, space: FeatureSpace, x: np.ndarray) -> np.ndarray:
    """The class the tree assigns to every row of ``x`` (following the splits)."""
    out = np.empty(len(x), dtype=np.int64)

    def visit(node: TreeNode, rows: np.ndarray) -> None:
        if node.is_leaf:
            out[rows] = node.prediction
            return
        branch = node.split.assign(space, x[rows])
        for b, child in enumerate(node.children):
            visit(child, rows[branch == b])

    visit(root, np.arange(len(x)))
    return out


# -- export ----------------------------------------------------------------------------------------------
def depth_first(node: TreeNode):
    yield node
    for child in node.children:
        yield from depth_first(child)


def to_ruleset(root: TreeNode, space: FeatureSpace, class_names: list, **tree_extra) -> RuleSet:
    """One rule per leaf (the path's conditions; mutually exclusive and exhaustive over valid vectors), the
    root's class as default; ``tree`` holds ``depth``, ``n_leaves``, ``n_internal`` and the nodes."""
    reached = list(depth_first(root))
    leaves = [n for n in reached if n.is_leaf]
    rules = [{"conditions": n.conditions, "prediction": n.prediction, "support": int(n.support)} for n in leaves]
    ids = {n.id: k for k, n in enumerate(reached)}
    nodes = [{"id": ids[n.id], "depth": n.depth, "test": None if n.is_leaf else n.split.describe(space),
              "children": [ids[c.id] for c in n.children] or None, "prediction": n.prediction,
              "counts": [int(c) for c in n.counts], "n_instances": int(len(n.labels)), "n_train": int(n.support)}
             for n in reached]
    tree = {"depth": max(n.depth for n in leaves), "n_leaves": len(leaves), "n_internal": len(reached) - len(leaves),
            **tree_extra, "nodes": nodes}
    return RuleSet(rules=rules, default=root.prediction, feature_names=list(space.names),
                   class_names=list(class_names), feature_space=space.kind, tree=tree)
