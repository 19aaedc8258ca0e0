"""The learnt image prior of Nguyen et al. [97] ("Synthesizing the preferred inputs for neurons in neural
networks via deep generator networks", NIPS 2016), trained here on the train split.

Paper, Sec. 2: a generator ``G`` maps a code ``h`` to an image; it was trained by Dosovitskiy & Brox (2016) to
invert the features ``h = E(x)`` of an encoder network (CaffeNet's fc6), with an image loss, a feature loss
and an adversarial loss.  Activation maximisation then searches the code, ``h* = argmax_h a(G(h))``: each step
is gradient ascent on the code, followed by an L2 decay of the code (multiplied by 0.99 in the authors'
code) and a clipping of each code unit to ``[0, 3σ]``-style bounds (their ``act_range/3x`` files: the upper
bound three standard deviations above the unit's mean activation, the lower bound 0, ReLU codes); the
search starts from a random code.

Here ``E`` is the explained network itself up to its deepest unit layer (``model.unit_layers()``: the last
conv block of a CNN, a spatial code of ``channels x h x w`` numbers, 4096 on ``shapes``' default CNN as fc6
has).  The code enters ``G`` divided by each channel's spread over the training codes.  Two generators:

* ``upconv`` (the paper's kind): a small up-convolutional network, 3x3 conv, LeakyReLU(0.3) (as Dosovitskiy
  & Brox), nearest-neighbour upsampling to half the input size, 3x3 conv, LeakyReLU, upsampling to the input
  size, 3x3 conv, and a sigmoid scaled to the data's input range (its bias starting at the mean pixel, so
  that the sigmoid does not start saturated on dark images).  Trained with Adam on
  ``||G(E(x)) - x||² / v_x + λ_feat ||E(G(E(x))) - E(x)||² / v_h`` (``v``: the variance of the pixels and of
  the codes over the training images, so that ``λ_feat`` is unit-free).
* ``linear``: the least-squares inversion of the code, ``G(h) = μ + (φ(h) - φ̄) Φ_cᵀ (K + λI)⁻¹ X_c`` (kernel
  ridge regression with a linear kernel, ``K = Φ_c Φ_cᵀ`` over the centred training codes ``Φ_c`` and images
  ``X_c``; λ chosen by exact leave-one-out error over a grid), clipped to the input range: its images lie in
  the span of real training images.  Fitted in closed form in a fraction of a second; on ``shapes``' default
  CNN it reconstructs held-out images better (R² ≈ 0.4) than the up-convolutional network after the ~100
  Adam steps a default job can pay for (R² ≈ 0.2), so it is the default budget's prior and ``upconv`` the
  paper profile's.

Choices against the paper, for the budget: no adversarial term (a discriminator doubles the cost and is
unstable over a few epochs), nearest-neighbour upsampling instead of unpooling, bounds per code *channel*
(mean + 3 std over images and positions; the lower bound the channel's minimum, 0 for ReLU codes), a start
code drawn around the channel means (``m + σ ε``, ``ε ~ N(0, 1)``) and clipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.3   # Dosovitskiy & Brox's LeakyReLU slope
#: λ grid of the linear decoder, relative to the mean code energy trace(K) / n
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _channel_spread(codes: torch.Tensor) -> torch.Tensor:
    spread = codes.transpose(0, 1).reshape(codes.shape[1], -1).std(1)
    return torch.where(spread > 1e-6, spread, torch.ones_like(spread)).view(1, -1, 1, 1)


class CodeGenerator(nn.Module):
    """The up-convolutional ``G``: code ``(K, h, w)`` -> image ``(C, H, W)`` in ``[low, high]``."""

    def __init__(self, code_shape, image_shape, width: int, low: float, high: float, code_scale=None,
                 mean_pixel=None):
        super().__init__()
        k = int(code_shape[0])
        c, h, w = (int(v) for v in image_shape)
        self.image_shape, self.low, self.high = (c, h, w), float(low), float(high)
        self.half = (max(1, math.ceil(h / 2)), max(1, math.ceil(w / 2)))
        scale = torch.ones(1, k, 1, 1) if code_scale is None else torch.as_tensor(code_scale).float().view(1, k, 1, 1)
        self.register_buffer("code_scale", scale)
        self.conv1 = nn.Conv2d(k, 2 * width, 3, padding=1)
        self.conv2 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, c, 3, padding=1)
        if mean_pixel is not None:
            m = ((torch.as_tensor(mean_pixel, dtype=torch.float32) - low) / (high - low)).clamp(1e-3, 1 - 1e-3)
            with torch.no_grad():
                self.conv3.bias.copy_(torch.log(m) - torch.log1p(-m))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        z = F.leaky_relu(self.conv1(code / self.code_scale), LEAK)
        z = F.leaky_relu(self.conv2(F.interpolate(z, size=self.half, mode="nearest")), LEAK)
        z = self.conv3(F.interpolate(z, size=self.image_shape[1:], mode="nearest"))
        return self.low + (self.high - self.low) * torch.sigmoid(z)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class LinearDecoder(nn.Module):
    """The least-squares ``G`` (kernel ridge, linear kernel, dual form), clipped to ``[low, high]``."""

    def __init__(self, codes: torch.Tensor, images: torch.Tensor, low: float, high: float):
        super().__init__()
        self.low, self.high, self.image_shape = float(low), float(high), tuple(images.shape[1:])
        scale = _channel_spread(codes)
        phi = (codes / scale).flatten(1).double()
        mean_phi, mean_x = phi.mean(0, keepdim=True), images.double().mean(0, keepdim=True)
        phi_c, x_c = phi - mean_phi, (images.double() - mean_x).flatten(1)
        gram = phi_c @ phi_c.T
        values, vectors = torch.linalg.eigh(gram)
        values = values.clamp_min(0.0)
        proj = vectors.T @ x_c                                        # Uᵀ X_c
        base = float(values.sum()) / len(values) or 1.0
        best = None
        for rel in RIDGE_GRID:
            lam = rel * base
            shrink = values / (values + lam)
            fitted = vectors @ (shrink[:, None] * proj)
            # the hat matrix of ridge with an intercept: 11ᵀ/n + U diag(S/(S+λ)) Uᵀ on the centred data
            leverage = ((vectors * vectors * shrink[None, :]).sum(1) + 1.0 / len(values)).clamp(max=1 - 1e-9)
            loo = float((((x_c - fitted) / (1 - leverage)[:, None]) ** 2).mean())
            if best is None or loo < best[0]:
                best = (loo, lam, rel)
        self.loo_mse, self.ridge, self.ridge_relative = best
        alpha = vectors @ ((1.0 / (values + self.ridge))[:, None] * proj)      # (K + λI)⁻¹ X_c
        self.register_buffer("code_scale", scale.float())
        self.register_buffer("mean_phi", mean_phi.float())
        self.register_buffer("phi_c", phi_c.float())
        self.register_buffer("alpha", alpha.float())
        self.register_buffer("mean_x", mean_x.float())

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        phi = (code / self.code_scale).flatten(1) - self.mean_phi
        out = self.mean_x + ((phi @ self.phi_c.T) @ self.alpha).view(len(code), *self.image_shape)
        return out.clamp(self.low, self.high)

    def n_parameters(self) -> int:
        return int(self.alpha.numel() + self.phi_c.numel())


def train_generator(encode, images: torch.Tensor, kind: str, width: int, epochs: int, batch_size: int, lr: float,
                    feature_weight: float, low: float, high: float, seed: int) -> tuple[nn.Module, dict]:
    """Fit ``G`` (``kind``: ``"upconv"`` or ``"linear"``) to invert ``encode`` (images -> codes, differentiable) on
    ``images``; returns ``G`` (eval mode, no gradients) and ``{"codes": the training codes, ...}``.

    Everything random (the weights, the batch order) draws from ``seed``, not from the global generators.
    """
    with torch.no_grad():
        codes = torch.cat([encode(b) for b in images.split(max(1, batch_size))])
    if codes.dim() == 2:                              # a flat code: one 1x1 map per unit
        codes = codes[:, :, None, None]
    if kind == "linear":
        gen = LinearDecoder(codes, images, low, high).to(images.device).eval()
        return gen, {"codes": codes, "kind": kind, "n_parameters": gen.n_parameters(),
                     "ridge_relative": gen.ridge_relative, "loo_mse": gen.loo_mse,
                     "code_shape": list(codes.shape[1:])}
    if kind != "upconv":
        raise ValueError(f"unknown generator kind {kind!r}; choose upconv or linear")
    v_x = float(images.var()) or 1.0
    v_h = float(codes.var()) or 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = CodeGenerator(codes.shape[1:], images.shape[1:], width, low, high, _channel_spread(codes),
                            images.mean((0, 2, 3))).to(images.device)
    order_rng = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    params = list(gen.parameters())
    last = math.nan
    for _ in range(int(epochs)):
        total, count = 0.0, 0
        for idx in torch.randperm(len(images), generator=order_rng).split(batch_size):
            idx = idx.to(images.device)
            x, h = images[idx], codes[idx]
            out = gen(h)
            loss = (out - x).pow(2).mean() / v_x
            if feature_weight > 0:
                feat = encode(out).reshape(h.shape)
                loss = loss + feature_weight * (feat - h).pow(2).mean() / v_h
            grads = torch.autograd.grad(loss, params)   # only G's gradients: the network's stay untouched
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        last = total / max(count, 1)
    for p in params:
        p.grad = None
        p.requires_grad_(False)
    gen.eval()
    return gen, {"codes": codes, "kind": kind, "loss": last, "n_parameters": gen.n_parameters(),
                 "code_shape": list(codes.shape[1:])}


def code_bounds(codes: torch.Tensor, n_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per code channel: ``(lower, upper) = (min, mean + n_std · std)`` over images and positions, each
    ``(1, K, 1, 1)``."""
    per_channel = codes.transpose(0, 1).reshape(codes.shape[1], -1)
    lower = per_channel.min(1).values
    upper = per_channel.mean(1) + n_std * per_channel.std(1)
    return lower.view(1, -1, 1, 1), torch.maximum(upper, lower).view(1, -1, 1, 1)
