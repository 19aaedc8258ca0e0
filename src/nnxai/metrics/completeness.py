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
"""

from __future__ import annotations

import torch

from nnxai.metrics.attribution import class_scores, explained_inputs, reference_from_meta
from nnxai.metrics.base import Metric, register_metric


@register_metric
class Completeness(Metric):
    id = "completeness"
    higher_is_better = False
    kinds = frozenset({"attribution"})
    description = "mean relative error of sum(attribution) against f_c(x) - f_c(x_ref) on the logit"

    @classmethod
    def why_not(cls, method_cls, info):
        if not getattr(method_cls, "uses_baseline", False):
            return f"{method_cls.spec.id} has no reference input, so f(x) - f(x_ref) is undefined"
        if not getattr(method_cls, "claims_completeness", False):
            return f"{method_cls.spec.id} does not claim completeness (sum of attributions = f(x) - f(x_ref))"
        return super().why_not(method_cls, info)

    def __call__(self, record, ctx, method):
        inputs, targets, attributions = explained_inputs(record, ctx)
        reference = reference_from_meta(record.meta, inputs)
        with torch.no_grad():
            reference_logits = ctx.model(reference).double()[0]
        delta = class_scores(ctx.model, inputs, targets, softmax=False) - reference_logits[targets]
        total = attributions.double().flatten(1).sum(dim=1)
        error = (total - delta).abs() / (delta.abs() + 1e-12)
        return {"completeness": float(error.mean())}
