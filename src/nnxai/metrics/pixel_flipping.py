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

from nnxai.intervals import PerInput
from nnxai.metrics._patches import (PATCH, constant_fill, patch_relevance, random_ranks, ranks_from_relevance,
                                    switched_probabilities)
from nnxai.metrics.attribution import class_scores, explained_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.maps import channel_means
from nnxai.params import Choice, Int

FILLS = ("mean", "zero")


def aopc(model, inputs, targets, ranks, pixel_patch, fill, steps) -> PerInput:
    """AOPC of flipping patches in the order ``ranks`` (N, P), ``steps`` patches, ``fill`` shaped like ``inputs``:
    one value per input, the mean drop of its class probability over the steps [149]."""
    base = class_scores(model, inputs, targets, softmax=True)
    counts = torch.arange(1, steps + 1)
    scores = switched_probabilities(model, inputs, targets, ranks, pixel_patch, fill, inputs, counts)
    return PerInput((base[:, None] - scores).double().mean(dim=1))


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
        relevance, pixel_patch, n_patches = patch_relevance(attributions, self.params["patch"])
        steps = min(self.params["steps"], n_patches)
        fill = constant_fill(channel_means(ctx.train.x) if self.params["fill"] == "mean"
                             else torch.zeros(inputs.shape[1], dtype=inputs.dtype), inputs)
        return {
            "pixel_flipping": aopc(ctx.model, inputs, targets, ranks_from_relevance(relevance),
                                   pixel_patch, fill, steps),
            "pixel_flipping.random": aopc(ctx.model, inputs, targets,
                                          random_ranks(len(inputs), n_patches, ctx.seed, inputs.device),
                                          pixel_patch, fill, steps),
        }
