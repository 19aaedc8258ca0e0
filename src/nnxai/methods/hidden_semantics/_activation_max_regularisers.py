"""The image priors of activation maximisation (survey Sec. III-B-1, refs [71], [93]-[98]): penalty terms,
the image operators applied between gradient steps, and Olah et al.'s decorrelated parameterisation with its
random transformations.  Every function works on a batch ``(N, C, H, W)`` and treats each image alone.

* :func:`l2_penalty` — Simonyan et al. [71]: ``Ω(x) = ||x - μ||²``, here the mean over the input's elements
  divided by the data's mean pixel variance, so that a typical real image costs 1 (a unit-free weight).
* :func:`total_variation` — Mahendran & Vedaldi [95] (the survey's formula):
  ``TV^β(x) = Σ_{c,i,j} ((x_{c,i,j+1} - x_{c,i,j})² + (x_{c,i+1,j} - x_{c,i,j})²)^{β/2}``, a difference being 0
  where the neighbour is outside the image (the last column / row), averaged over the ``C·H·W`` positions.
* :func:`gaussian_blur` and :func:`richardson_lucy` — the alternate blurring and deblurring of Wang et al.
  [94] (their code: MATLAB ``imfilter`` with a Gaussian, then ``deconvlucy``, Richardson-Lucy deconvolution
  with the same kernel narrowed by 0.8), and the blur of Yosinski et al. [96].
* :func:`yosinski_clip` — Yosinski et al. [96] Sec. 3: the regularisation operator ``r_θ`` applied after each
  gradient step to the mean-subtracted image: L2 decay ``(1 - θ_decay) x``, a Gaussian blur every
  ``θ_b_every`` steps, and the clipping to zero of the pixels of small norm (below the ``θ_n_pct``
  percentile of the per-pixel norms over channels) and of small contribution (below the ``θ_c_pct``
  percentile of ``Σ_c |x ∘ ∇_x a|``, their estimate of how much a pixel adds to the activation).
* :class:`FourierImage` and :func:`random_transform` — Olah et al. [98] ("Feature visualization", Distill
  2017; the Lucid library it describes): the image is ``sigmoid(M · irfft2(s ∘ X))`` with ``s = √(HW) /
  max(f, 1/max(H, W))^decay_power`` (1/f scaling of the spectrum) and ``M`` the colour-decorrelating square
  root of the data's channel covariance (normalised by its largest column norm), scaled to the input range;
  each gradient step sees the image padded, jittered, scaled and rotated at random (transformation
  robustness).

Choices against the papers: the Gaussian kernels are square, of radius ``int(3σ + 0.5)`` (Wang et al. draw a
random 5-10 x 7 kernel) and pad by repeating the border pixel (``imfilter`` pads with zeros, which darkens the
border); the transformations are composed into one affine map per step (Lucid applies them one after
another) and the padded, transformed image is cropped back to the input size, so that networks of a fixed
input size (a flattening head) accept it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Lucid's normalisation of the inverse FFT image before the colour transform (``fft_image``'s ``/ 4``).
LUCID_FFT_SCALE = 4.0


def l2_penalty(x: torch.Tensor, mean: torch.Tensor, variance: float) -> torch.Tensor:
    """``mean((x - mean)²) / variance`` per image, shape ``(N,)``."""
    return (x - mean).pow(2).flatten(1).mean(1) / variance


def _differences(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along columns and rows, 0 in the last column / row (no neighbour)."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return dx, dy


def total_variation(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``TV^β`` of each image (the survey's formula for [95]) averaged over its ``C·H·W`` positions, ``(N,)``.

    ``β = 1`` is the classic (isotropic) total variation; ``β = 2`` the quadratic form of the grid Laplacian
    with free (Neumann) borders, whose eigenvectors are the cosines ``cos(π k (i + ½) / H)``.
    """
    dx, dy = _differences(x)
    squared = dx * dx + dy * dy
    # 0 ** (β/2) has an infinite derivative for β < 2: where the image is flat, the term is 0 and so is its
    # gradient
    powered = torch.where(squared > 0, squared.clamp_min(1e-30).pow(beta / 2.0), torch.zeros_like(squared))
    return powered.flatten(1).mean(1)


