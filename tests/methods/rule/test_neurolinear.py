"""NeuroLinear [84]: Chi2 (its statistic against scipy's, a planted cut, its feature selection), the
hyperplane of a hidden interval, a planted oblique boundary, exactness on the training rows, MONK-1/MONK-3."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import special, stats

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit
from nnxai.explanations.records import literal_holds
from nnxai.methods.base import ExplainContext
from nnxai.methods.rule.decompositional import _chi2, _setiono
from nnxai.methods.rule.decompositional.neurolinear import NeuroLinear, interval_literals
from nnxai.metrics.rules import Fidelity, RuleRecovery, RuleSize
from nnxai.models import build_network
from nnxai.ops.feature_space import predict_classes
from rule_helpers import fitted_mlp

#: The default profile's parameters.
PARAMS = {"eps1": 0.1, "eps2": 1.0e-4, "beta": 10.0, "eta1": 0.35, "eta2": 0.1, "min_accuracy": 0.95,
          "iterations": 100, "max_rows": 500, "inconsistency": 0.05}


# -- step 2: Chi2 ----------------------------------------------------------------------------------------------

def test_pair_statistic_is_pearsons_chi2():
    a = np.array([[12.0, 3.0, 5.0], [2.0, 9.0, 4.0]])
    b = np.array([[4.0, 4.0, 1.0], [7.0, 7.0, 7.0]])
    for i in range(2):
        table = np.stack([a[i], b[i]])
        expected = stats.chi2_contingency(table, correction=False)[0]
        assert _chi2.pair_chi2(a[i:i + 1], b[i:i + 1])[0] == pytest.approx(expected)
    # an empty class column: ChiMerge's expected count 0.1 instead of 0
    assert _chi2.pair_chi2(np.array([[3.0, 0.0]]), np.array([[1.0, 0.0]]))[0] == pytest.approx(0.2)


def test_inconsistency_rate_by_hand():
    codes = np.array([[0, 1], [0, 1], [0, 1], [1, 0], [1, 0], [2, 2]])
    assert _chi2.inconsistency(codes, np.array([0, 0, 1, 1, 0, 1]), 2) == pytest.approx(2 / 6)


def test_planted_cut_and_feature_selection():
    """Class 1 iff a > 0.5 (a: 200 evenly spaced values); b is uninformative by construction (its order
    alternates the classes).  Chi2 (delta = 0) cuts a once, midway between the largest value of class 0 and
    the smallest of class 1, and merges b into one interval (Chi2's feature selection)."""
    a = np.linspace(0.0, 1.0, 200)
    labels = (a > 0.5).astype(np.int64)
    b = np.empty(200)
    b[labels == 0], b[labels == 1] = np.arange(0, 200, 2), np.arange(1, 200, 2)
    rng = np.random.default_rng(0)
    order = rng.permutation(200)                       # the row order does not matter
    cuts = _chi2.chi2(np.column_stack([a, b])[order], labels[order], 2, 0.0)
    assert len(cuts[0]) == 1 and len(cuts[1]) == 0
    assert cuts[0][0] == pytest.approx((a[99] + a[100]) / 2)


def test_chance_intervals_survive_as_in_chimerge():
    """Uniform noise b beside a > 0.3: ChiMerge keeps an interval whose chi^2 with its neighbours exceeds
    even the smallest level's quantile (15.1 at 0.0001): 9 values of b, 8 of class 0 where a quarter is
    expected.  Chi2 tests adjacent pairs, not the attribute: such chance cuts are its behaviour."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=300), rng.uniform(size=300)
    cuts = _chi2.chi2(np.column_stack([a, b]), (a > 0.3).astype(np.int64), 2, 0.0)
    assert len(cuts[0]) == 1 and len(cuts[1]) == 2
    inside = (b > cuts[1][0]) & (b <= cuts[1][1])
    assert inside.sum() == 9 and (a[inside] <= 0.3).sum() == 8


def test_interval_is_exactly_a_pair_of_half_spaces():
    """sigmoid(w . x + b) in (t_lo, t_hi] iff the literals hold (w restricted to the unit's connections)."""
    net = _setiono.Net([torch.tensor([[1.5, 0.0, -2.0], [0.0, 0.7, 0.0]], dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64)],
                       [torch.tensor([0.3, -0.2], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)],
                       [torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64)])
    x = np.random.default_rng(1).normal(size=(5000, 3)) * 2
    h = special.expit(x @ net.weights[0].numpy().T + net.biases[0].numpy())
    cuts = np.array([0.2, 0.5, 0.9])
    for unit, (lo, hi) in itertools.product((0, 1), [(0, 0), (1, 2), (1, 3), (3, 3)]):
        literals = interval_literals(net, unit, cuts, lo, hi)
        inside = np.ones(len(x), dtype=bool)
        for lit in literals:
            inside &= literal_holds(lit, x)
        lower = cuts[lo - 1] if lo else -np.inf
        upper = cuts[hi] if hi < len(cuts) else np.inf
        np.testing.assert_array_equal(inside, (h[:, unit] > lower) & (h[:, unit] <= upper))
        assert len(literals) == (lo > 0) + (hi < len(cuts))
    assert "weights" in interval_literals(net, 0, cuts, 1, 1)[0]                 # two inputs: oblique
    assert interval_literals(net, 1, cuts, 1, 3)[0]["feature"] == 1              # one input: axis-parallel


# -- the whole method ---------------------------------------------------------------------------------------

def table_context(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, n_classes: int) -> ExplainContext:
    info = DatasetInfo("toy", "tabular", n_classes, (x.shape[1],), False, False, "generated")
    meta = {"class_names": [f"c{k}" for k in range(n_classes)], "feature_names": [f"x{j}" for j in range(x.shape[1])]}
    split = lambda a, b: PreparedSplit(x=torch.tensor(a, dtype=torch.float32), y=torch.tensor(b), meta=meta)  # noqa: E731
    net = fitted_mlp(split(x, y).x, split(x, y).y, n_classes=n_classes)
    return ExplainContext(model=net, dataset="toy", model_id="m", info=info, train=split(x, y),
                          test=split(x_test, y_test), seed=0)


def test_planted_oblique_boundary():
    """Rows labelled by x0 + x1 > 0 (four standard normal inputs, 400 training rows): the first rule is the
    planted half-space as one oblique literal over x0 and x1, "-w . x > t -> class 0", its normal within a few
    degrees of (1, 1) and its offset near 0 (one machine measured 1.3 degrees, offset below 0.02, a second rule
    of 3 rows, fidelity 0.99 on 4000 fresh rows; the pruned network, and so the minor rules, depend on the
    trained weights, which differ across CPUs)."""
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(400, 4)), rng.normal(size=(4000, 4))
    ctx = table_context(x, (x[:, 0] + x[:, 1] > 0).astype(np.int64), x_test,
                        (x_test[:, 0] + x_test[:, 1] > 0).astype(np.int64), 2)
    record = NeuroLinear(**PARAMS).explain(ctx)
    assert record.default == 1 and record.rules[0]["prediction"] == 0 and record.rules[0]["support"] >= 180
    (literal,), = [c["literals"] for c in record.rules[0]["conditions"]]
    weights = dict(literal["weights"])
    assert sorted(weights) == [0, 1] and literal["op"] == ">"
    w = -np.array([weights[0], weights[1]])                               # class 0 where w . x < -t
    angle = np.degrees(np.arccos(w @ np.ones(2) / np.linalg.norm(w) / np.sqrt(2)))
    assert angle < 5.0
    assert abs(literal["threshold"]) / np.linalg.norm(w) < 0.05
    assert float(Fidelity(n_queries=0)(record, ctx)["fidelity"]) >= 0.97


