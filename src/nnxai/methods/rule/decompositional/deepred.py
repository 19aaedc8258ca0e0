"""DeepRED: layer-wise decision trees merged into rules over the inputs (Zilke, Loza Mencía & Janssen,
"DeepRED – Rule extraction from deep neural networks", Discovery Science 2016; the companion survey's [9],
built on CRED [10], Sato & Tsukimoto 2001).

The paper's Algorithm 1, on the training examples and the network's classes for them (the network is the
oracle; the true labels are never read):

1. Compute the activations ``h_0 = x, h_1, ..., h_L`` of every hidden layer on the training examples.
2. Output: a C4.5 tree from the last hidden layer's units ``h_L`` to the network's class; every leaf is a
   rule "conjunction of terms ``h_L,u > theta`` / ``<= theta`` -> class" (the intermediate rules
   ``R_{L+1 -> L}``).  The tree's thresholds are the discretisation of the units (CRED discretised the
   hidden units first; DeepRED lets C4.5 split their continuous values, as here).
3. For each layer ``d = L, ..., 1`` and every term ``h_d,u > theta`` that the rules of step ``d + 1`` use:
   a C4.5 tree from ``h_{d-1}`` to the term's truth on the training examples; its "true" leaves are the
   rules for the term, its "false" leaves those for its negation ``h_d,u <= theta`` (one tree per term, so
   both readings share it).
4. Merge from the output back to the inputs: every term of a rule is replaced by the disjunction of its
   rules and the conjunction multiplied out into a DNF (each rule of the result is one choice of a rule per
   term); then the paper's clean-up: **redundant terms** are deleted (``x > 0.4 AND x > 0.5`` keeps
   ``x > 0.5``: one interval per unit) and **unsatisfiable rules** removed (``x < 0.1 AND x > 0.2``); equal
   rules of a class are kept once, and a rule implied by another of its class is dropped (subsumption).

Choices, all documented:

* Step 2 grows one tree over all classes (the network's argmax); with two classes it is the same as one
  tree per output "class c or not" (the paper's per-class reading), with more it keeps the rules disjoint.
* The clean-up runs after the substitution of every layer, not once at the end (merging layer by layer
  with the same rewriting; it only keeps the DNF from growing with rules that are already empty), and the
  terms whose trees are grown in step 3 are those the cleaned rules still use.
* Rules are interval rows (:mod:`._deepred_dnf`), so redundant terms vanish by construction.
* On the input layer, "unsatisfiable" and "redundant" are judged on the input domain the data set declares
  (:func:`nnxai.ops.feature_space.feature_space`): a one-hot attribute (MONK's ``a5=1 .. a5=4``) has
  exactly one column at 1, so ``a5=1 > 0.5 AND a5=2 > 0.5`` is unsatisfiable and ``a5=1 > 0.5 AND a5=2 <=
  0.5`` keeps ``a5=1 > 0.5``; an attribute's literals are rewritten as the fewest tests that allow the same
  values (one ``> 0.5`` test for a single value, else one ``<= 0.5`` per excluded value).  On real-valued
  inputs and hidden units, interval reasoning alone, as in the paper.
* C4.5 is :mod:`._deepred_c45` (entropy splits by scikit-learn, C4.5's error-based pruning at confidence
  ``confidence`` and at least ``min_samples_leaf`` cases per leaf: C4.5's ``-c`` and ``-m``).
* ``max_rules`` bounds the DNF (DeepRED's known weakness is this product's size, which grows with the trees'
  leaves: thousands of training cases give deep trees): when a merge step would hold more rules, the whole
  extraction is redone with C4.5's ``-m`` doubled (smaller trees), until it fits; the ``-m`` used is
  recorded (``meta["deepred"]["min_samples_leaf"]``).  This rule was added after the first runs, when the
  3000-row ``causal`` table exceeded every bound at ``-m`` 2; it was not tuned on any score.  It never cuts
  a rule set, so the rules always partition the domain (below); one-leaf trees (``-m`` = all cases) give a
  single rule, so it ends.

Every tree's leaves partition its layer's space, so the merged rules of all classes partition the input
domain (each input satisfies exactly one of them): the decision list's order does not matter and its
``default`` (the network's most frequent training class) answers only off the domain.  ``meta["deepred"]``
records, per layer, the terms, trees' leaves and rules after the merge.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.decompositional import _deepred_c45 as c45
from nnxai.methods.rule.decompositional._deepred_dnf import Dnf, Domain, drop_subsumed, product, unique
from nnxai.ops.feature_space import FeatureSpace, feature_space
from nnxai.params import Float, Int
from nnxai.registry import register


class TooManyRules(RuntimeError):
    """A merge step would hold more than ``max_rules`` rules."""


@register("deepred")
class DeepRED(RuleExtractor):
    """DeepRED [9]: C4.5 trees layer by layer, merged from the output back into rules over the inputs."""

    parameters = {
        "min_samples_leaf": Int("C4.5's minimum number of training cases per leaf (-m; 2 in C4.5); doubled "
                                "while the merged rules exceed max_rules", low=1),
        "confidence": Float("C4.5's pruning confidence factor CF (-c; 0.25 in C4.5); 1: no pruning", low=0.0,
                            high=1.0, low_open=True),
        "max_rules": Int("bound on the rules of a merge step (the DNF product); above it the extraction is "
                         "redone with smaller trees (C4.5's -m doubled)", low=1),
    }
    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    needs_standard_layers = True

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        space = feature_space(model, ctx)
        acts, labels = layer_activations(model, ctx.train.x)
        m = self.params["min_samples_leaf"]
        while True:
            try:
                rules, classes_of, layers = merge_layers(acts, labels, {**self.params, "min_samples_leaf": m},
                                                         input_domain(space), ctx.seed)
                break
            except TooManyRules:
                if m >= len(labels):
                    raise
                m = min(2 * m, len(labels))
        n_classes = int(ctx.info.n_classes)
        names = list(ctx.train.meta.get("class_names") or [str(k) for k in range(n_classes)])
        default = int(np.argmax(np.bincount(labels, minlength=n_classes)))
        record = rule_set(rules, classes_of, acts[0], space.names, names, default)
        record.meta["deepred"] = {"min_samples_leaf": m, "layers": layers}
        return record


@torch.no_grad()
def layer_activations(model: nn.Module, x: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
    """``[x, h_1, ..., h_L]`` (float64) after every activation module of ``model.features``, and the
    network's classes; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        device = next(iter(model.parameters()), torch.empty(0)).device
        z = x.reshape(len(x), -1).float().to(device)
        acts = [z.double().cpu().numpy()]
        modules = list(model.features.children())
        for k, module in enumerate(modules):
            z = module(z)
            if not isinstance(module, nn.Linear) and (k + 1 == len(modules) or isinstance(modules[k + 1], nn.Linear)):
                acts.append(z.double().cpu().numpy())
        classes = model.classifier(z).argmax(1).cpu().numpy().astype(np.int64)
    finally:
        model.train(was_training)
    return acts, classes


