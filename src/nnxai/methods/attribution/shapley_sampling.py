"""Shapley values by permutation sampling, Štrumbelj & Kononenko (survey [104]; Captum's
``ShapleyValueSampling``).

The survey (Sec. III-C) writes the Shapley value of player ``i`` in the game ``v`` over the players ``N``
in the permutation form that Štrumbelj & Kononenko adopt "so that v can be approximated in polynomial
time" [104]:

    φ_i = (1/|N|!) Σ_{O ∈ S(N)} [ v(Pre_i(O) ∪ {i}) − v(Pre_i(O)) ],

with ``Pre_i(O)`` the players before ``i`` in the order ``O``.  [104] estimates it by sampling orders at
random; here ``n_samples`` permutations, each walked once from the empty coalition to the full one, so
that every player gets one marginal contribution per permutation (Captum's scheme; unbiased).

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
sums over a cell to the cell's Shapley value.  Each input is explained alone with torch's RNG seeded from
the input (:func:`~._shapley_players.input_seed`), so results do not depend on batching.
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.methods.attribution._shapley_players import PlayerAttribution, input_seed, player_sizes, \
    player_sums, seeded, spread_over_players
from nnxai.registry import register

#: Most perturbed inputs in one forward pass; bounds memory only.
PASS_INPUTS = 512


@register("shapley_sampling")
class ShapleySampling(PlayerAttribution):
    """Permutation-sampling Shapley values [104] of the class logit over feature / patch players.

    Parameters
    ----------
    n_explain : int
        Number of seeded test inputs explained by :meth:`explain`.
    batch_size : int
        Inputs per chunk of :meth:`explain` (each input is sampled on its own; no effect on results).
    n_samples : int
        Permutations ``m`` per input.
    patch : int
        Side in pixels of the grid cells that are the players of an image (ignored for tables).
    baseline : {"zero", "mean"}
        Value of absent players: zeros, or the per-channel mean of the train split.
    """
    model_agnostic = True    # queries the model's outputs only

    param_names = ("n_explain", "batch_size", "n_samples", "patch", "baseline")
    integer_params = ("n_explain", "batch_size", "n_samples", "patch")
    claims_completeness = True

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        reference = self.reference_for(inputs, baselines)
        groups, n_players = self.player_groups(tuple(inputs.shape[1:]))
        groups = groups.to(inputs.device)
        from captum.attr import ShapleyValueSampling  # lazy, see gradient.py

        sampler = ShapleyValueSampling(model)
        values = []
        for j, x in enumerate(inputs.detach()):
            ref = reference if len(reference) == 1 else reference[j:j + 1]
            with seeded(input_seed(x, self.sampling_seed, "shapley_sampling")), torch.no_grad():
                out = sampler.attribute(x[None], baselines=ref, target=int(target[j]), feature_mask=groups[None],
                                        n_samples=self.params["n_samples"],
                                        perturbations_per_eval=min(n_players, PASS_INPUTS))
            # Captum writes a player's value on each of its values: their mean is the value
            values.append(player_sums(out, groups, n_players) / player_sizes(groups, n_players))
        return spread_over_players(torch.cat(values), groups).to(inputs.dtype)
