"""The interpretable partial substitute (HyRS) [80]: the objective's incremental gains against its definition,
the annealing against an exhaustive search of small rule spaces, a planted region that the rules must
cover exactly, MONK-1/MONK-3 from trained MLPs (coverage, hybrid accuracy, fidelity, rule recovery, size),
the concept rules of ``shapes``, and the record's abstentions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit
from nnxai.explanations import RULE_INFERENCE, RuleSet
from nnxai.methods.base import ExplainContext
from nnxai.methods.rule.local import _hyrs
from nnxai.methods.rule.local.partial_substitution import PartialSubstitution
from nnxai.metrics.coverage import Coverage, HybridAccuracy
from nnxai.metrics.rules import Fidelity, RuleRecovery, RuleSize
from nnxai.models import build_network
from nnxai.ops.feature_space import predict_classes, split_features

from rule_helpers import fitted_mlp

#: The default profile's parameters (configs/config.yaml).
PARAMS = {"theta_rule": 0.01, "theta_coverage": 0.1, "target": "labels", "min_support": 0.05, "max_len": 3,
          "n_rules": 500, "n_bins": 4, "n_iterations": 2000, "t0": 0.01}


def small_problem(seed: int, n_rules: int = 6):
    """60 rows of 5 random bits, a target with structure and noise, a network right on 90 % of the rows."""
    rng = np.random.default_rng(seed)
    x = (rng.random((60, 5)) < 0.5).astype(np.float64)
    target = ((x[:, 0] * x[:, 1] + x[:, 2]) > 0).astype(np.int64)
    target[rng.random(60) < 0.1] ^= 1
    network = np.where(rng.random(60) < 0.9, target, 1 - target)
    rules = _hyrs.mine(_hyrs.binarise(x, 4), target, 2, 0.05, 2, n_rules)
    return rules, target, network


@pytest.mark.parametrize("seed", range(3))
def test_add_gains_are_objective_differences(seed):
    """The vectorised gain of adding each rule equals L(S ∪ {r}) − L(S) computed from scratch."""
    rules, target, network = small_problem(seed, n_rules=20)
    hybrid = _hyrs.Hybrid(rules, target, network, 2, 0.01, 0.3)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        selected = sorted(rng.choice(len(rules.itemsets), size=3, replace=False).tolist())
        base = hybrid.objective(selected)
        for c in range(2):
            gains = hybrid.add_gains(selected, c)
            for r, gain in zip(hybrid.by_class[c], gains):
                if r not in selected:
                    assert gain == pytest.approx(hybrid.objective(sorted(selected + [r])) - base, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("theta_coverage", [0.05, 0.3, 1.0])
def test_annealing_reaches_the_exhaustive_optimum(seed, theta_coverage):
    """On 12 candidate rules every one of the 4096 selections is scored: the annealing's best objective is
    the minimum (and, for the exact minimisers, coverage grows with θ₂, as [80]'s trade-off says)."""
    rules, target, network = small_problem(seed)
    assert len(rules.itemsets) == 12
    hybrid = _hyrs.Hybrid(rules, target, network, 2, 0.01, theta_coverage)
    exact = min(hybrid.objective(list(s)) for k in range(13) for s in itertools.combinations(range(12), k))
    best, objective = _hyrs.anneal(hybrid, 2000, 0.01, np.random.default_rng(seed))
    assert objective == pytest.approx(exact, abs=1e-12) and hybrid.objective(best) == pytest.approx(objective)


def test_coverage_of_the_optimum_grows_with_theta_coverage():
    """The exact optimum's coverage is non-decreasing in θ₂ (the trade-off [80] sweeps)."""
    rules, target, network = small_problem(0)
    coverage = []
    for theta in (0.0, 0.05, 0.2, 0.5, 1.0, 3.0):
        hybrid = _hyrs.Hybrid(rules, target, network, 2, 0.01, theta)
        best = min((list(s) for k in range(13) for s in itertools.combinations(range(12), k)), key=hybrid.objective)
        coverage.append(hybrid.predict(best)[1].mean())
    assert coverage == sorted(coverage) and coverage[0] < coverage[-1]


# -- a planted region ----------------------------------------------------------------------------------------

class PlantedRegion(nn.Module):
    """Class 1 iff (x0 and x1) or parity(x2..x5): the region x0 = x1 = 1 is simple, the rest is a parity
    that no rule of three literals decides better than a coin."""

    architecture = "mlp"

    def forward(self, x):
        region = x[:, 0] * x[:, 1]
        parity = torch.remainder(x[:, 2:6].sum(1), 2)
        yes = torch.clamp(region + parity, 0, 1)
        return torch.stack([0.5 - yes, yes - 0.5], 1) * 10


def test_planted_region_is_covered_exactly():
    """All 64 inputs, labelled by the network: the one rule worth its cost is ``x0=1 AND x1=1 -> 1`` (a
    rule elsewhere errs on half of what it covers, which costs more than the coverage it buys at θ₂ = 0.1),
    so the rules decide exactly the planted quarter and the network the rest; the hybrid is exact."""
    grid = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))
    net = PlantedRegion()
    split = PreparedSplit(x=grid, y=torch.as_tensor(predict_classes(net, grid)), meta={"class_names": ["no", "yes"]})
    info = DatasetInfo("toy_region", "tabular", 2, (6,), False, False, "planted region")
    ctx = ExplainContext(model=net, dataset="toy_region", model_id="test", info=info, train=split, test=split)
    record = PartialSubstitution(**PARAMS).explain(ctx)
    assert len(record.rules) == 1 and record.rules[0]["prediction"] == 1
    literals = sorted((lit["feature"], lit["op"]) for c in record.rules[0]["conditions"] for lit in c["literals"])
    assert literals == [(0, ">"), (1, ">")]
    decided = record.predict(grid.numpy()) >= 0
    np.testing.assert_array_equal(decided, (grid[:, 0] * grid[:, 1]).numpy() == 1)
    assert float(Coverage()(record, ctx, None)["coverage"]) == 0.25
    assert float(HybridAccuracy()(record, ctx)["hybrid_accuracy"]) == 1.0
    assert record.text == "IF x0=1 AND x1=1 THEN yes\nELSE the network decides (the rules cover 25% of the train split)"


