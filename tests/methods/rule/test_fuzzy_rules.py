"""Fuzzy rules equal to the network [87]: the i-or operator's algebra, exact equality with the network (one,
two and three hidden layers), the per-input i-or decomposition of a rule, and MONK-1/MONK-3."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS, PreparedSplit, monks
from nnxai.explanations import RuleSet, load_explanation
from nnxai.explanations.checks import SplitBounds
from nnxai.methods.base import ExplainContext, model_traits
from nnxai.methods.rule.decompositional.fuzzy_rules import (FuzzyRules, fuzzy_outputs, ior, ior_logs, logistic,
                                                             rule_degrees, term_logs)
from nnxai.metrics.rules import Fidelity, RuleRecovery, RuleSize
from nnxai.models import build_network
from nnxai.training.trainer import TrainConfig, train_model

RNG = np.random.default_rng(0)


# -- the i-or operator (Benitez et al. 1997, Sec. IV: the f-dual of + under the logistic) --------------------

def test_ior_is_the_logistic_dual_of_addition():
    x, y, z = RNG.normal(scale=3, size=(3, 1000))
    np.testing.assert_allclose(ior(logistic(x), logistic(y)), logistic(x + y), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ior(logistic(x), logistic(y), logistic(z)), logistic(x + y + z), rtol=0, atol=1e-12)


def test_ior_is_an_abelian_group_on_the_open_unit_interval():
    a, b, c = RNG.uniform(0.001, 0.999, size=(3, 1000))
    np.testing.assert_allclose(ior(a, b), ior(b, a), rtol=0, atol=1e-15)                        # commutative
    np.testing.assert_allclose(ior(ior(a, b), c), ior(a, ior(b, c)), rtol=0, atol=1e-14)          # associative
    np.testing.assert_allclose(ior(a, 0.5), a, rtol=0, atol=1e-15)                                # neutral 1/2
    np.testing.assert_allclose(ior(a, 1 - a), 0.5, rtol=0, atol=1e-13)                            # inverse 1 - a
    np.testing.assert_allclose(1 - ior(a, b), ior(1 - a, 1 - b), rtol=0, atol=1e-14)              # self-dual
    assert np.all(ior(a, np.maximum(b, a)) >= ior(a, b) - 1e-15)                                  # monotone


def test_ior_is_an_and_below_one_half_and_an_or_above():
    a, b = RNG.uniform(0.01, 0.5, size=(2, 1000))
    assert np.all(ior(a, b) <= np.minimum(a, b) + 1e-15)
    assert np.all(ior(1 - a, 1 - b) >= np.maximum(1 - a, 1 - b) - 1e-15)


def test_ior_bounds_and_the_undefined_case():
    a = RNG.uniform(0.01, 0.99, size=100)
    assert np.all(ior(a, 0.0) == 0.0) and np.all(ior(a, 1.0) == 1.0)
    assert np.isnan(ior(0.0, 1.0))


def test_log_form_equals_the_product_form():
    u = RNG.normal(scale=2, size=(50, 7))
    yes, no = term_logs(u)
    np.testing.assert_allclose(ior_logs(yes, no), ior(*logistic(u).T), rtol=0, atol=1e-14)
    # far in the tails the log form keeps what the product form loses
    yes, no = term_logs(np.array([800.0, -799.0]))
    assert ior_logs(yes, no) == pytest.approx(logistic(1.0), abs=1e-12)


# -- equality with the network ---------------------------------------------------------------------------------

def context(net: nn.Module, x: np.ndarray, names=None, info=None) -> ExplainContext:
    names = names or [f"x{j + 1}" for j in range(x.shape[1])]
    split = PreparedSplit(x=torch.as_tensor(x, dtype=torch.float32), y=torch.zeros(len(x), dtype=torch.long),
                          meta={"feature_names": names, "class_names": ["neg", "pos"]})
    info = info or DATASETS["iris"]
    return ExplainContext(model=net, dataset="toy", model_id="toy", info=info, train=split, test=split, seed=0)


def random_net(hidden: list[int], n_features: int = 5, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = build_network("mlp", n_features=n_features, n_classes=2, hidden=hidden, activation="sigmoid")
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)                              # larger weights: saturated units are tested too
    return net.eval()


def network_outputs(net: nn.Module, x: np.ndarray) -> np.ndarray:
    """The network in float64 (an independent forward pass of the same weights)."""
    with torch.no_grad():
        return copy.deepcopy(net).double()(torch.as_tensor(x, dtype=torch.float64)).numpy()


@pytest.mark.parametrize("hidden", [[4], [6, 3], [5, 4, 3]])
def test_the_rule_system_reproduces_the_network(hidden):
    net = random_net(hidden)
    x = RNG.normal(scale=2, size=(400, 5))
    record = FuzzyRules().explain(context(net, x))
    y = fuzzy_outputs(record, x)
    assert np.max(np.abs(y - network_outputs(net, x))) < 1e-12
    with torch.no_grad():
        assert np.max(np.abs(y - net(torch.as_tensor(x, dtype=torch.float32)).numpy())) < 1e-5
    assert len(record.rules) == hidden[-1] and record.inference["type"] == "fuzzy_ior"
    assert len(record.inference["levels"]) == len(hidden) - 1
    # every rule's degree is its unit's activation
    with torch.no_grad():
        last = copy.deepcopy(net).double().features(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(rule_degrees(record, x), last, rtol=0, atol=1e-13)


def test_one_hidden_layer_is_the_papers_system():
    """Hand-set net: R_j "IF w_j.x is greater than approximately -tau_j THEN y = beta_j"; each degree is
    the i-or of the per-input terms A(w_ij x_i) and A(tau_j) (the paper's decomposition)."""
    net = build_network("mlp", n_features=2, n_classes=2, hidden=[2], activation="sigmoid")
    with torch.no_grad():
        net.features.fc1.weight.copy_(torch.tensor([[0.3, -1.2], [2.0, 0.5]]))
        net.features.fc1.bias.copy_(torch.tensor([-0.7, 0.25]))
        net.classifier.weight.copy_(torch.tensor([[1.0, -2.0], [-1.0, 3.0]]))
        net.classifier.bias.copy_(torch.tensor([0.5, -0.5]))
    x = np.array([[0.0, 0.0], [1.0, 2.0], [-1.5, 0.3]])
    record = FuzzyRules().explain(context(net.eval(), x))
    assert "R1: IF 0.3*x1 - 1.2*x2 is greater than approximately 0.7 THEN y(neg) = 1, y(pos) = -1" in record.text
    assert "R2: IF 2*x1 + 0.5*x2 is greater than approximately -0.25 THEN y(neg) = -2, y(pos) = 3" in record.text
    assert [r["prediction"] for r in record.rules] == [0, 1] and record.default == 0
    assert record.rules[0]["conditions"] == [{"m": 1, "literals": [
        {"weights": [[0, pytest.approx(0.3)], [1, pytest.approx(-1.2)]], "op": ">", "threshold": pytest.approx(0.7)}]}]
    w, tau = np.array([[0.3, -1.2], [2.0, 0.5]]), np.array([-0.7, 0.25])
    for j in range(2):
        by_terms = ior(logistic(w[j, 0] * x[:, 0]), logistic(w[j, 1] * x[:, 1]), logistic(tau[j]))
        np.testing.assert_allclose(rule_degrees(record, x)[:, j], by_terms, rtol=0, atol=1e-7)
    expected = logistic(x @ w.T + tau) @ np.array([[1.0, -1.0], [-2.0, 3.0]]) + np.array([0.5, -0.5])
    np.testing.assert_allclose(fuzzy_outputs(record, x), expected, rtol=0, atol=1e-6)


def test_the_record_survives_a_round_trip(tmp_path):
    net = random_net([6, 3])
    x = RNG.normal(size=(50, 5))
    record = FuzzyRules().explain(context(net, x))
    path = record.save(tmp_path / "fuzzy.json")
    loaded = load_explanation(path, SplitBounds(n_test=50, n_train=50, n_classes=2))
    assert isinstance(loaded, RuleSet) and loaded.text == record.text
    np.testing.assert_array_equal(loaded.predict(x), record.predict(x))


def test_only_sigmoid_mlps():
    relu = build_network("mlp", n_features=5, n_classes=2, hidden=[4, 3], activation="relu")
    assert "sigmoid" in FuzzyRules.why_not(DATASETS["iris"], model_traits(relu))
    assert FuzzyRules.why_not(DATASETS["iris"], model_traits(random_net([4, 3]))) is None


# -- MONK's problems -------------------------------------------------------------------------------------------

def monk_context(problem: int) -> tuple[ExplainContext, nn.Module]:
    """A sigmoid [32, 16] MLP trained as the pipeline trains baseline_sigmoid on MONK (300 epochs, batches of
    32, lr 0.005)."""
    splits, meta = monks.build(problem, {}, 0)
    split = {k: PreparedSplit(x=torch.as_tensor(v["x"]), y=torch.as_tensor(v["y"]), meta=meta)
             for k, v in splits.items()}
    torch.manual_seed(0)
    net = build_network("mlp", n_features=17, n_classes=2, hidden=[32, 16], activation="sigmoid")
    train_model(net, (split["train"].x, split["train"].y), (split["val"].x, split["val"].y),
                TrainConfig(epochs=300, batch_size=32, lr=0.005), 0, progress=False)
    net.eval()
    ctx = ExplainContext(model=net, dataset=f"monks{problem}", model_id="baseline_sigmoid",
                         info=DATASETS[f"monks{problem}"], train=split["train"], test=split["test"], seed=0)
    return ctx, net


@pytest.mark.parametrize("problem", [1, 3])
def test_monks(problem):
    """The system equals the network on all 432 robots (fidelity 1, outputs to 1e-5 of the float32 net),
    so it recovers the planted rule exactly when the network does (one machine measured: MONK-1, the net fits
    all 432 robots; not MONK-3, trained on 5 % noisy labels, the net misclassifies 16 robots; which robots a
    net gets right depends on its trained weights).  Its size is the architecture's: one rule per unit of the
    second hidden layer, each over the first layer's 32 propositions."""
    ctx, net = monk_context(problem)
    record = FuzzyRules().explain(ctx)
    x = ctx.test.x.numpy().astype(np.float64)
    assert np.max(np.abs(fuzzy_outputs(record, x) - network_outputs(net, x))) < 1e-12
    with torch.no_grad():
        assert np.max(np.abs(fuzzy_outputs(record, x) - net(ctx.test.x).numpy())) < 1e-5
    fidelity = Fidelity(n_queries=500)(record, ctx)
    assert np.mean(fidelity["fidelity"].values) == 1.0 and np.mean(fidelity["fidelity.queries"].values) == 1.0
    network_right = float(np.mean(net(ctx.test.x).argmax(1).numpy() == ctx.test.y.numpy()))
    recovery = RuleRecovery()(record, ctx)
    assert recovery["rule_recovery"] == float(network_right == 1.0)
    assert RuleSize()(record) == {"rule_size": 16.0, "rule_size.antecedents": 32.0}
    assert "[a5=1]" in record.text and "is greater than approximately" in record.text
    assert sum(r["support"] for r in record.rules) > 0
