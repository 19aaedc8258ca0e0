"""Deep Approximate Shapley Propagation (DASP), Ancona, Öztireli & Gross 2019 (survey [106]).

Ancona et al. start from the Shapley value of player ``i`` among ``n`` written as an average over
coalition sizes: with ``S_k`` a coalition of ``k`` players drawn uniformly from the ``n − 1`` others,

    φ_i = (1/n) Σ_{k=0}^{n−1} E_{S ~ S_k} [ f(x_{S ∪ {i}}) − f(x_S) ],

and approximate each expectation by propagating the *distribution* of the network's units under the
random coalition through a lightweight probabilistic deep network (:mod:`._lpdn`): the mean of the
output under ``S ∪ {i}`` minus that under ``S``, for every ``i`` and ``k`` (``2 n²`` LPDN passes,
polynomial in ``n``).

Input layer.  As in [106], the first layer's moments are computed exactly.  The first layer
``z = W x_S + c`` is linear in the players: with ``a_j = W (x − r)|_j`` the contribution of player ``j``
(its input values minus the reference ``r``, the rest zero) and ``z_∅ = W r + c``,
``z(S) = z_∅ + Σ_{j ∈ S} a_j``.  A size-``k`` sample without replacement from the population
``{a_j : j ≠ i}`` of ``N = n − 1`` values has, per unit,

    E[z] = z_∅ + k ā,      Var[z] = k (N − k)/(N − 1) · s²,   ā, s² the population's mean and variance,

(``+ a_i`` to the mean with ``i`` in the coalition).  Computed over all ``n − 1`` other players (those
outside a unit's receptive field contribute 0), these moments are exact per unit for convolutions too.
The deeper layers receive the normal approximation with these moments and propagate it with assumed
density filtering, treating units as independent (the LPDN; ReLU exact for a Gaussian input, sigmoid by
the probit approximation, max-pool by Clark's moment matching, the interpretable CNN's template mask as a
constant factor taken at the mean, see :mod:`._lpdn`).  ``f`` is the
explained class's logit; its expected value is the output mean.

Players.  DASP's players are input features; for tables every feature is one, as in [106].  For images
the players are the cells of a ``patch``-pixel grid (as for ``shapley_sampling``), an adaptation: a player
is then a group of pixels whose joint contribution ``a_j`` to each first-layer unit is still computed
exactly, so the input layer stays exact, and ``n²`` stays small.  The map spreads each cell's value evenly
over its pixels.  For a network whose only layer is linear DASP is exact (Var[z] does not matter); with
hidden layers it is an approximation whose error the ``shapley_error`` metric measures (on toy models,
measured in the tests: mean relative error 0.11 on a ReLU MLP of 8 features, 0.0014 with sigmoids, 0.14
on a ConvNet over 4 patches).  Efficiency is not guaranteed.

Reference ``r``: zeros or the per-channel train mean (``baseline``), learnt by
:meth:`~nnxai.methods.base.Method.fit` and recorded in ``meta["baseline"]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnxai.methods.attribution.propagation._lrp_rules import WalksLayers
from nnxai.methods.attribution.shapley._lpdn import Layer, probabilistic_chain, propagate
from nnxai.methods.attribution.shapley._shapley_players import PlayerAttribution
from nnxai.ops.groups import spread_over_players
from nnxai.registry import register

#: Most first-layer unit values (means) in one LPDN pass; bounds memory only.
PASS_ELEMENTS = 2**22


def _linear_part(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The weighted layer without its bias."""
    if isinstance(module, nn.Linear):
        return F.linear(x, module.weight)
    return F.conv2d(x, module.weight, None, module.stride, module.padding, module.dilation, module.groups)