# -- MONK's problems from trained MLPs ---------------------------------------------------------------------


def monks_context(problem: int) -> ExplainContext:
    info = DATASETS[f"monks{problem}"]
    splits, meta = info.build({"train": None, "val": None, "test": None}, 0, None)
    split = {s: PreparedSplit(x=torch.from_numpy(splits[s]["x"]), y=torch.from_numpy(splits[s]["y"]), meta=meta)
             for s in ("train", "test")}
    net = fitted_mlp(split["train"].x, split["train"].y)
    return ExplainContext(model=net, dataset=info.name, model_id="test", info=info, train=split["train"],
                          test=split["test"], seed=0)


def scores(record, ctx) -> dict:
    out = {**Coverage()(record, ctx, None), **HybridAccuracy()(record, ctx), **Fidelity(n_queries=0)(record, ctx),
           **RuleRecovery()(record, ctx), **RuleSize()(record)}
    return {k: float(v) for k, v in out.items()}


def test_monks1_partial_substitute():
    """MONK-1 (clean labels): at θ₁ = 0.01, θ₂ = 0.1 the optimum of [80]'s objective is the planted rule as
    five rules — ``a5=1``, the three ``a1=k AND a2=k`` -> yes, then ``a5!=1`` -> no (after the yes rules) —
    deciding every robot without an error (L = 5 θ₁ = 0.05): four rules either leave the a1 = a2 robots with
    a5 != 1 to the network (L >= 4 θ₁ + θ₂/4 - noise ~ 0.065) or err on them.  So the rules are recovered on
    all 432 robots, cover the whole test split and beat the network (98.8 %); ``fidelity`` is then the
    network's accuracy."""
    ctx = monks_context(1)
    record = PartialSubstitution(**PARAMS).explain(ctx)
    s = scores(record, ctx)
    assert record.meta["hyrs"]["objective"] == pytest.approx(5 * PARAMS["theta_rule"])
    assert s["rule_recovery"] == 1.0 and s["coverage"] == 1.0 and s["rule_size"] == 5
    assert s["hybrid_accuracy"] == 1.0 > s["hybrid_accuracy.network"]
    assert s["fidelity"] == pytest.approx(s["hybrid_accuracy.network"])
    assert record.text.splitlines()[0] == "IF a5=1 THEN yes"
    assert record.text.splitlines()[4] == "IF a5!=1 THEN no"


