"""Meaningful perturbation, Fong & Vedaldi [25 of the companion survey] (ICCV 2017).

A mask ``m ∈ [0, 1]^Λ`` says what of the input to keep (1) or delete (0).  [25] deletes by blurring, with
a blur whose width grows as ``m(u)`` falls; here, as in common re-implementations, the perturbed input
blends ``x`` with one copy ``x̄`` blurred by a Gaussian of standard deviation ``σ_max`` (``sigma``):

    Φ(x; m)(u) = m(u) x(u) + (1 − m(u)) x̄(u).

The *deletion game* ([25] Eq. 3; Eq. 4 adds the total-variation prior against artefacts) learns the
smallest, smooth region whose deletion drops the class score:

    m* = argmin_m  λ₁ ‖1 − m‖₁ + λ₂ Σ_u ‖∇m(u)‖_β^β + f_c(Φ(x; m)),

with ``f_c`` the network's score for class ``c`` (``score``).  [25] defines ``f_c`` as the output score
for class ``c`` and its experiments read the softmax probability (``score="probability"``); but a
probability saturates on confidently classified inputs, the game's gradient vanishes and the L1 prior
holds ``m = 1``: 75% of 40 ``shapes`` test maps of the default run's baseline came out empty.
``score="logit"`` plays the same game on the class logit, which does not saturate; its ``λ₁`` is on the
logit's scale (the default profile: 10; no empty map on the same inputs, 23% of iris's 30).

As [25] describes its implementation, ``m`` is a low-resolution ``mask_size × mask_size`` mask, upsampled
bilinearly to the image, optimised by Adam (``lr``) for a fixed number of ``steps`` and projected onto
[0, 1] after each step.  Here the two priors are
*means* over the mask's cells (and neighbour pairs) rather than sums, so ``lambda_l1`` and ``lambda_tv`` do
not depend on the mask size; the TV term sums ``|m(u + e) − m(u)|^β`` over right and down neighbours.
The mask starts deterministically at ``m = 1`` (nothing deleted), and the random jitter of [25] Eq. 4 is
not used, so the result is deterministic.  The attribution is the deletion saliency ``1 − m*``, upsampled
to the image and the same for every channel.

Tables.  There is no blur and no neighbourhood: a deleted feature moves to its train mean ([25]'s
"constant" perturbation ``Φ(x; m) = m x + (1 − m) μ``; ``fill="mean"``, or 0 with ``fill="zero"``; the
reference of :class:`~nnxai.methods.attribution._reference.ReferenceAttribution`), the mask has one cell
per feature and the TV prior is dropped; ``mask_size`` and ``sigma`` apply to images only, as ``baselines``
(the reference) applies to tables only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnxai.methods.attribution._reference import ReferenceAttribution
from nnxai.methods.base import AttributionMethod
from nnxai.ops.maps import REFERENCES
from nnxai.params import Choice, Float, Int
from nnxai.registry import register

#: Adam's moment decay rates and ε: Kingma & Ba's recommended values (PyTorch's defaults).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (N, C, H, W) blurred channel by channel by a Gaussian of std ``sigma`` px (edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    C = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.reshape(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.reshape(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def total_variation(mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-mask mean of ``|Δm|^β`` over right and down neighbour pairs of ``mask`` (N, 1, h, w)."""
    down = (mask[..., 1:, :] - mask[..., :-1, :]).abs().pow(beta).flatten(1)
    right = (mask[..., :, 1:] - mask[..., :, :-1]).abs().pow(beta).flatten(1)
    pairs = down.shape[1] + right.shape[1]
    return (down.sum(1) + right.sum(1)) / max(pairs, 1)