def player_contributions(first: Layer, x: torch.Tensor, reference: torch.Tensor, groups: torch.Tensor,
                         n_players: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` (B, n, *units): each player's contribution to the first layer; ``z_∅`` (B, *units); float64
    (the population variances below subtract sums of squares)."""
    b = len(x)
    onehot = (groups[None] == torch.arange(n_players, device=x.device).reshape(-1, *(1,) * groups.dim()))
    masked = (x - reference.expand_as(x))[:, None] * onehot[None].to(x.dtype)           # (B, n, *input)
    a = _linear_part(first.module, masked.reshape(b * n_players, *first.in_shape))
    empty = first.module(reference.expand_as(x).reshape(b, *first.in_shape))
    return a.double().reshape(b, n_players, *a.shape[1:]), empty.double()


def coalition_moments(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each player ``i``: mean ``ā`` and variance ``s²`` of the others' contributions, and the factors
    ``k (N − k)/(N − 1)``, ``k = 0..N``, of a size-``k`` sample's variance (``N = n − 1``; 0 for ``N ≤ 1``)."""
    n = a.shape[1]
    others = max(n - 1, 1)
    mean = (a.sum(1, keepdim=True) - a) / others
    var = (((a * a).sum(1, keepdim=True) - a * a) / others - mean * mean).clamp(min=0)
    k = torch.arange(n, dtype=torch.float64, device=a.device)
    factor = k * (n - 1 - k) / (n - 2) if n > 2 else torch.zeros_like(k)
    return mean, var, factor


def dasp_values(chain: list[Layer], x: torch.Tensor, reference: torch.Tensor, target: torch.Tensor,
                groups: torch.Tensor, n_players: int) -> torch.Tensor:
    """DASP values ``(B, n_players)`` of [106] Eq. 4 for the inputs ``x`` (B, ...) against ``reference``."""
    a, empty = player_contributions(chain[0], x, reference, groups, n_players)
    others_mean, others_var, factor = (t.to(x.dtype) for t in coalition_moments(a))
    a, empty = a.to(x.dtype), empty.to(x.dtype)
    b, n = len(x), n_players
    rows = torch.arange(b * n * n * 2, device=x.device)      # row = ((input · n + player) · n + k) · 2 + with_i
    units = a[0, 0].numel()
    scores = []
    for part in rows.split(max(1, PASS_ELEMENTS // units)):
        with_i, k = (part % 2).to(x.dtype), (part // 2) % n
        player, row_input = (part // (2 * n)) % n, part // (2 * n * n)
        shape = (-1, *(1,) * (a.dim() - 2))
        mean = (empty[row_input] + k.to(x.dtype).reshape(shape) * others_mean[row_input, player]
                + with_i.reshape(shape) * a[row_input, player])
        var = factor[k].reshape(shape) * others_var[row_input, player]
        out_mean, _ = propagate(chain[1:], mean, var)
        scores.append(out_mean.reshape(len(part), -1).gather(1, target[row_input][:, None])[:, 0].double())
    scores = torch.cat(scores).reshape(b, n, n, 2)
    return (scores[..., 1] - scores[..., 0]).mean(2)


@register("dasp")
class Dasp(WalksLayers, PlayerAttribution):
    """DASP [106]: Shapley values of the class logit from LPDN moments per player and coalition size.

    The ``2 n²`` LPDN rows of ``batch_size`` inputs share passes (of at most :data:`PASS_ELEMENTS` unit
    values).

    Notes
    -----
    Supports chains of ``Linear``/``Conv2d`` (first), ``ReLU``, ``Sigmoid``, ``MaxPool2d``, average pools,
    ``Flatten`` and the interpretable CNN's template mask (:mod:`._lpdn`): the project's MLPs and ConvNets
    and the interpretable CNN; anything else is a ``ValueError``.
    """

    rules_source = "the LPDN of DASP [106]"

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        chain = probabilistic_chain(model, inputs.detach(), f"method {self.spec.id!r}")
        reference = self.reference_for(inputs, baselines)
        groups, n_players = self.player_groups(tuple(inputs.shape[1:]))
        groups = groups.to(inputs.device)
        size = self.params["batch_size"]
        values = []
        with torch.no_grad():
            for start in range(0, len(inputs), size):
                part = slice(start, start + size)
                ref = reference if len(reference) == 1 else reference[part]
                values.append(dasp_values(chain, inputs[part].detach(), ref, target[part].to(inputs.device),
                                          groups, n_players))
        return spread_over_players(torch.cat(values), groups).to(inputs.dtype)