def gaussian_kernel(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian of radius ``int(3σ + 0.5)`` (scipy's ``gaussian_filter`` with
    ``truncate=3``); ``[1]`` for ``σ <= 0``."""
    if sigma <= 0:
        return torch.ones(1, dtype=dtype, device=device)
    radius = int(3.0 * sigma + 0.5)
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (k / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel, border pixels repeated (``mode="nearest"``)."""
    kernel = gaussian_kernel(sigma, x.dtype, x.device)
    r = (len(kernel) - 1) // 2
    if r == 0:
        return x.clone()
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def richardson_lucy(observed: torch.Tensor, sigma: float, iterations: int, eps: float = 1e-12) -> torch.Tensor:
    """Richardson-Lucy deconvolution of a positive image blurred by a Gaussian of width ``sigma``:
    ``u_0 = d``, ``u_{k+1} = u_k ∘ (K ∗ (d / (K ∗ u_k)))`` (the kernel is symmetric, ``K^T = K``)."""
    if (observed <= 0).any():
        raise ValueError("Richardson-Lucy deconvolution needs a positive image; shift it first")
    u = observed.clone()
    for _ in range(int(iterations)):
        u = u * gaussian_blur(observed / gaussian_blur(u, sigma).clamp_min(eps), sigma)
    return u


def blur_deblur(x: torch.Tensor, step: int, sigma: float, every: int, deblur_ratio: float, iterations: int,
                low: float, high: float) -> torch.Tensor:
    """Wang et al.'s operator at gradient step ``step`` (0-based): a Gaussian blur of width ``sigma`` at the
    first step of each cycle of ``every`` steps, a Richardson-Lucy deblur with ``deblur_ratio·sigma`` half a
    cycle later (their code: blur at step 1, deblur at step 6 of each 10), the identity otherwise.  The
    deconvolution runs on the image shifted to be positive (``x - low + 1e-3 (high - low)``)."""
    phase = step % every
    if phase == 0:
        return gaussian_blur(x, sigma)
    if phase == every // 2 and every >= 2:
        shift = low - 1e-3 * (high - low)
        return richardson_lucy(x - shift, deblur_ratio * sigma, iterations) + shift
    return x


def percentile_mask(values: torch.Tensor, percentile: float) -> torch.Tensor:
    """``values >= q`` for each row's ``percentile``-th percentile ``q`` (linear interpolation, as numpy):
    the entries kept by a clip of the values below the percentile; all ``True`` at ``percentile = 0``."""
    if percentile <= 0:
        return torch.ones_like(values, dtype=torch.bool)
    q = torch.quantile(values.double(), percentile / 100.0, dim=1, keepdim=True)
    return values.double() >= q


def yosinski_clip(delta: torch.Tensor, grad: torch.Tensor, step: int, decay: float, blur_sigma: float,
                  blur_every: int, norm_percentile: float, contribution_percentile: float) -> torch.Tensor:
    """Yosinski et al.'s ``r_θ`` on the mean-subtracted image ``delta`` after gradient step ``step`` (0-based):
    decay, a blur at every ``blur_every``-th step (0: never), then the two pixel clippings (``grad``: the
    gradient of the objective with respect to the image at this step)."""
    out = delta * (1.0 - decay)
    if blur_every > 0 and blur_sigma > 0 and (step + 1) % blur_every == 0:
        out = gaussian_blur(out, blur_sigma)
    n = len(out)
    keep = percentile_mask(out.norm(dim=1).reshape(n, -1), norm_percentile)
    contribution = (out * grad).abs().sum(1).reshape(n, -1)
    keep &= percentile_mask(contribution, contribution_percentile)
    return out * keep.reshape(n, 1, *out.shape[2:]).to(out.dtype)


def project_ball(delta: torch.Tensor, radius: float) -> torch.Tensor:
    """Each image of ``delta`` scaled onto the L2 ball of ``radius`` if outside it (Erhan et al.'s norm
    constraint ``||x|| = ρ`` [93] relaxed to ``<= ρ``)."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = torch.clamp(radius / norms, max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


def colour_sqrt(pixels: np.ndarray) -> np.ndarray:
    """Lucid's colour decorrelation matrix from ``pixels`` ``(P, C)``: ``U √Λ`` of the channel covariance
    ``U Λ Uᵀ``, divided by its largest column norm (``C = 1``: ``[[1]]``)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.shape[1] == 1:
        return np.ones((1, 1))
    cov = np.cov(pixels, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))[None, :]
    norm = np.linalg.norm(root, axis=0).max()
    return root / norm if norm > 0 else np.eye(pixels.shape[1])


