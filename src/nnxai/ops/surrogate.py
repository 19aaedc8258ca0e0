"""Local linear surrogates (LIME [20], MAPLE [101]): what the methods that fit one share, and what the
``local_fidelity`` metric needs from them to check the surrogate again.

Such a method explains input ``x`` for class ``c`` by a linear model over ``d`` interpretable features,

    g_x(z) = b_x + Σ_{j=1}^{d} β_j z_j,

fitted to the model's class probability ``f_c`` in a weighted neighbourhood of ``x``.  Its attribution map
holds ``β_j`` at every input element of feature ``j`` (:meth:`LocalSurrogate.feature_index` says which
feature an element belongs to) and its record holds the intercepts in ``meta["surrogate"]["intercept"]``
(one per explained input, in record order).  :meth:`LocalSurrogate.neighbourhoods` draws a weighted sample
of the neighbourhood the method fits on, for each of some inputs: the points ``z`` (interpretable
features), the same points as model inputs, and their weights.  The method is fitted
(:meth:`~nnxai.methods.base.Method.fit`) before either is called.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

#: The class score every surrogate models (``meta["surrogate"]["score"]``).
SURROGATE_SCORE = "probability"


@dataclass(frozen=True)
class Neighbourhood:
    """A weighted sample around one input: ``features`` (S, d), ``inputs`` (S, ...) and ``weights`` (S,)."""

    features: torch.Tensor
    inputs: torch.Tensor
    weights: torch.Tensor


class LocalSurrogate(ABC):
    """Mixin of an attribution method whose map holds the coefficients of a local linear surrogate.

    Listed before the method's base class, it records the intercept of every surrogate that
    :meth:`surrogate_map` fits while the method explains, in ``meta["surrogate"]`` of the record.
    """

    _intercepts: list[float] | None = None

    def _run(self, ctx):
        self._intercepts = []
        try:
            record, n_inputs = super()._run(ctx)
            record.meta["surrogate"] = {"intercept": self._intercepts, "score": SURROGATE_SCORE}
        finally:
            self._intercepts = None
        return record, n_inputs

    def surrogate_map(self, features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, alpha: float,
                      index: torch.Tensor) -> torch.Tensor:
        """The map of one input: ``β_j`` (of :func:`weighted_ridge`) at every element of feature ``j``."""
        beta, intercept = weighted_ridge(features, targets, weights, alpha)
        if self._intercepts is not None:
            self._intercepts.append(float(intercept))
        return beta[index]

    @abstractmethod
    def feature_index(self, x: torch.Tensor) -> torch.Tensor:
        """Interpretable feature (0..d−1) of every element of the one input ``x``; long, shaped like ``x``."""

    @abstractmethod
    def neighbourhoods(self, model: nn.Module, inputs: torch.Tensor, n_samples: int, seed: int,
                       pool: torch.Tensor) -> Iterator[Neighbourhood]:
        """A weighted neighbourhood sample of each of ``inputs`` (N, ...), in order: ``n_samples`` draws
        seeded by ``seed`` (sampling methods), or the points of ``pool`` (held-out inputs) weighted
        (data-driven methods)."""


def coefficients_from_map(attribution: torch.Tensor, index: torch.Tensor, n_features: int) -> torch.Tensor:
    """The ``β_j`` a map holds: the mean of ``attribution`` over the elements of each feature (float64)."""
    flat, idx = attribution.reshape(-1).double(), index.reshape(-1).to(attribution.device)
    total = torch.zeros(n_features, dtype=torch.float64, device=attribution.device).index_add_(0, idx, flat)
    count = torch.zeros(n_features, dtype=torch.float64, device=attribution.device).index_add_(
        0, idx, torch.ones_like(flat))
    return total / count.clamp(min=1)


def weighted_ridge(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                   alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(β, b)`` minimising ``Σ_i w_i (y_i − b − β·z_i)² + α ‖β‖²`` (intercept not penalised), float64.

    The weighted means are removed first and ``α`` is on the scale of the unnormalised weights, as in
    scikit-learn's ``Ridge`` with ``sample_weight``; the normal equations are solved by least squares, so
    ``alpha = 0`` gives weighted least squares.
    """
    z, y, w = features.double(), targets.double(), weights.double()
    z_mean, y_mean = (w @ z) / w.sum(), (w @ y) / w.sum()
    root = w.sqrt()[:, None]
    zc, yc = (z - z_mean) * root, (y - y_mean) * root[:, 0]
    gram = zc.T @ zc + alpha * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    beta = torch.linalg.lstsq(gram, zc.T @ yc).solution
    return beta, y_mean - z_mean @ beta
