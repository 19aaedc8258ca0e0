"""``completeness``: do the attributions add up to the change of the output from the reference? [112]–[114]

*Completeness* (Sundararajan et al. [114], Prop. 1; *summation-to-delta* of DeepLIFT [112]; the
conservation of LRP [113]) asks that Σ_i R_i(x) = f_c(x) − f_c(x_ref).  For each explained input we
measure the relative error

    e(x) = |Σ_i R_i(x) − (f_c(x) − f_c(x_ref))| / (|f_c(x) − f_c(x_ref)| + 1e-12)

on the logit ``f_c`` of the explained class, and report its mean over inputs as ``completeness`` (lower
is better).  It is ≈0 for Integrated Gradients with enough steps (O(1/n_steps) on ReLU networks), and 1
for a map that is twice the right one.  It applies only to methods with a reference
(``uses_baseline``) that claim the property (``claims_completeness``: IG, DeepLIFT; not occlusion, whose
windows' drops are spread over every pixel they cover), which record the reference in ``meta["baseline"]``
(:func:`reference_from_meta`).

Inputs with f_c(x) ≈ f_c(x_ref) have a large relative error for any method; they are kept, as the
definition asks.

Which sum.  A method states the identity it claims in the class attribute ``completeness_identity``:
``"reference"`` (the default: Σ_i R_i = f_c(x) − f_c(x_ref), as above) or ``"bias_term"`` (bias
attribution [111]: Σ_i R_i = f_c(x) − ∇f_c(x)·x, the bias of the local linear model, so that gradient ×
input plus the map sums to f_c(x); no reference needed).  For ``"bias_term"`` the target is computed in
float64 on a copy of the model and ``e(x)`` is measured against it in the same way.
"""

from __future__ import annotations

import copy

import torch

from nnxai import registry
from nnxai.intervals import PerInput
from nnxai.metrics.attribution import FORWARD_BATCH, class_scores, explained_inputs, reference_from_meta
from nnxai.metrics.base import Metric, register_metric

IDENTITIES = ("reference", "bias_term")


def identity_of(method_cls) -> str:
    identity = getattr(method_cls, "completeness_identity", "reference")
    if identity not in IDENTITIES:
        raise ValueError(f"{method_cls.spec.id}.completeness_identity must be one of {list(IDENTITIES)}, "
                         f"got {identity!r}")
    return identity


def local_bias(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``f_c(x) − ∇f_c(x)·x`` per input, float64 (on a float64 copy of ``model``)."""
    net = copy.deepcopy(model).double().requires_grad_(False)
    out = []
    for xb, tb in zip(inputs.split(FORWARD_BATCH), targets.split(FORWARD_BATCH)):
        x = xb.detach().double().requires_grad_(True)
        with torch.enable_grad():
            logit = net(x).gather(1, tb[:, None])[:, 0]
            (grad,) = torch.autograd.grad(logit.sum(), x)
        out.append((logit - (grad * x).flatten(1).sum(1)).detach())
    return torch.cat(out)


def _claimed_identity(record, method) -> str:
    """The identity of ``method`` (an instance), else of the method that made ``record``."""
    if method is not None:
        return identity_of(type(method))
    method_id = record.meta.get("method")
    return identity_of(registry.get(method_id)) if registry.is_implemented(str(method_id)) else "reference"


@register_metric
class Completeness(Metric):
    id = "completeness"
    higher_is_better = False
    kinds = frozenset({"attribution"})
    description = ("mean relative error of sum(attribution) against f_c(x) - f_c(x_ref) on the logit "
                   "(against the local bias f_c(x) - grad f_c(x)·x for bias attribution)")

    @classmethod
    def why_not(cls, method_cls, info):
        if identity_of(method_cls) == "reference" and not getattr(method_cls, "uses_baseline", False):
            return f"{method_cls.spec.id} has no reference input, so f(x) - f(x_ref) is undefined"
        if not getattr(method_cls, "claims_completeness", False):
            return f"{method_cls.spec.id} does not claim completeness (sum of attributions = f(x) - f(x_ref))"
        return super().why_not(method_cls, info)

    def __call__(self, record, ctx, method):
        inputs, targets, attributions = explained_inputs(record, ctx)
        if _claimed_identity(record, method) == "bias_term":
            delta = local_bias(ctx.model, inputs, targets)
        else:
            reference = reference_from_meta(record.meta, inputs)
            with torch.no_grad():
                reference_logits = ctx.model(reference).double()[0]
            delta = class_scores(ctx.model, inputs, targets, softmax=False) - reference_logits[targets]
        total = attributions.double().flatten(1).sum(dim=1)
        error = (total - delta).abs() / (delta.abs() + 1e-12)
        return {"completeness": PerInput(error)}
