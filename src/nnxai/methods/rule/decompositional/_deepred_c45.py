"""A C4.5-style decision tree as DeepRED grows it between two layers (Quinlan, C4.5, 1993; Zilke et al. 2016).

Growing: scikit-learn's ``DecisionTreeClassifier(criterion="entropy")`` (information gain on binary splits of
continuous attributes, thresholds at midpoints between observed values) with C4.5's minimum number of cases
per leaf (``-m``).  C4.5 ranks splits by the gain *ratio*; for the binary splits of continuous attributes it
only ever makes, the ratio's denominator (the split information) rarely changes the best split, and the
brief allows scikit-learn's tree: a documented difference.

Pruning: C4.5's pessimistic error-based pruning by subtree replacement.  A node seen by ``N`` training cases
of which ``E`` are not of its majority class is estimated to make ``N * U_CF(E, N)`` errors, ``U_CF`` the
upper limit of the one-sided ``CF`` confidence interval of the binomial error rate (C4.5's ``addErrs``
approximates it; here it is computed exactly, the Clopper-Pearson bound ``1 - CF**(1/N)`` at ``E = 0``,
the value C4.5 uses there).  Bottom-up, a subtree becomes a leaf when its leaf estimate is at most the sum of
its leaves' estimates plus 0.1 (C4.5's tie margin).  Subtree raising (grafting the largest branch in place
of its parent) is not done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

#: C4.5 prunes a subtree when its leaf estimate is at most the subtree's plus this margin.
TIE_MARGIN = 0.1


@dataclass
class Node:
    """A node of a pruned tree: a leaf (``feature is None``) predicting ``label``, or a test ``x_feature <=
    threshold`` (left) / ``> threshold`` (right)."""

    label: int
    counts: np.ndarray
    feature: int | None = None
    threshold: float = 0.0
    left: "Node | None" = None
    right: "Node | None" = None

    @property
    def n_leaves(self) -> int:
        return 1 if self.feature is None else self.left.n_leaves + self.right.n_leaves


def pessimistic_errors(n: float, errors: float, confidence: float) -> float:
    """C4.5's estimated errors of a leaf with ``n`` cases and ``errors`` misclassified: ``n * U_CF``."""
    if n <= 0:
        return 0.0
    if errors >= n:
        return float(n)
    return float(n * special.betaincinv(errors + 1.0, n - errors, 1.0 - confidence))


def grow(x: np.ndarray, y: np.ndarray, min_samples_leaf: int, confidence: float, seed: int) -> Node:
    """The pruned tree predicting ``y`` (integers) from ``x``; ``confidence`` 1 skips pruning."""
    classes = np.unique(y)
    if len(classes) < 2:
        counts = np.bincount(y, minlength=int(y.max()) + 1 if len(y) else 1)
        return Node(int(classes[0]) if len(classes) else 0, counts)
    from sklearn.tree import DecisionTreeClassifier     # imported where used: every job imports the registry

    tree = DecisionTreeClassifier(criterion="entropy", min_samples_leaf=min_samples_leaf, random_state=seed).fit(x, y)
    t = tree.tree_
    n_classes = int(y.max()) + 1
    # training cases of each class reaching each node: (nodes, n) path indicator times (n, classes) one-hot
    counts = np.asarray((tree.decision_path(x).T @ np.eye(n_classes)[y])).astype(np.int64)

    def build(k: int) -> Node:
        node = Node(int(np.argmax(counts[k])), counts[k])
        if t.children_left[k] != -1:
            node.feature, node.threshold = int(t.feature[k]), float(t.threshold[k])
            node.left, node.right = build(t.children_left[k]), build(t.children_right[k])
        return node

    root = build(0)
    if confidence < 1.0:
        prune(root, confidence)
    return root


def prune(node: Node, confidence: float) -> float:
    """Prune ``node``'s subtree in place; return its estimated errors."""
    n, errors = float(node.counts.sum()), float(node.counts.sum() - node.counts[node.label])
    as_leaf = pessimistic_errors(n, errors, confidence)
    if node.feature is None:
        return as_leaf
    subtree = prune(node.left, confidence) + prune(node.right, confidence)
    if as_leaf <= subtree + TIE_MARGIN:
        node.feature, node.left, node.right = None, None, None
        return as_leaf
    return subtree


def paths(node: Node, prefix: tuple = ()) -> list[tuple[tuple, int]]:
    """Every leaf as (conjunction of ``(feature, op, threshold)`` tests on its path, label)."""
    if node.feature is None:
        return [(prefix, node.label)]
    return (paths(node.left, prefix + ((node.feature, "<=", node.threshold),))
            + paths(node.right, prefix + ((node.feature, ">", node.threshold),)))
