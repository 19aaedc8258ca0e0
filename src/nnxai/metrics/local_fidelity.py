"""``local_fidelity``: how well an explanation's local linear surrogate reproduces the model near ``x``.

LIME [20] and MAPLE [101] explain ``x`` by a linear model ``g_x(z) = b_x + β·z`` over interpretable
features ``z`` of points near ``x`` (:mod:`nnxai.ops.surrogate`).  LIME calls the
locality-aware loss ``L(f, g, π_x) = Σ_z π_x(z) (f(z) − g(z'))²`` of its Eq. 2 the (un)faithfulness of ``g``
"in the vicinity defined by π_x"; Plumb et al.'s causal local explanation metric [101] and ExpO's
*neighbourhood fidelity* [120] score ``g_x`` on points drawn near ``x``, not on those it was fitted to.
Here, for each explained input ``x`` of class ``c``:

1. ``β`` is read back from the record's map (the mean of the attribution over each feature's elements)
   and ``b_x`` from ``meta["surrogate"]["intercept"]``, so the record itself is scored;
2. the method, fitted as its explain stage fits it (:func:`~nnxai.metrics.rerun.fitted_method`: the
   cell's fit, reused), draws a *fresh* weighted neighbourhood ``{(z_s, x_s, π_s)}`` of ``x`` from the
   same law it fitted on: LIME ``n_samples`` new coin vectors (seed ``ctx.seed + FRESH_SEED``, not the explain seed)
   with its proximity kernel; MAPLE the held-out test inputs other than ``x``, weighted by the forest's
   leaf sharing with ``x`` (``n_samples`` unused);
3. with ``f_s`` the model's softmax probability of ``c`` at ``x_s`` (the score both surrogates model),

       MSE_π(x) = Σ_s π_s (f_s − g_x(z_s))² / Σ_s π_s,     Var_π(f; x) = Σ_s π_s (f_s − f̄_π)² / Σ_s π_s,

   ``f̄_π`` the π-weighted mean of ``f_s`` (``Var_π`` is the spread a constant surrogate leaves).

``local_fidelity`` is the mean of ``MSE_π`` over the explained inputs (lower is better; 0 when the model is
exactly linear in the surrogate's features over the neighbourhood).  ``local_fidelity.r2`` pools the
inputs, ``1 − Σ_x MSE_π(x) / Σ_x Var_π(f; x)`` (higher is better; 1 at the optimum): a mean of per-input
``R²_π`` would be dominated by inputs whose neighbourhood barely moves the probability.  Inputs whose
neighbourhood has no weight (no held-out point shares a leaf with ``x``) are left out of both; NaN if none
is left (and ``.r2`` is NaN when the pooled variance is 0).  Recomputing rather than storing a score at
explain time makes the metric check the saved map and intercepts against the model on new points.
"""

from __future__ import annotations

import math

import torch

from nnxai.intervals import PerInput
from nnxai.metrics.attribution import class_scores, explained_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.rerun import fitted_method
from nnxai.ops.surrogate import LocalSurrogate, coefficients_from_map
from nnxai.params import Int

#: Added to ``ctx.seed`` for the fresh neighbourhood draws, so that they differ from those of the fit.
FRESH_SEED = 1_000_003


def weighted_errors(f: torch.Tensor, g: torch.Tensor, weights: torch.Tensor) -> tuple[float, float]:
    """``(MSE_π, Var_π(f))`` of surrogate values ``g`` against model values ``f`` (NaN without weight)."""
    f, g, w = f.double(), g.double(), weights.double()
    total = w.sum()
    if not total > 0:
        return math.nan, math.nan
    mse = float((w * (f - g) ** 2).sum() / total)
    return mse, float((w * (f - (w * f).sum() / total) ** 2).sum() / total)


@register_metric
class LocalFidelity(Metric):
    """π-weighted error of the stored local surrogate on a fresh neighbourhood sample (module docstring)."""

    id = "local_fidelity"
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {"n_samples": Int("fresh neighbourhood draws per input of a sampling method (LIME's coin vectors "
                                   "z'); unused by a data-driven one (MAPLE's held-out points)", low=1)}
    description = ("weighted MSE of the explanation's local linear surrogate against the class probability on "
                   "fresh neighbourhood points (.r2: weighted R^2)")

    @classmethod
    def why_not(cls, method_cls, info):
        if not issubclass(method_cls, LocalSurrogate):
            return f"{method_cls.spec.id} fits no local linear surrogate"
        return super().why_not(method_cls, info)

    def __call__(self, record, ctx, method):
        if not isinstance(method, LocalSurrogate):
            raise ValueError(f"metric {self.id!r} scores local surrogates (LIME, MAPLE), not {type(method).__name__}")
        inputs, targets, attributions = explained_inputs(record, ctx)
        intercepts = (record.meta.get("surrogate") or {}).get("intercept")
        if intercepts is None or len(intercepts) != len(inputs):
            raise ValueError(f"record of method {record.meta.get('method')!r} needs meta['surrogate']['intercept'] "
                             f"with one value per explained input ({len(inputs)}); rerun its explain stage")
        errors, variances = [], []
        fitted = fitted_method(method, ctx)
        hoods = fitted.neighbourhoods(ctx.model, inputs, self.params["n_samples"], int(ctx.seed) + FRESH_SEED,
                                      ctx.test.x.to(ctx.device))
        for x, c, attribution, intercept, hood in zip(inputs, targets, attributions, intercepts, hoods):
            index = fitted.feature_index(x)
            beta = coefficients_from_map(attribution, index, int(index.max()) + 1)
            f = class_scores(ctx.model, hood.inputs, c.expand(len(hood.inputs)), softmax=True)
            mse, variance = weighted_errors(f, intercept + hood.features.double() @ beta, hood.weights)
            if not math.isnan(mse):
                errors.append(mse)
                variances.append(variance)
        if not errors:
            return {"local_fidelity": math.nan, "local_fidelity.r2": math.nan}
        pooled = sum(variances)
        return {"local_fidelity": PerInput(errors),
                "local_fidelity.r2": 1 - sum(errors) / pooled if pooled > 0 else math.nan}
