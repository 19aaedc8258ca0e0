"""DAPr [121] (nnxai.active.attribution.dapr) and the ``prior_agreement`` metric.

Checked: on the planted table the jointly trained prior network recovers the planted meta-feature →
importance link (its importance ranks the features as the truth does); the penalty Ω is zero exactly when
the normalised global attribution equals the prior, and equals a hand-computed value otherwise; its
gradient reaches both the network and the prior; expected gradients agree with a closed form on a linear
model; the self-explanation is batch-independent and carries the prior; the checkpoint keeps the prior as
``model.extras["prior"]``; the metric gives 1 for the same ranking and −1 for the reversed one; the
networks trained at λ = 1 and λ = 0 both rank the planted features first, and the paper's claim that λ = 1's
attributions agree *better* with the truth is a strict xfail: it does not hold on planted (numbers below).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from nnxai import load_model
from nnxai.active.attribution.dapr import (DAPr, DAPrAttribution, expected_gradients, prior_importance,
                                           prior_penalty)
from nnxai.active.base import ACTIVE
from nnxai.data import DATASETS, planted
from nnxai.explanations import AttributionMap
from nnxai.metrics.base import METRICS
from nnxai.metrics.prior_agreement import PriorAgreement, spearman
from nnxai.models import build_network, save_checkpoint
from nnxai.registry import get as get_method
from nnxai.training.trainer import TrainConfig, accuracy, train_model
from active.conftest import planted_split

PARAMS = {"weight": 1.0, "prior_hidden": [5, 3], "n_samples": 1}
INFO = DATASETS["planted"]


@pytest.fixture(scope="module")
def trained(one_thread):
    """A DAPr network trained briefly on 600 planted rows (10 epochs), with its prior."""
    torch.manual_seed(0)
    model = build_network("mlp", n_features=12, n_classes=2, hidden=[32, 16], activation="relu")
    active = DAPr(**PARAMS)
    train, val = planted_split(600, 0), planted_split(200, 1)
    history = train_model(model, train, val, TrainConfig(epochs=10, batch_size=32, lr=0.005), seed=0,
                          progress=False, active=active, info=INFO)
    return model, active, history, train, val


@pytest.fixture(scope="module")
def plain(one_thread):
    """The same network, data, seed and schedule as ``trained`` at λ = 0 (the prior learns, the network
    does not see it)."""
    torch.manual_seed(0)
    model = build_network("mlp", n_features=12, n_classes=2, hidden=[32, 16], activation="relu")
    active = DAPr(**{**PARAMS, "weight": 0.0})
    train, val = planted_split(600, 0), planted_split(200, 1)
    train_model(model, train, val, TrainConfig(epochs=10, batch_size=32, lr=0.005), seed=0, progress=False,
                active=active, info=INFO)
    return model


def attribution_agreement(model, train, val) -> tuple[float, float, set]:
    """Spearman of the network's EG maps on the 200 val rows with the planted importance: of the global map
    (mean magnitude) and the mean over inputs of the per-input maps' (what ``prior_agreement`` reports);
    and the global map's top three features."""
    method = DAPrAttribution(n_explain=200, batch_size=50, n_samples=32).fit(
        model, SimpleNamespace(x=train[0], y=train[1]), seed=0, info=INFO)
    with torch.no_grad():
        target = model(val[0]).argmax(1)
    maps = np.abs(method(model, val[0], target).detach().numpy())
    return (spearman(maps.mean(0), planted.IMPORTANCE), float(np.mean([spearman(r, planted.IMPORTANCE) for r in maps])),
            set(np.argsort(-maps.mean(0))[:3].tolist()))


def test_attributions_at_weight_one_against_weight_zero(trained, plain):
    """What holds after the short training (measured: global ρ 0.803 at λ = 1 against 0.840 at λ = 0, the
    cap of the tied truth; per-input mean ρ 0.471 against 0.765): both networks put the three strongest
    planted features first and keep their accuracy."""
    model, _, _, train, val = trained
    glob_1, per_1, top_1 = attribution_agreement(model, train, val)
    glob_0, per_0, top_0 = attribution_agreement(plain, train, val)
    assert top_1 == top_0 == {1, 4, 7}
    assert glob_1 > 0.7 and glob_0 > 0.7 and per_1 > 0.3 and per_0 > 0.3
    assert accuracy(model, *val) > 0.85 and accuracy(plain, *val) > 0.85


@pytest.mark.xfail(strict=True, reason="does not hold on planted (see test above): DAPr's maps agree less "
                                       "with the planted importance than the unregularised network's")
