"""Lightweight probabilistic deep networks (LPDN), Gast & Roth 2018, as used by DASP (survey [106]).

An LPDN propagates, instead of one activation per unit, the mean ``μ`` and variance ``v`` of a Gaussian
approximation of its distribution: *assumed density filtering* — each layer's output is moment-matched to
an independent normal per unit.  Ancona et al. [106] use it to propagate the distribution of the
network's units under a random coalition of input players.  Layers (``μ, v`` in, ``μ', v'`` out):

- ``Linear`` / ``Conv2d``: ``μ' = Wμ + b``, ``v' = W² v`` (units independent; ``W²`` element-wise).
- ``ReLU`` (the rectified Gaussian, exact): with ``s = √v``, ``z = μ/s``, ``μ' = μ Φ(z) + s φ(z)``,
  ``E[y²] = (μ² + v) Φ(z) + μ s φ(z)``, ``v' = E[y²] − μ'²``.
- ``Sigmoid`` — *probit approximation* (MacKay 1992; Bishop, PRML Eq. 4.153): ``E[σ(y)] ≈ σ(κμ)``,
  ``κ = (1 + πv/8)^{-1/2}``.  Its derivative in ``μ`` approximates ``E[σ'(y)] ≈ κ σ(κμ)(1 − σ(κμ))``; with
  the identity ``σ² = σ − σ'``, ``E[σ(y)²] ≈ p − κ p (1 − p)``, ``p = σ(κμ)``, hence
  ``v' ≈ p (1 − p)(1 − κ)``.  Both are exact at ``v = 0``.
- ``MaxPool2d`` — the LPDN's max of Gaussians: the max of two independent normals is moment-matched with
  Clark's (1961) formulas, ``θ = √(v_a + v_b)``, ``α = (μ_a − μ_b)/θ``,
  ``μ' = μ_a Φ(α) + μ_b Φ(−α) + θ φ(α)``,
  ``E[y²] = (μ_a² + v_a) Φ(α) + (μ_b² + v_b) Φ(−α) + (μ_a + μ_b) θ φ(α)``, exact for two independent normals,
  applied pairwise over a window as in Gast & Roth's reference code ((a∨b)∨(c∨d) for 2 × 2 windows); the
  result is again moment-matched to a normal, and the window's inputs are treated as independent.
- ``AdaptiveAvgPool2d`` (output 1 × 1) / ``AvgPool2d``: ``μ'`` the mean, ``v'`` the sum of variances over
  the window divided by its size squared.
- ``Flatten``, ``Identity``, ``Dropout`` (eval): unchanged.
- An element-wise gate ``y = x ∘ g(x)`` (the interpretable CNN's template mask [70], see
  :mod:`~nnxai.methods.attribution.propagation._lrp_rules`): a Gaussian scaled by a constant,
  ``μ' = g μ``, ``v' = g² v``, with the gate taken at the mean, ``g = g(μ)`` (the template of each map's
  peak of ``μ``).  Choice: under a random coalition the peak, and so ``g``, is itself random; assumed
  density filtering keeps one Gaussian per unit, and the gate at the mean is exact where the distribution
  is a point (``v = 0``: the empty and the full coalition).

:func:`probabilistic_chain` reads a model's layers in call order (a plain chain, checked by replaying it)
and refuses any other module with a ``ValueError`` naming it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnxai.methods.attribution.propagation._lrp_rules import (Layer, check_module_type, fixed_gate, gate_types,
                                                              is_gate, layer_chain)

WEIGHTED = (nn.Linear, nn.Conv2d)
PASS_THROUGH = (nn.Flatten, nn.Identity, nn.Dropout)
SUPPORTED = WEIGHTED + PASS_THROUGH + (nn.ReLU, nn.Sigmoid, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool2d)
#: Variance below which a unit counts as deterministic (keeps divisions by √v finite).
TINY_VAR = 1e-20


def normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(z)


def relu_moments(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``max(0, y)`` for ``y ~ N(mean, var)`` (exact)."""
    s = var.clamp(min=TINY_VAR).sqrt()
    z = mean / s
    cdf, pdf = normal_cdf(z), normal_pdf(z)
    out_mean = mean * cdf + s * pdf
    second = (mean * mean + var) * cdf + mean * s * pdf
    return out_mean, (second - out_mean * out_mean).clamp(min=0)


