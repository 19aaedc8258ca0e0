"""Integrated Gradients, Sundararajan, Taly & Yan [114].

The survey (Sec. III-C) defines the i-th integrated gradient of ``f`` at ``x`` against a reference
``x_ref`` as the path integral along the straight line between them,

    IG_i(x) = (x_i − x_ref,i) · ∫_0^1 ∂f(x̃)/∂x̃_i |_{x̃ = x_ref + α (x − x_ref)} dα,

which is Eq. (1) of [114].  It satisfies *completeness* (Prop. 1 of [114]): Σ_i IG_i(x) = f(x) − f(x_ref),
checked by the ``completeness`` metric.  Here ``f`` is the logit of the explained class.

Quadrature.  [114] (Sec. 5) approximates the integral by a Riemann sum with 20–300 steps.  We use
Captum's ``IntegratedGradients`` with ``method="gausslegendre"`` (its default) rather than
``"riemann_trapezoid"``: measured on seeded ConvNets and MLPs of this project (float64, zero reference),
the mean relative completeness error at 50 / 200 steps was 2.4e-3 / 1.1e-3 (Gauss-Legendre) against
3.5e-2 / 9.3e-3 (trapezoid) on the ConvNet.  The trapezoid rule evaluates the gradient *at* the
reference, where a constant image makes every max-pool window a tie and every ReLU sit on its kink, so its
first node carries a gradient unrepresentative of the path; Gauss-Legendre nodes are interior.  On a
piecewise-linear (ReLU) network the integrand is piecewise constant, so every rule converges only as
O(1/n_steps); smooth (sigmoid) networks converge much faster.

Reference.  ``baseline="zero"``: the all-zero input (the black image of [114]).  ``baseline="mean"``:
the per-channel mean of the *train* split (per feature for tables), a constant image of average colour.
:meth:`IntegratedGradients.explain` records the reference in ``meta["baseline"]`` as
``{"kind": "zero" | "mean", "per_channel": [one value per entry of axis 1]}`` so that metrics can
recompute ``f(x_ref)`` (see :func:`nnxai.metrics.attribution.reference_from_meta`).

Memory.  ``batch_size`` inputs go to Captum at a time; Captum's internal batch is capped at
:data:`PASS_ELEMENTS` scaled input values (at least ``batch_size`` inputs), so that a pass holds at most
~1,365 32×32 RGB images, whatever ``n_steps``.  The cap changes the result only by float rounding of the
sum over steps; small passes are slow on CPUs (4× slower at 25 images a pass than at 1,250, measured).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnxai.methods.attribution.gradient import check_positive_ints
from nnxai.methods.base import AttributionMethod, ExplainContext
from nnxai.registry import register

BASELINES = ("zero", "mean")
QUADRATURE = "gausslegendre"
#: Most scaled input values in one forward/backward pass (16 MiB of float32); bounds memory only.
PASS_ELEMENTS = 2**22


def channel_means(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over every axis but axis 1 (channels of images, features of tables), shape ``(C,)``."""
    dims = [d for d in range(x.dim()) if d != 1]
    return x.double().mean(dim=dims).to(x.dtype)


def constant_reference(per_channel: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """A ``(1, *input_shape)`` reference whose channel ``k`` is the constant ``per_channel[k]``."""
    view = (1, len(per_channel)) + (1,) * (len(input_shape) - 1)
    return per_channel.reshape(view).expand((1, *input_shape)).clone()


@register("integrated_gradients")
class IntegratedGradients(AttributionMethod):
    """Integrated Gradients [114] of the class logit along the straight path from a reference.

    Parameters
    ----------
    n_explain : int
        Number of seeded test inputs explained by :meth:`explain`.
    batch_size : int
        Inputs per call to Captum (its scaled copies go through the model in passes of at most
        :data:`PASS_ELEMENTS` values).
    n_steps : int
        Quadrature nodes of the path integral (Gauss-Legendre).
    baseline : {"zero", "mean"}
        Reference input: zeros, or the per-channel mean of the train split.
    """

    param_names = ("n_explain", "batch_size", "n_steps", "baseline")
    uses_baseline = True
    claims_completeness = True

    def __init__(self, **params: Any):
        super().__init__(**params)
        check_positive_ints(f"method {self.spec.id!r}", self.params, ("n_explain", "batch_size", "n_steps"))
        if self.params["baseline"] not in BASELINES:
            raise ValueError(f"method {self.spec.id!r}: parameter 'baseline' must be one of {list(BASELINES)}, "
                             f"got {self.params['baseline']!r}")
        self._context_reference: torch.Tensor | None = None

    def reference_values(self, ctx: ExplainContext) -> torch.Tensor:
        """The reference's value per channel (per feature for tables), shape ``(C,)``."""
        x_train = ctx.train.x
        if self.params["baseline"] == "mean":
            return channel_means(x_train)
        return torch.zeros(x_train.shape[1], dtype=x_train.dtype)

    def _run(self, ctx):
        per_channel = self.reference_values(ctx)
        self._context_reference = constant_reference(per_channel, tuple(ctx.test.x.shape[1:])).to(ctx.device)
        try:
            record, n_inputs = super()._run(ctx)
        finally:
            self._context_reference = None
        record.meta["baseline"] = {"kind": self.params["baseline"],
                                   "per_channel": [float(v) for v in per_channel]}
        return record, n_inputs

    def _default_reference(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._context_reference is not None:
            return self._context_reference
        if self.params["baseline"] == "zero":
            return torch.zeros_like(inputs[:1])
        raise ValueError("baseline='mean' is the per-channel mean of the train split: call explain(ctx), "
                         "or pass baselines to attribute()")

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        reference = self._default_reference(inputs) if baselines is None else baselines
        reference = torch.as_tensor(reference, dtype=inputs.dtype, device=inputs.device)
        size = self.params["batch_size"]
        from captum.attr import IntegratedGradients as CaptumIntegratedGradients  # lazy, see gradient.py

        ig = CaptumIntegratedGradients(model, multiply_by_inputs=True)
        per_pass = max(size, PASS_ELEMENTS // max(1, inputs[:1].numel()))
        chunks = []
        for start in range(0, len(inputs), size):
            part = slice(start, start + size)
            ref = reference if len(reference) == 1 else reference[part]
            chunks.append(ig.attribute(inputs[part].detach(), baselines=ref.detach(), target=target[part],
                                       n_steps=self.params["n_steps"], method=QUADRATURE,
                                       internal_batch_size=per_pass).detach())
        return torch.cat(chunks)
