"""The *players* of the Shapley-value methods (``shapley_sampling`` [104], ``kernel_shap`` [105], ``dasp``
[106]) and of the ``shapley_error`` metric, and the per-input seeds of the sampling methods.

Players.  A Shapley value is defined for a set of players; here a player is a group of input values that
enter or leave a coalition together.  For tables every feature is a player.  For images (C, H, W) the
players are the cells of a grid of ``patch`` × ``patch`` squares spanning every channel; cells at the
bottom/right edge are smaller when ``patch`` does not divide the side (32 px with ``patch=11``: 11, 11, 10),
and ``patch`` at least the image side gives a single player.  :func:`~nnxai.ops.groups.player_groups`
returns the player number of every input value, shaped like one input.

Maps.  A method's attribution map spreads the Shapley value ``φ_g`` of player ``g`` evenly over the
``|g|`` input values of the group (:func:`~nnxai.ops.groups.spread_over_players`, ``φ_g / |g|`` each, all
channels), so that the map *sums* over a group to the group's value (:func:`~nnxai.ops.groups.player_sums`
inverts it) and efficiency ``Σ_g φ_g = v(all) − v(∅)`` holds for the sum of the whole map, as the
``completeness`` metric checks.

Seeds.  The sampling methods draw their permutations/coalitions from torch's RNG.  For results that do
not depend on batching, each input's draws are made with torch's RNG seeded by
:func:`~nnxai.ops.noise.input_seed` (a BLAKE2b hash of the input's shape and bytes, the method's fitted
seed :attr:`~nnxai.methods.base.Method.seed` and a salt) inside ``torch.random.fork_rng``, so the caller's
RNG state is left as it was.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from nnxai.methods.attribution._coalitions import coalition_scores, with_empty_and_full
from nnxai.methods.attribution._reference import ReferenceAttribution
from nnxai.ops.groups import player_groups, spread_over_players
from nnxai.ops.noise import input_seed, seeded
from nnxai.ops.maps import REFERENCES
from nnxai.params import Choice, Int


class PlayerAttribution(ReferenceAttribution):
    """A Shapley-value attribution over the players of :func:`~nnxai.ops.groups.player_groups` against a
    reference input.

    Adds the parameter ``patch`` (the image grid's cell side; ignored for tables) to those of
    :class:`~._reference.ReferenceAttribution` (``baseline``: ``"zero"`` or ``"mean"``, the reference fitted
    on the train split), and records the players in ``meta["players"] = {"patch", "n_players"}``.
    :meth:`player_groups` is what ``shapley_error`` reads to compare like with like.
    """

    parameters = {
        **ReferenceAttribution.parameters,
        "baseline": Choice("value r of absent players: zeros, or the per-channel (per-feature) mean of the "
                           "train split", REFERENCES),
        "patch": Int("side in pixels of the grid cells that are the players of an image (ignored for tables)",
                     low=1),
    }

    def player_groups(self, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
        """Player number of every value of one input, and the number of players."""
        return player_groups(tuple(input_shape), self.params["patch"])

    def _run(self, ctx):
        record, n_inputs = super()._run(ctx)
        _, n_players = self.player_groups(tuple(ctx.test.x.shape[1:]))
        record.meta["players"] = {"patch": self.params["patch"], "n_players": n_players}
        return record, n_inputs


class SampledShapley(PlayerAttribution):
    """A Shapley estimate from each input's game played on sampled coalitions (permutation sampling [104],
    KernelSHAP [105]).

    Per input, :meth:`draw` samples under torch's RNG seeded by :func:`~nnxai.ops.noise.input_seed` (salt:
    the method id); :meth:`coalitions` turns the draws into coalition masks, which are scored together with
    the empty and the full coalition (:func:`~nnxai.methods.attribution._coalitions.coalition_scores`);
    :meth:`estimate` makes the players' values from the scores, and the map spreads each over its player.
    """

    model_agnostic = True    # queries the model's outputs only
    claims_completeness = True

    @abstractmethod
    def draw(self, n_players: int) -> torch.Tensor:
        """One input's random draws (under its seeded RNG)."""

    @abstractmethod
    def coalitions(self, draws: torch.Tensor, n_players: int) -> torch.Tensor:
        """``(B, S, P)`` bool coalition masks of the stacked draws ``(B, ...)``."""

    @abstractmethod
    def estimate(self, draws: torch.Tensor, values: torch.Tensor, empty: torch.Tensor,
                 full: torch.Tensor) -> torch.Tensor:
        """``(B, P)`` Shapley values from the coalitions' ``values`` ``(B, S)`` and ``v(∅)``, ``v(N)`` ``(B,)``."""

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        reference = self.reference_for(inputs, baselines)
        groups, n_players = self.player_groups(tuple(inputs.shape[1:]))
        groups = groups.to(inputs.device)
        draws = []
        for x in inputs.detach():
            with seeded(input_seed(x, self.seed, self.spec.id)):
                draws.append(self.draw(n_players))
        draws = torch.stack(draws).to(inputs.device)
        masks = with_empty_and_full(self.coalitions(draws, n_players))
        scores = coalition_scores(model, inputs, reference, masks, groups, target)
        values = self.estimate(draws, scores[:, 2:], scores[:, 0], scores[:, 1]).to(inputs.device)
        return spread_over_players(values, groups).to(inputs.dtype)
