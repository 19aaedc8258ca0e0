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
input's shape, bytes and the method's :attr:`~nnxai.methods.base.Method.seed` (the seed given to
:meth:`~nnxai.methods.base.Method.fit`, ``ctx.seed`` during ``explain``; 0 before any fit); the global RNG
is neither read nor advanced.  Hence Captum's ``NoiseTunnel``, which draws
from the global RNG for the whole batch, is not used; the ``n_samples`` copies of ``batch_size`` inputs go
through Captum's ``Saliency`` in one pass.
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.methods.base import AttributionMethod
from nnxai.params import Float, Int
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
    from captum.attr import Saliency  # lazy, see _captum.py

    grads = Saliency(model).attribute(noisy, target=target.repeat_interleave(n_samples), abs=False).detach()
    return grads.reshape(n, n_samples, *inputs.shape[1:]).mean(1)


@register("smoothgrad")
class SmoothGrad(AttributionMethod):
    """``|mean_k ∂S_c(x + ε_k)/∂x|``, ``ε_k ~ N(0, (noise_level · range(x))²)``, of [39] Eq. 3.

    Notes
    -----
    No reference input: ``baselines`` passed to :meth:`attribute` are ignored.  Nothing is learnt from the
    train split; :meth:`fit` only sets the seed mixed into every input's noise (:attr:`seed`).
    """

    parameters = {**AttributionMethod.parameters,
                  "n_samples": Int("noisy copies n averaged per input ([39] Eq. 3)", low=1),
                  "noise_level": Float("σ / (max(x) − min(x)): noise standard deviation as a fraction of each "
                                       "input's value range ([39] Sec. 4.2; 0 gives `gradient`)", low=0)}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        size = self.params["batch_size"]
        return torch.cat([
            smoothed_gradient(model, part, t, self.params["n_samples"], float(self.params["noise_level"]),
                              self.seed).abs()
            for part, t in zip(inputs.split(size), target.split(size))])
