"""DeepRED [9]: the merge step worked by hand (redundant terms, unsatisfiable rules), XOR through two hidden
layers (sigmoid and ReLU), C4.5's pessimistic pruning against the binomial bound, the one-hot domain, and
MONK-1/MONK-3 on ReLU and sigmoid MLPs trained as the pipeline trains them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from nnxai.data import DATASETS, PreparedSplit, monks
from nnxai.explanations.records import condition_holds
from nnxai.methods.base import ExplainContext
from nnxai.methods.rule.decompositional import _deepred_c45 as c45
from nnxai.methods.rule.decompositional._deepred_dnf import Dnf, Domain, drop_subsumed, product, unique
from nnxai.methods.rule.decompositional.deepred import DeepRED, TooManyRules, substitute
from nnxai.metrics.rules import Fidelity, RuleRecovery, RuleSize
from nnxai.models import build_network
from nnxai.ops.feature_space import predict_classes
from nnxai.training.trainer import TrainConfig, train_model

PARAMS = {"min_samples_leaf": 2, "confidence": 0.25, "max_rules": 2000}     # C4.5's -m 2, -c 0.25 (the config's)


def rows(dnf: Dnf) -> set[frozenset]:
    return {frozenset(dnf.tests(i)) for i in range(len(dnf))}


# -- step 4: merging, redundant terms, unsatisfiable rules ---------------------------------------------------

def test_redundant_terms_and_unsatisfiable_rules():
    """The paper's footnote: i1 > 0.4 AND i1 > 0.5 keeps i1 > 0.5; i1 <= 0.1 AND i1 > 0.2 is removed."""
    dnf = Dnf.of([[(0, ">", 0.4), (0, ">", 0.5), (1, "<=", 3.0)], [(0, "<=", 0.1), (0, ">", 0.2)]], 2)
    assert rows(dnf) == {frozenset({(0, ">", 0.5), (1, "<=", 3.0)})}
    both = product(Dnf.of([[(0, ">", 0.4)], [(0, "<=", 0.0)]], 2), Dnf.of([[(0, ">", 0.5)], [(1, ">", 1.0)]], 2))
    assert rows(both) == {frozenset({(0, ">", 0.5)}), frozenset({(0, ">", 0.4), (1, ">", 1.0)}),
                          frozenset({(0, "<=", 0.0), (1, ">", 1.0)})}


def xor_term_rules() -> dict:
    """Hand-written intermediate rules over inputs (x0, x1) for u0 = x0 AND NOT x1, u1 = x1 AND NOT x0, as a
    tree on each would give them: (rules for u <= 0.5, rules for u > 0.5)."""
    return {(0, 0.5): (Dnf.of([[(0, "<=", 0.5)], [(0, ">", 0.5), (1, ">", 0.5)]], 2),
                       Dnf.of([[(0, ">", 0.5), (1, "<=", 0.5)]], 2)),
            (1, 0.5): (Dnf.of([[(1, "<=", 0.5)], [(1, ">", 0.5), (0, ">", 0.5)]], 2),
                       Dnf.of([[(1, ">", 0.5), (0, "<=", 0.5)]], 2))}


def test_substitution_worked_by_hand():
    """NOT u0 AND NOT u1 -> (x0 <= .5 OR (x0 > .5 AND x1 > .5)) AND (x1 <= .5 OR (x1 > .5 AND x0 > .5)): of the
    four products two are unsatisfiable and the fourth repeats its terms, leaving XNOR."""
    dnfs = xor_term_rules()
    out = substitute([(0, "<=", 0.5), (1, "<=", 0.5)], dnfs, 2, lambda d: d, 100)
    assert rows(out) == {frozenset({(0, "<=", 0.5), (1, "<=", 0.5)}), frozenset({(0, ">", 0.5), (1, ">", 0.5)})}
    out = substitute([(0, ">", 0.5)], dnfs, 2, lambda d: d, 100)
    assert rows(out) == {frozenset({(0, ">", 0.5), (1, "<=", 0.5)})}
    with pytest.raises(TooManyRules):
        substitute([(0, "<=", 0.5), (1, "<=", 0.5)], dnfs, 2, lambda d: d, 1)


def test_subsumed_and_repeated_rules_are_dropped():
    dnf = Dnf.of([[(0, ">", 0.5)], [(0, ">", 0.7), (1, "<=", 0.0)], [(0, ">", 0.5)], [(0, ">", 0.7)]], 2)
    labels = np.array([1, 1, 1, 0])
    kept, kept_labels = drop_subsumed(*unique(dnf, labels))
    assert {(frozenset(kept.tests(i)), int(y)) for i, y in enumerate(kept_labels)} == {
        (frozenset({(0, ">", 0.5)}), 1), (frozenset({(0, ">", 0.7)}), 0)}


