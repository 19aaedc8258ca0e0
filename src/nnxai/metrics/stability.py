"""``stability``: how much an explanation changes between an input and its neighbours, ExpO [120] Eq. 2.

Plumb et al. [120] score a local explanation ``e`` of a model by its *stability*,

    S(e) = E_{x~p} E_{x'~N_x} [ ‖e(x) − e(x')‖²₂ ],

the expected squared distance between the explanation at ``x`` and at a neighbour ``x'`` (lower is better;
0 for an explanation constant over the neighbourhood), with ``N_x`` the same Gaussian neighbourhood their
neighbourhood fidelity uses, ``x' = x + N(0, σ²)`` on standardised features (their evaluation σ = 0.1,
``num_perturbations`` = 5 neighbours per input).  Here, for any attribution record:

- ``N_x`` adds independent Gaussian noise to every input element, with standard deviation ``sigma`` times
  the train split's standard deviation of the element's channel (column), so ``sigma`` is in the paper's
  standardised units on images too; each input draws its ``n_samples`` neighbours from its own seeded
  generator (:func:`~nnxai.ops.noise.input_noise`, seed ``ctx.seed + STABILITY_SEED``), so the score does not
  depend on batching.  Neighbours are not clipped to the data range;
- ``e(x)`` is the record's full map for its class ``c`` (every element), re-run by the method as its explain
  stage ran it (:func:`~nnxai.metrics.rerun.attribute_as_explained`: same fit, same seed), and the
  neighbours keep ``c`` whatever the model predicts for them (as ``continuity`` does);
- ``stability`` is the mean over the first ``n_inputs`` explained inputs of
  ``(1/K) Σ_k ‖e(x'_k) − e(x)‖²₂`` (a :class:`~nnxai.intervals.PerInput`); ``stability.relative`` divides each
  input's value by ``‖e(x)‖²₂`` (NaN where the map is 0, left out of the mean), so that models whose maps
  differ in scale compare.

``e(x)`` is re-run rather than read from the record so that both ends of each pair come from the same
computation.  Cost: ``n_inputs · (n_samples + 1)`` attributions, in one call of the method.
"""

from __future__ import annotations

import math

import torch

from nnxai.intervals import PerInput
from nnxai.metrics._robustness import N_INPUTS, scored_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.rerun import attribute_as_explained
from nnxai.ops.noise import input_noise
from nnxai.params import Float, Int

#: Added to ``ctx.seed`` for the neighbours, so that they differ from any draw of the method itself.
STABILITY_SEED = 120


def channel_std(x_train: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The train split's standard deviation of each channel (table: column), shaped to broadcast against one
    input of ``like`` (N, ...): ``(C, 1, 1)`` for images, ``(F,)`` for tables; in ``like``'s dtype and device."""
    x = torch.as_tensor(x_train).double()
    if x.dim() > 2:
        std = x.transpose(0, 1).reshape(x.shape[1], -1).std(dim=1).reshape(-1, *([1] * (x.dim() - 2)))
    else:
        std = x.std(dim=0)
    return std.to(like.device, like.dtype)


def neighbours(inputs: torch.Tensor, n_samples: int, sigma: float, std: torch.Tensor, seed: int) -> torch.Tensor:
    """``x' = x + σ s ε``, ``ε`` standard normal seeded by each input and ``seed``: ``(N, n_samples, ...)``."""
    if len(inputs) == 0:
        return inputs.new_zeros((0, n_samples, *inputs.shape[1:]))
    noise = torch.stack([input_noise(x, n_samples, seed) for x in inputs])
    return inputs[:, None] + sigma * std * noise


def squared_distances(base: torch.Tensor, perturbed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input: ``(1/K) Σ_k ‖Φ_k − Φ‖²₂`` and the same divided by ``‖Φ‖²₂`` (NaN where ``Φ = 0``).

    ``base`` (N, ...), ``perturbed`` (N, K, ...); float64.
    """
    difference = (perturbed.double() - base.double()[:, None]).flatten(2)
    mean = difference.pow(2).sum(dim=2).mean(dim=1)
    norm = base.double().flatten(1).pow(2).sum(dim=1)
    relative = torch.where(norm > 0, mean / norm, torch.full_like(mean, math.nan))
    return mean, relative


@register_metric
class Stability(Metric):
    """Expected squared distance between the explanation at ``x`` and at Gaussian neighbours, [120] Eq. 2."""

    id = "stability"
    reexplains = True
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {
        "n_inputs": N_INPUTS,
        "n_samples": Int("neighbours x' ~ N_x per input ([120]'s evaluation: 5)", low=1),
        "sigma": Float("standard deviation of N_x's Gaussian noise, in units of each channel's (column's) "
                       "train-split standard deviation ([120]'s evaluation: 0.1 on standardised features)",
                       low=0.0, low_open=True),
    }
    description = "stability [120]: mean squared L2 distance between the map at x and at Gaussian neighbours"

    def __call__(self, record, ctx, method):
        inputs, targets = scored_inputs(record, ctx, self.params["n_inputs"])
        k = self.params["n_samples"]
        std = channel_std(ctx.train.x, inputs)
        near = neighbours(inputs, k, float(self.params["sigma"]), std, int(ctx.seed) + STABILITY_SEED)
        batch = torch.cat([inputs, near.flatten(0, 1)])
        classes = torch.cat([targets, targets.repeat_interleave(k)])
        maps = attribute_as_explained(method, ctx, ctx.model, batch, classes)
        base, perturbed = maps[:len(inputs)], maps[len(inputs):].reshape(len(inputs), k, *inputs.shape[1:])
        mean, relative = squared_distances(base, perturbed)
        return {"stability": PerInput(mean), "stability.relative": PerInput(relative)}
