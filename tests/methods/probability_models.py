"""Toy models whose *softmax probability* is a known function of the input, for the methods that explain
probabilities (LIME, MAPLE, prediction difference, meaningful perturbation).

- :class:`ProbabilityLinear`: two classes with ``p_1(x) = a + w · flatten(x)`` exactly (logits
  ``log(1 − p_1)``, ``log p_1``), so a surrogate linear in ``x`` reproduces it without error.
"""

from __future__ import annotations

import torch
from torch import nn


class ProbabilityLinear(nn.Module):
    """Two classes, ``softmax(model(x))[:, 1] = a + w · flatten(x)`` (inputs must keep it inside (0, 1))."""

    architecture = "mlp"

    def __init__(self, weight: torch.Tensor, offset: float = 0.5):
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float64).reshape(-1))
        self.offset = float(offset)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        return self.offset + x.flatten(1).double() @ self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.probability(x)
        if ((p <= 0) | (p >= 1)).any():
            raise ValueError("ProbabilityLinear: an input drives p_1 outside (0, 1); use smaller weights")
        return torch.stack([torch.log1p(-p), torch.log(p)], dim=1).to(x.dtype)
