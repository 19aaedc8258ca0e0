"""Average path length of a tree explanation (Wu et al. [119], [118]): how many decisions a person steps
through to simulate the explanation on an input; lower is more interpretable.

* ``apl``: for every test input, the number of tests on its path from the root to its leaf (the
  ``path_length`` of the rule it falls in; a tree's rules are its leaves), as :class:`PerInput` (mean: the APL
  of [119] on the test split).
* ``regional_apl``: the same per input for a regional explanation [118], where the path counts the tests of
  the input's region's tree only (not the region's own tests); ``regional_apl.region<s>`` is region ``s``'s
  APL and ``regional_apl.max`` the largest (what the paper's max penalty aims at).
"""

from __future__ import annotations

import numpy as np

from nnxai.explanations import RuleSet
from nnxai.explanations.records import condition_holds
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.feature_space import split_features


def firing_rules(rules: RuleSet, features: np.ndarray) -> np.ndarray:
    """Index of the first rule whose conditions all hold for each row (``-1``: the default)."""
    features = np.asarray(features, dtype=np.float64)
    out = np.full(len(features), -1, dtype=np.int64)
    for k, rule in enumerate(rules.rules):
        fires = out < 0
        for cond in rule["conditions"]:
            fires &= condition_holds(cond, features)
        out[fires] = k
    return out


def _checked(rules) -> RuleSet:
    if not isinstance(rules, RuleSet):
        raise ValueError(f"apl scores RuleSet records, got {type(rules).__name__}")
    return rules


def split_path_lengths(rules, ctx) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rule_path_lengths` of the test split, read in the rule set's feature space."""
    return rule_path_lengths(rules, split_features(ctx.test, _checked(rules).feature_space))


def rule_path_lengths(rules: RuleSet, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Path length of each row (its rule's ``path_length``, else its number of conditions; 0 for the default)
    and the index of the rule it falls in."""
    _checked(rules)
    lengths = np.array([rule.get("path_length", len(rule["conditions"])) for rule in rules.rules] + [0],
                       dtype=np.float64)
    fired = firing_rules(rules, features)
    return lengths[fired], fired


@register_metric
class AveragePathLength(Metric):
    """Mean number of decisions from the root to the leaf, over the test inputs [119]."""

    id = "apl"
    higher_is_better = False
    kinds = frozenset({"rule"})
    description = "average decision-path length of the explanation tree on the test split (lower: simpler)"

    def __call__(self, record, ctx, method=None):
        lengths, _ = split_path_lengths(record, ctx)
        return {"apl": PerInput(lengths)}


@register_metric
class RegionalAveragePathLength(Metric):
    """Per-input path length within the input's region's tree [118], with each region's mean and the max."""

    id = "regional_apl"
    higher_is_better = False
    kinds = frozenset({"rule"})
    description = "average path length of each region's tree on the test inputs of that region (lower: simpler)"

    def __call__(self, record, ctx, method=None):
        lengths, fired = split_path_lengths(record, ctx)
        region = np.array([rule.get("region", -1) for rule in record.rules] + [-1])[fired]
        out = {"regional_apl": PerInput(lengths)}
        per_region = {}
        for s in sorted({int(r) for r in region if r >= 0}):
            per_region[s] = float(lengths[region == s].mean())
            out[f"regional_apl.region{s}"] = per_region[s]
        out["regional_apl.max"] = max(per_region.values()) if per_region else 0.0
        return out
