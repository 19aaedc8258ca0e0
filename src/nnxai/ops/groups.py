"""Groups of input values that act together: patches of an image (shared by its channels), features of a
table.  The players of the Shapley methods [104]-[106], the feature groups of MAME [68] and the cells of
the perturbation metrics are all such groups; the group sums and the even spread back over a group's
values are the two maps between per-value and per-group vectors.
"""

from __future__ import annotations

import numpy as np
import torch


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


def feature_groups(input_shape: tuple[int, ...], patch_size: int) -> tuple[np.ndarray, int]:
    """:func:`player_groups` as a numpy array: ``(index, n_groups)`` shaped ``input_shape``."""
    groups, n = player_groups(input_shape, patch_size)
    return groups.numpy().copy(), n


def group_sums(values: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    """:func:`player_sums` of numpy arrays: ``(N, n_groups)`` float64 sums of each input over each group."""
    flat = torch.from_numpy(np.asarray(values, dtype=np.float64).reshape(len(values), -1))
    return player_sums(flat, torch.from_numpy(np.ascontiguousarray(index).ravel()), n_groups).numpy()


def spread_over_groups(coefficients: np.ndarray, index: np.ndarray) -> np.ndarray:
    """:func:`spread_over_players` of numpy arrays, as float32 maps shaped like ``index``."""
    spread = spread_over_players(torch.from_numpy(np.asarray(coefficients, dtype=np.float64)),
                                 torch.from_numpy(np.ascontiguousarray(index)))
    return spread.numpy().astype(np.float32)