def input_domain(space: FeatureSpace) -> Domain:
    """The categorical attributes of the input space (one-hot groups and 0/1 columns)."""
    return Domain([(list(f.columns), f.patterns) for f in space.fields if f.patterns is not None])


def tree_dnfs(tree: c45.Node, n_units: int) -> dict[int, Dnf]:
    """Per label, the disjunction of the tree's leaves with that label (their paths' tests)."""
    found = c45.paths(tree)
    return {label: Dnf.of([p for p, y in found if y == label], n_units) for label in sorted({y for _, y in found})}


class TermRules(dict):
    """Step 3 for one layer: ``self[(unit, threshold)]`` = (rules for ``h_d,unit <= threshold``, rules for
    ``> threshold``) over ``h_{d-1}``, from one tree grown the first time a merge asks (so a merge that
    exceeds ``max_rules`` stops before growing the rest)."""

    def __init__(self, below: np.ndarray, above: np.ndarray, grow: Callable[[np.ndarray, np.ndarray], c45.Node]):
        super().__init__()
        self.below, self.above, self.grow, self.leaves = below, above, grow, 0

    def __missing__(self, term: tuple[int, float]) -> tuple[Dnf, Dnf]:
        unit, threshold = term
        tree = self.grow(self.below, (self.above[:, unit] > threshold).astype(np.int64))
        self.leaves += tree.n_leaves
        found, none = tree_dnfs(tree, self.below.shape[1]), Dnf.of([], self.below.shape[1])
        self[term] = value = (found.get(0, none), found.get(1, none))
        return value


