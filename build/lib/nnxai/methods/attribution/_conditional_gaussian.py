"""The conditional sampler of prediction difference analysis, Zintgraf et al. [108] (Sec. 3.2): a
multivariate normal fitted to training data, and the normal of some of its coordinates given the others.

For x ~ N(μ, Σ) split into the resampled block 1 and the conditioning block 2,

    x₁ | x₂ ~ N(μ₁ + Σ₁₂ Σ₂₂⁻¹ (x₂ − μ₂),  Σ₁₁ − Σ₁₂ Σ₂₂⁻¹ Σ₂₁),

written here as ``mean = A x₂ + c`` with ``A = Σ₁₂ Σ₂₂⁻¹``, ``c = μ₁ − A μ₂``, and a square root ``L`` of the
conditional covariance (``L Lᵀ = Σ₁|₂``), so that a sample is ``A x₂ + c + L ε``, ``ε ~ N(0, I)``.

Numerics.  Pixels that never vary in the train split (the blank border of digits) make Σ₂₂ singular; it
is inverted with a ridge of :data:`RIDGE` times its mean diagonal, a numerical safeguard that changes the
conditional of well-conditioned blocks by a relative 1e-4 (and leaves the coordinates without variance out
of ``A``, since their covariances are 0 too).  ``L`` comes from an eigendecomposition with negative
round-off eigenvalues set to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Ridge added to Σ₂₂ before inversion, relative to its mean diagonal (see the module docstring).
RIDGE = 1e-4


@dataclass(frozen=True)
class Gaussian:
    """A multivariate normal ``N(mean, cov)`` in float64, fitted to ``n_fit`` samples."""

    mean: torch.Tensor        # (d,)
    cov: torch.Tensor         # (d, d)
    n_fit: int


@dataclass(frozen=True)
class Conditional:
    """``x₁ | x₂ ~ N(A x₂ + c, L Lᵀ)`` for the coordinates ``inner`` given ``outer`` (float64)."""

    A: torch.Tensor           # (d1, d2)
    c: torch.Tensor           # (d1,)
    L: torch.Tensor           # (d1, d1)

    def sample(self, outer_values: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
        """Samples ``(..., S, d1)`` given ``outer_values`` ``(..., d2)`` and standard normals ``(..., S, d1)``."""
        mean = outer_values.double() @ self.A.T + self.c
        return mean[..., None, :] + normals.double() @ self.L.T


def fit_gaussian(samples: torch.Tensor) -> Gaussian:
    """Maximum-likelihood mean and (unbiased) covariance of ``samples`` ``(n, d)``, n >= 2."""
    x = samples.double()
    mean = x.mean(0)
    centred = x - mean
    return Gaussian(mean, centred.T @ centred / (len(x) - 1), len(x))


def conditional(gaussian: Gaussian, inner: torch.Tensor, outer: torch.Tensor) -> Conditional:
    """The normal of the coordinates ``inner`` given the coordinates ``outer`` (index tensors)."""
    mu, cov = gaussian.mean, gaussian.cov
    s11 = cov[inner][:, inner]
    if len(outer) == 0:
        A = torch.zeros(len(inner), 0, dtype=cov.dtype, device=cov.device)
        return Conditional(A, mu[inner], psd_sqrt(s11))
    s12 = cov[inner][:, outer]
    s22 = cov[outer][:, outer]
    ridge = RIDGE * s22.diagonal().mean().clamp(min=1e-12)
    s22 = s22 + ridge * torch.eye(len(outer), dtype=cov.dtype, device=cov.device)
    A = torch.linalg.solve(s22, s12.T).T
    return Conditional(A, mu[inner] - A @ mu[outer], psd_sqrt(s11 - A @ s12.T))


def psd_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """``L`` with ``L Lᵀ = cov`` for a symmetric, numerically positive semi-definite ``cov``."""
    values, vectors = torch.linalg.eigh((cov + cov.T) / 2)
    return vectors * values.clamp(min=0).sqrt()