def test_dapr_attributions_agree_better_with_the_planted_importance(trained, plain):
    """[121]'s claim on its own terms: the prior steers the network's attributions towards the truth."""
    model, _, _, train, val = trained
    glob_1, per_1, _ = attribution_agreement(model, train, val)
    glob_0, per_0, _ = attribution_agreement(plain, train, val)
    assert glob_1 >= glob_0 and per_1 > per_0


def test_registered_with_its_variant_and_explanation():
    assert ACTIVE["dapr"] is DAPr and get_method("dapr") is DAPrAttribution
    assert DAPrAttribution.only_models == frozenset({"dapr"})
    assert "prior_agreement" in DAPrAttribution.spec.judged_by and METRICS["prior_agreement"] is PriorAgreement
    assert DAPr.why_not(INFO) is None
    assert "meta-features" in DAPr.why_not(DATASETS["causal"])


def test_prior_recovers_the_planted_importance(trained):
    model, active, history, _, val = trained
    prior = active.importance().numpy()
    truth = planted.IMPORTANCE
    # ranks: the three strongest features in the truth's order above every other feature
    order = np.argsort(-prior)
    assert list(order[:3]) == [1, 4, 7], prior
    # Spearman with the truth, whose 8 tied zeros cap it at sqrt(101/143) = 0.840
    assert spearman(prior, truth) > 0.7
    assert history[-1]["prior_rank_truth"] == pytest.approx(spearman(prior, truth), abs=1e-6)
    assert history[-1]["active"]["prior_importance"] == pytest.approx(prior.tolist())
    assert accuracy(model, *val) > 0.85          # the prior does not cost the network its accuracy


def test_penalty_is_zero_when_the_attribution_equals_the_prior():
    prior = torch.tensor([0.5, 2.0, 1.5, 0.0])                   # mean 1: a normalised global attribution
    signs = torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, -1.0, 1.0]])
    attributions = 3.7 * signs * prior                           # any scale, any signs, same magnitudes
    assert prior_penalty(attributions, prior).item() == pytest.approx(0.0, abs=1e-12)
    # otherwise: the mean over features of (Φ̄_j / mean Φ̄ − g_j)², by hand
    phi = torch.tensor([[1.0, 3.0, 0.0, 0.0], [-1.0, 1.0, 2.0, 0.0]])   # Φ̄ = [1, 2, 1, 0], mean 1
    assert prior_penalty(phi, prior).item() == pytest.approx((0.25 + 0 + 0.25 + 0) / 4)


def test_expected_gradients_of_a_linear_model_are_closed_form():
    """f_c(x) = w_c·x + b: EG = (x − x') ⊙ w_c for every α, averaged over the references."""
    torch.manual_seed(1)
    linear = nn.Linear(3, 2)
    x, target = torch.randn(2, 3), torch.tensor([1, 0])
    refs, alphas = torch.randn(2, 4, 3), torch.rand(2, 4)
    eg = expected_gradients(linear, x, target, refs, alphas)
    expected = (x[:, None] - refs).mean(1) * linear.weight.detach()[target]
    torch.testing.assert_close(eg, expected)


def test_gradients_reach_both_networks():
    torch.manual_seed(2)
    model = build_network("mlp", n_features=12, n_classes=2, hidden=[8], activation="relu")
    active = DAPr(**PARAMS)
    x, y = planted_split(64, 3)
    active.setup(model, (x, y), INFO, torch.device("cpu"), seed=0)
    term = active.penalty(model, x[:16], y[:16], model(x[:16]))
    assert term.item() > 0
    term.backward()
    # the network's weights get it through the attribution (double back-propagation); its biases do not:
    # a ReLU network's input gradient is piecewise constant in them
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in active.prior.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"prior {name}"
    assert set(active.extras()) == {"prior"} and active.extras()["prior"].network_name == "mlp"
    assert {id(p) for p in active.prior.parameters()} <= {id(p) for p in active.parameters_to_train(model)}


def test_prior_weight_zero_leaves_only_the_prior_to_learn():
    """λ = 0: the network trains exactly as without the method (same seed, same weights)."""
    train, val = planted_split(128, 4), planted_split(32, 5)
    weights = []
    for active in (None, DAPr(**{**PARAMS, "weight": 0.0})):
        torch.manual_seed(3)
        model = build_network("mlp", n_features=12, n_classes=2, hidden=[8], activation="relu")
        train_model(model, train, val, TrainConfig(epochs=2, batch_size=32, lr=0.005), seed=0, progress=False,
                    active=active, info=INFO)
        weights.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*weights):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def context(model, train, test):
    return SimpleNamespace(model=model, dataset="planted", model_id="dapr", info=INFO, seed=0,
                           train=SimpleNamespace(x=train[0], y=train[1]), test=SimpleNamespace(x=test[0], y=test[1]),
                           device=torch.device("cpu"))


