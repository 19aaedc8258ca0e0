"""Interpretable partial substitute, Wang [80]: a rule set that takes over part of the input space from the
network at no or low cost in accuracy (Hybrid Rule Sets, HyRS).

The network is the black box ``f_b`` of [80]; rules are mined and selected by simulated annealing to
minimise [80]'s objective ``err/N + θ₁ |R| + θ₂ (1 − coverage)`` on the train split (model, objective,
rule space and search: :mod:`._hyrs`).  Features: a table's inputs, or the concept table of an image set
(``shapes``: the CNN is the black box, the rules read the concepts).  ``target`` says what ``err`` counts:
the train labels (``labels``, [80]) or the network's own classes (``network``: the substitute then
imitates the network where it takes over, a fidelity objective).

The record is a :class:`~nnxai.explanations.RuleSet` whose ``inference`` is ``{"type":
"partial_substitute"}``: its rules form a decision list (rules of class K−1 first ... class 0 last: for two
classes [80]'s positive rules before its negative ones) that *abstains* where no rule fires —
:func:`substitute_classes`, registered in :data:`~nnxai.explanations.RULE_INFERENCE`, returns ``-1``
there, meaning "the network decides"; ``default`` (a class index, as the file checks require) is never
used by it.  The hybrid model is ``rules where they fire, the network elsewhere``: the metrics
``coverage`` (fraction of the test split the rules decide) and ``hybrid_accuracy`` (the hybrid's test
accuracy) of :mod:`nnxai.metrics.coverage` fill the abstentions in with the network.  ``meta["hyrs"]``
keeps the train split's coverage, hybrid accuracy, objective and rule-space size.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits
from torch import nn

from nnxai.explanations import RULE_INFERENCE, RuleSet
from nnxai.explanations.records import condition_holds
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.local._hyrs import Candidates, Hybrid, anneal, binarise, mine, support_bound
from nnxai.methods.rule.local.anchors import predicate_text
from nnxai.ops.feature_space import predict_classes, split_features
from nnxai.params import Choice, Float, Int
from nnxai.registry import register

INFERENCE = "partial_substitute"
#: The class :func:`substitute_classes` returns where no rule fires: the network decides there.
ABSTAIN = -1


def substitute_classes(rule_set: RuleSet, features: np.ndarray) -> np.ndarray:
    """``RULE_INFERENCE["partial_substitute"]``: the first firing rule's class, ``-1`` where none fires."""
    out = np.full(len(features), ABSTAIN, dtype=np.int64)
    undecided = np.ones(len(features), dtype=bool)
    for rule in rule_set.rules:
        fires = undecided.copy()
        for cond in rule["conditions"]:
            fires &= condition_holds(cond, features)
        out[fires] = rule["prediction"]
        undecided &= ~fires
    return out


RULE_INFERENCE.register(INFERENCE, substitute_classes)


@register("partial_substitution")
class PartialSubstitution(RuleExtractor):
    """HyRS [80]: rules that decide part of the input space, the network the rest."""

    model_agnostic = True     # the network's classes only
    parameters = {
        "theta_rule": Float("θ₁ of [80]'s objective: cost of one rule (interpretability)", low=0),
        "theta_coverage": Float("θ₂ of [80]'s objective: weight of the uncovered fraction (transparency); larger "
                                "θ₂, larger coverage", low=0),
        "target": Choice("what the hybrid's errors are counted against: the train labels ([80]) or the "
                         "network's classes", ("labels", "network")),
        "min_support": Float("support of a mined rule among its class's train examples ([80]: 5-10 %)", low=0,
                             high=1, low_open=True),
        "max_len": Int("most items (literals) in a rule", low=1),
        "n_rules": Int("candidate rules kept per class after screening by precision ([80]'s rule space size)",
                       low=1),
        "n_bins": Int("quantile bins that binarise a continuous feature", low=2),
        "n_iterations": Int("simulated-annealing steps ([80] Alg. 1)", low=1),
        "t0": Float("final temperature T₀ of the schedule T_t = T₀^(t/n)", low=0, high=1, low_open=True),
    }

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        p = self.params
        space = "concepts" if ctx.info.kind == "image" else "inputs"
        features = split_features(ctx.train, space)
        names = list(ctx.info.concepts) if space == "concepts" else \
            list(ctx.train.meta.get("feature_names") or [f"x{j}" for j in range(features.shape[1])])
        n_classes = int(ctx.info.n_classes)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        network = predict_classes(model, ctx.train.x)
        target = network if p["target"] == "network" else ctx.train.y.numpy().astype(np.int64)
        items = binarise(features, p["n_bins"])
        # thousands of small matrix-vector products: a multi-threaded BLAS only spins on them
        with threadpool_limits(1, user_api="blas"):
            candidates = mine(items, target, n_classes, float(p["min_support"]), p["max_len"], p["n_rules"])
            candidates = _screen(candidates, support_bound(float(p["theta_rule"]), float(p["theta_coverage"]),
                                                           len(target)))
            hybrid = Hybrid(candidates, target, network, n_classes, float(p["theta_rule"]),
                            float(p["theta_coverage"]))
            rng = np.random.default_rng([self.seed, 80])
            selected, objective = anneal(hybrid, p["n_iterations"], float(p["t0"]), rng)
        pred, covered = hybrid.predict(selected)
        order = sorted(selected, key=lambda r: (-candidates.classes[r], -candidates.precision[r], r))
        rules = [{"conditions": [{"m": 1, "literals": [items.literals[i]]} for i in candidates.itemsets[r]],
                  "prediction": int(candidates.classes[r]), "support": int(candidates.cover[r].sum()),
                  "precision": float(candidates.precision[r])} for r in order]
        binary = np.all((features == 0) | (features == 1), axis=0)
        text = _text(rules, names, binary, class_names, float(covered.mean()))
        meta = {"hyrs": {"train_coverage": float(covered.mean()),
                         "train_hybrid_accuracy": float(np.mean(pred == ctx.train.y.numpy())),
                         "objective": objective, "n_candidates": len(candidates.itemsets),
                         "abstain": ABSTAIN}}
        default = int(np.bincount(network, minlength=n_classes).argmax())
        return RuleSet(rules=rules, default=default, feature_names=names, class_names=class_names,
                       feature_space=space, inference={"type": INFERENCE}, text=text, meta=meta)


def _screen(candidates: Candidates, least: float) -> Candidates:
    """Drop the rules whose train support is below the bound ``least`` (:func:`._hyrs.support_bound`)."""
    keep = np.flatnonzero(candidates.cover.sum(axis=1) >= least)
    return Candidates([candidates.itemsets[k] for k in keep], candidates.classes[keep], candidates.cover[keep],
                      candidates.precision[keep])


def _text(rules: list, names: list, binary: np.ndarray, class_names: list, coverage: float) -> str:
    lines = []
    for rule in rules:
        lits = [c["literals"][0] for c in rule["conditions"]]
        parts = [predicate_text(lit, names, bool(binary[lit["feature"]])) for lit in lits]
        lines.append(f"IF {' AND '.join(parts)} THEN {class_names[rule['prediction']]}")
    lines.append(f"ELSE the network decides (the rules cover {coverage:.0%} of the train split)")
    return "\n".join(lines)
