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
