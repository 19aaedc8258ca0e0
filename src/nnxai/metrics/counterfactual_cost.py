"""Metrics of counterfactual explanations (DACE [79]; METHODS.md: cost, plausibility, validity).

A record of counterfactuals is a :class:`~nnxai.explanations.LocalRules` whose entries hold
``"counterfactual"`` (the changed input as a list, or ``None`` where none was found) and ``"desired"`` (the
class it should get).  Every value is recomputed from the counterfactual itself, not read from the record:

* ``validity``: the fraction of explained inputs whose counterfactual the network classifies as the
  desired class (an input without one counts 0); ``validity.found``: the fraction with a counterfactual.
* ``cost``: the ℓ1-Mahalanobis distance ``||M (x' − x)||_1`` of Kanamori et al. (Sec. 4.1, ``Mᵀ M = Σ⁻¹``,
  ``Σ`` the covariance of the training inputs, a pseudo-inverse where it is singular), over the inputs with a
  counterfactual; ``cost.mahalanobis``: the Mahalanobis distance ``sqrt((x' − x)ᵀ Σ⁺ (x' − x))`` it
  approximates; ``cost.changed``: the number of input columns changed; ``cost.optimal``: the fraction of
  explained inputs whose counterfactual the method proved optimal (its record's ``status``).
* ``plausibility``: the k-LOF (Breunig et al., Euclidean distance, scikit-learn's ``LocalOutlierFactor`` with
  ``novelty=True``, fitted on the training inputs labelled with the desired class) of the counterfactual:
  about 1 inside the data, larger the more it is an outlier.  Computed independently of the method's own
  1-LOF approximation (squared distances, one neighbour).
"""

from __future__ import annotations

import numpy as np

from nnxai.explanations import LocalRules
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.feature_space import predict_classes
from nnxai.params import Int


def counterfactuals(record) -> tuple[np.ndarray, list, np.ndarray]:
    """``(found, rows, desired)``: which entries hold a counterfactual, their rows, every entry's class."""
    if not isinstance(record, LocalRules):
        raise ValueError(f"counterfactual metrics score LocalRules records, got {type(record).__name__}")
    entries = record.explanations
    if any("counterfactual" not in e or "desired" not in e for e in entries):
        raise ValueError(f"record of {record.meta.get('method')!r} has entries without 'counterfactual' and "
                         "'desired': not counterfactual explanations")
    found = np.array([e["counterfactual"] is not None for e in entries], dtype=bool)
    rows = [np.asarray(e["counterfactual"], dtype=np.float64) for e in entries if e["counterfactual"] is not None]
    return found, rows, np.array([int(e["desired"]) for e in entries], dtype=np.int64)


def _train_rows(ctx) -> np.ndarray:
    return ctx.train.x.reshape(len(ctx.train.x), -1).double().numpy()


@register_metric
class Validity(Metric):
    """Fraction of explained inputs whose counterfactual the network puts in the desired class."""

    id = "validity"
    higher_is_better = True
    kinds = frozenset({"local_rule"})
    description = "fraction of inputs whose counterfactual the network classifies as the desired class"

    def __call__(self, record, ctx, method=None):
        found, rows, desired = counterfactuals(record)
        valid = np.zeros(len(found))
        if rows:
            shape = tuple(ctx.test.x.shape[1:])
            predicted = predict_classes(ctx.model, np.stack(rows).astype(np.float32).reshape(-1, *shape))
            valid[found] = predicted == desired[found]
        return {"validity": PerInput(valid), "validity.found": PerInput(found.astype(np.float64))}


@register_metric
class Cost(Metric):
    """ℓ1-Mahalanobis distance of each counterfactual from its input (module docstring)."""

    id = "cost"
    higher_is_better = False
    kinds = frozenset({"local_rule"})
    description = "l1-Mahalanobis distance of the counterfactual from the input (.mahalanobis, .changed, .optimal)"

    def __call__(self, record, ctx, method=None):
        from nnxai.methods.rule.local._dace_program import mahalanobis_matrix

        found, rows, _ = counterfactuals(record)
        x = ctx.test.x[np.asarray(record.indices, dtype=np.int64)].reshape(len(found), -1).double().numpy()
        m = mahalanobis_matrix(_train_rows(ctx))
        l1, l2, changed = (np.full(len(found), np.nan) for _ in range(3))
        if rows:
            a = np.stack(rows) - x[found]
            l1[found] = np.abs(a @ m.T).sum(axis=1)
            l2[found] = np.sqrt(((a @ m.T) ** 2).sum(axis=1))
            changed[found] = (np.abs(a) > 1e-9).sum(axis=1)
        optimal = np.array([e.get("status") == "optimal" for e in record.explanations], dtype=np.float64)
        return {"cost": PerInput(l1), "cost.mahalanobis": PerInput(l2), "cost.changed": PerInput(changed),
                "cost.optimal": PerInput(optimal)}


@register_metric
class Plausibility(Metric):
    """k-LOF of each counterfactual among the training inputs of its desired class (module docstring)."""

    id = "plausibility"
    higher_is_better = False
    kinds = frozenset({"local_rule"})
    parameters = {"n_neighbors": Int("k of the local outlier factor (capped at the class's size − 1)", low=1)}
    description = "k-LOF of the counterfactual w.r.t. the training data of the desired class (1: an inlier)"

    def __call__(self, record, ctx, method=None):
        found, rows, desired = counterfactuals(record)
        train, labels = _train_rows(ctx), ctx.train.y.numpy()
        out = np.full(len(found), np.nan)
        positions = np.flatnonzero(found)
        for c in np.unique(desired[found]):
            members = train[labels == c]
            if len(members) < 2:
                continue
            from sklearn.neighbors import LocalOutlierFactor     # where used: jobs import every metric

            lof = LocalOutlierFactor(n_neighbors=min(self.params["n_neighbors"], len(members) - 1), novelty=True)
            lof.fit(members)
            mine = positions[desired[found] == c]
            out[mine] = -lof.score_samples(np.stack([rows[k] for k in np.flatnonzero(desired[found] == c)]))
        return {"plausibility": PerInput(out)}