def sigmoid_moments(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probit-approximated mean and variance of ``σ(y)`` for ``y ~ N(mean, var)`` (see module docstring)."""
    kappa = torch.rsqrt(1 + math.pi * var / 8)
    p = torch.sigmoid(kappa * mean)
    return p, (p * (1 - p) * (1 - kappa)).clamp(min=0)


def max_moments(mean_a, var_a, mean_b, var_b) -> tuple[torch.Tensor, torch.Tensor]:
    """Clark's moment-matched mean and variance of ``max(a, b)`` for independent normals."""
    theta = (var_a + var_b).clamp(min=TINY_VAR).sqrt()
    alpha = (mean_a - mean_b) / theta
    cdf, cdf_b, pdf = normal_cdf(alpha), normal_cdf(-alpha), normal_pdf(alpha)
    out_mean = mean_a * cdf + mean_b * cdf_b + theta * pdf
    second = (mean_a ** 2 + var_a) * cdf + (mean_b ** 2 + var_b) * cdf_b + (mean_a + mean_b) * theta * pdf
    return out_mean, (second - out_mean * out_mean).clamp(min=0)


def _pair_tree(means: list, variances: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce lists of candidates by pairwise Clark maxima, neighbours first."""
    while len(means) > 1:
        pairs = [max_moments(means[i], variances[i], means[i + 1], variances[i + 1])
                 for i in range(0, len(means) - 1, 2)]
        tail = [(means[-1], variances[-1])] if len(means) % 2 else []
        means, variances = [m for m, _ in pairs + tail], [v for _, v in pairs + tail]
    return means[0], variances[0]


def max_pool_moments(module: nn.MaxPool2d, mean, var) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments of a max-pool's output: Clark's maxima over each window, row by row."""
    kernel, stride = nn.modules.utils._pair(module.kernel_size), nn.modules.utils._pair(module.stride)
    out_h, out_w = (mean.shape[2] - kernel[0]) // stride[0] + 1, (mean.shape[3] - kernel[1]) // stride[1] + 1

    def windows(t):       # element (di, dj) of every window, as strided views, row by row
        return [t[:, :, di:di + stride[0] * (out_h - 1) + 1:stride[0], dj:dj + stride[1] * (out_w - 1) + 1:stride[1]]
                for di in range(kernel[0]) for dj in range(kernel[1])]

    return _pair_tree(windows(mean), windows(var))


def avg_pool_moments(module: nn.Module, mean, var) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments of an average pool: mean of means, (sum of variances) / size²."""
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = mean.shape[2] * mean.shape[3]
        return module(mean), module(var) / size
    kernel = nn.modules.utils._pair(module.kernel_size)
    return module(mean), module(var) / (kernel[0] * kernel[1])


def gate_moments(module: nn.Module, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments of ``x ∘ g`` with the gate fixed at the mean, ``g = g(μ)`` (module docstring)."""
    gate = fixed_gate(module, mean)
    return mean * gate, var * gate * gate


def layer_moments(module: nn.Module, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(μ', v')`` of one layer of an LPDN (module docstring)."""
    if isinstance(module, nn.Linear):
        return F.linear(mean, module.weight, module.bias), F.linear(var, module.weight ** 2)
    if isinstance(module, nn.Conv2d):
        args = (module.stride, module.padding, module.dilation, module.groups)
        return F.conv2d(mean, module.weight, module.bias, *args), F.conv2d(var, module.weight ** 2, None, *args)
    if isinstance(module, nn.ReLU):
        return relu_moments(mean, var)
    if isinstance(module, nn.Sigmoid):
        return sigmoid_moments(mean, var)
    if isinstance(module, nn.MaxPool2d):
        return max_pool_moments(module, mean, var)
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
        return avg_pool_moments(module, mean, var)
    if is_gate(module):
        return gate_moments(module, mean, var)
    return mean, var                                                            # PASS_THROUGH


def _check_module(module: nn.Module, owner: str) -> None:
    check_module_type(module, owner, SUPPORTED + gate_types(), "the LPDN")
    if isinstance(module, nn.MaxPool2d) and (module.padding != 0 or module.dilation != 1 or module.ceil_mode):
        raise ValueError(f"{owner}: MaxPool2d with padding, dilation or ceil_mode is not supported")
    if isinstance(module, nn.AvgPool2d) and module.padding != 0:
        raise ValueError(f"{owner}: AvgPool2d with padding is not supported")
    if isinstance(module, nn.AdaptiveAvgPool2d) and nn.modules.utils._pair(module.output_size) != (1, 1):
        raise ValueError(f"{owner}: AdaptiveAvgPool2d must pool to 1 × 1, got {module.output_size}")


def probabilistic_chain(model: nn.Module, example: torch.Tensor, owner: str) -> list[Layer]:
    """The leaf modules of ``model`` in call order; the first must be ``Linear``/``Conv2d`` (DASP's input layer).

    Raises
    ------
    ValueError
        If a module is not supported by the LPDN, the first layer is not weighted, or replaying the modules
        one after the other does not reproduce the model (skip connections, functional nonlinearities).
    """
    calls = layer_chain(model, example, owner, check_module=_check_module)
    first = next((layer for layer in calls if not isinstance(layer.module, PASS_THROUGH)), None)
    if first is None or not isinstance(first.module, WEIGHTED):
        raise ValueError(f"{owner}: the first layer must be Linear or Conv2d (DASP's exact input layer), got "
                         f"{None if first is None else type(first.module).__name__}")
    return calls[calls.index(first):]


def propagate(chain: list[Layer], mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Push ``(μ, v)`` of the input of ``chain[0]`` through the chain; returns the output's moments."""
    n = len(mean)
    for layer in chain:
        mean, var = layer_moments(layer.module, mean.reshape(n, *layer.in_shape), var.reshape(n, *layer.in_shape))
    return mean, var
