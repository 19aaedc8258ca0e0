"""``pixel_flipping``: AOPC under most-relevant-first region perturbation, Samek et al. [149].

Samek et al. perturb the regions of an input in the order the explanation ranks them, most relevant
first (MoRF): x^(0) = x, x^(k) = g(x^(k-1), r_k), and score the explanation by the *area over the MoRF
perturbation curve*, AOPC = 1/(L+1) ⟨Σ_{k=0}^{L} f(x^(0)) − f(x^(k))⟩_{p(x)}: the faster the output drops,
the better the ranking.  Here, as the survey summarises it (Sec. V):

- regions are the non-overlapping ``patch`` × ``patch`` squares of the image (one feature each for
  tabular inputs, where ``patch`` is ignored); a patch's relevance is the sum of the saliency map
  (:func:`saliency_map`, the maximum over channels) inside it; ties keep patch order;
- a perturbed patch is set, in every channel, to a fixed uninformative value (``fill``: the per-channel
  mean of the train split, or 0) instead of the uniform noise of [149], after Hooker et al. [150]: the
  score is then deterministic, and the "mean" fill keeps perturbed inputs near the data;
- ``f`` is the softmax probability of the explained class, as the class score [149] uses is a
  probability-like output, bounded in [0, 1] and comparable across models (a logit is unbounded);
- AOPC = mean over inputs and over k = 1..L of f(x) − f(x^(k)), with L = min(``steps``, number of
  patches); [149]'s average over k = 0..L differs by the constant factor L/(L+1) (its k = 0 term is 0).

``pixel_flipping`` is the AOPC of the explanation's ranking, ``pixel_flipping.random`` that of a random
patch order (seeded by the context's seed, one order per input), so the gap shows what the explanation
adds.  Higher is better.  All L perturbed copies of every input go through the model in a few large
batches.
"""

from __future__ import annotations

import torch

from nnxai.metrics.attribution import FORWARD_BATCH, class_scores, explained_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.maps import channel_means, saliency_map
from nnxai.params import Choice, Int

FILLS = ("mean", "zero")
#: The regions perturbed (pixel flipping, insertion/deletion).
PATCH = Int("side of the square patches (the regions of [149]) of an image, ranked by their summed saliency; "
            "tables: one feature per patch", low=1)


def patch_index(shape: tuple[int, ...], patch: int) -> tuple[torch.Tensor, int]:
    """Patch number of every position of a saliency map of ``shape`` ((H, W), or (F,) for tables).

    Returns the flat ``(H*W,)`` index and the number of patches; edge patches of an image whose side is
    not a multiple of ``patch`` are smaller.
    """
    if len(shape) == 1:
        return torch.arange(shape[0]), shape[0]
    h, w = shape
    cols = -(-w // patch)
    rows = torch.arange(h) // patch
    return (rows[:, None] * cols + torch.arange(w)[None, :] // patch).flatten(), (-(-h // patch)) * cols


def ranks_from_relevance(relevance: torch.Tensor) -> torch.Tensor:
    """Position of each patch in most-relevant-first order (0 = flipped first); ``relevance`` (N, P)."""
    order = torch.argsort(relevance, dim=1, descending=True, stable=True)
    positions = torch.arange(relevance.shape[1], device=relevance.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def aopc(model, inputs, targets, ranks, pixel_patch, fill, steps) -> float:
    """AOPC of flipping patches in the order ``ranks`` (N, P), ``steps`` patches, ``fill`` broadcast to one input."""
    n = len(inputs)
    base = class_scores(model, inputs, targets, softmax=True)
    k = torch.arange(1, steps + 1, device=inputs.device)
    flat = inputs.flatten(2) if inputs.dim() > 2 else inputs[:, None, :]       # (N, C, positions)
    fill_flat = fill.reshape(1, flat.shape[1], -1).expand(1, flat.shape[1], flat.shape[2])
    chunk = max(1, FORWARD_BATCH // steps)
    drops = []
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        flipped = ranks[part][:, None, :] < k[None, :, None]                    # (n, L, P): patch gone by step k
        pixel_gone = flipped[..., pixel_patch.to(inputs.device)]               # (n, L, positions)
        perturbed = torch.where(pixel_gone[:, :, None, :], fill_flat[:, None], flat[part][:, None])
        perturbed = perturbed.reshape(-1, *inputs.shape[1:])
        scores = class_scores(model, perturbed, targets[part].repeat_interleave(steps), softmax=True)
        drops.append(base[part][:, None] - scores.reshape(-1, steps))
    return float(torch.cat(drops).mean())


@register_metric
class PixelFlipping(Metric):
    """AOPC of most-relevant-first patch perturbation [149] and of a random patch order."""

    id = "pixel_flipping"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    parameters = {
        "patch": PATCH,
        "steps": Int("patches flipped, L of the AOPC (at most the number of patches)", low=1),
        "fill": Choice("value of a flipped patch in every channel: the per-channel train mean [150], or 0", FILLS),
    }
    description = "AOPC: mean drop of the class probability as the most relevant patches are replaced"

    def __call__(self, record, ctx, method):
        inputs, targets, attributions = explained_inputs(record, ctx)
        relevance_map = saliency_map(attributions).flatten(1).double()
        pixel_patch, n_patches = patch_index(tuple(saliency_map(inputs[:1]).shape[1:]), self.params["patch"])
        pixel_patch = pixel_patch.to(inputs.device)
        relevance = torch.zeros(len(inputs), n_patches, dtype=torch.float64, device=inputs.device)
        relevance.index_add_(1, pixel_patch, relevance_map)
        steps = min(self.params["steps"], n_patches)
        fill = (channel_means(ctx.train.x) if self.params["fill"] == "mean"
                else torch.zeros(inputs.shape[1], dtype=inputs.dtype)).to(inputs.device)
        generator = torch.Generator().manual_seed(int(ctx.seed))
        random_ranks = torch.argsort(torch.rand(len(inputs), n_patches, generator=generator), dim=1)
        return {
            "pixel_flipping": aopc(ctx.model, inputs, targets, ranks_from_relevance(relevance),
                                   pixel_patch, fill, steps),
            "pixel_flipping.random": aopc(ctx.model, inputs, targets, random_ranks.to(inputs.device),
                                          pixel_patch, fill, steps),
        }
