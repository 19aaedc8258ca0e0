"""The network's learnt representation, shared by the example methods that work in it (nearest neighbours
[146], MMD-critic [147]) and by their metrics: the penultimate features ``model.embed(x)`` (the input of the
linear head ``model.classifier`` for every network here), read in eval mode without gradients, float64 on
the CPU, and the pairwise distances in that space."""

from __future__ import annotations

import torch
from torch import nn

from nnxai.ops.cav import eval_mode

FORWARD_CHUNK = 256   # inputs per forward pass (memory only)


def latent_features(model: nn.Module, x: torch.Tensor, device=None) -> torch.Tensor:
    """``model.embed(x)`` flattened to ``(N, d)``, float64 on the CPU.

    The model is put in eval mode for the passes and its mode restored after (no dropout or batch-norm
    update may change the representation or the model); no gradient is recorded.
    """
    embed = getattr(model, "embed", None)
    if not callable(embed):
        raise ValueError(f"{type(model).__name__} has no embed(x) method giving its penultimate representation; "
                         "the latent-space example methods read it")
    if device is None:
        device = next(model.parameters()).device
    chunks = []
    with eval_mode(model), torch.no_grad():
        for xb in x.split(FORWARD_CHUNK):
            chunks.append(embed(xb.to(device)).flatten(1).double().cpu())
    if not chunks:
        raise ValueError("no inputs to embed")
    return torch.cat(chunks)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||²`` for every pair, ``(len(a), len(b))``, by the Gram expansion (clamped at 0: rounding
    can make a zero distance slightly negative).  For the kernel matrices, where speed matters more than the
    last digits."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d2.clamp_min_(0.0)


def euclidean_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||`` computed from the differences themselves (no Gram expansion), so that a ranking of
    neighbours is not reordered by cancellation."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def cosine_similarities(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cos(a_i, b_j)``; a zero vector (a ReLU representation with every unit silent) has similarity 0 to
    everything."""
    na = a.norm(dim=1, keepdim=True)
    nb = b.norm(dim=1, keepdim=True)
    a = torch.where(na > 0, a / na.clamp_min(1e-300), torch.zeros_like(a))
    b = torch.where(nb > 0, b / nb.clamp_min(1e-300), torch.zeros_like(b))
    return a @ b.T
