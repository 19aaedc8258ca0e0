"""``post_hoc_accuracy``: does the model decide the same on the selected features alone?  Chen et al. [110].

L2X (Chen, Song, Wainwright & Jordan 2018, Sec. 4) scores a selection of ``k`` units by feeding the model
only the selected part of each input and counting how often its prediction agrees with its prediction on
the whole input:

    post-hoc accuracy = mean_x 1[argmax f(x_S ⊕ x̄_S̄) = argmax f(x)],

``x̄`` being the per-channel (per-feature for tables) mean of the train split, which stands for the
unselected units.  Higher is better; 1 means the ``k`` units carry the whole decision.

The units and ``k`` are the explanation's own: a selecting method records
``meta["selection"] = {"k": int, "unit": "feature" | "patch", "patch_size": int}`` (L2X does).  The
selected units are the ``k`` with the largest mean attribution (over a patch's pixels and channels; ties
keep unit order).  ``post_hoc_accuracy.random`` is the same score for ``k`` units drawn at random (seeded by
the context's seed, one draw per input): what a selection without information achieves.
"""

from __future__ import annotations

import torch

from nnxai.intervals import PerInput
from nnxai.ops.maps import channel_means
from nnxai.metrics.attribution import FORWARD_BATCH, explained_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics._patches import patch_index


def unit_index(input_shape: tuple[int, ...], patch_size: int) -> tuple[torch.Tensor, int]:
    """Unit of every entry of one input (flattened, channels included) and the number of units."""
    if len(input_shape) == 1:
        return torch.arange(input_shape[0]), input_shape[0]
    c, h, w = input_shape
    pixel_unit, count = patch_index((h, w), patch_size)
    return pixel_unit.repeat(c), count


@torch.no_grad()
def predictions(model, inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(b).argmax(dim=1) for b in inputs.split(FORWARD_BATCH)])


def keep_only(inputs: torch.Tensor, keep_units: torch.Tensor, entry_unit: torch.Tensor,
              fill: torch.Tensor) -> torch.Tensor:
    """``inputs`` with every entry outside the kept units (``keep_units`` (N, U) bool) set to ``fill``."""
    flat = inputs.flatten(1)
    kept = keep_units[:, entry_unit]
    return torch.where(kept, flat, fill.flatten()[None, :]).reshape(inputs.shape)


def agreement(model, inputs: torch.Tensor, keep_units: torch.Tensor, entry_unit: torch.Tensor,
              fill: torch.Tensor) -> PerInput:
    """Whether each input's predicted class survives keeping only ``keep_units`` (the mean: the fraction)."""
    masked = keep_only(inputs, keep_units, entry_unit, fill)
    return PerInput(predictions(model, masked) == predictions(model, inputs))


def top_units(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, U)`` bool: the ``k`` highest-scoring units of each row (stable: ties keep unit order)."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order, True)


@register_metric
class PostHocAccuracy(Metric):
    """Agreement of the model's prediction on the top-``k`` units (others at the train mean) with its
    prediction on the full input [110]; and of ``k`` random units."""

    id = "post_hoc_accuracy"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    description = "fraction of inputs whose predicted class is unchanged when only the k selected units are kept"

    def __call__(self, record, ctx, method):
        selection = record.meta.get("selection")
        if not isinstance(selection, dict) or not {"k", "patch_size"} <= set(selection):
            raise ValueError(f"record of method {record.meta.get('method')!r} has no meta['selection'] with 'k' "
                             "and 'patch_size'; post_hoc_accuracy scores feature selectors (rerun explain)")
        inputs, _, attributions = explained_inputs(record, ctx)
        entry_unit, n_units = unit_index(tuple(inputs.shape[1:]), int(selection["patch_size"]))
        entry_unit = entry_unit.to(inputs.device)
        k = int(selection["k"])
        if not 1 <= k <= n_units:
            raise ValueError(f"meta['selection']['k']={k} must be between 1 and the {n_units} units of the inputs")
        sums = torch.zeros(len(inputs), n_units, dtype=torch.float64, device=inputs.device)
        sums.index_add_(1, entry_unit, attributions.flatten(1).double())
        sizes = torch.bincount(entry_unit, minlength=n_units).double()
        fill = channel_means(ctx.train.x).to(inputs.device)
        fill = fill.reshape(-1, *(1,) * (inputs.dim() - 2)).expand(inputs.shape[1:])
        generator = torch.Generator().manual_seed(int(ctx.seed))
        random_scores = torch.rand(len(inputs), n_units, generator=generator, dtype=torch.float64)
        return {
            "post_hoc_accuracy": agreement(ctx.model, inputs, top_units(sums / sizes, k), entry_unit, fill),
            "post_hoc_accuracy.random": agreement(ctx.model, inputs, top_units(random_scores.to(inputs.device), k),
                                                  entry_unit, fill),
        }
