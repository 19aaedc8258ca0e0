"""Shapley values by permutation sampling, Štrumbelj & Kononenko (survey [104]; the estimator of Captum's
``ShapleyValueSampling``, batched).

The survey (Sec. III-C) writes the Shapley value of player ``i`` in the game ``v`` over the players ``N``
in the permutation form that Štrumbelj & Kononenko adopt "so that v can be approximated in polynomial
time" [104]:

    φ_i = (1/|N|!) Σ_{O ∈ S(N)} [ v(Pre_i(O) ∪ {i}) − v(Pre_i(O)) ],

with ``Pre_i(O)`` the players before ``i`` in the order ``O``.  [104] estimates it by sampling orders at
random; here ``n_samples`` permutations, each walked once from the empty coalition to the full one, so
that every player gets one marginal contribution per permutation (unbiased).  The permutations are those
Captum's ``ShapleyValueSampling`` draws from the same seed (``torch.randperm`` per permutation), and the
values equal Captum's up to float rounding (tested); but where Captum makes one forward pass per
permutation, building its inputs in Python, all prefixes of all permutations of all inputs of a batch go
through the model together (:func:`~._coalitions.coalition_scores`), and ``v(∅)`` and ``v(N)`` are
evaluated once per input instead of once per permutation: ``m (|N| − 1) + 2`` model rows per input.

Game.  The survey's ``v(S)`` averages ``f`` over the values of the features outside ``S`` drawn from the
input space, and [104] samples such a random instance with each order.  As the other reference-based
methods of this project, we fix the absent players at one reference ``r`` instead (zeros or the
per-channel train mean, ``baseline``; Captum's and SHAP's "baseline" game), on the explained class's logit:

    v(S) = f_c(x_S ∪ r_{N∖S}).

This makes each permutation's contributions telescope, so *efficiency* holds exactly for any number of
permutations: Σ_i φ_i = f_c(x) − f_c(r) (``claims_completeness``), and ``shapley_error`` can compute the
exact values of the same game.

Players (:mod:`._shapley_players`): one per feature of a table; the cells of a ``patch``-pixel grid of an
image.  The map spreads each player's value evenly over its pixels and channels (``φ_g / |g|``), so that it
sums over a cell to the cell's Shapley value.  Each input is given its own permutations, drawn with torch's RNG
seeded from the input and the fitted seed (:func:`~nnxai.ops.noise.input_seed`), so results do not depend on
batching.  :meth:`~nnxai.methods.base.Method.fit` learns the reference (``baseline="mean"``) and the seed.
"""

from __future__ import annotations

import torch

from nnxai.methods.attribution.shapley._shapley_players import SampledShapley
from nnxai.params import Int
from nnxai.registry import register


def permutation_prefixes(permutations: torch.Tensor) -> torch.Tensor:
    """``(m, P − 1, P)`` masks: row ``t`` of permutation ``k`` holds its first ``t + 1`` players."""
    n_players = permutations.shape[1]
    position = torch.argsort(permutations, dim=1)                 # position[k, p]: where p stands in order k
    sizes = torch.arange(1, n_players, device=permutations.device)
    return position[:, None, :] < sizes[None, :, None]


def marginal_contributions(permutations: torch.Tensor, prefix_values: torch.Tensor, empty: torch.Tensor,
                           full: torch.Tensor) -> torch.Tensor:
    """Mean marginal contribution of every player, ``(P,)`` float64, from the values of one input's game.

    ``prefix_values`` ``(m, P − 1)``: ``v`` of the first ``1 .. P − 1`` players of each permutation;
    ``empty``/``full``: ``v(∅)``, ``v(N)``.  Player ``O_t`` gains ``v(O_{≤t}) − v(O_{<t})``.
    """
    m, n_players = permutations.shape
    walk = torch.cat([empty.double().expand(m, 1), prefix_values.double(), full.double().expand(m, 1)], dim=1)
    gains = walk[:, 1:] - walk[:, :-1]                            # (m, P): gain of the t-th player of order k
    values = torch.zeros(n_players, dtype=torch.float64, device=walk.device)
    return values.index_add_(0, permutations.reshape(-1), gains.reshape(-1)) / m


@register("shapley_sampling")
class ShapleySampling(SampledShapley):
    """Permutation-sampling Shapley values [104] of the class logit over feature / patch players."""

    parameters = {**SampledShapley.parameters,
                  "n_samples": Int("permutations m sampled per input, each giving every player one marginal "
                                   "contribution v(Pre_i(O) ∪ {i}) − v(Pre_i(O)) [104]", low=1)}

    def draw(self, n_players: int) -> torch.Tensor:
        return torch.stack([torch.randperm(n_players) for _ in range(self.params["n_samples"])])   # (m, P)

    def coalitions(self, draws: torch.Tensor, n_players: int) -> torch.Tensor:
        return permutation_prefixes(draws.reshape(-1, n_players)).reshape(len(draws), -1, n_players)

    def estimate(self, draws, values, empty, full):
        m, n_players = draws.shape[1:]
        return torch.stack([marginal_contributions(order, walk.reshape(m, n_players - 1), v0, v1)
                            for order, walk, v0, v1 in zip(draws, values, empty, full)])
