"""``insertion_deletion``: the deletion and insertion curves of RISE, Petsiuk, Das & Saenko (BMVC 2018).

Petsiuk et al. (Sec. 4.1, "Evaluation") score a saliency map by two causal curves of the explained class
probability:

- *deletion*: remove the most relevant pixels first from the input; a sharp drop of the probability, a
  low area under its curve as a function of the fraction of pixels removed, marks a good explanation;
- *insertion*: start from a blurred canvas and insert the most relevant pixels first; a sharp rise, a
  *high* area under the curve, is good.

Here, as in :mod:`.pixel_flipping` (whose helpers this module shares):

- the units removed or inserted are the non-overlapping ``patch`` × ``patch`` squares of the image (one
  feature each for tables), ranked by the sum of the saliency map (:func:`saliency_map`, the channel
  maximum) inside them, most relevant first, ties in patch order (RISE removes single pixels, a fixed
  number per step);
- the curve has ``steps + 1`` points, ``k = 0..L`` with ``L = min(steps, P)`` for ``P`` patches: at point
  ``k`` the first ``round(k·P/L)`` patches of the order are removed (inserted), so both curves run over the
  whole fraction 0..1 whatever ``steps``;
- a removed patch takes, in every channel, the value of the *fill image* ``F`` (``fill``): the per-channel
  train mean (``"mean"``), zeros (``"zero"``, RISE's deletion uses black) or the input blurred by a Gaussian
  of ``blur_sigma`` pixels (``"blur"``, RISE's insertion canvas; images only).  The insertion curve starts
  from ``F`` and restores the input's pixels; one ``fill`` serves both curves, so they are comparable;
- the score is the softmax probability of the explained class; the area under a curve is the trapezoidal
  rule over the fraction of patches switched, in [0, 1].

Reported (means over the explained inputs): ``insertion_deletion.insertion`` (higher is better),
``insertion_deletion.deletion`` (lower is better) and the main value ``insertion_deletion`` = insertion −
deletion (higher is better), as well as the same three for a random patch order (``.insertion_random``,
``.deletion_random``, ``.random``; seeded by the context's seed, one order per input) to show what the
explanation adds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nnxai.data import DATASETS
from nnxai.intervals import PerInput
from nnxai.metrics._patches import (PATCH, constant_fill, patch_relevance, random_ranks, ranks_from_relevance,
                                    switched_probabilities)
from nnxai.metrics.attribution import explained_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.maps import channel_means
from nnxai.params import Choice, Float, Int

FILLS = ("mean", "zero", "blur")


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of ``images`` (N, C, H, W) convolved with a Gaussian of ``sigma`` pixels.

    The kernel reaches ``ceil(3σ)`` pixels either side and is normalised to sum 1; borders are padded by
    replicating the edge pixels, so a constant image stays constant.
    """
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype).to(images.device)
    c = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def fill_images(inputs: torch.Tensor, fill: str, blur_sigma: float, x_train: torch.Tensor) -> torch.Tensor:
    """The fill image ``F`` of every input, shaped like ``inputs``."""
    if fill == "blur":
        if inputs.dim() != 4:
            raise ValueError(f"fill 'blur' needs (N, C, H, W) images, got inputs of shape {tuple(inputs.shape)}")
        return gaussian_blur(inputs, blur_sigma)
    return constant_fill(channel_means(x_train) if fill == "mean"
                         else torch.zeros(inputs.shape[1], dtype=inputs.dtype), inputs)


def switch_counts(n_patches: int, steps: int) -> torch.Tensor:
    """Patches switched at each of the ``L + 1`` curve points, ``round(k·P/L)`` for ``k = 0..L``."""
    length = min(steps, n_patches)
    return torch.round(torch.arange(length + 1, dtype=torch.float64) * n_patches / length).long()


def area_under(curves: torch.Tensor, counts: torch.Tensor, n_patches: int) -> torch.Tensor:
    """Trapezoidal area under each curve (N, L + 1) over the fraction of patches switched; ``(N,)``."""
    fractions = counts.to(curves.device, torch.float64) / n_patches
    return torch.trapezoid(curves, fractions, dim=1)


@register_metric
class InsertionDeletion(Metric):
    """Areas under the insertion and deletion curves of RISE (Petsiuk et al. 2018), and their difference."""

    id = "insertion_deletion"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    parameters = {
        "patch": PATCH,
        "steps": Int("curve points after the first, L (at most the number of patches)", low=1),
        "fill": Choice("fill image F: the per-channel train mean, zeros (RISE's deletion) or the input blurred "
                       "by a Gaussian (RISE's insertion canvas; images only)", FILLS),
        "blur_sigma": Float("standard deviation of the blur in pixels (read only with fill 'blur')",
                            low=0.0, low_open=True),
    }
    description = ("area under the insertion curve minus area under the deletion curve of the class probability "
                   "(most relevant patches first)")

    @classmethod
    def cell_why_not(cls, run, dataset, model, method):
        fill = run.cfg.get("metric_params", {}).get(cls.id, {}).get("fill")
        if fill == "blur" and dataset in DATASETS and DATASETS[dataset].kind != "image":
            return f"fill 'blur' blurs images, {dataset} is {DATASETS[dataset].kind}"
        return None

    def __call__(self, record, ctx, method):
        inputs, targets, attributions = explained_inputs(record, ctx)
        relevance, pixel_patch, n_patches = patch_relevance(attributions, self.params["patch"])
        fills = fill_images(inputs, self.params["fill"], float(self.params["blur_sigma"]), ctx.train.x)
        counts = switch_counts(n_patches, self.params["steps"])
        control = random_ranks(len(inputs), n_patches, ctx.seed, inputs.device)
        out = {}
        for suffix, ranks in (("", ranks_from_relevance(relevance)), ("_random", control)):
            areas = {}
            for curve in ("insertion", "deletion"):
                shown, hidden = (inputs, fills) if curve == "insertion" else (fills, inputs)
                probabilities = switched_probabilities(ctx.model, inputs, targets, ranks, pixel_patch, shown,
                                                       hidden, counts)
                areas[curve] = area_under(probabilities, counts, n_patches).double()
                out[f"{self.id}.{curve}{suffix}"] = PerInput(areas[curve])
            out[self.id if not suffix else f"{self.id}.random"] = PerInput(areas["insertion"] - areas["deletion"])
        return out
