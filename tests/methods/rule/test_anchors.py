"""Anchors [65]: KL-LUCB's confidence bounds against their closed forms, best-arm identification, the beam
search against an exhaustive search on a planted bandit, MONK-1 (an exact network and a trained MLP: a
robot with a5 = 1 is anchored by ``a5=1``), MONK-3, and a planted image patch; every anchor's precision on
fresh draws of its perturbation distribution reaches τ (the ``precision`` metric)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import optimize
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit, monks
from nnxai.explanations.records import condition_holds
from nnxai.methods.base import ExplainContext
from nnxai.methods.rule.local import _kl_lucb as kl
from nnxai.methods.rule.local._anchor_space import image_space
from nnxai.methods.rule.local.anchors import Anchors
from nnxai.metrics.coverage import Coverage, Precision
from nnxai.metrics.rules import RuleSize
from nnxai.ops.feature_space import predict_classes

from rule_helpers import fitted_mlp

#: The default profile's parameters (configs/config.yaml), but for the number of inputs.
PARAMS = {"n_explain": 20, "tau": 0.95, "delta": 0.1, "epsilon": 0.15, "beam_width": 2, "batch_size": 25,
          "max_size": 4, "max_samples": 2000, "n_bins": 4, "fill": "mean", "n_segments": 20, "compactness": 20.0}
#: Fresh draws per anchor in the precision checks, and the slack of three standard errors at precision τ.
FRESH = 2000
SLACK = 3 * math.sqrt(PARAMS["tau"] * (1 - PARAMS["tau"]) / FRESH)
A5_IS_1 = {"feature": monks.FEATURE_NAMES.index("a5=1"), "op": ">", "threshold": 0.5}


# -- KL-LUCB ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7, 60, 500])
@pytest.mark.parametrize("beta", [0.3, math.log(10), 12.0])
def test_kl_bounds_closed_forms(n, beta):
    """p̂ = 0: ub = 1 − e^{−β/n}; p̂ = 1: lb = e^{−β/n}; the degenerate sides are p̂ itself."""
    level = beta / n
    assert kl.kl_upper(0.0, level) == pytest.approx(1 - math.exp(-level), abs=1e-12)
    assert kl.kl_lower(1.0, level) == pytest.approx(math.exp(-level), abs=1e-12)
    assert kl.kl_lower(0.0, level) == 0.0 and kl.kl_upper(1.0, level) == 1.0


@pytest.mark.parametrize("p", [0.02, 0.3, 0.5, 0.81, 0.97])
@pytest.mark.parametrize("level", [0.001, 0.05, 0.4])
def test_kl_bounds_solve_the_divergence_equation(p, level):
    """Inside (0, 1) the bounds are the roots of KL(p̂, q) = β/n on either side of p̂ (scipy's brentq), and
    lie within Pinsker's interval p̂ ± sqrt(level/2)."""
    upper, lower = float(kl.kl_upper(p, level)), float(kl.kl_lower(p, level))
    root = lambda q: float(kl.kl_bernoulli(p, q)) - level   # noqa: E731
    if root(1 - 1e-15) > 0:
        assert upper == pytest.approx(optimize.brentq(root, p, 1 - 1e-15, xtol=1e-15), abs=1e-10)
    if root(1e-15) > 0:
        assert lower == pytest.approx(optimize.brentq(root, 1e-15, p, xtol=1e-15), abs=1e-10)
    assert p <= upper <= p + math.sqrt(level / 2) + 1e-12
    assert p - math.sqrt(level / 2) - 1e-12 <= lower <= p


def test_exploration_rate_is_kaufmann_kalyanakrishnans():
    base = math.log(405.5 * 7 * 3 ** 1.1 / 0.05)
    assert kl.exploration_rate(7, 3, 0.05) == pytest.approx(base + math.log(base))


def bernoulli_sampler(precision, rng):
    """A bandit: each anchor's draws are Bernoulli(precision(anchor))."""
    return lambda anchors, n: np.array([rng.binomial(n, precision(a)) for a in anchors], dtype=np.float64)


@pytest.mark.parametrize("seed", range(10))
def test_kl_lucb_identifies_the_best_arms(seed):
    """Means 0.5, 0.6, 0.75, 0.9 (gaps > ε = 0.05): the best arm, and the best two, are found."""
    means = {(0,): 0.5, (1,): 0.6, (2,): 0.75, (3,): 0.9}
    for top_n, want in ((1, {(3,)}), (2, {(2,), (3,)})):
        sample = bernoulli_sampler(means.get, np.random.default_rng(seed))
        chosen = kl.kl_lucb(sample, list(means), top_n, 0.05, 0.05, 10, kl.ArmStats(), kl.Budget(10 ** 6))
        assert set(chosen) == want


def planted_precision(anchor) -> float:
    """Five predicates; {0, 1} together are exact, {3} is 97 % precise, 0 or 1 alone less, the rest a coin."""
    a = set(anchor)
    if {0, 1} <= a:
        return 1.0
    return 0.97 if 3 in a else 0.8 if 0 in a else 0.7 if 1 in a else 0.5


COVERAGE = [0.5, 0.6, 0.9, 0.2, 0.8]


def planted_coverage(anchor) -> float:
    return float(np.prod([COVERAGE[i] for i in anchor]))


def test_beam_search_finds_the_exhaustive_optimum():
    """The anchor of largest coverage among those of precision >= τ over all 2^5 predicate sets is {0, 1}
    (coverage 0.3; {3} is precise but covers 0.2): the beam search (B = 2) returns it for every seed."""
    tau = 0.9
    exact = max((a for k in range(6) for a in itertools.combinations(range(5), k) if planted_precision(a) >= tau),
                key=planted_coverage)
    assert exact == (0, 1)
    for seed in range(5):
        result = kl.anchor_beam(bernoulli_sampler(planted_precision, np.random.default_rng(seed)), planted_coverage,
                                5, tuple, tau=tau, delta=0.1, epsilon=0.1, beam_width=2, batch=20, max_size=4,
                                max_samples=10 ** 5)
        assert result.anchor == exact and result.meets_threshold and result.lower > tau
        assert result.coverage == pytest.approx(0.3)


# -- MONK-1 and MONK-3 -------------------------------------------------------------------------------------

class Monk1(nn.Module):
    """The planted rule of MONK-1 as a network: yes iff a1 = a2 or a5 = 1 (one-hot inputs)."""

    architecture = "mlp"

    def forward(self, x):
        yes = torch.clamp((x[:, 0:3] * x[:, 3:6]).sum(1) + x[:, 11], 0, 1)
        return torch.stack([0.5 - yes, yes - 0.5], 1) * 10


def monks_splits(problem: int) -> dict:
    info = DATASETS[f"monks{problem}"]
    splits, meta = info.build({"train": None, "val": None, "test": None}, 0, None)
    return {s: PreparedSplit(x=torch.from_numpy(splits[s]["x"]), y=torch.from_numpy(splits[s]["y"]), meta=meta)
            for s in ("train", "test")}


def monks_context(problem: int, model: nn.Module | None = None) -> ExplainContext:
    split = monks_splits(problem)
    model = fitted_mlp(split["train"].x, split["train"].y) if model is None else model
    return ExplainContext(model=model, dataset=f"monks{problem}", model_id="test", info=DATASETS[f"monks{problem}"],
                          train=split["train"], test=split["test"], seed=0)


def check_fresh_precision(record, ctx, method) -> np.ndarray:
    """Every anchor found reaches τ on FRESH new draws of its D(z|A) (three standard errors of slack)."""
    fresh = Precision(n_samples=FRESH)(record, ctx, method)
    values = fresh["precision"].values
    meets = np.array([e["meets_threshold"] for e in record.explanations])
    assert meets.any()
    assert (values[meets] >= PARAMS["tau"] - SLACK).all(), [e["text"] for e, v in zip(record.explanations, values)
                                                            if e["meets_threshold"] and v < PARAMS["tau"] - SLACK]
    return values


def test_monks1_exact_network_anchors_a5_robots_by_a5():
    """With the planted rule as the network, ``a5=1`` (precision 1, a quarter of the robots) is the anchor of
    largest coverage of every robot with a5 = 1 (any anchor through a1 = a2 needs two predicates and covers
    a ninth): it is found alone, at the first size.  Coverage is the train fraction the anchor holds on."""
    ctx = monks_context(1, Monk1())
    method = Anchors(**{**PARAMS, "n_explain": 48})
    record = method.explain(ctx)
    robots = monks.attributes_of(ctx.test.x[record.indices].numpy())
    with_a5 = robots[:, 4] == 1
    assert with_a5.sum() >= 5
    train = ctx.train.x.numpy().astype(np.float64)
    for entry, a5 in zip(record.explanations, with_a5):
        if a5:
            assert entry["conditions"] == [{"m": 1, "literals": [A5_IS_1]}] and entry["meets_threshold"]
            share = float(train[:, A5_IS_1["feature"]].mean())
            assert entry["text"] == f"IF a5=1 THEN yes (precision 1.00, coverage {share:.2f})"
        holds = np.ones(len(train), dtype=bool)
        for cond in entry["conditions"]:
            holds &= condition_holds(cond, train)
        assert entry["coverage"] == pytest.approx(holds.mean())
    recomputed = Coverage()(record, ctx, method)["coverage"].values
    assert recomputed == pytest.approx([e["coverage"] for e in record.explanations])
    check_fresh_precision(record, ctx, method)
    sizes = RuleSize()(record)["rule_size"].values
    assert (sizes[with_a5] == 1).all() and sizes.max() <= PARAMS["max_size"]


@pytest.mark.parametrize("problem", [1, 3])
def test_monks_trained_mlp(problem):
    """A sigmoid MLP fitted to the training robots: every anchor found reaches τ on fresh draws; on MONK-1
    every robot with a5 = 1 that the network calls yes is anchored by a rule containing ``a5=1``."""
    ctx = monks_context(problem)
    method = Anchors(**{**PARAMS, "n_explain": 30})
    record = method.explain(ctx)
    check_fresh_precision(record, ctx, method)
    if problem == 1:
        robots = monks.attributes_of(ctx.test.x[record.indices].numpy())
        for entry, robot, target in zip(record.explanations, robots, record.targets):
            if robot[4] == 1 and target == 1:
                assert A5_IS_1 in [lit for c in entry["conditions"] for lit in c["literals"]], entry["text"]


# -- a planted image patch -------------------------------------------------------------------------------

class RedPatch(nn.Module):
    """Class 1 iff the square rows/columns 3..8 are red on average (R − G > 0.5)."""

    architecture = "cnn"

    def forward(self, x):
        red = (x[:, 0, 3:9, 3:9] - x[:, 1, 3:9, 3:9]).mean((1, 2))
        return torch.stack([0.5 - red, red - 0.5], 1) * 10


def patch_images(n: int, rng: np.random.Generator, red: bool) -> torch.Tensor:
    images = 0.5 + 0.05 * rng.standard_normal((n, 3, 16, 16))
    if red:
        images[:, :, 3:9, 3:9] = np.array([1.0, 0.0, 0.0])[None, :, None, None]
    return torch.as_tensor(images, dtype=torch.float32)


def test_image_anchor_is_the_planted_patch():
    """Images with a red square are class 1 exactly when the square is kept (absent superpixels are zeros):
    their anchor is the superpixel(s) of the square alone; images without it are class 1 under no
    perturbation, so their anchor is the empty one.  Fresh draws confirm the precision."""
    rng = np.random.default_rng(0)
    test = torch.cat([patch_images(4, rng, True), patch_images(2, rng, False)])
    split = PreparedSplit(x=test, y=torch.tensor([1, 1, 1, 1, 0, 0]), meta={"class_names": ["plain", "red"]})
    info = DatasetInfo("toy_patch", "image", 2, (3, 16, 16), False, False, "a red square")
    ctx = ExplainContext(model=RedPatch(), dataset="toy_patch", model_id="test", info=info, train=split, test=split)
    params = {**PARAMS, "n_explain": 6, "fill": "zero", "n_segments": 8, "compactness": 10.0}
    method = Anchors(**params)
    record = method.explain(ctx)
    assert record.feature_space == "superpixels"
    patch = np.zeros((16, 16), dtype=bool)
    patch[3:9, 3:9] = True
    for i, target, entry in zip(record.indices, record.targets, record.explanations):
        assert entry["meets_threshold"]
        chosen = [c["literals"][0]["feature"] for c in entry["conditions"]]
        if target == 0:
            assert chosen == [] and entry["text"].startswith("IF true THEN plain")
            continue
        segments = image_space(test[i], params["n_segments"], params["compactness"],
                               torch.zeros(1, 3, 16, 16)).segments.numpy()
        inside = {int(s) for s in np.unique(segments[patch])}
        assert set(chosen) <= inside and chosen           # only the square's superpixels
        assert np.isin(segments[patch], chosen).mean() > 0.5   # the kept part holds most of the square
        assert entry["coverage"] == 0.5 ** len(chosen)
    check_fresh_precision(record, ctx, method)
    assert (predict_classes(ctx.model, test) == np.array([1, 1, 1, 1, 0, 0])).all()
