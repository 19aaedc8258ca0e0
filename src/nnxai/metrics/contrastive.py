"""``pp_pn_validity``: whether contrastive explanations do what they claim (CEM [69]).

A pertinent positive (PP) claims to be sufficient for the network's class: on its own (every other feature
at its absent value) the network still predicts the input's class.  A pertinent negative (PN) claims to be
contrastive: added to the input, it moves the network to another class.  For each explained input ``x`` of
network class ``t``, the metric rebuilds both from the record (``absent + delta_PP`` and ``x + delta_PN``, the
absent values in ``record.extra["absent"]``), asks the network, and scores

* ``pp_pn_validity.pp``: 1 when a PP was found and the network's class of the PP input is ``t``;
* ``pp_pn_validity.pn``: 1 when a PN was found and the network's class of ``x + PN`` is not ``t``;
* ``pp_pn_validity``: 1 when both hold;

each as a mean over the explained inputs with a bootstrap interval; higher is better (1: every explanation
valid).  An input whose search found no PP (or no PN) counts as invalid for it: the method gave no
explanation there.  ``t`` is the network's class of ``x`` now, so the metric checks the saved explanation
against the model, not against the class the record claims.  The paper checks its PPs and PNs in this way
(the class of the PP and of the PN image, its Figs. 2-4) with the margin ``kappa``; here the bare class
counts, as a person reading "class c because ..." would check it.
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.explanations import LocalRules
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.feature_space import predict_classes


def _sparse_rows(base: np.ndarray, entries: list, key: str) -> np.ndarray:
    """``base`` (n, d) plus each entry's sparse ``[[feature, delta], ...]`` under ``key``."""
    out = base.copy()
    for k, e in enumerate(entries):
        pairs = np.asarray(e.get(key) or [], dtype=np.float64).reshape(-1, 2)
        out[k, pairs[:, 0].astype(np.int64)] += pairs[:, 1]
    return out


@register_metric
class PPPNValidity(Metric):
    """Fraction of explained inputs whose PP alone keeps the network's class and whose PN changes it."""

    id = "pp_pn_validity"
    higher_is_better = True
    kinds = frozenset({"local_rule"})
    description = ("fraction of inputs whose pertinent positive alone keeps the network's class and whose "
                   "pertinent negative changes it (.pp, .pn: each alone)")

    def __call__(self, record, ctx, method=None):
        if not isinstance(record, LocalRules) or "absent" not in record.extra:
            raise ValueError("pp_pn_validity scores contrastive records (LocalRules with extra['absent'] and "
                             "pertinent_positive / pertinent_negative per input)")
        entries = record.explanations
        x = ctx.test.x[torch.as_tensor(np.asarray(record.indices, dtype=np.int64))]
        shape = tuple(x.shape[1:])
        flat = x.reshape(len(x), -1).double().numpy()
        absent = np.asarray(record.extra["absent"], dtype=np.float64)
        if absent.shape != (flat.shape[1],):
            raise ValueError(f"pp_pn_validity: {absent.size} absent values for inputs of {flat.shape[1]} features")
        target = predict_classes(ctx.model, x)
        pp_in = _sparse_rows(np.broadcast_to(absent, flat.shape), entries, "pertinent_positive")
        pn_in = _sparse_rows(flat, entries, "pertinent_negative")
        as_input = lambda rows: torch.as_tensor(rows, dtype=torch.float32).reshape(-1, *shape)  # noqa: E731
        pp_found = np.array([bool(e.get("pp_found")) for e in entries], dtype=bool)
        pn_found = np.array([bool(e.get("pn_found")) for e in entries], dtype=bool)
        pp_ok = pp_found & (predict_classes(ctx.model, as_input(pp_in)) == target)
        pn_ok = pn_found & (predict_classes(ctx.model, as_input(pn_in)) != target)
        return {"pp_pn_validity": PerInput(pp_ok & pn_ok), "pp_pn_validity.pp": PerInput(pp_ok),
                "pp_pn_validity.pn": PerInput(pn_ok)}