def test_the_one_hot_domain():
    """MONK's a5 (4 values, columns 11..14): two values at once are unsatisfiable; tests are rewritten as
    the fewest that allow the same values."""
    domain = Domain([(list(monks.GROUPS[4]), np.eye(4)), ([20], np.array([[0.0], [1.0]]))])
    a5 = {v: 11 + v - 1 for v in range(1, 5)}
    cleaned = domain.clean(Dnf.of([[(a5[1], ">", 0.5), (a5[2], ">", 0.5)],           # a5 = 1 and a5 = 2
                                   [(a5[1], ">", 0.5), (a5[2], "<=", 0.5)],          # a5 = 1
                                   [(a5[1], "<=", 0.5), (a5[2], "<=", 0.5), (a5[3], "<=", 0.5)],  # a5 = 4
                                   [(a5[2], "<=", 0.5), (a5[3], "<=", 0.7)],          # a5 in {1, 4}
                                   [(20, ">", 0.3)], [(20, "<=", 0.3), (20, ">", 0.2)]], 21))
    assert rows(cleaned) == {frozenset({(a5[1], ">", 0.5)}), frozenset({(a5[4], ">", 0.5)}),
                             frozenset({(a5[2], "<=", 0.5), (a5[3], "<=", 0.5)}), frozenset({(20, ">", 0.5)})}


# -- C4.5 ---------------------------------------------------------------------------------------------------

def test_pessimistic_errors_are_the_binomial_upper_limit():
    for n, e in [(6, 0), (20, 1), (14, 5), (100, 30)]:
        u = c45.pessimistic_errors(n, e, 0.25) / n
        assert stats.binom.cdf(e, n, u) == pytest.approx(0.25, abs=1e-9)
    assert c45.pessimistic_errors(6, 0, 0.25) == pytest.approx(6 * (1 - 0.25 ** (1 / 6)))   # C4.5's E = 0 case
    assert c45.pessimistic_errors(5, 5, 0.25) == 5.0


def test_pruning_replaces_a_subtree_that_does_not_pay():
    """A split of 9 vs 1 + 7 vs 3 cases: leaf estimate 20 U(5, 20) against the children's 10 U(1, 10) +
    10 U(3, 10); the root is pruned iff the first is at most the second + 0.1 (C4.5's rule), computed here."""
    def leaf(counts):
        return c45.Node(int(np.argmax(counts)), np.array(counts))

    for left, right in [([9, 1], [7, 3]), ([10, 0], [0, 10])]:
        root = c45.Node(0, np.add(left, right), feature=0, threshold=0.5, left=leaf(left), right=leaf(right))
        n, errs = sum(root.counts), sum(root.counts) - max(root.counts)
        as_leaf = c45.pessimistic_errors(n, errs, 0.25)
        below = sum(c45.pessimistic_errors(sum(c), sum(c) - max(c), 0.25) for c in (left, right))
        c45.prune(root, 0.25)
        assert (root.feature is None) == (as_leaf <= below + 0.1)
    assert root.feature == 0                        # the pure split is kept


# -- hand-built networks whose rules are known ----------------------------------------------------------------

def xor_network(activation: str) -> nn.Module:
    """Two hidden layers: u0 = x0 AND NOT x1, u1 = x1 AND NOT x0, v = u0 OR u1; class 1 iff v."""
    net = build_network("mlp", n_features=2, n_classes=2, hidden=[2, 1], activation=activation)
    k = 20.0 if activation == "sigmoid" else 1.0
    with torch.no_grad():
        net.features.fc1.weight.copy_(torch.tensor([[k, -k], [-k, k]]))
        net.features.fc1.bias.copy_(torch.tensor([-0.5 * k, -0.5 * k]) if activation == "sigmoid" else torch.zeros(2))
        net.features.fc2.weight.copy_(torch.tensor([[k, k]]))
        net.features.fc2.bias.copy_(torch.tensor([-0.5 * k if activation == "sigmoid" else 0.0]))
        net.classifier.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        net.classifier.bias.copy_(torch.tensor([0.5, -0.5]))
    return net.eval()


def context(net: nn.Module, x: np.ndarray, info=None) -> ExplainContext:
    split = PreparedSplit(x=torch.as_tensor(x, dtype=torch.float32), y=torch.as_tensor(predict_classes(net, x)),
                          meta={"feature_names": [f"x{j}" for j in range(x.shape[1])], "class_names": ["no", "yes"]})
    return ExplainContext(model=net, dataset="toy", model_id="toy", info=info or DATASETS["iris"], train=split,
                          test=split, seed=0)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_xor_through_two_hidden_layers(activation):
    """The output tree tests v, v's tree tests u0 and u1, their trees test x0 and x1; merged, the rules are
    XOR and XNOR over the inputs exactly (the products that mix the two branches are unsatisfiable)."""
    net = xor_network(activation)
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert list(predict_classes(net, corners)) == [0, 1, 1, 0]
    record = DeepRED(**PARAMS).explain(context(net, np.repeat(corners, 5, axis=0)))
    got = {(frozenset((lit["feature"], lit["op"], lit["threshold"]) for c in r["conditions"] for lit in c["literals"]),
            r["prediction"]) for r in record.rules}
    assert got == {(frozenset({(0, ">", 0.5), (1, "<=", 0.5)}), 1), (frozenset({(0, "<=", 0.5), (1, ">", 0.5)}), 1),
                   (frozenset({(0, "<=", 0.5), (1, "<=", 0.5)}), 0), (frozenset({(0, ">", 0.5), (1, ">", 0.5)}), 0)}
    assert all(r["support"] == 5 for r in record.rules)
    layers = record.meta["deepred"]["layers"]
    assert [(d["layer"], d["terms"]) for d in layers] == [(2, None), (1, 1), (0, 2)]
    assert layers[0]["rules"] == 2 and layers[-1]["rules"] == 4