def substitute(tests: list[tuple[int, str, float]], dnfs, n_below: int, clean: Callable[[Dnf], Dnf],
               limit: int) -> Dnf:
    """Step 4 for one rule: each test ``(unit, op, threshold)`` replaced by its rules one layer down
    (``dnfs[(unit, threshold)]``: rules for ``<=``, rules for ``>``) and the conjunction multiplied out,
    ``clean`` (the input domain, or nothing) after every factor; more than ``limit`` rows raise."""
    out = Dnf.true(n_below)
    for unit, op, threshold in tests:
        out, _ = unique(clean(product(out, dnfs[(unit, threshold)][op == ">"])))
        if len(out) > limit:
            raise TooManyRules(f"more than {limit} rules while merging (max_rules)")
    return out


def merge_layers(acts: list[np.ndarray], labels: np.ndarray, params: dict, domain: Domain, seed: int
                 ) -> tuple[Dnf, np.ndarray, list[dict]]:
    """Steps 2-4: the output tree on ``acts[-1]``, then one substitution per layer down to ``acts[0]``; the
    rules over the inputs, their classes and per layer the terms, trees' leaves and rules."""
    grow = lambda x, y: c45.grow(x, y, params["min_samples_leaf"], params["confidence"], seed)  # noqa: E731
    top = grow(acts[-1], labels)
    per_class = tree_dnfs(top, acts[-1].shape[1])
    rules = Dnf(np.concatenate([d.lo for d in per_class.values()]), np.concatenate([d.hi for d in per_class.values()]))
    classes = np.concatenate([np.full(len(d), y, dtype=np.int64) for y, d in per_class.items()])
    layers = [{"layer": len(acts) - 1, "terms": None, "tree_leaves": top.n_leaves, "rules": len(rules)}]
    for d in range(len(acts) - 1, 0, -1):
        dnfs = TermRules(acts[d - 1], acts[d], grow)
        clean = domain.clean if d == 1 else (lambda rows: rows)
        parts, part_classes, total = [], [], 0
        for i in range(len(rules)):
            found = substitute(rules.tests(i), dnfs, acts[d - 1].shape[1], clean, params["max_rules"])
            total += len(found)
            if total > params["max_rules"]:
                raise TooManyRules(f"merging layer {d} into layer {d - 1} gives more than {params['max_rules']} "
                                   "rules (max_rules)")
            parts.append(found)
            part_classes.append(np.full(len(found), classes[i], dtype=np.int64))
        merged = Dnf(np.concatenate([p.lo for p in parts]), np.concatenate([p.hi for p in parts]))
        rules, classes = drop_subsumed(*unique(merged, np.concatenate(part_classes)))
        layers.append({"layer": d - 1, "terms": len(dnfs), "tree_leaves": dnfs.leaves, "rules": len(rules)})
    return rules, classes, layers


def rule_set(rules: Dnf, classes: np.ndarray, x_train: np.ndarray, names: list[str], class_names: list[str],
             default: int) -> RuleSet:
    """The merged rules as a decision list over the inputs, by class, most supported first."""
    out = []
    for i in range(len(rules)):
        tests = rules.tests(i)
        support = np.all((x_train > rules.lo[i]) & (x_train <= rules.hi[i]), axis=1)
        out.append({"conditions": [{"m": 1, "literals": [{"feature": int(j), "op": op, "threshold": float(t)}]}
                                   for j, op, t in tests],
                    "prediction": int(classes[i]), "support": int(support.sum())})
    out.sort(key=lambda r: (r["prediction"], -r["support"], len(r["conditions"])))
    return RuleSet(rules=out, default=default, feature_names=list(names), class_names=class_names,
                   feature_space="inputs")