def test_rules_equal_the_pruned_network_on_the_training_rows():
    """With delta = 0 the discretised activations determine the pruned network's class on every training
    row, X2R's rules are perfect on them and each interval is exactly its half-spaces: the rule list
    classifies every training row as the pruned network (rebuilt from the record) does.  Three classes
    (the largest of three linear scores), three inputs."""
    rng = np.random.default_rng(1)
    scores = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0], [-1.0, -1.0, 0.5]])
    x, x_test = rng.normal(size=(300, 3)), rng.normal(size=(2000, 3))
    ctx = table_context(x, (x @ scores).argmax(1), x_test, (x_test @ scores).argmax(1), 3)
    record = NeuroLinear(**{**PARAMS, "inconsistency": 0.0}).explain(ctx)
    pruned = _setiono.Net.from_json(record.meta["neurolinear"]["network"])
    np.testing.assert_array_equal(record.predict(x), pruned.logits(torch.from_numpy(x)).argmax(1).numpy())
    assert record.meta["neurolinear"]["inconsistency"] == 0.0
    # one machine measured six rules and fidelity 0.96; the count depends on the trained weights
    assert float(Fidelity(n_queries=0)(record, ctx)["fidelity"]) >= 0.9


def monks_context(problem: int) -> ExplainContext:
    info = DATASETS[f"monks{problem}"]
    splits, meta = info.build({"train": None, "val": None, "test": None}, 0, None)
    split = {s: PreparedSplit(x=torch.from_numpy(splits[s]["x"]), y=torch.from_numpy(splits[s]["y"]), meta=meta)
             for s in ("train", "test")}
    net = fitted_mlp(split["train"].x, split["train"].y)
    assert (predict_classes(net, split["train"].x) == split["train"].y.numpy()).all()
    return ExplainContext(model=net, dataset=info.name, model_id="sigmoid", info=info, train=split["train"],
                          test=split["test"], seed=0)


def keeps_the_required_accuracy(record, ctx) -> bool:
    """[84]'s rules keep the pruned network's accuracy on the training rows up to what the discretisation may
    lose: the pruned network agrees with the given one on at least ``min_accuracy`` of them (step 1), Chi2
    loses at most ``inconsistency`` of them (step 2), and X2R's rules are right on every row of its table of
    majority classes (step 3)."""
    agree = np.mean(record.predict(ctx.train.x.numpy()) == predict_classes(ctx.model, ctx.train.x))
    return float(agree) >= PARAMS["min_accuracy"] - PARAMS["inconsistency"]


