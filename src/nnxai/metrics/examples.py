"""Metrics of example-based explanations.

``representer_fidelity`` checks the representer decomposition of Yeh et al. [117] (NeurIPS 2018: their
correlation of the network's actual outputs with the outputs rebuilt from the representer values) on the
explained test inputs, from the arrays the method stores in ``extra``:

* ``representer_fidelity``: Pearson correlation between the decomposed logits ``Σ_i α_i f_iᵀ f_t`` and the
  original network's logits, over all inputs and classes.  The network's logits are first centred per
  input (their mean over classes subtracted): softmax logits are identified only up to a per-input
  constant, and the decomposed ones sum to zero over classes (``Σ_c α_ic = 0``), so an uncentred
  comparison would score the arbitrary offset rather than the decomposition.
* ``representer_fidelity.probability_correlation``: Pearson correlation of the two softmax outputs (the
  check of the authors' reference code).
* ``representer_fidelity.decomposition_error``: ``max |Σ_i α_i f_iᵀ f_t - Θᵀ f_t|`` against the re-fitted
  last layer; 0 at an exact stationary point (Theorem 3.1), so it measures how stationary the fit is.
* ``representer_fidelity.prediction_agreement``: fraction of inputs whose decomposed argmax is the
  network's prediction.
"""

from __future__ import annotations

import numpy as np

from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric

REQUIRED = ("decomposed_logits", "head_logits", "model_logits")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@register_metric
class RepresenterFidelity(Metric):
    id = "representer_fidelity"
    higher_is_better = True
    kinds = frozenset({"example"})
    description = "how well the representer decomposition reproduces the network's logits [117]"

    def __call__(self, record, ctx, method):
        missing = [key for key in REQUIRED if key not in record.extra]
        if missing:
            raise ValueError(f"the example record lacks extra arrays {missing}; representer_fidelity needs "
                             f"{list(REQUIRED)} (written by representer_points)")
        dec, head, net = (np.asarray(record.extra[key], dtype=np.float64) for key in REQUIRED)
        if not (dec.shape == head.shape == net.shape) or dec.ndim != 2 or len(dec) == 0:
            raise ValueError(f"decomposed {dec.shape}, head {head.shape} and model {net.shape} logits must be "
                             "equal, non-empty (inputs, classes) arrays")
        return {
            "representer_fidelity": _pearson(dec, net - net.mean(axis=1, keepdims=True)),
            "representer_fidelity.probability_correlation": _pearson(_softmax(dec), _softmax(net)),
            "representer_fidelity.decomposition_error": float(np.abs(dec - head).max()),
            "representer_fidelity.prediction_agreement": PerInput(dec.argmax(1) == net.argmax(1)),
        }
