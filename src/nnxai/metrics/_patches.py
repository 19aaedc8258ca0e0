"""Patch perturbation, shared by the perturbation metrics (pixel flipping [149], insertion/deletion, ROAR
[150], post-hoc accuracy, fragility): the patches of a saliency map, their ranking by summed relevance, and
the class probability of inputs whose first-ranked patches are switched to another image.
"""

from __future__ import annotations

import torch

from nnxai.metrics.attribution import FORWARD_BATCH, class_scores
from nnxai.ops.groups import player_groups
from nnxai.ops.maps import saliency_map
from nnxai.params import Int

#: The regions perturbed (pixel flipping, insertion/deletion).
PATCH = Int("side of the square patches (the regions of [149]) of an image, ranked by their summed saliency; "
            "tables: one feature per patch", low=1)


def patch_index(shape: tuple[int, ...], patch: int) -> tuple[torch.Tensor, int]:
    """Patch number of every position of a saliency map of ``shape`` ((H, W), or (F,) for tables).

    Returns the flat ``(H*W,)`` index and the number of patches: the cells of
    :func:`~nnxai.ops.groups.player_groups`, numbered row by row; edge patches of an image whose side is
    not a multiple of ``patch`` are smaller.
    """
    cells, n_patches = player_groups(tuple(shape) if len(shape) == 1 else (1, *shape), patch)
    return cells.flatten(), n_patches


def patch_relevance(attributions: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Relevance of every patch, the sum of the saliency map (:func:`saliency_map`) inside it.

    Returns ``(N, P)`` float64 relevance, the patch of every map position and ``P``.
    """
    relevance_map = saliency_map(attributions).flatten(1).double()
    pixel_patch, n_patches = patch_index(tuple(saliency_map(attributions[:1]).shape[1:]), patch)
    pixel_patch = pixel_patch.to(attributions.device)
    relevance = torch.zeros(len(attributions), n_patches, dtype=torch.float64, device=attributions.device)
    return relevance.index_add_(1, pixel_patch, relevance_map), pixel_patch, n_patches


def ranks_from_relevance(relevance: torch.Tensor) -> torch.Tensor:
    """Position of each patch in most-relevant-first order (0 = flipped first); ``relevance`` (N, P)."""
    order = torch.argsort(relevance, dim=1, descending=True, stable=True)
    positions = torch.arange(relevance.shape[1], device=relevance.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def random_ranks(n_inputs: int, n_patches: int, seed: int, device: torch.device) -> torch.Tensor:
    """A random patch order per input (the control), seeded by ``seed``; ``(N, P)``."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.argsort(torch.rand(n_inputs, n_patches, generator=generator), dim=1).to(device)


def constant_fill(values: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Per-channel (images) or per-feature (tables) ``values`` broadcast to the shape of ``inputs``."""
    view = (1, inputs.shape[1]) + (1,) * (inputs.dim() - 2)
    return values.to(inputs.device, inputs.dtype).reshape(view).expand_as(inputs)


def switched_probabilities(model, inputs, targets, ranks, pixel_patch, shown, hidden, counts) -> torch.Tensor:
    """Class probability at every point of a perturbation curve, ``(N, len(counts))`` float64.

    ``ranks`` (N, P): position of each patch in the order; at point ``k`` the patches whose position is
    below ``counts[k]`` show ``shown``, the others ``hidden`` (both shaped like ``inputs``, or broadcast to
    it): deletion shows the fill image over the input, insertion the input over the fill.
    """
    n, points = len(inputs), len(counts)
    flat_of = (lambda t: t.flatten(2)) if inputs.dim() > 2 else (lambda t: t[:, None, :])
    shown, hidden = (flat_of(t.expand_as(inputs)) for t in (shown, hidden))   # (N, C, positions)
    counts, pixel_patch = counts.to(inputs.device), pixel_patch.to(inputs.device)
    chunk = max(1, FORWARD_BATCH // points)
    out = []
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        switched = ranks[part][:, None, :] < counts[None, :, None]               # (n, points, P)
        pixel_switched = switched[..., pixel_patch][:, :, None, :]             # (n, points, 1, positions)
        images = torch.where(pixel_switched, shown[part][:, None], hidden[part][:, None])
        scores = class_scores(model, images.reshape(-1, *inputs.shape[1:]),
                              targets[part].repeat_interleave(points), softmax=True)
        out.append(scores.reshape(-1, points))
    return torch.cat(out) if out else torch.zeros(0, points, dtype=torch.float64, device=inputs.device)