def test_max_rules_doubles_the_leaf_size_instead_of_cutting():
    """With max_rules 3 the XOR rules (4) cannot be merged at -m 2 or 4; at -m 8 the tree for v (10 cases
    true, 11 false) is one "false" leaf, so the "yes" branch has no rules and one unconditional "no" rule
    remains: a whole (if poor) rule set, never a cut one."""
    net = xor_network("sigmoid")
    x = np.repeat(np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), [5, 5, 5, 6], axis=0)
    record = DeepRED(**{**PARAMS, "max_rules": 3}).explain(context(net, x))
    assert record.meta["deepred"]["min_samples_leaf"] == 8
    assert record.rules == [{"conditions": [], "prediction": 0, "support": 21}]


# -- MONK's problems --------------------------------------------------------------------------------------------

def monk_context(problem: int, activation: str) -> ExplainContext:
    """A [32, 16] MLP trained as the pipeline trains baseline / baseline_sigmoid on MONK (300 epochs, batches
    of 32, lr 0.005): it fits its training robots (MONK-3 sigmoid: all but its noisy labels' share)."""
    splits, meta = monks.build(problem, {}, 0)
    split = {k: PreparedSplit(x=torch.as_tensor(v["x"]), y=torch.as_tensor(v["y"]), meta=meta)
             for k, v in splits.items()}
    torch.manual_seed(0)
    net = build_network("mlp", n_features=17, n_classes=2, hidden=[32, 16], activation=activation)
    train_model(net, (split["train"].x, split["train"].y), (split["val"].x, split["val"].y),
                TrainConfig(epochs=300, batch_size=32, lr=0.005), 0, progress=False)
    net.eval()
    assert np.mean(predict_classes(net, split["train"].x) == split["train"].y.numpy()) >= 0.95
    return ExplainContext(model=net, dataset=f"monks{problem}", model_id=activation, info=DATASETS[f"monks{problem}"],
                          train=split["train"], test=split["test"], seed=0)


#: One machine measured (seed 0): (rule_recovery, fidelity on the 432 robots, number of rules).  Kept as a record,
#: not asserted: the trained weights, so these values, differ across CPUs.
MEASURED = {(1, "sigmoid"): (1.0, 1.0, 10), (1, "relu"): (0.0, 419 / 432, 14),
            (3, "sigmoid"): (1.0, 416 / 432, 5), (3, "relu"): (0.0, 356 / 432, 54)}


@pytest.mark.parametrize("problem, activation", sorted(MEASURED))
def test_monks(problem, activation):
    """DeepRED (Zilke, Loza Mencia & Janssen 2016; second survey [9], [10]) claims rules that describe the
    network: the merged layer-wise trees partition the domain (every robot satisfies exactly one rule) and
    follow the network closely.  One machine measured (MEASURED): MONK-1 on the sigmoid net, the planted
    rule (a5 = 1, or a1 = a2 spelled out value by value) with fidelity 1; MONK-3 on the sigmoid net, the planted rule in 5 rules although the net
    errs on 16 robots (the pruned trees generalise past its mistakes), fidelity 416/432; on the ReLU nets the
    layer-wise trees approximate less well: no recovery, fidelity 419/432 (MONK-1) and 356/432 (MONK-3, 54
    rules).  Asserted: the partition, fidelity >= 0.8, at most ``max_rules`` rules, and rule_recovery 1
    exactly when the rules classify every robot as the planted rule does."""
    ctx = monk_context(problem, activation)
    record = DeepRED(**PARAMS).explain(ctx)
    rule = DATASETS[f"monks{problem}"].planted_rule
    agree = record.predict(np.array(rule.space)) == rule.labels
    assert RuleRecovery()(record, ctx)["rule_recovery"] == float(bool(agree.all()))
    assert np.mean(Fidelity(n_queries=0)(record, ctx)["fidelity"].values) >= 0.8
    assert 1 <= RuleSize()(record)["rule_size"] <= PARAMS["max_rules"]
    assert record.meta["deepred"]["min_samples_leaf"] == 2
    x = ctx.test.x.numpy().astype(np.float64)
    fired = np.zeros(len(x), dtype=int)
    for rule in record.rules:
        fired += np.all([condition_holds(c, x) for c in rule["conditions"]], axis=0)
    assert np.all(fired == 1)