class FourierImage:
    """Olah et al.'s decorrelated parameterisation [98]: a spectrum ``(N, C, H, W//2+1, 2)`` (real, imaginary)
    rendered as ``low + (high - low) · sigmoid(M · irfft2(s ∘ X) / 4)``."""

    def __init__(self, shape: Sequence[int], decay_power: float, colour: np.ndarray, low: float, high: float,
                 device=None):
        c, h, w = (int(v) for v in shape)
        self.shape, self.low, self.high = (c, h, w), float(low), float(high)
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power * math.sqrt(h * w)
        self.scale = scale.to(torch.float32).to(device)
        self.colour = torch.as_tensor(colour, dtype=torch.float32, device=device)

    def spectrum_shape(self, n: int) -> tuple[int, ...]:
        c, h, w = self.shape
        return (n, c, h, w // 2 + 1, 2)

    def render(self, spectrum: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape
        z = torch.view_as_complex(spectrum.contiguous()) * self.scale
        image = torch.fft.irfft2(z, s=(h, w)) / LUCID_FFT_SCALE
        image = torch.einsum("cd,ndhw->nchw", self.colour, image)
        return self.low + (self.high - self.low) * torch.sigmoid(image)


def random_transform(x: torch.Tensor, generator: torch.Generator, pad: int, jitter: int,
                     scales: Sequence[float], angles: Sequence[float], fill: float) -> torch.Tensor:
    """Olah et al.'s transformation robustness [98]: each image padded by ``pad`` pixels of ``fill``, shifted by
    a uniform integer ``(dx, dy)`` in ``[-jitter, jitter]²``, scaled by a factor drawn from ``scales`` and
    rotated by an angle (degrees) drawn from ``angles`` about its centre (bilinear), then cropped back to
    ``H x W``.  With no shift, scale 1 and angle 0 it returns ``x`` (exactly, up to rounding)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="constant", value=fill) if pad > 0 else x
    hp, wp = h + 2 * pad, w + 2 * pad
    shift = torch.randint(-jitter, jitter + 1, (n, 2), generator=generator).to(torch.float64)
    scale = torch.as_tensor(scales, dtype=torch.float64)[torch.randint(len(scales), (n,), generator=generator)]
    angle = torch.as_tensor(angles, dtype=torch.float64)[torch.randint(len(angles), (n,), generator=generator)]
    theta = torch.deg2rad(angle)
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    # output normalised coords -> output pixels (W/2, H/2) -> rotate/scale -> padded-image normalised (2/Wp, 2/Hp)
    a = torch.stack([torch.stack([cos * w / wp, -sin * h / wp, 2 * shift[:, 0] / wp], 1),
                     torch.stack([sin * w / hp, cos * h / hp, 2 * shift[:, 1] / hp], 1)], 1)
    grid = F.affine_grid(a.to(x.dtype).to(x.device), [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)
