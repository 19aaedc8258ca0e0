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
:func:`nnxai.methods.attribution.smoothgrad.input_noise`) inside ``torch.random.fork_rng``, so the
caller's RNG state is left as it was.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch

from nnxai.params import check_positive_ints
from nnxai.methods.attribution._reference import ReferenceAttribution


def player_groups(input_shape: tuple[int, ...], patch: int) -> tuple[torch.Tensor, int]:
    """Player number of every value of one input of ``input_shape``, and the number of players.

    ``(F,)`` tables: feature ``j`` is player ``j``.  ``(C, H, W)`` images: the cell of a ``patch``-pixel
    grid, numbered row by row, the same for all channels.
    """
    if len(input_shape) == 1:
        return torch.arange(input_shape[0]), int(input_shape[0])
    if len(input_shape) != 3:
        raise ValueError(f"Shapley players are defined for (F,) tables or (C, H, W) images, got inputs of "
                         f"shape {tuple(input_shape)}")
    channels, height, width = input_shape
    cols = -(-width // patch)
    cells = (torch.arange(height) // patch)[:, None] * cols + (torch.arange(width) // patch)[None, :]
    return cells.expand(channels, height, width).contiguous(), int((-(-height // patch)) * cols)


def player_sizes(groups: torch.Tensor, n_players: int) -> torch.Tensor:
    """Number of input values of each player, ``(n_players,)``."""
    return torch.bincount(groups.flatten(), minlength=n_players)


def player_sums(maps: torch.Tensor, groups: torch.Tensor, n_players: int) -> torch.Tensor:
    """``(N, n_players)`` float64 sums of the maps ``(N, *groups.shape)`` over each player's values."""
    flat = maps.detach().reshape(len(maps), -1).double()
    out = torch.zeros(len(maps), n_players, dtype=torch.float64, device=maps.device)
    return out.index_add_(1, groups.flatten().to(maps.device), flat)


def spread_over_players(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Maps ``(N, *groups.shape)`` holding ``values[:, g] / |g|`` on every value of player ``g``."""
    groups = groups.to(values.device)
    sizes = player_sizes(groups, values.shape[1]).to(values.dtype)
    per_value = values / sizes.clamp(min=1)
    return per_value[:, groups.flatten()].reshape(len(values), *groups.shape)


def input_seed(x: torch.Tensor, seed: int, salt: str = "") -> int:
    """A 63-bit seed determined by the values and shape of ``x``, ``seed`` and ``salt`` only."""
    values = x.detach().cpu().contiguous()
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.int64(seed).tobytes())
    digest.update(salt.encode())
    digest.update(np.asarray(values.shape, dtype=np.int64).tobytes())
    digest.update(values.numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


@contextmanager
def seeded(seed: int):
    """Run the block with torch's CPU RNG seeded by ``seed``; the caller's RNG state is restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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
