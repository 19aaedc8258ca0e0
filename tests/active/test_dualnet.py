"""Dual-net feature importance ranking [122] (``nnxai.active.attribution.dualnet``) and ``ranking_quality``.

Checked: the masks follow Algorithm 1 of the paper (exactly ``s`` ones; phase II's layout ``random | m_opt |
m_best | perturbed m_opt`` with ``s_p`` swaps); ``m_opt`` and the importance are closed-form on a linear
selector, and the swap search finds the optimum a gradient step misses; a short training on ``planted``
ranks the four planted features first (also with the config's own values) and deploys an operator that ignores every unselected feature; the
checkpoint round trip (operator, mask, selector) and the own explanation; the metric on known rankings.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from nnxai import load_model
from nnxai.active.attribution.dualnet import (DualNet, DualNetOperator, DualNetRanking, importance_scores,
                                              mask_batch, optimal_mask, perturbed_masks, population_ranking,
                                              random_masks)
from nnxai.active.base import ACTIVE
from nnxai.config import load_config
from nnxai.data import DATASETS, planted
from nnxai.explanations import AttributionMap
from nnxai.metrics.base import METRICS
from nnxai.metrics.ranking_quality import RankingQuality, ranking_scores, top_k_fraction
from nnxai.models import build_network, save_checkpoint
from nnxai.registry import get as get_method
from nnxai.training.trainer import TrainConfig, accuracy, train_model
from active.conftest import planted_split

INFO = DATASETS["planted"]
#: A short training: 1000 rows, 25 epochs, phase II from epoch 10; a smaller, faster-learning selector than
#: the default profile's (which trains 200 epochs on 2000 rows).
PARAMS = {"n_selected": 5, "mask_batch": 16, "exploration_epochs": 10, "n_swaps": 2, "selector_every": 4,
          "selector_hidden": [32, 16], "selector_lr": 0.003, "search_steps": 5}


@pytest.fixture(scope="module")
def trained(one_thread):
    active = DualNet(**PARAMS)
    name, kwargs = active.build("mlp", {"n_features": 12, "n_classes": 2, "hidden": [32, 16],
                                        "activation": "relu"}, INFO)
    torch.manual_seed(0)
    model = build_network(name, **kwargs)
    train, val = planted_split(1000, 0), planted_split(300, 1)
    history = train_model(model, train, val, TrainConfig(epochs=25, batch_size=32, lr=0.005), seed=0,
                          progress=False, active=active, info=INFO)
    return model, active, history, train, val


def test_registered_with_its_network_variant_and_explanation():
    assert ACTIVE["dualnet"] is DualNet and DualNet.architectures == frozenset({"mlp"})
    assert get_method("dualnet") is DualNetRanking and DualNetRanking.only_models == frozenset({"dualnet"})
    assert METRICS["ranking_quality"] is RankingQuality
    assert RankingQuality.applies(DualNetRanking, INFO)
    assert RankingQuality.applies(get_method("gradient"), INFO)            # universal: every attribution map
    assert not RankingQuality.applies(DualNetRanking, DATASETS["causal"])  # no planted importance there


# -- masks (Algorithm 1) -----------------------------------------------------------------------------------

def test_random_masks_have_s_ones_and_every_feature_equally_often():
    masks = random_masks(6000, 12, 5, torch.Generator().manual_seed(0))
    assert set(masks.unique().tolist()) == {0.0, 1.0} and (masks.sum(1) == 5).all()
    frequency = masks.mean(0)                                  # 5/12 each; binomial sd ≈ 0.0064
    assert (frequency - 5 / 12).abs().max() < 0.03


def test_perturbation_swaps_one_selected_feature_out_and_one_other_in():
    m = torch.zeros(12)
    m[[0, 3, 6, 9, 11]] = 1.0
    one = perturbed_masks(m, 500, 1, torch.Generator().manual_seed(1))
    assert (one.sum(1) == 5).all() and ((one - m).abs().sum(1) == 2).all()
    assert ((one - m) == -1).any(0)[m == 1].all() and ((one - m) == 1).any(0)[m == 0].all()   # all reachable
    two = perturbed_masks(m, 500, 2, torch.Generator().manual_seed(2))
    distance = (two - m).abs().sum(1)
    assert (two.sum(1) == 5).all() and set(distance.tolist()) <= {0.0, 2.0, 4.0} and (distance == 4).any()


def test_mask_batch_phase_one_random_phase_two_exploits():
    gen = torch.Generator().manual_seed(3)
    phase1 = mask_batch(16, 12, 5, gen)
    assert phase1.shape == (16, 12) and (phase1.sum(1) == 5).all()
    m_opt, m_best = torch.zeros(12), torch.zeros(12)
    m_opt[:5], m_best[7:] = 1.0, 1.0
    phase2 = mask_batch(16, 12, 5, gen, m_opt, m_best, n_swaps=2)
    assert (phase2.sum(1) == 5).all()
    assert torch.equal(phase2[8], m_opt) and torch.equal(phase2[9], m_best)        # after the random half
    assert ((phase2[10:] - m_opt).abs().sum(1) <= 4).all()                          # s_p = 2 swaps from m_opt
    assert ((phase2[:8] - m_opt).abs().sum(1) > 4).any()                            # the random half is not


class LinearSelector(nn.Module):
    """``f_S(m) = c − w·m + λ m_a m_b``: a predicted loss with a penalty when features a and b are both kept."""

    def __init__(self, w, pair=(0, 1), penalty=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.pair, self.penalty = pair, penalty

    def forward(self, m):
        a, b = self.pair
        return (1.0 - m @ self.w + self.penalty * m[:, a] * m[:, b])[:, None]


def test_optimal_mask_and_importance_of_a_linear_selector_are_closed_form():
    w = [0.3, -0.2, 1.5, 0.0, 0.9, 0.1]
    selector = LinearSelector(w)
    m_opt = optimal_mask(selector, 6, 3, search_steps=5)
    assert m_opt.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]          # the 3 largest w: −∂f_S/∂m = w
    torch.testing.assert_close(importance_scores(selector, m_opt), torch.tensor(w))
    assert selector.w.grad is None


def test_swap_search_finds_the_optimum_the_gradient_at_one_half_misses():
    selector = LinearSelector([1.0, 0.9, 0.8, 0.0], pair=(0, 1), penalty=3.0)
    # at m = ½: −∂f_S/∂m = (1 − 1.5, 0.9 − 1.5, 0.8, 0): start {2, 3}; one swap (3 out, 0 in) gives {0, 2},
    # the best pair (f_S = −0.8 there, {0, 1} pays the penalty), and no further swap helps
    assert optimal_mask(selector, 4, 2, search_steps=0).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert optimal_mask(selector, 4, 2, search_steps=5).tolist() == [1.0, 0.0, 1.0, 0.0]


# -- training on planted ---------------------------------------------------------------------------------

def test_short_training_ranks_the_planted_features_first(trained):
    model, active, history, _, val = trained
    final = history[-1]["active"]
    assert set(final["ranking"][:4]) == set(planted.RELEVANT)
    assert set(planted.RELEVANT) <= set(final["selected"]) and len(final["selected"]) == 5
    scores = ranking_scores(final["importance"], INFO.feature_importance)
    assert scores["ranking_quality"] == 1.0 and scores["ranking_quality.spearman"] > 0.7
    assert history[0]["phase"] == 1.0 and history[-1]["phase"] == 2.0
    assert accuracy(model, *val) > 0.85


def test_config_defaults_rank_the_planted_features_above_chance(one_thread):
    """The default profile's own values (``active_params.dualnet``: |M| 16, selector every 8 steps, widths
    [100, 50, 10], rate 1e-3), on the default profile's 2000 planted rows, for 25 epochs instead of 200.

    With 25 epochs the run stays in phase I (``exploration_epochs`` 40): the ranking comes from the
    selector trained on random masks and the final local search.  Chance: a random top 4 of 12 holds
    4/12 = 1/3 of the 4 planted features on average, and 3 or more of them with probability 33/495 = 0.067;
    the test asks for 3 of 4 (measured: 4 of 4)."""
    params = load_config()["active_params"]["dualnet"]
    active = DualNet(**params)
    name, kwargs = active.build("mlp", {"n_features": 12, "n_classes": 2, "hidden": [32, 16],
                                        "activation": "relu"}, INFO)
    torch.manual_seed(0)
    model = build_network(name, **kwargs)
    train, val = planted_split(2000, 0), planted_split(300, 1)
    history = train_model(model, train, val, TrainConfig(epochs=25, batch_size=32, lr=0.005), seed=0,
                          progress=False, active=active, info=INFO)
    final = history[-1]["active"]
    assert history[-1]["phase"] == 1.0
    assert top_k_fraction(np.asarray(final["importance"]), INFO.feature_importance) >= 0.75 > 1 / 3
    assert len(set(planted.RELEVANT) & set(final["selected"])) >= 3


def test_deployed_operator_reads_only_the_selected_features(trained):
    model, active, history, _, val = trained
    mask = model.mask
    assert mask.tolist() == active.m_opt.tolist() and mask.nonzero().reshape(-1).tolist() == history[-1]["active"]["selected"]
    x = val[0][:50]
    shuffled = x.clone()
    shuffled[:, mask == 0] = torch.randn(50, int((mask == 0).sum()))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(shuffled))
        torch.testing.assert_close(model(x), model.operate(x, mask.expand_as(x)))
    assert not any(p.requires_grad for p in model.select.parameters())


def test_operator_loss_is_the_mean_over_inputs_and_masks(trained):
    model, _, _, train, _ = trained
    active = DualNet(**PARAMS)
    active.setup(model, train, INFO, torch.device("cpu"), seed=5)
    x, y = train[0][:6], train[1][:6]
    loss = active.penalty(model, x, y, None)
    masks, per_mask = active.pending[-1]
    expected = torch.stack([nn.functional.cross_entropy(model.operate(x, m.expand_as(x)), y) for m in masks])
    torch.testing.assert_close(per_mask, expected.detach())
    torch.testing.assert_close(loss, expected.mean())
    assert active.replaces_loss()


# -- checkpoint and own explanation ------------------------------------------------------------------------

def test_checkpoint_round_trip_and_own_explanation(trained, tmp_path):
    model, active, history, train, val = trained
    record = {"architecture": model.network_name, "arch_kwargs": model.network_kwargs, "active": "dualnet",
              "variant": "dualnet"}
    path = save_checkpoint(tmp_path / "dualnet.pt", model, record, extras=active.extras())
    loaded = load_model(path)
    assert isinstance(loaded, DualNetOperator) and set(loaded.extras) == {"selector"}
    assert loaded.extras["selector"].network_kwargs == {"n_features": 12, "n_classes": 1, "hidden": [32, 16],
                                                         "activation": "sigmoid"}
    assert torch.equal(loaded.mask, model.mask)
    with torch.no_grad():
        torch.testing.assert_close(loaded(val[0]), model(val[0]))
    scores, mask = population_ranking(loaded)
    torch.testing.assert_close(scores, torch.tensor(history[-1]["active"]["importance"]))

    ctx = SimpleNamespace(model=loaded, dataset="planted", model_id="dualnet", info=INFO, seed=0,
                          train=SimpleNamespace(x=train[0], y=train[1]), test=SimpleNamespace(x=val[0], y=val[1]),
                          device=torch.device("cpu"))
    explanation, n = DualNetRanking()._run(ctx)
    assert n == len(val[0]) and explanation.attributions.shape == (n, 12)
    assert (explanation.attributions == explanation.attributions[0]).all()          # one population vector
    assert explanation.meta["ranking"] == history[-1]["active"]["ranking"]
    assert explanation.meta["selected"] == history[-1]["active"]["selected"]
    assert RankingQuality()(explanation, ctx)["ranking_quality"] == 1.0

    with pytest.raises(ValueError, match="dualnet explains a network trained by"):
        population_ranking(build_network("mlp", n_features=12, n_classes=2, hidden=[4], activation="relu"))


# -- the metric ---------------------------------------------------------------------------------------------

def test_metric_on_known_rankings():
    truth = planted.IMPORTANCE                       # 2.0, 1.5, 1.0, 0.5 at 1, 4, 7, 10; 0 elsewhere
    perfect = ranking_scores(truth, truth)
    assert perfect["ranking_quality"] == 1.0 and perfect["ranking_quality.spearman"] == pytest.approx(1.0)
    reversed_ = ranking_scores(-truth, truth)
    assert reversed_["ranking_quality"] == 0.0 and reversed_["ranking_quality.spearman"] == pytest.approx(-1.0)
    # two of four relevant in the top 4: features 1 and 4 first, then noise 0 and 2
    scores = np.zeros(12)
    scores[[1, 4, 0, 2]] = [4.0, 3.0, 2.0, 1.0]
    assert top_k_fraction(scores, truth) == 0.5
    # a constant map: every feature shares the 4 places, 4 relevant x 4/12 each -> 1/3, rho undefined
    constant = ranking_scores(np.ones(12), truth)
    assert constant["ranking_quality"] == pytest.approx(1 / 3) and np.isnan(constant["ranking_quality.spearman"])
    # ties across the 4th place: 1, 4, 7 sure; 10 tied with 3 noise features for the last place -> 3 + 1/4
    scores = np.zeros(12)
    scores[[1, 4, 7]] = 1.0
    scores[[10, 0, 2, 3]] = 0.5
    assert top_k_fraction(scores, truth) == pytest.approx(3.25 / 4)
    # Spearman with average ranks, against an independent computation
    rng = np.random.default_rng(0)
    noisy = truth + rng.normal(0, 0.3, 12)
    from scipy import stats
    assert ranking_scores(noisy, truth)["ranking_quality.spearman"] == pytest.approx(
        stats.spearmanr(noisy, truth).statistic)


def test_metric_reads_global_scores_or_the_mean_magnitude_of_local_maps():
    ctx = SimpleNamespace(info=INFO)
    metric = RankingQuality()
    # local maps: signs vary, magnitudes are large on the relevant features -> a perfect ranking
    maps = np.zeros((4, 12), dtype=np.float32)
    maps[:, [1, 4, 7, 10]] = np.array([[2.0, -1.5, 1.0, -0.5], [-2.0, 1.5, -1.0, 0.5],
                                       [2.0, 1.5, 1.0, 0.5], [-2.0, -1.5, -1.0, -0.5]])
    local = AttributionMap(maps, np.arange(4), np.zeros(4))
    assert metric(local, ctx) == {"ranking_quality": 1.0, "ranking_quality.spearman": pytest.approx(1.0)}
    # a global vector given in meta wins over the maps: signed, so negative scores rank last
    scores = -planted.IMPORTANCE
    glob = AttributionMap(np.tile(scores, (3, 1)), np.arange(3), np.zeros(3), meta={"global_scores": list(scores)})
    assert metric(glob, ctx)["ranking_quality"] == 0.0
    with pytest.raises(ValueError, match="feature scores"):
        ranking_scores(np.ones(5), planted.IMPORTANCE)
