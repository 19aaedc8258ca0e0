"""DeepLIFT, Shrikumar, Greenside & Kundaje [112]: contributions of differences from a reference.

The survey's Table IV writes DeepLIFT as a modified gradient, ``(x_i − x_i^ref) · ∂^g S_c/∂x_i`` with
``g = (σ(z) − σ(z_ref)) / (z − z_ref)``: every nonlinearity passes back the *multiplier* ``Δy/Δz`` in place
of its derivative ([112] Sec. 3.3, chain rule Eq. 3).  The contributions satisfy *summation-to-delta*
([112] Eq. 1): ``Σ_i C_i = S_c(x) − S_c(x_ref)`` on the logit ``S_c`` (checked by ``completeness``).

``rule="rescale"`` ([112] Sec. 3.5.2, ``m = Δy/Δz`` at each ReLU): Captum's ``DeepLift`` with
``multiply_by_inputs=True``.  Measured with Captum 0.9 / torch 2.14: on the ConvNet its attributions equal,
to 1e-18, the pass of :func:`chain_deeplift` with the *gradient* rule at max-pooling (Captum's own max-pool
multipliers are computed by its hook but do not reach the result), so summation-to-delta is exact on MLPs
and on CNNs without max-pooling, and only approximate on the ConvNet (tested both ways).  On seeded toy
ConvNets the mean relative completeness error was 0.06–2 (largest where ``S_c(x) − S_c(x_ref)`` is small).

``rule="reveal_cancel"`` ([112] Sec. 3.5.3; Captum lacks it) is written here as a backward pass over the
model's chain of layers (:mod:`._lrp_rules`).  At a ReLU ``y = f(z)`` fed by a ``Linear``/``Conv2d`` layer
the input difference of ``z`` is split into its positive and negative terms ([112] Sec. 3.5.1),
``Δz⁺ = Σ_i (w_i Δx_i)⁺`` and ``Δz⁻ = Σ_i (w_i Δx_i)⁻`` (as convolutions: ``Δz⁺ = W⁺*Δx⁺ + W⁻*Δx⁻``), and

    Δy⁺ = ½ (f(z_ref + Δz⁺) − f(z_ref)) + ½ (f(z_ref + Δz⁻ + Δz⁺) − f(z_ref + Δz⁻)),
    Δy⁻ = ½ (f(z_ref + Δz⁻) − f(z_ref)) + ½ (f(z_ref + Δz⁺ + Δz⁻) − f(z_ref + Δz⁺)),

``m⁺ = Δy⁺/Δz⁺``, ``m⁻ = Δy⁻/Δz⁻``.  An input ``x_i`` of the layer gets ``Σ_j w_ij m_j⁺ m_y_j`` over the
terms ``w_ij Δx_i > 0`` and ``Σ_j w_ij m_j⁻ m_y_j`` over those ``< 0`` (the linear rule of Sec. 3.5.1); a unit
with ``Δx_i = 0`` gets the mean of the two (its contribution is zero; this is the choice of the authors'
reference code).  Where ``Δz^± = 0`` the multiplier is the ReLU's derivative at ``z_ref`` (it multiplies
zero).  Layers without a nonlinearity use the linear rule, i.e. the ordinary backward pass.
Max-pooling uses the *gradient* rule of [112] (the multiplier of the argmax of ``x``, the default of the
authors' code for max-pooling): summation-to-delta is then exact on MLPs and on CNNs whose max-pools select
the same unit for ``x`` and ``x_ref``, and only approximate otherwise (measured in the tests).

Element-wise gates (the interpretable CNN's template mask [70], ``y = x ∘ g(x)``, :mod:`._lrp_rules`).  For a
product ``y = x₁ x₂`` [112] splits ``Δy`` between the two factors; the gate ``g`` is a function of the
whole map through its argmax, with no multiplier of its own to pass on (zero derivative almost everywhere),
so it is treated as a fixed factor: the multiplier of the signal is the gate, ``m = g``.  Choice for the
reference, whose peak (and so template) may differ: ``g`` is the gate of the explained input ``x``, as the
gradient rule at max-pooling takes the switches of ``x``.  This is also what Captum's ``DeepLift`` does
(``rule="rescale"``: the mask is no nonlinearity it knows, so its gradient ``g(x)`` is used), so both rules
agree there.  Summation-to-delta is exact when every map peaks at the same position for ``x`` and
``x_ref`` (and the max-pools agree), and approximate otherwise: at the mask ``Δy − g(x) ∘ Δx =
x_ref ∘ (g(x) − g(x_ref))``, non-zero where the templates differ.

Reference: ``baseline`` ``"zero"`` or ``"mean"`` (per-channel mean of the train split), recorded in
``meta["baseline"]`` exactly as :mod:`.integrated_gradients` does (learnt by ``fit``).
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.methods.attribution.propagation._lrp_rules import (IDENTITY, WEIGHTED, WalksLayers, fixed_gate, is_gate,
                                                              layer_chain, linear_map, replay, vjp)
from nnxai.methods.attribution._reference import ReferenceAttribution
from nnxai.params import Choice
from nnxai.registry import register

RULES = ("rescale", "reveal_cancel")
#: |Δz| below which a multiplier falls back to the derivative (as Captum's DeepLift, eps=1e-10).
TINY = 1e-10


def _relu_prime(z: torch.Tensor) -> torch.Tensor:
    return (z > 0).to(z.dtype)


def reveal_cancel_multipliers(z_ref: torch.Tensor, dz_pos: torch.Tensor, dz_neg: torch.Tensor):
    """``(m⁺, m⁻)`` of a ReLU by the RevealCancel rule ([112] Sec. 3.5.3), elementwise."""
    f = torch.relu
    dy_pos = 0.5 * (f(z_ref + dz_pos) - f(z_ref)) + 0.5 * (f(z_ref + dz_neg + dz_pos) - f(z_ref + dz_neg))
    dy_neg = 0.5 * (f(z_ref + dz_neg) - f(z_ref)) + 0.5 * (f(z_ref + dz_pos + dz_neg) - f(z_ref + dz_pos))
    fallback = _relu_prime(z_ref)
    m_pos = torch.where(dz_pos.abs() > TINY, dy_pos / torch.where(dz_pos.abs() > TINY, dz_pos, 1.0), fallback)
    m_neg = torch.where(dz_neg.abs() > TINY, dy_neg / torch.where(dz_neg.abs() > TINY, dz_neg, 1.0), fallback)
    return m_pos, m_neg


def _split_linear(module: nn.Module, dx: torch.Tensor, m_y: torch.Tensor, z_ref: torch.Tensor) -> torch.Tensor:
    """Multiplier at the input of a weighted layer followed by a ReLU, under RevealCancel."""
    w = module.weight.detach()
    w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
    dx_pos, dx_neg = dx.clamp(min=0), dx.clamp(max=0)
    with torch.no_grad():
        dz_pos = linear_map(module, dx_pos, w_pos) + linear_map(module, dx_neg, w_neg)
        dz_neg = linear_map(module, dx_pos, w_neg) + linear_map(module, dx_neg, w_pos)
        m_pos, m_neg = reveal_cancel_multipliers(z_ref, dz_pos, dz_neg)
        s_pos, s_neg = m_y * m_pos, m_y * m_neg

    def split(p, n):
        return (s_pos * (linear_map(module, p, w_pos) + linear_map(module, n, w_neg))
                + s_neg * (linear_map(module, p, w_neg) + linear_map(module, n, w_pos)))

    g_pos, g_neg = vjp(split, [dx_pos, dx_neg], torch.ones_like(m_y))
    return torch.where(dx > 0, g_pos, torch.where(dx < 0, g_neg, 0.5 * (g_pos + g_neg)))


def chain_deeplift(chain, x: torch.Tensor, reference: torch.Tensor, target: torch.Tensor,
                   rule: str) -> torch.Tensor:
    """DeepLIFT contributions ``m ⊙ (x − x_ref)`` by a backward pass of multipliers over ``chain``.

    ``rule="reveal_cancel"`` applies RevealCancel at ReLUs that follow a weighted layer; ``"rescale"``
    (kept to cross-check this pass against Captum) applies ``m = Δy/Δz`` at every ReLU.  A gate multiplies
    by its value at ``x`` (module docstring).
    """
    with torch.no_grad():
        acts, refs = replay(chain, x), replay(chain, reference.expand_as(x))
    m = torch.zeros_like(acts[-1])
    m[torch.arange(len(x), device=x.device), target] = 1.0
    k = len(chain) - 1
    while k >= 0:
        module, a, a_ref = chain[k].module, acts[k], refs[k]
        m = m.reshape(acts[k + 1].shape)
        if isinstance(module, nn.ReLU) and rule == "reveal_cancel" and k > 0 \
                and isinstance(chain[k - 1].module, WEIGHTED):
            prev = chain[k - 1].module
            m = _split_linear(prev, acts[k - 1] - refs[k - 1], m, a_ref)
            k -= 2
            continue
        if isinstance(module, nn.ReLU):
            dz, dy = a - a_ref, torch.relu(a) - torch.relu(a_ref)
            big = dz.abs() > TINY
            m = m * torch.where(big, dy / torch.where(big, dz, 1.0), _relu_prime(a))
        elif isinstance(module, IDENTITY):
            m = m.reshape(a.shape)
        elif is_gate(module):                   # the gate of x, for the reference too (module docstring)
            m = m * fixed_gate(module, a)
        elif isinstance(module, WEIGHTED):
            w = module.weight.detach()
            (m,) = vjp(lambda t: linear_map(module, t, w), [a], m)
        else:                                   # average pools (linear) and max-pools (gradient rule)
            (m,) = vjp(module, [a], m)
        k -= 1
    return (m.reshape(x.shape) * (x - reference.expand_as(x))).detach()


@register("deeplift")
class DeepLift(WalksLayers, ReferenceAttribution):
    """DeepLIFT [112] of the class logit against a reference, rescale or reveal-cancel rule.

    Notes
    -----
    The reference handling (and ``meta["baseline"]``) is :class:`~._reference.ReferenceAttribution`'s.
    """

    parameters = {**ReferenceAttribution.parameters,
                  "rule": Choice("multiplier rule at the ReLUs: rescale ([112] Sec. 3.5.2) or RevealCancel "
                                 "([112] Sec. 3.5.3)", RULES)}
    activations = frozenset({"relu"})
    rules_source = "DeepLIFT [112]"
    claims_completeness = True

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        reference = self.reference_for(inputs, baselines)
        inputs = inputs.detach()
        size = self.params["batch_size"]
        parts = [slice(s, s + size) for s in range(0, len(inputs), size)]

        def ref_of(part):
            return reference if len(reference) == 1 else reference[part]

        if self.params["rule"] == "reveal_cancel":
            chain = layer_chain(model, inputs, f"method {self.spec.id!r}")
            return torch.cat([chain_deeplift(chain, inputs[p], ref_of(p), target[p], "reveal_cancel")
                              for p in parts])
        from captum.attr import DeepLift as CaptumDeepLift  # lazy, see _captum.py

        explainer = CaptumDeepLift(model, multiply_by_inputs=True)
        out = []
        for p in parts:
            leaf = inputs[p].clone().requires_grad_(True)
            ref = ref_of(p).expand_as(leaf).clone()
            out.append(explainer.attribute(leaf, baselines=ref, target=target[p]).detach())
        return torch.cat(out)
