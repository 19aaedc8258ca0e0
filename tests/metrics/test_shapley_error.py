"""``shapley_error`` and its helpers: exact Shapley values by enumeration, the permutation estimate, and the
metric's comparison of a method's player values with them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from nnxai.explanations import AttributionMap
from nnxai.ops.groups import spread_over_players
from nnxai.methods.attribution.shapley.dasp import Dasp
from nnxai.methods.attribution.shapley.shapley_sampling import ShapleySampling
from nnxai.metrics.shapley_error import ShapleyError, all_coalitions, baseline_game, exact_shapley, \
    permutation_shapley
from nnxai.params import ParamError

from toy_models import LinearModel, tiny_convnet, tiny_mlp, toy_context

METRIC = {"max_players": 13, "reference_permutations": 2000, "max_inputs": 50}


def shapley_by_permutations(v, n: int) -> np.ndarray:
    """Slow reference: the average marginal contribution over all n! orders (Shapley's definition)."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        seen = frozenset()
        for player in order:
            phi[player] += v(seen | {player}) - v(seen)
            seen = seen | {player}
    return phi / math.factorial(n)


def table_game(table: dict):
    """A value function over bool coalitions from a dict ``frozenset(players) -> value``."""
    def value(coalitions):
        return torch.tensor([table[frozenset(np.flatnonzero(c.numpy()).tolist())] for c in coalitions],
                            dtype=torch.float64)
    return value


# --- exact_shapley ---------------------------------------------------------------------------------------

def test_all_coalitions_are_the_bitmasks():
    c = all_coalitions(3)
    assert c.shape == (8, 3) and c.dtype == torch.bool
    assert c[0].tolist() == [False] * 3 and c[-1].tolist() == [True] * 3
    assert c[5].tolist() == [True, False, True]                    # 5 = 0b101
    assert len({tuple(r.tolist()) for r in c}) == 8


def test_two_player_and_game_splits_the_unit_evenly():
    phi, values = exact_shapley(table_game({frozenset(): 0.0, frozenset({0}): 0.0, frozenset({1}): 0.0,
                                            frozenset({0, 1}): 1.0}), 2)
    torch.testing.assert_close(phi, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert values.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_linear_game_gives_weight_times_difference_for_every_output():
    # v(S) = W (x_S ∪ b) + c for 3 outputs: φ_i = W[:, i] (x_i − b_i), for every output at once
    gen = torch.Generator().manual_seed(0)
    w, x, b = torch.randn(3, 5, generator=gen), torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    phi, _ = exact_shapley(lambda c: (torch.where(c, x, b) @ w.T + 0.7).double(), 5)
    assert phi.shape == (3, 5)
    torch.testing.assert_close(phi, (w * (x - b)).double(), rtol=1e-5, atol=1e-6)


def test_random_game_matches_the_average_over_all_orders():
    rng = np.random.default_rng(3)
    table = {frozenset(s): float(rng.normal()) for r in range(5) for s in itertools.combinations(range(4), r)}
    phi, values = exact_shapley(table_game(table), 4)
    np.testing.assert_allclose(phi.numpy(), shapley_by_permutations(lambda s: table[frozenset(s)], 4), atol=1e-12)
    assert float(phi.sum()) == pytest.approx(float(values[-1] - values[0]), abs=1e-12)     # efficiency


def test_exact_shapley_refuses_too_many_players():
    with pytest.raises(ValueError, match="1 <= n <= 20 players, got n = 21"):
        exact_shapley(lambda c: torch.zeros(len(c)), 21)


# --- permutation estimate ------------------------------------------------------------------------------

def marginal_spread(table: dict, n: int) -> np.ndarray:
    """Standard deviation of each player's marginal contribution over all n! orders."""
    gains = [[] for _ in range(n)]
    for order in itertools.permutations(range(n)):
        seen = frozenset()
        for player in order:
            gains[player].append(table[seen | {player}] - table[seen])
            seen = seen | {player}
    return np.array([np.std(g) for g in gains])


def test_permutation_estimate_is_efficient_and_within_its_standard_error():
    rng = np.random.default_rng(4)
    table = {frozenset(s): float(rng.normal()) for r in range(6) for s in itertools.combinations(range(5), r)}
    exact, _ = exact_shapley(table_game(table), 5)
    few, empty, full = permutation_shapley(table_game(table), 5, 3, torch.Generator().manual_seed(0))
    assert float(few.sum()) == pytest.approx(float(full - empty), abs=1e-12)   # 3 → 2 antithetic pairs
    n_perms = 4000
    many, _, _ = permutation_shapley(table_game(table), 5, n_perms, torch.Generator().manual_seed(0))
    # a pair's mean varies at most as one permutation's gain: standard error <= σ / sqrt(n_perms / 2)
    bound = 5 * marginal_spread(table, 5) / math.sqrt(n_perms / 2)
    assert np.all(np.abs((many - exact).numpy()) < bound)


# --- the metric -------------------------------------------------------------------------------------------

def image_case():
    model = tiny_convnet(0, in_channels=3, n_classes=3)
    gen = torch.Generator().manual_seed(1)
    ctx = toy_context(model, torch.rand(16, 3, 8, 8, generator=gen), torch.rand(6, 3, 8, 8, generator=gen), 3)
    return model, ctx


def exact_record(model, ctx, method, scale=1.0):
    """A record whose map holds ``scale`` × the exact Shapley values of the method's players."""
    x = ctx.test.x
    reference = torch.zeros_like(x[:1])
    groups, n = method.player_groups(tuple(x.shape[1:]))
    targets = model(x).argmax(1)
    phi = torch.stack([exact_shapley(baseline_game(model, xi, int(t), reference, groups), n)[0]
                       for xi, t in zip(x, targets)])
    meta = {"baseline": {"kind": "zero", "per_channel": [0.0] * x.shape[1]}}
    return AttributionMap(spread_over_players(scale * phi, groups).detach().numpy(), np.arange(len(x)),
                          targets.numpy(), meta)


def test_exact_values_score_zero_and_doubled_values_score_one():
    model, ctx = image_case()
    method = ShapleySampling(n_explain=6, batch_size=6, n_samples=1, patch=4, baseline="zero")
    metric = ShapleyError(**METRIC)
    perfect = metric(exact_record(model, ctx, method), ctx, method)
    assert perfect["shapley_error"] == pytest.approx(0.0, abs=1e-5)
    assert perfect["shapley_error.efficiency"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["shapley_error.exact"] == 1.0
    doubled = metric(exact_record(model, ctx, method, scale=2.0), ctx, method)
    assert doubled["shapley_error"] == pytest.approx(1.0, abs=1e-5)


def test_players_are_the_methods_patches():
    # one record of exact values for 4×4-pixel cells (4 players of an 8×8 image), scored with the players of
    # three methods: its own cells (exact), one 8×8 cell (its sum is f(x) − f(r): exact too), 3×3-pixel cells
    model, ctx = image_case()
    cells_4 = ShapleySampling(n_explain=6, batch_size=6, n_samples=1, patch=4, baseline="zero")
    record = exact_record(model, ctx, cells_4)
    metric = ShapleyError(**METRIC)
    assert metric(record, ctx, cells_4)["shapley_error"] == pytest.approx(0.0, abs=1e-5)
    whole = Dasp(n_explain=6, batch_size=6, patch=8, baseline="zero")
    assert metric(record, ctx, whole)["shapley_error"] == pytest.approx(0.0, abs=1e-5)
    # 4×4-cell values summed over 3×3 cells are not the 3×3 cells' Shapley values
    cells_3 = Dasp(n_explain=6, batch_size=6, patch=3, baseline="zero")
    assert metric(record, ctx, cells_3)["shapley_error"] > 0.3                   # measured 0.67


def test_beyond_max_players_the_reference_is_a_permutation_estimate():
    model = tiny_mlp(1, n_features=6, n_classes=3)
    gen = torch.Generator().manual_seed(2)
    ctx = toy_context(model, torch.randn(10, 6, generator=gen), torch.randn(5, 6, generator=gen), 3)
    method = ShapleySampling(n_explain=5, batch_size=5, n_samples=1, patch=1, baseline="zero")
    record = exact_record(model, ctx, method)
    sampled = ShapleyError(max_players=4, reference_permutations=1000, max_inputs=50)(record, ctx, method)
    assert sampled["shapley_error.exact"] == 0.0
    assert sampled["shapley_error"] < 0.02                              # reference noise only; measured 0.005
    assert sampled["shapley_error.efficiency"] == pytest.approx(0.0, abs=1e-6)


def test_max_inputs_scores_the_first_inputs_only():
    model, ctx = image_case()
    method = ShapleySampling(n_explain=6, batch_size=6, n_samples=1, patch=4, baseline="zero")
    record = exact_record(model, ctx, method)
    record.attributions[2:] *= 3.0                                      # wrong from the third input on
    assert ShapleyError(**{**METRIC, "max_inputs": 2})(record, ctx, method)["shapley_error"] < 1e-5
    assert ShapleyError(**METRIC)(record, ctx, method)["shapley_error"] == pytest.approx(4 / 6 * 2, abs=1e-4)


class GameMethod:
    """A stand-in for a method with its own value function (e.g. causal Shapley values [107])."""

    def __init__(self, table):
        self.table = table

    def shapley_game(self, ctx, record):
        return lambda x, target, coalitions: table_game(self.table)(coalitions)


def test_a_methods_own_game_replaces_the_baseline_game():
    model = LinearModel(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    ctx = toy_context(model, torch.zeros(4, 3), torch.ones(1, 3), 2)
    table = {frozenset(s): float(len(s) == 3) for r in range(4) for s in itertools.combinations(range(3), r)}
    third = np.full((1, 3), 1 / 3, dtype=np.float32)                   # the unanimity game's Shapley values
    record = AttributionMap(third, np.array([0]), np.array([0]), {})
    result = ShapleyError(**METRIC)(record, ctx, GameMethod(table))
    assert result["shapley_error"] == pytest.approx(0.0, abs=1e-7)
    assert result["shapley_error.efficiency"] == pytest.approx(0.0, abs=1e-7)
    # the same map against the baseline game of the linear model (φ = 1 each) is off by 2/3 per player
    record.meta["baseline"] = {"kind": "zero", "per_channel": [0.0, 0.0, 0.0]}
    assert ShapleyError(**METRIC)(record, ctx, object())["shapley_error"] == pytest.approx(2 / 3, abs=1e-6)


def test_image_record_of_a_method_without_players_is_a_clear_error():
    model, ctx = image_case()
    record = exact_record(model, ctx, ShapleySampling(n_explain=6, batch_size=6, n_samples=1, patch=4,
                                                       baseline="zero"))
    with pytest.raises(ValueError, match="declares no players"):
        ShapleyError(**METRIC)(record, ctx, object())


@pytest.mark.parametrize("params, match", [
    ({"max_players": 21}, r"'shapley_error'\.max_players: 21 is out of range, expected >= 1 and <= 20"),
    ({"max_players": 0}, r"'shapley_error'\.max_players: 0 is out of range, expected >= 1 and <= 20"),
    ({"reference_permutations": 2.5}, r"'shapley_error'\.reference_permutations: expected an integer >= 1, got 2\.5"),
    ({"max_inputs": -1}, r"'shapley_error'\.max_inputs: -1 is out of range, expected >= 1"),
    ({"max_input": 3}, r"'shapley_error': parameters .* expected; unknown \['max_input'\]"),
])
def test_bad_parameters_are_clear_errors(params, match):
    with pytest.raises(ParamError, match=match):
        ShapleyError(**{**METRIC, **params})


def test_the_metric_imports_no_method_module():
    """Metrics import shared numerics from nnxai.ops, not from the methods they score."""
    import ast
    from pathlib import Path

    import nnxai.metrics.shapley_error as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {m for m in imported if m.startswith("nnxai.methods") and m != "nnxai.methods.base"}


def test_cached_reference_values_are_reused_across_methods():
    model, ctx = image_case()
    method = ShapleySampling(n_explain=6, batch_size=6, n_samples=1, patch=4, baseline="zero")
    metric = ShapleyError(**METRIC)
    record = exact_record(model, ctx, method)
    first = metric(record, ctx, method)
    assert len(metric._cache) == 6
    calls = []
    original = model.forward
    model.forward = lambda x: calls.append(len(x)) or original(x)
    second = metric(record, ctx, Dasp(n_explain=6, batch_size=6, patch=4, baseline="zero"))
    assert second == first and not calls                                # no forward pass the second time


def test_reference_values_are_shared_on_disk_by_the_jobs_of_one_model(tmp_path):
    # Two evaluate jobs (two metric instances) of one model with the workflow's cache folder: the second
    # reads the first's reference values and runs no forward pass; a corrupt entry is recomputed.
    import dataclasses

    model, ctx = image_case()
    ctx = dataclasses.replace(ctx, cache_dir=tmp_path)
    method = ShapleySampling(n_explain=6, batch_size=6, n_samples=1, patch=4, baseline="zero")
    record = exact_record(model, ctx, method, scale=1.5)
    first = ShapleyError(**METRIC)(record, ctx, method)
    entries = sorted((tmp_path / "shapley_reference").glob("*.pt"))
    assert len(entries) == 6
    calls = []
    original = model.forward
    model.forward = lambda x: calls.append(len(x)) or original(x)
    second = ShapleyError(**METRIC)(record, ctx, Dasp(n_explain=6, batch_size=6, patch=4, baseline="zero"))
    assert second == first and not calls
    entries[0].write_bytes(b"not a tensor file")
    third = ShapleyError(**METRIC)(record, ctx, method)
    assert third == first and calls                                       # recomputed the corrupt one only
    other = ShapleyError(**{**METRIC, "max_players": 3})(record, ctx, method)   # other parameters: own entries
    assert len(list((tmp_path / "shapley_reference").glob("*.pt"))) == 12 and other["shapley_error.exact"] == 0.0
