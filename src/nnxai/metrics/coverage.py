"""Precision and coverage of (semi-)local rules, and the accuracy of a rules + network hybrid (survey Sec.
III-A-1: Anchors [65], the interpretable partial substitute [80]).

* ``precision`` (Anchors [65] Eq. 1): for each explained input ``x`` with anchor ``A``, the fraction of
  ``n_samples`` *fresh* draws ``z ~ D(z|A)`` (the method's own perturbation distribution, fitted as its
  explain stage fits it, drawn with the seed ``ctx.seed + FRESH_SEED`` and the input's position, not the
  search's) to which the model gives ``x``'s class; ``precision.above_tau``: the fraction of explained
  inputs whose fresh precision reaches the method's threshold ``τ`` ([65] Eq. 2 promises it for each
  anchor with probability ``1 − δ``).
* ``coverage``: for local rules ([65] Eq. 3), ``cov(A) = E_{D(z)}[A(z)]`` per input, recomputed from the
  record's conditions by the method's perturbation space (tables: the fraction of train rows that satisfy
  ``A``; superpixels: ``2^-|A|``); for a rule set (the partial substitute [80]), the fraction of the test
  split on which some rule fires (the rest is left to the network).
* ``hybrid_accuracy`` ([80]): test accuracy of the hybrid "the rules where they fire, the network
  elsewhere" (the rule set's inference returns a negative class where it abstains: ``partial_substitute``;
  a plain decision list decides everywhere); ``.fidelity`` the hybrid's agreement with the network,
  ``.network`` the network's own accuracy and ``.rules`` the rules' accuracy where they fire (NaN when they
  fire nowhere).
"""

from __future__ import annotations

import math

import numpy as np

from nnxai.explanations import LocalRules, RuleSet
from nnxai.explanations.records import condition_holds
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.local_fidelity import FRESH_SEED
from nnxai.metrics.rerun import fitted_method
from nnxai.ops.feature_space import predict_classes, split_features
from nnxai.params import Int


def _literals(entry: dict) -> list[dict]:
    """The literals of a local rule whose conditions are a conjunction of 1-of-1 tests."""
    out = []
    for cond in entry.get("conditions", []):
        if cond["m"] != len(cond["literals"]):
            raise ValueError(f"precision and coverage read conjunctions of tests, got a {cond['m']}-of-"
                             f"{len(cond['literals'])} condition")
        out.extend(cond["literals"])
    return out


def _spaces(record: LocalRules, ctx, method):
    """``(position, target, literals, space)`` per explained input: the fitted method's ``input_space``."""
    if not hasattr(method, "input_space"):
        raise ValueError(f"method {record.meta.get('method')!r} has no perturbation space (input_space)")
    fitted = fitted_method(method, ctx)
    for i, target, entry in zip(record.indices, record.targets, record.explanations):
        yield int(i), int(target), _literals(entry), fitted.input_space(ctx.test.x[int(i)].to(ctx.device))


def rules_fire(rules: RuleSet, features: np.ndarray) -> np.ndarray:
    """Bool per row: some rule of ``rules`` fires (all its conditions hold)."""
    fires = np.zeros(len(features), dtype=bool)
    for rule in rules.rules:
        holds = np.ones(len(features), dtype=bool)
        for cond in rule["conditions"]:
            holds &= condition_holds(cond, features)
        fires |= holds
    return fires


@register_metric
class Precision(Metric):
    """Fresh-sample precision of each input's local rule under the method's ``D(z|A)`` (module docstring)."""

    id = "precision"
    higher_is_better = True
    kinds = frozenset({"local_rule"})
    parameters = {"n_samples": Int("fresh draws from D(z|A) per explained input", low=1)}
    description = "fraction of fresh perturbation samples satisfying the rule that keep the explained class"

    @classmethod
    def why_not(cls, method_cls, info):
        if not hasattr(method_cls, "input_space"):
            return f"{method_cls.spec.id} has no perturbation distribution D(z|A) to draw from"
        return super().why_not(method_cls, info)

    def __call__(self, record, ctx, method):
        from nnxai.methods.rule.local._anchor_space import agreement

        n = int(self.params["n_samples"])
        values = []
        for i, target, lits, space in _spaces(record, ctx, method):
            rng = np.random.default_rng([int(ctx.seed) + FRESH_SEED, i])
            values.append(float(agreement(ctx.model, space, [lits], n, target, rng)[0].mean()))
        values = np.array(values)
        tau = getattr(method, "params", {}).get("tau")
        out = {"precision": PerInput(values)}
        if tau is not None:
            out["precision.above_tau"] = PerInput(values >= float(tau))
        return out


@register_metric
class Coverage(Metric):
    """Local rules: ``cov(A)`` per input under ``D(z)``; a rule set: the fraction of the test split it decides."""

    id = "coverage"
    higher_is_better = True
    kinds = frozenset({"local_rule", "rule"})
    description = "fraction of the input distribution (local rules) or of the test split (rule sets) the rules cover"

    def __call__(self, record, ctx, method):
        if isinstance(record, RuleSet):
            return {"coverage": PerInput(rules_fire(record, split_features(ctx.test, record.feature_space)))}
        return {"coverage": PerInput([space.coverage(lits) for _, _, lits, space in _spaces(record, ctx, method)])}


@register_metric
class HybridAccuracy(Metric):
    """Test accuracy of the rules where they decide and the network elsewhere (module docstring)."""

    id = "hybrid_accuracy"
    higher_is_better = True
    kinds = frozenset({"rule"})
    description = "test accuracy of the hybrid model: the rules where they fire, the network elsewhere"

    def __call__(self, record, ctx, method=None):
        if not isinstance(record, RuleSet):
            raise ValueError(f"hybrid_accuracy scores RuleSet records, got {type(record).__name__}")
        network = predict_classes(ctx.model, ctx.test.x)
        decided = record.predict(split_features(ctx.test, record.feature_space))
        hybrid = np.where(decided >= 0, decided, network)
        labels = ctx.test.y.numpy()
        covered = decided >= 0
        rules = float(np.mean(hybrid[covered] == labels[covered])) if covered.any() else math.nan
        return {"hybrid_accuracy": PerInput(hybrid == labels),
                "hybrid_accuracy.fidelity": PerInput(hybrid == network),
                "hybrid_accuracy.network": float(np.mean(network == labels)),
                "hybrid_accuracy.rules": rules}
