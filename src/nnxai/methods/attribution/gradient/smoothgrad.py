"""SmoothGrad, Smilkov, Thorat, Kim, Viégas & Wattenberg 2017 (the companion survey's [39]).

Smilkov et al. (Eq. 3) smooth a sensitivity map ``M_c`` by averaging it over noisy copies of the input,

    M̂_c(x) = (1/n) Σ_{k=1}^{n} M_c(x + ε_k),      ε_k ~ N(0, σ² I),

with the noise level set relative to the input's range, ``σ = noise_level · (max(x) − min(x))`` (their
Sec. 4.2; 10–20 % works well).  Here ``M_c = ∂S_c/∂x`` is the *signed* gradient of the class logit, as
in [39], and the map returned is the absolute value of the average,

    SmoothGrad_c(x) = | (1/n) Σ_k ∂S_c(x + ε_k)/∂x |,

so that it is on the same footing as the project's ``gradient`` method (``|∂S_c/∂x|`` of [71]): with
``noise_level = 0`` the two coincide.  Smilkov et al. likewise average signed gradients and take ``|·|``
for the final map of image models (their Sec. 4.1 discusses the choice).  :func:`smoothed_gradient`
returns the signed average before ``|·|``.

Noise.  For the result to be reproducible and independent of how inputs are batched, each input draws its
noise from its own ``torch.Generator`` (on the CPU, whatever the device) seeded by a BLAKE2b hash of the
input's shape, bytes and :attr:`SmoothGrad.noise_seed` (``ctx.seed`` during :meth:`SmoothGrad.explain`,
0 otherwise); the global RNG is neither read nor advanced.  Hence Captum's ``NoiseTunnel``, which draws
from the global RNG for the whole batch, is not used; the ``n_samples`` copies of ``batch_size`` inputs go
through Captum's ``Saliency`` in one pass.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch
from torch import nn

from nnxai.params import check_positive_ints
from nnxai.methods.base import AttributionMethod
from nnxai.registry import register
from nnxai.ops.noise import input_noise


def smoothed_gradient(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, n_samples: int,
                      noise_level: float, seed: int = 0) -> torch.Tensor:
    """Signed SmoothGrad average ``(1/n) Σ_k ∂S_c(x + ε_k)/∂x`` of [39] Eq. 3, shaped like ``inputs``.

    Parameters
    ----------
    model : nn.Module
        Maps ``inputs`` to class logits ``S``.
    inputs : torch.Tensor
        ``(N, ...)`` inputs; left untouched.
    target : torch.Tensor
        ``(N,)`` classes ``c``.
    n_samples : int
        Noisy copies per input.
    noise_level : float
        ``σ / (max(x) − min(x))``, per input.
    seed : int
        Mixed into each input's noise seed (see the module docstring).
    """
    n = len(inputs)
    span = (inputs.detach().flatten(1).amax(1) - inputs.detach().flatten(1).amin(1))
    sigma = (noise_level * span).reshape(n, 1, *(1,) * (inputs.dim() - 1))
    noise = torch.stack([input_noise(x, n_samples, seed) for x in inputs])      # (N, n_samples, ...)
    noisy = (inputs.detach()[:, None] + sigma * noise).flatten(0, 1).requires_grad_(True)
    from captum.attr import Saliency  # lazy, see gradient.py

    grads = Saliency(model).attribute(noisy, target=target.repeat_interleave(n_samples), abs=False).detach()
    return grads.reshape(n, n_samples, *inputs.shape[1:]).mean(1)


@register("smoothgrad")
class SmoothGrad(AttributionMethod):
    """``|mean_k ∂S_c(x + ε_k)/∂x|``, ``ε_k ~ N(0, (noise_level · range(x))²)``, of [39] Eq. 3.

    Parameters
    ----------
    n_explain : int
        Number of seeded test inputs explained by :meth:`explain` (for their predicted class).
    batch_size : int
        Inputs per pass (each with its ``n_samples`` noisy copies).
    n_samples : int
        Noisy copies averaged per input (``n`` of [39]).
    noise_level : float
        Noise standard deviation as a fraction of each input's value range (>= 0; 0 gives ``gradient``).

    Attributes
    ----------
    noise_seed : int
        Seed mixed into every input's noise; :meth:`explain` sets it to ``ctx.seed``.

    Notes
    -----
    No reference input: ``baselines`` passed to :meth:`attribute` are ignored.
    """

    param_names = ("n_explain", "batch_size", "n_samples", "noise_level")

    def __init__(self, **params: Any):
        super().__init__(**params)
        owner = f"method {self.spec.id!r}"
        check_positive_ints(owner, self.params, ("n_explain", "batch_size", "n_samples"))
        level = self.params["noise_level"]
        if isinstance(level, bool) or not isinstance(level, Real) or not math.isfinite(level) or level < 0:
            raise ValueError(f"{owner}: parameter 'noise_level' must be a finite number >= 0, got {level!r}")
        self.noise_seed = 0

    def _run(self, ctx):
        self.noise_seed = int(ctx.seed)
        try:
            return super()._run(ctx)
        finally:
            self.noise_seed = 0

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        size = self.params["batch_size"]
        return torch.cat([
            smoothed_gradient(model, part, t, self.params["n_samples"], float(self.params["noise_level"]),
                              self.noise_seed).abs()
            for part, t in zip(inputs.split(size), target.split(size))])
