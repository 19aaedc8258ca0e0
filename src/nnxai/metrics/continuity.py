"""``continuity``: how much an explanation changes under small input changes, Montavon et al. [58].

Montavon, Samek & Müller [58] (Sec. 7.1, "Explanation continuity") ask that "if two data points are nearly
equivalent, then the explanations of their predictions should also be nearly equivalent", and quantify a
lack of it by the strongest variation of the explanation in the input domain,

    max_{x ≠ x'} ‖R(x) − R(x')‖₁ / ‖x − x'‖₂.

Yeh, Hsieh, Suggala, Inouye & Ravikumar (NeurIPS 2019, "On the (in)fidelity and sensitivity of
explanations", Def. 3.1) measure the same by the *max-sensitivity* within a ball of radius ``r``,
``SENS_MAX(Φ, f, x, r) = max_{‖y − x‖ ≤ r} ‖Φ(f, y) − Φ(f, x)‖``, estimated by Monte-Carlo sampling.

Both are estimated here from the same ``n_samples`` perturbations ``δ_k`` of each input, uniform in the L∞
ball whose radius is ``radius`` times the value range of each channel (feature) of the train split:

- ``continuity`` (the main value): the max-sensitivity of Yeh et al., normalised by the map's norm so that
  methods of different scales compare (as Quantus's ``MaxSensitivity`` does by default),
  ``max_k ‖Φ(x + δ_k) − Φ(x)‖₂ / ‖Φ(x)‖₂``;
- ``continuity.lipschitz``: the quotient of [58] over the same pairs, ``max_k ‖Φ(x + δ_k) − Φ(x)‖₁ / ‖δ_k‖₂``
  (in units of the attribution per unit of input).

Means over the scored inputs; lower is better.  ``Φ`` is the full attribution (every channel) for the
record's class ``c``, re-run by the method as its explain stage ran it (same reference, same seed); the
perturbed inputs keep ``c`` whatever the model predicts for them, as in [58] and Yeh et al.  An input whose
map is zero has no relative change and is left out of the mean of ``continuity`` (NaN when every map is
zero).  Perturbations are not clipped to the data range.  Each input draws its noise from its own seeded
generator (:func:`~._robustness.uniform_noise`), so the score does not depend on batching.

Cost: ``n_inputs · (n_samples + 1)`` attributions, all in one call of the method.
"""

from __future__ import annotations

import torch

from nnxai.intervals import PerInput
from nnxai.metrics._robustness import N_INPUTS, channel_box, scored_inputs, uniform_noise
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.rerun import attribute_as_explained
from nnxai.params import Float, Int


def perturbations(inputs: torch.Tensor, n_samples: int, radius: float, span: torch.Tensor, seed: int) -> torch.Tensor:
    """``δ`` uniform in the L∞ ball of ``radius · span`` (span per channel), ``(N, n_samples, ...)``."""
    return uniform_noise(inputs, n_samples, seed) * (radius * span)[:, None]


def sensitivities(base: torch.Tensor, perturbed: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input: ``max_k ‖Φ_k − Φ‖₂ / ‖Φ‖₂`` (NaN where ``Φ = 0``) and ``max_k ‖Φ_k − Φ‖₁ / ‖δ_k‖₂``.

    ``base`` (N, ...), ``perturbed`` and ``delta`` (N, K, ...); float64.
    """
    difference = (perturbed.double() - base.double()[:, None]).flatten(2)
    norm = base.double().flatten(1).norm(dim=1)
    relative = difference.norm(dim=2).amax(dim=1) / norm
    relative = torch.where(norm > 0, relative, torch.full_like(relative, float("nan")))
    lipschitz = (difference.abs().sum(dim=2) / delta.double().flatten(2).norm(dim=2)).amax(dim=1)
    return relative, lipschitz


@register_metric
class Continuity(Metric):
    """Max-sensitivity (Yeh et al. 2019) and the continuity quotient of [58] over random L∞ perturbations."""

    id = "continuity"
    reexplains = True
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {
        "n_inputs": N_INPUTS,
        "n_samples": Int("perturbations δ_k per input of the Monte-Carlo max-sensitivity (Yeh et al. Def. 3.1)",
                         low=1),
        "radius": Float("radius r of the L∞ ball, a fraction of each channel's (feature's) value range in the "
                        "train split", low=0.0, low_open=True),
    }
    description = "max-sensitivity: largest relative change of the map under random perturbations in an L-inf ball"

    def __call__(self, record, ctx, method):
        inputs, targets = scored_inputs(record, ctx, self.params["n_inputs"])
        k = self.params["n_samples"]
        low, high = channel_box(ctx.train.x, inputs)
        delta = perturbations(inputs, k, float(self.params["radius"]), high - low, int(ctx.seed))
        batch = torch.cat([inputs, (inputs[:, None] + delta).flatten(0, 1)])
        classes = torch.cat([targets, targets.repeat_interleave(k)])
        maps = attribute_as_explained(method, ctx, ctx.model, batch, classes)
        base, perturbed = maps[:len(inputs)], maps[len(inputs):].reshape(len(inputs), k, *inputs.shape[1:])
        relative, lipschitz = sensitivities(base, perturbed, delta)
        return {"continuity": PerInput(relative), "continuity.lipschitz": PerInput(lipschitz)}