def test_checkpoint_round_trip_and_own_explanation(trained, tmp_path):
    model, active, _, train, val = trained
    record = {"architecture": "mlp", "arch_kwargs": model.network_kwargs, "active": "dapr", "variant": "dapr"}
    path = save_checkpoint(tmp_path / "dapr.pt", model, record, extras=active.extras())
    loaded = load_model(path)
    assert set(loaded.extras) == {"prior"}
    prior = loaded.extras["prior"]
    assert prior.network_kwargs == {"n_features": 3, "n_classes": 1, "hidden": [5, 3], "activation": "relu"}
    torch.testing.assert_close(prior_importance(prior, INFO.meta_features), active.importance())

    method = DAPrAttribution(n_explain=20, batch_size=7, n_samples=32)
    ctx = context(loaded, train, val)
    explanation, n = method.fit(loaded, ctx.train, seed=0, info=INFO)._run(ctx)
    assert n == 20 and explanation.attributions.shape == (20, 12)
    assert explanation.meta["prior_importance"] == pytest.approx(active.importance().tolist())
    # batch-independent: each input draws its references from its own seeded generator
    x, t = val[0][explanation.indices], torch.as_tensor(explanation.targets)
    whole = DAPrAttribution(n_explain=20, batch_size=20, n_samples=32).fit(loaded, ctx.train)(loaded, x, t)
    np.testing.assert_allclose(whole.numpy(), explanation.attributions, rtol=1e-5, atol=1e-6)
    # the map ranks the relevant features first, on average
    mean_map = np.abs(explanation.attributions).mean(0)
    assert set(np.argsort(-mean_map)[:3]) == {1, 4, 7}

    scores = PriorAgreement()(explanation, ctx)
    assert set(scores) == {"prior_agreement", "prior_agreement.truth", "prior_agreement.attribution"}
    assert scores["prior_agreement.truth"] == pytest.approx(spearman(active.importance().numpy(),
                                                                     planted.IMPORTANCE))
    # per input, against scipy's Spearman (an independent computation)
    maps = np.abs(explanation.attributions)
    expected = [stats.spearmanr(row, planted.IMPORTANCE).statistic for row in maps]
    np.testing.assert_allclose(scores["prior_agreement"].values, expected, rtol=1e-9)
    expected = [stats.spearmanr(row, explanation.meta["prior_importance"]).statistic for row in maps]
    np.testing.assert_allclose(scores["prior_agreement.attribution"].values, expected, rtol=1e-9)
    assert scores["prior_agreement"] > 0.3 and scores["prior_agreement.attribution"] > 0.3


def record_of(maps, prior=None):
    meta = {} if prior is None else {"prior_importance": list(prior)}
    return AttributionMap(np.asarray(maps, dtype=np.float32), np.arange(len(maps)), np.zeros(len(maps)), meta)


def test_metric_on_known_rankings():
    truth = np.arange(1.0, 13.0)                  # distinct importances: no ties
    ctx = SimpleNamespace(info=SimpleNamespace(name="toy", feature_importance=truth, meta_features=None),
                          test=SimpleNamespace(x=torch.zeros(3, 12)), device=torch.device("cpu"))
    same, reversed_ = truth * 0.1, 13.0 - truth
    scores = PriorAgreement()(record_of([same, -same, reversed_], prior=truth[::-1]), ctx)
    np.testing.assert_allclose(scores["prior_agreement"].values, [1.0, 1.0, -1.0])   # magnitudes: sign ignored
    assert scores["prior_agreement.truth"] == pytest.approx(-1.0)
    np.testing.assert_allclose(scores["prior_agreement.attribution"].values, [-1.0, -1.0, 1.0])
    # ties: the planted truth against itself is 1, and a map without a prior gets the main id only
    ctx.info.feature_importance = planted.IMPORTANCE
    only = PriorAgreement()(record_of([planted.IMPORTANCE, planted.IMPORTANCE + 1.0]), ctx)
    assert set(only) == {"prior_agreement"} and only["prior_agreement"] == pytest.approx(1.0)


def test_metric_applies_to_every_attribution_map_on_planted_only():
    gradient, dapr, trepan = get_method("gradient"), get_method("dapr"), get_method("trepan")
    assert PriorAgreement.applies(gradient, INFO) and PriorAgreement.applies(dapr, INFO)
    assert not PriorAgreement.applies(trepan, INFO)                       # a rule set, not a map
    assert not PriorAgreement.applies(gradient, DATASETS["causal"])       # no planted importance
    assert not PriorAgreement.applies(gradient, DATASETS["shapes"])