@register("meaningful_perturbation")
class MeaningfulPerturbation(ReferenceAttribution):
    """Deletion saliency ``1 − m*`` of the learned blur mask of [25] Eq. 3 (see the module docstring).

    The masks of ``batch_size`` inputs are optimised together (each has its own loss; Adam acts per mask
    cell).
    """

    #: What ``f_c`` reads of the model's output for class ``c``.
    scores = ("probability", "logit")
    reference_param = "fill"
    parameters = {**AttributionMethod.parameters,
                  "fill": Choice("value μ a deleted feature of a table takes, Φ(x; m) = m x + (1 − m) μ ([25]'s "
                                 "constant perturbation): zeros, or its train mean (tables only)", REFERENCES),
                  "score": Choice("f_c of [25] Eq. 3: the softmax probability of class c (as [25]'s experiments), "
                                  "or its logit (does not saturate; lambda_l1 then on the logit's scale)", scores),
                  "mask_size": Int("side of the low-resolution mask m, upsampled bilinearly (images only)", low=1),
                  "sigma": Float("standard deviation σ_max of the deleting blur, in pixels (images only)", low=0,
                                 low_open=True),
                  "steps": Int("Adam steps on the mask", low=1),
                  "lr": Float("Adam learning rate", low=0, low_open=True),
                  "lambda_l1": Float("weight λ₁ of the mean deletion mean(1 − m) ([25] Eq. 3)", low=0),
                  "lambda_tv": Float("weight λ₂ of the mean |Δm|^β over neighbour pairs ([25] Eq. 4; images only)",
                                     low=0),
                  "tv_beta": Float("exponent β of the total-variation prior ([25] Eq. 4)", low=1)}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        if inputs.dim() not in (2, 4):
            raise ValueError(f"method {self.spec.id!r} explains (N, C, H, W) images or (N, F) tables, got inputs "
                             f"of shape {tuple(inputs.shape)}")
        if inputs.dim() == 2:
            reference = self.reference_for(inputs, baselines)
        size = self.params["batch_size"]
        chunks = []
        for start in range(0, len(inputs), size):
            part = slice(start, start + size)
            x = inputs[part].detach()
            if x.dim() == 4:
                chunks.append(self._image_saliency(model, x, target[part]))
            else:
                ref = reference if len(reference) == 1 else reference[part]
                chunks.append(self._table_saliency(model, x, target[part], ref))
        return torch.cat(chunks).to(inputs.dtype) if chunks else torch.zeros_like(inputs)

    def _image_saliency(self, model, x, target):
        blurred = gaussian_blur(x, float(self.params["sigma"]))
        side = self.params["mask_size"]
        mask = torch.ones(len(x), 1, side, side, dtype=x.dtype, device=x.device)

        def perturb(m):
            up = F.interpolate(m, size=x.shape[2:], mode="bilinear", align_corners=False)
            return x * up + blurred * (1 - up)

        mask = self._optimise(model, target, mask, perturb, use_tv=True)
        keep = F.interpolate(mask, size=x.shape[2:], mode="bilinear", align_corners=False)
        return (1 - keep).expand_as(x)

    def _table_saliency(self, model, x, target, reference):
        mask = torch.ones_like(x)
        mask = self._optimise(model, target, mask, lambda m: x * m + reference * (1 - m), use_tv=False)
        return 1 - mask

    def _optimise(self, model, target, mask, perturb, use_tv: bool) -> torch.Tensor:
        """Projected Adam on ``mask`` for the deletion game; only ``mask`` gets gradients."""
        p = self.params
        mask = mask.clone().requires_grad_(True)
        moments = (torch.zeros_like(mask), torch.zeros_like(mask))
        rows = torch.arange(len(mask), device=mask.device)
        for step in range(1, p["steps"] + 1):
            logits = model(perturb(mask))
            score = (logits.softmax(dim=1) if p["score"] == "probability" else logits)[rows, target]
            loss = score + p["lambda_l1"] * (1 - mask).flatten(1).mean(1)
            if use_tv and p["lambda_tv"]:
                loss = loss + p["lambda_tv"] * total_variation(mask, float(p["tv_beta"]))
            (grad,) = torch.autograd.grad(loss.sum(), mask)
            with torch.no_grad():
                mask -= adam_update(grad, moments, step, float(p["lr"]))
                mask.clamp_(0, 1)
        return mask.detach()


def adam_update(grad: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor], step: int, lr: float) -> torch.Tensor:
    """The step of Adam (Kingma & Ba, Alg. 1) at iteration ``step`` >= 1, updating the ``moments`` in place.

    Written out, with PyTorch's defaults β = (0.9, 0.999), ε = 1e-8, because constructing
    ``torch.optim.Adam`` imports ``torch._dynamo`` (seconds per explain job).
    """
    (b1, b2), eps = ADAM_BETAS, ADAM_EPS
    first, second = moments
    first.mul_(b1).add_(grad, alpha=1 - b1)
    second.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    denominator = (second / (1 - b2 ** step)).sqrt() + eps
    return lr * first / (1 - b1 ** step) / denominator
