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

import torch

from nnxai.methods.attribution._reference import ReferenceAttribution
from nnxai.ops.groups import player_groups
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