def recovery_is_agreement_on_every_robot(record, ctx, problem: int) -> float:
    """rule_recovery is 1 exactly when the rules classify all 432 robots as the planted rule; its agreement."""
    rule = DATASETS[f"monks{problem}"].planted_rule
    space, labels = np.array(rule.space), rule.labels
    agree = float(np.mean(record.predict(space) == labels))
    recovery = RuleRecovery()(record, ctx)
    assert float(recovery["rule_recovery.agreement"]) == pytest.approx(agree)
    assert recovery["rule_recovery"] == float(agree == 1.0)
    return agree


def test_monks1_rules_keep_the_accuracy_and_recover_the_rule_only_if_they_equal_it():
    """MONK-1.  What [84] claims holds for any network that fits: the given network is left unchanged and the
    oblique rules keep the pruned network's accuracy on the training rows (see keeps_the_required_accuracy).
    Recovery is not claimed and differs between networks: the hidden -> output rules are generated from the
    "small data set" of the training robots' discretised activations, which need not cover every combination,
    and X2R classifies an unseen combination by generalisation, not by the network.  One machine measured 8
    distinct tuples among the 124 robots, none with a1 = a2 = 2 and a5 = 1, so the rules were wrong on those
    12 robots (420 of 432, not recovered; the pruned network itself was the planted rule); another recovered
    the rule (fidelity 0.988); the default run's network gave fidelity 0.972, not recovered.  So the test
    asserts that rule_recovery is 1 exactly when the rules agree with the planted rule on every robot."""
    ctx = monks_context(1)
    state = {n: v.clone() for n, v in ctx.model.state_dict().items()}
    record = NeuroLinear(**PARAMS).explain(ctx)
    for n, v in ctx.model.state_dict().items():
        assert torch.equal(v, state[n]), n
    assert keeps_the_required_accuracy(record, ctx)
    recovery_is_agreement_on_every_robot(record, ctx, 1)
    assert float(Fidelity(n_queries=0)(record, ctx)["fidelity"]) >= 0.9
    assert RuleSize()(record)["rule_size"] >= 1


def test_monks3_rules_keep_the_accuracy_of_a_network_that_memorised_the_noise():
    """MONK-3, 5 % of its training labels flipped, a network fitted until it memorises them: the rules keep
    the pruned network's accuracy on the training rows ([84]'s claim), and recover the planted rule exactly
    when they agree with it on every robot.  One machine measured the rules "a2=3 and (a2=1, a4=2, a5=3
    hyperplane) -> no", "(a3=2, a4=3, a5=4 hyperplane) -> no", else yes: wrong on the 12 robots with
    a2 = a4 = a5 = 3 (420 of 432, not recovered; the network itself 409), fidelity 399 of 432; the counts
    depend on the trained weights, which differ across CPUs."""
    ctx = monks_context(3)
    record = NeuroLinear(**PARAMS).explain(ctx)
    assert keeps_the_required_accuracy(record, ctx)
    recovery_is_agreement_on_every_robot(record, ctx, 3)
    assert float(Fidelity(n_queries=0)(record, ctx)["fidelity"]) >= 0.85
    assert RuleSize()(record)["rule_size"] >= 1


def test_a_constant_network_is_pruned_to_nothing():
    """A network that answers one class everywhere: every connection goes, Chi2 has no unit, no rule."""
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    net = build_network("mlp", n_features=3, n_classes=2, hidden=[8, 6], activation="sigmoid")
    with torch.no_grad():
        net.classifier.bias.copy_(torch.tensor([50.0, 0.0]))
    x = torch.tensor(rng.normal(size=(50, 3)), dtype=torch.float32)
    split = PreparedSplit(x=x, y=torch.zeros(50, dtype=torch.long), meta={"class_names": ["a", "b"]})
    info = DatasetInfo("toy", "tabular", 2, (3,), False, False, "generated")
    record = NeuroLinear(**PARAMS).explain(ExplainContext(model=net.eval(), dataset="toy", model_id="m", info=info,
                                                          train=split, test=split, seed=0))
    assert record.rules == [] and record.default == 0
    assert record.meta["neurolinear"]["pruned"]["connections"] == 0


def test_applicability():
    traits = {"architecture": "mlp", "activation": "sigmoid", "gap_head": False, "linear_head": True}
    for name in ("iris", "wine", "breast_cancer", "causal", "planted", "monks1"):
        assert NeuroLinear.why_not(DATASETS[name], traits) is None
    assert "sigmoid" in NeuroLinear.why_not(DATASETS["iris"], {**traits, "activation": "relu"})
    assert "tabular" in NeuroLinear.why_not(DATASETS["shapes"], {**traits, "architecture": "cnn"})
