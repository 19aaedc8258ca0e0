"""GRG [85]: the greedy covering against an exhaustive search of all subspaces on tiny tables, the paper's
criteria on a table worked by hand, exact conditions, a real-valued input, and MONK-1/MONK-3 from trained
MLPs (rule recovery, fidelity, size)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit, monks
from nnxai.explanations import RuleSet
from nnxai.explanations.records import condition_holds
from nnxai.methods.base import ExplainContext
from nnxai.methods.rule.pedagogical import _attributes as attr_ops
from nnxai.methods.rule.pedagogical.grg import GreedyRuleGeneration, Table, best_rule, greedy_cover
from nnxai.metrics.rules import Fidelity, RuleRecovery, RuleSize
from nnxai.ops.feature_space import predict_classes

from rule_helpers import monks_context

PARAMS = {"n_bins": 3, "max_samples": 300, "max_rules": 30}     # the default profile's


# -- the exhaustive reference: every subspace of a tiny table ----------------------------------------------

def value_sets(attr: attr_ops.Attribute) -> list[tuple[int, ...]]:
    """Every condition GRG may put on an attribute: a non-empty subset (categorical), an interval (ordinal)."""
    if attr.kind == "ordinal":
        return [tuple(range(lo, hi + 1)) for lo in range(attr.card) for hi in range(lo, attr.card)]
    return [s for r in range(1, attr.card + 1) for s in itertools.combinations(range(attr.card), r)]


def exhaustive_best(table: Table, uncovered: np.ndarray):
    """The best consistent subspace by the paper's criteria (samples newly covered, size, fewer attributes),
    over all of them; ``None`` when none covers an uncovered sample."""
    best = None
    for combo in itertools.product(*[value_sets(a) for a in table.attrs]):
        inside = np.all([np.isin(table.values[:, a], s) for a, s in enumerate(combo)], axis=0)
        if len(set(table.labels[inside])) != 1 or not (inside & uncovered).any():
            continue
        key = (float(table.weights[inside & uncovered].sum()), round(sum(np.log(len(s)) for s in combo), 9),
               -sum(len(s) < a.card for s, a in zip(combo, table.attrs)))
        if best is None or key > best[0]:
            best = (key, combo, int(table.labels[inside][0]))
    return best


def exhaustive_cover(table: Table) -> list:
    """Sequential covering that takes the exhaustive best subspace at every step."""
    uncovered, out = np.ones(len(table.values), dtype=bool), []
    while uncovered.any():
        key, combo, cls = exhaustive_best(table, uncovered)
        uncovered &= ~np.all([np.isin(table.values[:, a], s) for a, s in enumerate(combo)], axis=0)
        out.append((combo, cls))
    return out


def combo_of(table: Table, box: np.ndarray) -> tuple:
    off = table.offsets
    return tuple(tuple(int(v) for v in np.flatnonzero(box[off[a]:off[a + 1]])) for a in range(len(table.attrs)))


def key_of(rule) -> tuple:
    return (rule.covered, round(rule.log_size, 9), -rule.n_attributes)


def random_table(rng: np.random.Generator) -> Table:
    cards = rng.integers(2, 4, size=3)
    attrs = [attr_ops.Attribute(f"a{i}", "ordinal" if rng.random() < 0.3 else "group", (i,),
                                tuple(str(v) for v in range(c))) for i, c in enumerate(cards)]
    space = np.array(list(itertools.product(*[range(c) for c in cards])))
    n = int(rng.integers(4, min(12, len(space)) + 1))
    values = space[np.sort(rng.choice(len(space), n, replace=False))]
    return Table(attrs, values, rng.integers(0, 2, size=n), np.ones(n), 2)


def test_hand_worked_table_matches_the_exhaustive_covering():
    """a in {0,1,2}, b in {0,1}, c an ordinal in {0,1,2}; class 1 iff a = 0 and c >= 1, all 18 points.
    Best rule 1: a in {1,2} -> 0 (12 samples).  Then a = 0 and c in {1,2} -> 1 (4 samples) beats c = 0 -> 0
    (2 new samples, subspace 6).  Then c = 0 -> 0 (size 6 beats a = 0 and c = 0, size 2)."""
    attrs = [attr_ops.Attribute("a", "group", (0, 1, 2), ("0", "1", "2")),
             attr_ops.Attribute("b", "group", (3, 4), ("0", "1")),
             attr_ops.Attribute("c", "ordinal", (5,), ("0", "1", "2"), edges=(0.5, 1.5))]
    values = np.array(list(itertools.product(range(3), range(2), range(3))))
    labels = ((values[:, 0] == 0) & (values[:, 2] >= 1)).astype(np.int64)
    table = Table(attrs, values, labels, np.ones(len(values)), 2)
    rules, default = greedy_cover(table, max_rules=10)
    got = [(combo_of(table, r.box), r.prediction) for r in rules]
    assert got == [(((1, 2), (0, 1), (0, 1, 2)), 0), (((0,), (0, 1), (1, 2)), 1), (((0, 1, 2), (0, 1), (0,)), 0)]
    assert [r.covered for r in rules] == [12.0, 4.0, 2.0] and default == 0
    assert got == exhaustive_cover(table)
    # with one rule allowed, the default is the majority of what is left uncovered (4 of class 1, 2 of 0)
    one, default_one = greedy_cover(table, max_rules=1)
    assert len(one) == 1 and default_one == 1


def test_greedy_rule_against_exhaustive_search_on_random_tables():
    """Each rule GRG generates is consistent and maximal (no single value can be added), never better than
    the exhaustive optimum, and equal to it on most tiny tables (the per-seed hill climb is a heuristic:
    194 of these 200 tables, and it can miss: asserted below on one where it does)."""
    rng = np.random.default_rng(0)
    matches, missed = 0, None
    for _ in range(200):
        table = random_table(rng)
        uncovered = np.ones(len(table.values), dtype=bool)
        rule = best_rule(table, uncovered)
        inside = attr_ops.covers(table.attrs, rule.box, table.values)
        assert set(table.labels[inside]) == {rule.prediction}                       # consistent
        for v in np.flatnonzero(~rule.box):                                          # maximal
            wider = rule.box.copy()
            wider[v] = True
            a = int(np.searchsorted(table.offsets, v, side="right") - 1)
            block = wider[table.offsets[a]:table.offsets[a + 1]]
            if table.attrs[a].kind == "ordinal" and np.ptp(np.flatnonzero(block)) + 1 != block.sum():
                continue                                                             # not an interval
            assert len(set(table.labels[attr_ops.covers(table.attrs, wider, table.values)])) > 1
        best = exhaustive_best(table, uncovered)
        assert key_of(rule) <= best[0]
        matches += key_of(rule) == best[0]
        if key_of(rule)[0] < best[0][0] and missed is None:
            missed = (key_of(rule), best[0])
    assert matches >= 190, matches
    assert missed is not None and missed[0][0] < missed[1][0]     # a case where greedy covers fewer samples


def test_conditions_hold_exactly_on_the_box():
    """The RuleSet conditions of a box hold on exactly the encoded points inside it (one-hot groups, a lone
    indicator column, an ordinal's thresholds)."""
    attrs = [attr_ops.Attribute("g", "group", (0, 1, 2, 3), ("1", "2", "3", "4")),
             attr_ops.Attribute("i", "indicator", (4,), ("0", "1")),
             attr_ops.Attribute("r", "ordinal", (5,), ("b0", "b1", "b2", "b3"), edges=(-1.0, 0.0, 2.0))]
    points = np.array(list(itertools.product(range(4), range(2), range(4))))
    x = np.zeros((len(points), 6))
    x[np.arange(len(x)), points[:, 0]] = 1.0
    x[:, 4] = points[:, 1]
    x[:, 5] = np.array([-2.0, -0.5, 1.0, 3.0])[points[:, 2]]
    np.testing.assert_array_equal(attr_ops.encode(attrs, x), points)
    rng = np.random.default_rng(1)
    for _ in range(100):
        blocks = [rng.random(4) < 0.6, rng.random(2) < 0.6]
        lo = int(rng.integers(0, 4))
        blocks.append((np.arange(4) >= lo) & (np.arange(4) <= rng.integers(lo, 4)))
        if not all(b.any() for b in blocks):
            continue
        box = np.concatenate(blocks)
        holds = np.all([condition_holds(c, x) for c in attr_ops.conditions(attrs, box)] or [np.ones(len(x), bool)],
                       axis=0)
        np.testing.assert_array_equal(holds, attr_ops.covers(attrs, box, points))
    # the shorter form: a2 != 3 is one literal, "a in {1}" one literal
    assert attr_ops.value_conditions(attrs[0], np.array([1, 1, 0, 1], bool)) == [
        {"m": 1, "literals": [{"feature": 2, "op": "<=", "threshold": 0.5}]}]


def test_real_valued_input_is_cut_at_its_quantiles():
    """A hand-set network that answers x0 > median(x0): with 2 bins the cut is that median, and GRG's two
    rules reproduce the network on fresh inputs exactly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    cut = float(np.quantile(x[:, 0], 0.5, method="inverted_cdf"))
    net = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid(), nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1e4, 0.0, 0.0]]))
        net[0].bias.fill_(-1e4 * cut - 1e-2)
        net[2].weight.copy_(torch.tensor([[0.0], [10.0]]))
        net[2].bias.copy_(torch.tensor([0.0, -5.0]))
    net.architecture = "mlp"
    info = DatasetInfo("toy", "tabular", 2, (3,), False, False, "test toy")
    split = PreparedSplit(x=torch.from_numpy(x), y=torch.zeros(200, dtype=torch.long), meta={})
    ctx = ExplainContext(model=net.eval(), dataset="toy", model_id="toy", info=info, train=split, test=split)
    record = GreedyRuleGeneration(**{**PARAMS, "n_bins": 2}).explain(ctx)
    assert len(record.rules) == 2 and all(len(r["conditions"]) == 1 for r in record.rules)
    assert {c["literals"][0]["threshold"] for r in record.rules for c in r["conditions"]} == {cut}
    fresh = rng.normal(size=(3000, 3))
    np.testing.assert_array_equal(record.predict(fresh), predict_classes(net, fresh))


# -- MONK's problems from trained MLPs ---------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_monks1_rule_recovered(activation):
    """MONK-1 (a1 = a2 or a5 = 1): GRG's 7 propositional rules are the planted rule on all 432 robots:
    a5 = 1 -> yes, three "a2 = k, a1 != k, a5 != 1 -> no", three "a1 = k and a2 = k -> yes"."""
    ctx = monks_context(1, activation)
    record = GreedyRuleGeneration(**PARAMS).explain(ctx)
    assert RuleRecovery()(record, ctx)["rule_recovery"] == 1.0, record.text
    size = RuleSize()(record)
    assert size["rule_size"] == 7 and size["rule_size.antecedents"] == pytest.approx(16 / 7)
    network = predict_classes(ctx.model, ctx.test.x)
    fidelity = Fidelity(n_queries=0)(record, ctx)
    # the rules are the planted rule, so their fidelity is the network's test accuracy
    assert float(fidelity["fidelity"]) == pytest.approx(np.mean(network == ctx.test.y.numpy()))
    assert float(fidelity["fidelity.label_accuracy"]) == 1.0
    a5_is_1 = {"m": 1, "literals": [{"feature": 11, "op": ">", "threshold": 0.5}]}
    assert record.rules[0]["conditions"] == [a5_is_1]


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_monks3_not_recovered_because_the_network_memorises_the_noise(activation):
    """MONK-3: the MLP fits the 6 flipped training labels too, and GRG's rules (each consistent with every
    training robot, as the paper requires) carve them out: the planted rule is not recovered (~94 % of the
    432 robots agree).  The same robots labelled by the planted rule itself give GRG the planted rule in 5
    rules: the failure is the network's memorised noise, not the covering."""
    ctx = monks_context(3, activation)
    flipped = ctx.train.meta["flipped_train_rows"]
    assert len(flipped) == 6
    record = GreedyRuleGeneration(**PARAMS).explain(ctx)
    recovery = RuleRecovery()(record, ctx)
    assert recovery["rule_recovery"] == 0.0
    assert 0.9 <= float(recovery["rule_recovery.agreement"]) < 1.0
    assert float(Fidelity(n_queries=0)(record, ctx)["fidelity"]) >= 0.9
    assert 10 <= len(record.rules) <= PARAMS["max_rules"]

    planted = DATASETS["monks3"].planted_rule
    x = ctx.train.x.numpy().astype(np.float64)
    attrs = [attr_ops.Attribute(f"a{k + 1}", "group", cols, tuple(str(v + 1) for v in range(len(cols))))
             for k, cols in enumerate(monks.GROUPS)]
    patterns, classes, weights, _ = attr_ops.pattern_table(attr_ops.encode(attrs, x),
                                                           monks.label(3, monks.attributes_of(x)), 2)
    rules, default = greedy_cover(Table(attrs, patterns, classes, weights, 2), PARAMS["max_rules"])
    clean = RuleSet(rules=[{"conditions": attr_ops.conditions(attrs, r.box), "prediction": r.prediction,
                                     "support": 0} for r in rules], default=default,
                             feature_names=monks.FEATURE_NAMES, class_names=monks.CLASS_NAMES, feature_space="inputs")
    assert len(rules) == 5
    np.testing.assert_array_equal(clean.predict(planted.space), planted.labels)