def test_monks3_partial_substitute():
    """MONK-3 (5 % noisy training labels, which the MLP memorises: 94.7 % on the 432 robots): at θ₂ = 0.1 the
    rules, fitted to the labels as [80] fits them, decide most robots (measured: 85 %) without an error and
    leave the rest to the network, so the hybrid is more accurate than the network — transparency for free;
    not everything is covered (the noisy robots make a full cover cost errors), so no recovery."""
    ctx = monks_context(3)
    record = PartialSubstitution(**PARAMS).explain(ctx)
    s = scores(record, ctx)
    assert s["hybrid_accuracy.rules"] == 1.0 and 0.5 <= s["coverage"] < 1.0
    assert s["hybrid_accuracy"] > s["hybrid_accuracy.network"] and s["rule_recovery"] == 0.0
    assert s["rule_size"] <= 6


# -- concept features of an image set ------------------------------------------------------------------------

def test_shapes_concept_rules_are_the_planted_rule():
    """``shapes`` (label: stripes and not triangle): over the concept table, with the labels as target, the
    substitute is the planted rule itself and decides every image, so it is recovered on the concept grid
    and the hybrid is exact whatever the CNN (here an untrained one)."""
    info = DATASETS["shapes"]
    splits, meta = info.build({"train": 400, "val": 10, "test": 100}, 0, None)
    split = {s: PreparedSplit(x=torch.from_numpy(splits[s]["x"]), y=torch.from_numpy(splits[s]["y"]),
                              concepts=splits[s]["concepts"], meta=meta) for s in ("train", "test")}
    torch.manual_seed(0)
    cnn = build_network("cnn", in_channels=3, n_classes=2, widths=[4, 4, 4], activation="relu").eval()
    ctx = ExplainContext(model=cnn, dataset="shapes", model_id="test", info=info, train=split["train"],
                         test=split["test"], seed=0)
    record = PartialSubstitution(**PARAMS).explain(ctx)
    assert record.feature_space == "concepts"
    assert float(RuleRecovery()(record, ctx)["rule_recovery"]) == 1.0
    assert float(Coverage()(record, ctx, None)["coverage"]) == 1.0
    assert float(HybridAccuracy()(record, ctx)["hybrid_accuracy"]) == 1.0


def test_record_abstains_where_no_rule_fires():
    """The inference ``partial_substitute`` returns −1 (the network decides) where no rule fires, the first
    firing rule's class elsewhere; the record survives a save and load."""
    lit = {"feature": 0, "op": ">", "threshold": 0.5}
    rules = RuleSet(rules=[{"conditions": [{"m": 1, "literals": [lit]}], "prediction": 1, "support": 3}], default=0,
                    feature_names=["a"], class_names=["no", "yes"], feature_space="inputs",
                    inference={"type": "partial_substitute"})
    assert "partial_substitute" in RULE_INFERENCE
    np.testing.assert_array_equal(rules.predict(np.array([[1.0], [0.0]])), [1, -1])


def test_fidelity_scores_a_substitute_where_it_decides(tmp_path):
    """``fidelity`` of a substitute is its agreement with the network on the inputs its rules decide (they
    abstain, -1, elsewhere: ``coverage`` says how often); the hybrid's agreement, network included, is
    hybrid_accuracy.fidelity.  MONK-3: the rules abstain on ~15 % of the robots."""
    ctx = monks_context(3)
    record = PartialSubstitution(**PARAMS).explain(ctx)
    path = record.save(tmp_path / "record.json")
    again = RuleSet.load(path)
    features = split_features(ctx.test, "inputs")
    np.testing.assert_array_equal(again.predict(features), record.predict(features))
    network = predict_classes(ctx.model, ctx.test.x)
    decided = record.predict(features)
    assert (decided < 0).any()
    assert float(Fidelity(n_queries=0)(record, ctx)["fidelity"]) == pytest.approx(
        np.mean((decided == network)[decided >= 0]))
    assert float(HybridAccuracy()(record, ctx)["hybrid_accuracy.fidelity"]) == pytest.approx(
        np.mean(np.where(decided >= 0, decided, network) == network))
