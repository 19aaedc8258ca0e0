"""Rule metrics: fidelity (test split, fresh queries, label accuracy), rule size, tree depth and leaves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from nnxai import registry
from nnxai.data import DatasetInfo, PreparedSplit
from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext
from nnxai.metrics.rules import Fidelity, NLeaves, RuleSize, TreeDepth
from nnxai.params import ParamError

INFO = DatasetInfo("toy", "tabular", 2, (4,), False, False, "test toy")
CONJUNCTION = {"m": 2, "literals": [{"feature": 0, "op": ">", "threshold": 0.5},
                                    {"feature": 2, "op": ">", "threshold": 0.0}]}


class RuleNet(nn.Module):
    """An exact oracle: class 1 iff x0 > 0.5 and x2 > 0 (logits are the one-hot of the class)."""

    architecture = "mlp"

    def forward(self, x):
        positive = (x[:, 0] > 0.5) & (x[:, 2] > 0)
        return nn.functional.one_hot(positive.long(), 2).float()


def truth(x):
    return ((x[:, 0] > 0.5) & (x[:, 2] > 0)).astype(np.int64)


def context(n_train=5000, n_test=2000, flip=100):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(n_train, 4)), rng.normal(size=(n_test, 4))
    y_test = truth(x_test)
    y_test[:flip] = 1 - y_test[:flip]             # true labels that the network gets wrong

    def split(x, y):
        return PreparedSplit(x=torch.tensor(x, dtype=torch.float32), y=torch.as_tensor(y), meta={})

    return ExplainContext(model=RuleNet(), dataset="toy", model_id="toy", info=INFO,
                          train=split(x_train, truth(x_train)), test=split(x_test, y_test), seed=0), x_test


def ruleset(rules, default=0, tree=None, space="inputs"):
    return RuleSet(rules=rules, default=default, feature_names=[f"x{j}" for j in range(4)],
                   class_names=["neg", "pos"], feature_space=space, tree=tree)


def test_the_oracle_rule_has_fidelity_one():
    ctx, _ = context()
    oracle = ruleset([{"conditions": [CONJUNCTION], "prediction": 1, "support": 0}])
    scores = Fidelity(n_queries=3000)(oracle, ctx)
    assert scores["fidelity"] == 1.0 and scores["fidelity.queries"] == 1.0
    assert scores["fidelity.label_accuracy"] == pytest.approx(1 - 100 / 2000)


def test_fidelity_of_a_constant_rule_set():
    """Always 'negative': agreement = share of the network's negatives; on queries from the product of the
    (Gaussian) marginals that share is 1 - P(x0 > 0.5) P(x2 > 0)."""
    ctx, x_test = context()
    scores = Fidelity(n_queries=20000)(ruleset([]), ctx)
    assert scores["fidelity"] == pytest.approx(np.mean(truth(x_test) == 0))
    assert scores["fidelity.label_accuracy"] == pytest.approx(np.mean(ctx.test.y.numpy() == 0))
    assert scores["fidelity.queries"] == pytest.approx(1 - stats.norm.sf(0.5) * 0.5, abs=0.015)
    assert "fidelity.queries" not in Fidelity(n_queries=0)(ruleset([]), ctx)


def test_fidelity_rejects_bad_input():
    ctx, _ = context(n_train=50, n_test=50, flip=0)
    with pytest.raises(ParamError, match=r"metric 'fidelity'\.n_queries: -1 is out of range, expected >= 0"):
        Fidelity(n_queries=-1)
    with pytest.raises(ValueError, match="concept"):
        Fidelity(n_queries=0)(ruleset([], space="concepts"), ctx)


def test_rule_size_counts_rules_and_literals():
    single = {"m": 1, "literals": [{"feature": 1, "op": "<=", "threshold": 0.0}]}
    two_of_three = {"m": 2, "literals": [{"feature": j, "op": ">", "threshold": 0.0} for j in range(3)]}
    rules = [{"conditions": [single], "prediction": 0, "support": 3},
             {"conditions": [two_of_three], "prediction": 1, "support": 2},
             {"conditions": [single, single], "prediction": 1, "support": 1}]
    assert RuleSize()(ruleset(rules)) == {"rule_size": 3.0, "rule_size.antecedents": 2.0}
    assert RuleSize()(ruleset([])) == {"rule_size": 0.0, "rule_size.antecedents": 0.0}


def test_tree_metrics_read_the_tree():
    record = ruleset([], tree={"depth": 3, "n_leaves": 5})
    assert TreeDepth()(record) == {"tree_depth": 3.0} and NLeaves()(record) == {"n_leaves": 5.0}
    with pytest.raises(ValueError, match="no tree"):
        TreeDepth()(ruleset([]))


def test_metrics_apply_as_the_catalogue_says():
    trepan = registry.get("trepan")
    assert Fidelity.applies(trepan, INFO) and TreeDepth.applies(trepan, INFO) and NLeaves.applies(trepan, INFO)
    assert not RuleSize.applies(trepan, INFO)      # trepan is judged by tree size, not rule_size
    assert Fidelity.higher_is_better is True
    assert RuleSize.higher_is_better is TreeDepth.higher_is_better is NLeaves.higher_is_better is False


def _monk_rules(rule_list, default=0):
    from nnxai.data import monks

    return RuleSet(rules=rule_list, default=default, feature_names=monks.FEATURE_NAMES,
                   class_names=monks.CLASS_NAMES, feature_space="inputs")


def test_rule_recovery_is_one_only_for_the_planted_rule():
    """MONK-1's rule as a decision list is recovered (1, agreement 1); dropping its a5 = 1 clause is not
    (0, agreement 1 - 72/432: the a5 = 1 robots with a1 != a2 are lost); another space is an error."""
    from types import SimpleNamespace

    from nnxai.data import DATASETS, monks
    from nnxai.metrics.rules import RuleRecovery

    info = DATASETS["monks1"]
    ctx = SimpleNamespace(info=info)
    equal = {"equal": [list(monks.GROUPS[0]), list(monks.GROUPS[1])], "op": "==", "names": ["a1", "a2"]}
    a5 = {"feature": monks.FEATURE_NAMES.index("a5=1"), "op": ">", "threshold": 0.5}
    whole = _monk_rules([{"conditions": [{"m": 1, "literals": [equal, a5]}], "prediction": 1}])
    out = RuleRecovery()(whole, ctx)
    assert out["rule_recovery"] == 1.0 and np.mean(out["rule_recovery.agreement"].values) == 1.0
    half = _monk_rules([{"conditions": [{"m": 1, "literals": [equal]}], "prediction": 1}])
    out = RuleRecovery()(half, ctx)
    assert out["rule_recovery"] == 0.0
    assert np.mean(out["rule_recovery.agreement"].values) == pytest.approx(1 - 72 / 432)
    assert RuleRecovery.why_not(registry.get("trepan"), INFO) == "toy has no planted rule"
    assert RuleRecovery.why_not(registry.get("trepan"), info) is None
    concepts = RuleSet(rules=[], default=0, feature_names=["c"], class_names=["no", "yes"], feature_space="concepts")
    with pytest.raises(ValueError, match="read 'concepts'.*reads 'inputs'"):
        RuleRecovery()(concepts, ctx)


def test_the_shapes_rule_on_its_concept_grid():
    from types import SimpleNamespace

    from nnxai.data import DATASETS, shapes
    from nnxai.metrics.rules import RuleRecovery

    info = DATASETS["shapes"]
    stripes = {"feature": shapes.CONCEPT_FEATURES.index("texture=stripes"), "op": ">", "threshold": 0.5}
    not_triangle = {"feature": shapes.CONCEPT_FEATURES.index("shape=triangle"), "op": "<=", "threshold": 0.5}
    rules = RuleSet(rules=[{"conditions": [{"m": 2, "literals": [stripes, not_triangle]}], "prediction": 1}],
                    default=0, feature_names=shapes.CONCEPT_FEATURES, class_names=list(shapes.CLASS_NAMES),
                    feature_space="concepts")
    assert info.planted_rule.space.shape == (486, 10) and not info.planted_rule.exhaustive
    assert RuleRecovery()(rules, SimpleNamespace(info=info))["rule_recovery"] == 1.0
    stripes_only = RuleSet(rules=[{"conditions": [{"m": 1, "literals": [stripes]}], "prediction": 1}], default=0,
                           feature_names=shapes.CONCEPT_FEATURES, class_names=list(shapes.CLASS_NAMES),
                           feature_space="concepts")
    out = RuleRecovery()(stripes_only, SimpleNamespace(info=info))
    assert out["rule_recovery"] == 0.0 and np.mean(out["rule_recovery.agreement"].values) == pytest.approx(5 / 6)
