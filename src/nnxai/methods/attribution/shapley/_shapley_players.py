"""The *players* of the Shapley-value methods (``shapley_sampling`` [104], ``kernel_shap`` [105], ``dasp``
[106]) and of the ``shapley_error`` metric, and the per-input seeds of the sampling methods.

Players.  A Shapley value is defined for a set of players; here a player is a group of input values that
enter or leave a coalition together.  For tables every feature is a player.  For images (C, H, W) the
players are the cells of a grid of ``patch`` × ``patch`` squares spanning every channel; cells at the
bottom/right edge are smaller when ``patch`` does not divide the side (32 px with ``patch=11``: 11, 11, 10),
and ``patch`` at least the image side gives a single player.  :func:`player_groups` returns the player
number of every input value, shaped like one input.

Maps.  A method's attribution map spreads the Shapley value ``φ_g`` of player ``g`` evenly over the
``|g|`` input values of the group (:func:`spread_over_players`, ``φ_g / |g|`` each, all channels), so
that the map *sums* over a group to the group's value (:func:`player_sums` inverts it) and efficiency
``Σ_g φ_g = v(all) − v(∅)`` holds for the sum of the whole map, as the ``completeness`` metric checks.

Seeds.  The sampling methods draw their permutations/coalitions from torch's RNG.  For results that do
not depend on batching, each input's draws are made with torch's RNG seeded by :func:`input_seed` (a
BLAKE2b hash of the input's shape and bytes, the seed and a salt, as
:func:`nnxai.methods.attribution.gradient.smoothgrad.input_noise`) inside ``torch.random.fork_rng``, so the
caller's RNG state is left as it was.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from nnxai.params import check_positive_ints
from nnxai.methods.attribution._reference import ReferenceAttribution
from nnxai.ops.groups import player_groups


class PlayerAttribution(ReferenceAttribution):
    """A Shapley-value attribution over the players of :func:`player_groups` against a reference input.

    Adds the parameter ``patch`` (the image grid's cell side; ignored for tables) to those of
    :class:`~._reference.ReferenceAttribution` (``baseline``: ``"zero"`` or ``"mean"``), sets
    :attr:`sampling_seed` to ``ctx.seed`` during :meth:`explain`, and records the players in
    ``meta["players"] = {"patch", "n_players"}``.  :meth:`player_groups` is what ``shapley_error`` reads to
    compare like with like.
    """

    integer_params: ClassVar[tuple[str, ...]] = ("n_explain", "batch_size", "patch")

    def __init__(self, **params: Any):
        super().__init__(**params)
        check_positive_ints(f"method {self.spec.id!r}", self.params, self.integer_params)
        self.sampling_seed = 0

    def player_groups(self, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
        """Player number of every value of one input, and the number of players."""
        return player_groups(tuple(input_shape), self.params["patch"])

    def _run(self, ctx):
        self.sampling_seed = int(ctx.seed)
        try:
            record, n_inputs = super()._run(ctx)
        finally:
            self.sampling_seed = 0
        _, n_players = self.player_groups(tuple(ctx.test.x.shape[1:]))
        record.meta["players"] = {"patch": self.params["patch"], "n_players": n_players}
        return record, n_inputs

    def reference_for(self, inputs: torch.Tensor, baselines: torch.Tensor | None) -> torch.Tensor:
        """The reference (``(1, ...)`` or ``(N, ...)``) as a detached tensor on the inputs' device."""
        reference = self._default_reference(inputs) if baselines is None else baselines
        return torch.as_tensor(reference, dtype=inputs.dtype, device=inputs.device).detach()
