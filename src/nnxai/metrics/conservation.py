"""``conservation``: does the relevance at the input add up to the explained output? (LRP, Bach et al. [113])

LRP redistributes the class score layer by layer so that, ideally, ``Σ_i R_i(x) = S_c(x)`` ([113] Eq. 2,
*layer-wise conservation*).  Biases, the ε stabiliser and αβ splits without a negative part absorb or add
relevance, so the gap is a property of the rule and the network, worth measuring rather than assuming.
For each explained input we take the relative gap on the logit ``S_c`` of the explained class,

    e(x) = |Σ_i R_i(x) − S_c(x)| / (|S_c(x)| + 1e-12),

and report its mean over the explained inputs (lower is better; 0 for exact conservation).  Unlike
``completeness`` it has no reference input: LRP explains ``S_c(x)`` itself.  It scores the methods whose
catalogue entry lists it in ``judged_by`` (LRP).
"""

from __future__ import annotations

from nnxai.intervals import PerInput
from nnxai.metrics.attribution import class_scores, explained_inputs
from nnxai.metrics.base import Metric, register_metric


@register_metric
class Conservation(Metric):
    id = "conservation"
    higher_is_better = False
    kinds = frozenset({"attribution"})
    description = "mean relative gap between sum(relevance) and the explained logit S_c(x)"

    def __call__(self, record, ctx, method):
        inputs, targets, attributions = explained_inputs(record, ctx)
        score = class_scores(ctx.model, inputs, targets, softmax=False)
        total = attributions.double().flatten(1).sum(dim=1)
        gap = (total - score).abs() / (score.abs() + 1e-12)
        return {"conservation": PerInput(gap)}
