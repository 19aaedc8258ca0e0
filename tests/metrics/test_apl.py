"""``apl`` (Wu et al. [119]) and ``regional_apl`` (Wu et al. [118]) on hand-built trees and regions whose
average path lengths are counted by hand: the number of tests from the root to each test input's leaf, the
region's own tests not counted in [118] (each region has its own tree)."""

from __future__ import annotations

import pytest
import torch

from nnxai.data import PreparedSplit
from nnxai.explanations import RuleSet
from nnxai.intervals import PerInput
from nnxai.metrics.apl import AveragePathLength, RegionalAveragePathLength
from nnxai.metrics.base import metrics


def split_on(feature: int, op: str, threshold: float = 0.0) -> dict:
    """One axis-parallel test of a tree node, as a 1-of-1 condition."""
    return {"m": 1, "literals": [{"feature": feature, "op": op, "threshold": threshold}]}


def context(rows) -> object:
    """What the metrics read: the test split's inputs (labels unused)."""
    x = torch.tensor(rows, dtype=torch.float32)
    return type("Ctx", (), {"test": PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long), meta={})})()


def rules_of(rules: list, default: int = 0) -> RuleSet:
    return RuleSet(rules=rules, default=default, feature_names=["x0", "x1", "x2"], class_names=["0", "1"],
                   feature_space="inputs")


def test_apl_of_an_unbalanced_tree_by_hand():
    """Tree: x0 <= 0 -> leaf (1 test); x0 > 0: x1 <= 0 -> leaf (2 tests); x1 > 0: x2 <= 0 / x2 > 0 (3 tests).
    Rules without ``path_length`` count their conditions.  Inputs reach leaves of 1, 1, 2, 3, 3 tests: APL
    10/5 = 2; an input no rule covers (the default) takes no decision."""
    tree = rules_of([{"conditions": [split_on(0, "<=")], "prediction": 0},
                     {"conditions": [split_on(0, ">"), split_on(1, "<=")], "prediction": 1},
                     {"conditions": [split_on(0, ">"), split_on(1, ">"), split_on(2, "<=")], "prediction": 0},
                     {"conditions": [split_on(0, ">"), split_on(1, ">"), split_on(2, ">")], "prediction": 1}])
    rows = [[-1, 5, 5], [-2, -1, 0], [1, -1, 9], [1, 1, -1], [2, 2, 2]]
    scores = AveragePathLength()(tree, context(rows))
    assert set(scores) == {"apl"} and isinstance(scores["apl"], PerInput)
    assert scores["apl"].values.tolist() == [1, 1, 2, 3, 3] and float(scores["apl"]) == 2.0
    partial = rules_of(tree.rules[:1])                 # only the x0 <= 0 leaf: the others fall to the default
    assert AveragePathLength()(partial, context(rows))["apl"].values.tolist() == [1, 1, 0, 0, 0]


def regional_rules() -> RuleSet:
    """Three regions, as regional tree regularisation writes them: the region's tests, then its tree's path;
    ``path_length`` counts the tree's tests only.

    * region 0 (x0 <= 0, x1 <= 0): no training input, one leaf (path 0);
    * region 1 (x0 <= 0, x1 > 0): a stump on x2 (paths 1, 1);
    * region 2 (x0 > 0): x1 <= 0 -> leaf (1); x1 > 0: x2 <= 0 / x2 > 0 (2, 2).
    """
    r0, r1, r2 = [split_on(0, "<="), split_on(1, "<=")], [split_on(0, "<="), split_on(1, ">")], [split_on(0, ">")]
    return rules_of([
        {"conditions": r0, "prediction": 0, "path_length": 0, "region": 0},
        {"conditions": r1 + [split_on(2, "<=")], "prediction": 0, "path_length": 1, "region": 1},
        {"conditions": r1 + [split_on(2, ">")], "prediction": 1, "path_length": 1, "region": 1},
        {"conditions": r2 + [split_on(1, "<=")], "prediction": 0, "path_length": 1, "region": 2},
        {"conditions": r2 + [split_on(1, ">"), split_on(2, "<=")], "prediction": 1, "path_length": 2, "region": 2},
        {"conditions": r2 + [split_on(1, ">"), split_on(2, ">")], "prediction": 0, "path_length": 2, "region": 2},
    ])


def test_regional_apl_by_hand():
    """Inputs: one in region 0 (path 0), two in region 1 (1, 1), four in region 2 (1, 2, 2, 2).  Per input
    the paths are 0, 1, 1, 1, 2, 2, 2 (APL 9/7); per region 0, 1 and 7/4; the max (what the penalty of [118]
    aims at) 7/4."""
    rows = [[-1, -1, 0], [-1, 1, -1], [-1, 1, 1], [1, -1, 5], [1, 1, -1], [1, 1, 1], [2, 2, 2]]
    scores = RegionalAveragePathLength()(regional_rules(), context(rows))
    assert isinstance(scores["regional_apl"], PerInput)
    assert scores["regional_apl"].values.tolist() == [0, 1, 1, 1, 2, 2, 2]
    assert float(scores["regional_apl"]) == pytest.approx(9 / 7)
    assert {k: v for k, v in scores.items() if k != "regional_apl"} == pytest.approx(
        {"regional_apl.region0": 0.0, "regional_apl.region1": 1.0, "regional_apl.region2": 7 / 4,
         "regional_apl.max": 7 / 4})
    # apl reads the same path_length; without it, a rule's conditions count, region tests included
    assert AveragePathLength()(regional_rules(), context(rows))["apl"].values.tolist() == [0, 1, 1, 1, 2, 2, 2]
    flat = rules_of([{k: v for k, v in r.items() if k != "path_length"} for r in regional_rules().rules])
    assert AveragePathLength()(flat, context(rows))["apl"].values.tolist() == [2, 3, 3, 2, 3, 3, 3]


def test_regional_apl_leaves_out_regions_without_test_inputs():
    """Only region 2 is reached: its mean is the max; regions 0 and 1 get no entry."""
    rows = [[1, -1, 0], [1, 1, 1]]
    scores = RegionalAveragePathLength()(regional_rules(), context(rows))
    assert set(scores) == {"regional_apl", "regional_apl.region2", "regional_apl.max"}
    assert scores["regional_apl.region2"] == scores["regional_apl.max"] == 1.5 == float(scores["regional_apl"])


def test_apl_metrics_are_registered_lower_is_better_and_refuse_other_records():
    for metric_id, cls in (("apl", AveragePathLength), ("regional_apl", RegionalAveragePathLength)):
        assert metrics()[metric_id] is cls and cls.higher_is_better is False and cls.kinds == frozenset({"rule"})
    with pytest.raises(ValueError, match="RuleSet"):
        AveragePathLength()(object(), context([[0, 0, 0]]))
