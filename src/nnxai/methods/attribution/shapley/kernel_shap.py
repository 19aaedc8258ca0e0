"""KernelSHAP, Lundberg & Lee (survey [105]), sampled as Captum's ``KernelShap`` and solved exactly.

SHAP values are the Shapley values of the game ``v(z') = f_c(h_x(z'))`` over simplified inputs
``z' ∈ {0, 1}^M`` (player present, or at the reference).  Lundberg & Lee's Theorem 2 ("Shapley kernel")
shows that LIME's weighted linear regression recovers them exactly when the loss is the squared error
over all coalitions weighted by

    π_x(z') = (M − 1) / ( (M choose |z'|) · |z'| · (M − |z'|) ),

which is infinite for ``|z'| ∈ {0, M}``: the intercept is pinned to ``v(∅)`` and the slopes sum to
``v(all) − v(∅)`` (*local accuracy*, their Property 1: Σ φ_i = f_c(x) − f_c(r)).  KernelSHAP samples
coalitions instead of all ``2^M``: as Captum's ``KernelShap``, ``|z'| = k`` with probability
∝ ``(M − 1)/(k (M − k))`` and then a uniform coalition of that size, so the sampled coalitions follow the
kernel and enter an ordinary least-squares fit with weight 1; ``n_samples`` counts them with the empty and
the full coalition.  The two infinite weights are kept as what they are, exact constraints (Captum
approximates them by weight 10⁶; the SHAP package's KernelExplainer eliminates one coefficient): with
``φ = (Δ/M) 1 + Q u``, ``Δ = v(all) − v(∅)`` and ``Q`` an orthonormal basis of the sum-zero vectors,

    u = argmin_u Σ_s ( v(z_s) − v(∅) − z_s · (Δ/M) 1 − z_s · Q u )²,

solved for all inputs of a batch at once (minimum-norm ``u`` when the sample leaves the fit
under-determined, which splits what it cannot tell apart evenly).  Local accuracy holds exactly, and the
values converge to the Shapley values as ``n_samples`` grows.  All coalitions of all inputs of a batch go
through the model together (:func:`~._coalitions.coalition_scores`).

Game, reference and players as in :mod:`.shapley_sampling`: ``v(S) = f_c(x_S ∪ r_{P∖S})`` on the logit,
``r`` zero or the train mean, one player per feature of a table and per ``patch``-pixel cell of an image,
each cell's value spread evenly over its pixels; each input's coalitions drawn with an RNG seeded from
the input and the fitted seed.  A single player (an image no larger than ``patch``) gets
``f_c(x) − f_c(r)``, its Shapley value.
"""

from __future__ import annotations

import torch

from nnxai.methods.attribution.shapley._shapley_players import SampledShapley
from nnxai.params import Int
from nnxai.registry import register


def kernel_coalitions(n_players: int, n_samples: int) -> torch.Tensor:
    """``(n_samples, M)`` coalitions drawn by the Shapley kernel: ``k ∝ (M − 1)/(k (M − k))``, ``1 ≤ k < M``,
    then a uniform coalition of ``k`` players (the first ``k`` of a random order).  Uses torch's global RNG."""
    if n_samples == 0 or n_players < 2:
        return torch.zeros(n_samples, n_players, dtype=torch.bool)
    sizes = torch.arange(1, n_players, dtype=torch.float64)
    k = torch.multinomial((n_players - 1) / (sizes * (n_players - sizes)), n_samples, replacement=True) + 1
    position = torch.rand(n_samples, n_players).argsort(dim=1)
    return position < k[:, None]


def constrained_fit(coalitions: torch.Tensor, values: torch.Tensor, empty: torch.Tensor,
                    full: torch.Tensor) -> torch.Tensor:
    """``(B, M)`` float64 slopes of the least-squares fit ``v(z) ≈ v(∅) + z · φ``, ``Σ φ = v(all) − v(∅)``.

    ``coalitions`` ``(B, S, M)`` bool, ``values`` ``(B, S)``, ``empty``/``full`` ``(B,)``.  Solved on the CPU
    in float64 (small systems; CUDA's batched least squares needs full rank).
    """
    z = coalitions.double().cpu()
    n_inputs, n_rows, n_players = z.shape
    gap = (full - empty).double().cpu()
    even = gap[:, None] / n_players                                               # (B, 1)
    if n_players == 1 or n_rows == 0:
        return even.expand(n_inputs, n_players).clone()
    centring = torch.eye(n_players, dtype=torch.float64) - 1.0 / n_players
    basis = torch.linalg.qr(centring[:, :-1]).Q                                   # (M, M − 1), ⊥ 1
    rhs = values.double().cpu() - empty.double().cpu()[:, None] - z.sum(-1) * even
    u = torch.linalg.lstsq(z @ basis, rhs[..., None], driver="gelsd").solution     # (B, M − 1, 1)
    return even + (basis @ u)[..., 0]


@register("kernel_shap")
class KernelShap(SampledShapley):
    """KernelSHAP [105] of the class logit over feature / patch players."""

    parameters = {**SampledShapley.parameters,
                  "n_samples": Int("coalitions z' per input drawn by the Shapley kernel π_x(z') of [105] "
                                   "Theorem 2, the empty and the full one included (<= 2: those two only, and the even "
                                   "split of v(all) − v(∅))",
                                   low=1)}

    def draw(self, n_players: int) -> torch.Tensor:
        return kernel_coalitions(n_players, max(self.params["n_samples"] - 2, 0) if n_players > 1 else 0)

    def coalitions(self, draws: torch.Tensor, n_players: int) -> torch.Tensor:
        return draws

    def estimate(self, draws, values, empty, full):
        return constrained_fit(draws, values, empty, full)
