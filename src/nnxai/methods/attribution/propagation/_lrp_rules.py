"""Layer chains and the per-layer relevance rules of LRP [113], shared by :mod:`.lrp` and :mod:`.deeplift`.

Both methods are *modified backward passes* over a chain of layers: they need each layer's input on the
forward pass and a rule that maps a signal at the layer's output to one at its input.  This module

* reads the chain of a model (:func:`layer_chain`): the leaf modules in the order the forward pass calls
  them, each with the shape of its input, and checks that replaying that chain reproduces the model;
* replays it (:func:`replay`), keeping every layer's input;
* holds the LRP rules of one layer, each vectorised with the *gradient trick* of Montavon et al.
  (2019, "LRP: an overview", Sec. 10.2.2): for a linear map ``z = ℓ(a)`` and relevance ``R`` at its output,
  ``R_in = a ⊙ ∂(ℓ(a) · s)/∂a`` with ``s = R / z`` (stabilised), i.e. ``R_i = Σ_j a_i w_ij R_j / z_j``.

Supported modules: ``Linear``, ``Conv2d`` (zero padding), ``MaxPool2d``, ``AdaptiveAvgPool2d``,
``AvgPool2d``, ``Flatten``, ``ReLU``, ``Dropout`` and ``Identity`` (eval mode), and the element-wise *gates*
of :func:`gate_types`.  Anything else (a sigmoid, a batch norm, a residual connection) is a ``ValueError``
naming it.

Gates.  The interpretable CNN of Zhang et al. [70] adds one layer to the base ConvNet, the template mask
``y = x ∘ g(x)``: ``g`` is the template of each filter map's peak (``argmax``), so given the input it is a
fixed factor per unit, piecewise constant in ``x`` (zero derivative almost everywhere), like a max-pool's
switches.  Each walker has a rule for such a gate from its own paper's treatment of multiplicative gates
(LRP: signal-take-all, relevance passes unchanged; DeepLIFT: the multiplier is the gate; BBp: the gate
scales the linear path and adds no bias; LPDN: a Gaussian scaled by a constant); :func:`fixed_gate` gives
``g``.  :class:`WalksLayers` lets a walker apply to a network whose added layers (the trait
``added_layers`` an active method declares) are all gates, and names the one it has no rule for otherwise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTED = (nn.Linear, nn.Conv2d)
AVERAGING = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)
IDENTITY = (nn.ReLU, nn.Dropout, nn.Identity, nn.Flatten)     # relevance (LRP) passes through unchanged
SUPPORTED = WEIGHTED + AVERAGING + IDENTITY + (nn.MaxPool2d,)


@dataclass(frozen=True)
class Layer:
    """One step of a chain: the module and the per-sample shape of the input it receives."""

    module: nn.Module
    in_shape: tuple[int, ...]


def check_module_type(module: nn.Module, owner: str, supported: tuple[type, ...], covers: str) -> None:
    """Raise ``ValueError`` unless ``module`` is one of ``supported`` (``covers``: who supports them) and,
    if a convolution, zero-padded."""
    if not isinstance(module, supported):
        raise ValueError(f"{owner}: layer type {type(module).__name__} is not supported ({covers} covers "
                         f"{', '.join(sorted(t.__name__ for t in supported))})")
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise ValueError(f"{owner}: Conv2d padding_mode {module.padding_mode!r} is not supported")


#: Class names of the element-wise gates the walkers have a rule for (the trait ``added_layers`` names these).
GATE_LAYERS = frozenset({"TemplateMask"})


@functools.cache
def gate_types() -> tuple[type, ...]:
    """The gate modules of :data:`GATE_LAYERS`: the interpretable CNN's template mask [70].  Imported on
    first use: the active methods' package imports the methods."""
    from nnxai.active.hidden_semantics.interpretable_cnn import TemplateMask
    return (TemplateMask,)


def is_gate(module: nn.Module) -> bool:
    """Whether ``module`` is an element-wise gate ``y = x ∘ g(x)`` with ``g`` fixed given ``x``."""
    return isinstance(module, gate_types())


def fixed_gate(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """``g(a)``, shaped like ``a``: for the template mask, each filter map's template at its peak,
    ``max(1 − β ‖[i, j] − μ̂‖₁ / n, −1)`` ([70] Sec. 3.1), so that ``module(a) = a ∘ g(a)``."""
    from nnxai.active.hidden_semantics.interpretable_cnn import peak_masks
    return peak_masks(a, module.beta)


def check_lrp_module(module: nn.Module, owner: str) -> None:
    """Raise ``ValueError`` unless the LRP rules cover ``module`` (:data:`SUPPORTED` and the gates; ReLU
    networks only)."""
    check_module_type(module, owner, SUPPORTED + gate_types(), "LRP's rules for ReLU networks")


class WalksLayers:
    """Mixin of the methods that walk a network's chain of layers with a rule per layer type (LRP,
    DeepLIFT, bias attribution, DASP): placed before the method's base class, it refines
    ``needs_standard_layers``.  A network that adds layers to the base ConvNet/MLP (trait
    ``standard_layers`` false) is walked when the active method declares them (trait ``added_layers``,
    class names) and each is one of :attr:`walkable_layers`; otherwise the reason names the layer that
    :attr:`rules_source` gives no rule for.  An undeclared addition is refused as before."""

    needs_standard_layers: ClassVar[bool] = True
    #: The added layer types the walker has a rule for (module docstring, "Gates").
    walkable_layers: ClassVar[frozenset[str]] = GATE_LAYERS
    #: Where the walker's per-layer rules come from, for the reason it gives.
    rules_source: ClassVar[str] = "its paper"

    @classmethod
    def why_not(cls, info: Any, traits: dict[str, Any]) -> str | None:
        reason = super().why_not(info, {**traits, "standard_layers": True})
        if reason is not None or traits.get("standard_layers", True):
            return reason
        added = traits.get("added_layers")
        if added is None:
            return (f"walks the network layer by layer with the rules of {cls.rules_source}; this network adds "
                    "layers to the base ConvNet/MLP that it does not name (trait added_layers)")
        missing = sorted(set(added) - cls.walkable_layers)
        if missing:
            return (f"walks the network layer by layer, and {cls.rules_source} gives no rule for "
                    f"{', '.join(missing)}, which this network adds to the base ConvNet/MLP")
        return None


def layer_chain(model: nn.Module, example: torch.Tensor, owner: str,
                check_module: Callable[[nn.Module, str], None] = check_lrp_module) -> list[Layer]:
    """The leaf modules of ``model`` in call order, checked to form a chain that reproduces ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        A feed-forward network whose leaf modules pass ``check_module`` and are each called once.
    example : torch.Tensor
        A batch of inputs (one sample is enough) used to trace the calls.
    owner : str
        Name used in error messages (the method id).
    check_module : callable
        ``check_module(module, owner)`` raises for a leaf module the caller's rules do not cover
        (by default those of LRP, :func:`check_lrp_module`).

    Raises
    ------
    ValueError
        If a module is not covered, or if replaying the leaf modules one after the other (with the
        reshapes between them) does not give the model's output (a skip connection, a functional
        nonlinearity in ``forward``, a module called twice).
    """
    leaves = [m for m in model.modules() if not list(m.children())]
    for module in leaves:
        check_module(module, owner)
    calls: list[Layer] = []
    handles = [m.register_forward_hook(lambda mod, inp, _out: calls.append(Layer(mod, tuple(inp[0].shape[1:]))))
               for m in leaves]
    try:
        with torch.no_grad():
            expected = model(example[:1])
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        got = replay(calls, example[:1])[-1]
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-5, atol=1e-6):
        raise ValueError(f"{owner}: the model is not a plain chain of its modules (replaying "
                         f"{[type(c.module).__name__ for c in calls]} does not reproduce its output)")
    return calls


def replay(chain: list[Layer], x: torch.Tensor) -> list[torch.Tensor]:
    """``[a_0, …, a_K]``: the input of every layer (reshaped as that layer receives it) and the output."""
    acts = []
    out = x
    for layer in chain:
        out = out.reshape(len(x), *layer.in_shape)
        acts.append(out)
        out = layer.module(out)
    acts.append(out)
    return acts


def vjp(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], cotangent: torch.Tensor) -> tuple:
    """``∂(fn(*inputs) · cotangent)/∂inputs`` on detached copies (the callers' tensors get no graph)."""
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    with torch.enable_grad():
        out = fn(*leaves)
        return torch.autograd.grad(out, leaves, grad_outputs=cotangent)


def safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with 0 where ``den == 0`` (no contribution of that sign: nothing to redistribute)."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


def linear_map(module: nn.Module, a: torch.Tensor, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """The linear part of ``module`` applied to ``a`` with the given ``weight`` and ``bias`` (detached).

    For averaging pools the map has no parameters: ``weight`` is ignored and the pool itself is returned.
    """
    if isinstance(module, nn.Linear):
        return F.linear(a, weight, bias)
    if isinstance(module, nn.Conv2d):
        return F.conv2d(a, weight, bias, module.stride, module.padding, module.dilation, module.groups)
    return module(a)


def weight_parts(module: nn.Module) -> tuple[Callable, Callable, torch.Tensor | None, torch.Tensor | None]:
    """``(P, N, b⁺, b⁻)``: the map with the positive and the negative weights, and the bias parts.

    For averaging pools every weight is positive: ``P`` is the pool, ``N`` is zero and there is no bias.
    """
    if isinstance(module, WEIGHTED):
        w = module.weight.detach()
        w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
        b = None if module.bias is None else module.bias.detach()
        return (lambda t: linear_map(module, t, w_pos), lambda t: linear_map(module, t, w_neg),
                None if b is None else b.clamp(min=0), None if b is None else b.clamp(max=0))
    return (lambda t: module(t), lambda t: torch.zeros_like(module(t)), None, None)


def _bias_view(bias: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return bias.reshape(1, -1, *([1] * (out.dim() - 2)))


def epsilon_rule(module: nn.Module, a: torch.Tensor, relevance: torch.Tensor, epsilon: float) -> torch.Tensor:
    """LRP-ε ([113] Eq. 58; Montavon et al. 2019 Eq. 4): ``R_i = Σ_j a_i w_ij / (z_j + ε·sign(z_j)) R_j``.

    ``z_j`` includes the bias, so the bias and ε absorb relevance.  ``sign(0)`` counts as ``+1`` (as in
    Captum's ``EpsilonRule``), so ``ε > 0`` never divides by zero.
    """
    with torch.no_grad():
        z = module(a)
        sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
        s = relevance / (z + epsilon * sign)
    if isinstance(module, WEIGHTED):
        w = module.weight.detach()
        (grad,) = vjp(lambda t: linear_map(module, t, w), [a], s)
    else:
        (grad,) = vjp(module, [a], s)
    return a * grad


def alpha_beta_rule(module: nn.Module, a: torch.Tensor, relevance: torch.Tensor, alpha: float) -> torch.Tensor:
    """LRP-αβ ([113] Eq. 60) with ``β = α − 1``.

    ``R_i = Σ_j (α (a_i w_ij)⁺ / z_j⁺ − β (a_i w_ij)⁻ / z_j⁻) R_j`` with ``z_j^± = Σ_i (a_i w_ij)^± + b_j^±``
    (the bias is a neuron with activation 1, Montavon et al. 2019).  Signs of inputs are kept: ``(a w)⁺`` is
    ``a⁺ w⁺ + a⁻ w⁻``.  A part whose denominator is zero redistributes nothing.
    """
    beta = alpha - 1.0
    pos, neg, b_pos, b_neg = weight_parts(module)
    a_pos, a_neg = a.clamp(min=0), a.clamp(max=0)
    with torch.no_grad():
        z_pos, z_neg = pos(a_pos) + neg(a_neg), neg(a_pos) + pos(a_neg)
        if b_pos is not None:
            z_pos, z_neg = z_pos + _bias_view(b_pos, z_pos), z_neg + _bias_view(b_neg, z_neg)
        s_pos, s_neg = safe_divide(relevance, z_pos), safe_divide(relevance, z_neg)

    def weighted(ap, an):
        return alpha * s_pos * (pos(ap) + neg(an)) - beta * s_neg * (neg(ap) + pos(an))

    g_pos, g_neg = vjp(weighted, [a_pos, a_neg], torch.ones_like(relevance))
    return a_pos * g_pos + a_neg * g_neg


def zb_rule(module: nn.Module, x: torch.Tensor, relevance: torch.Tensor, low: torch.Tensor,
            high: torch.Tensor) -> torch.Tensor:
    """The z^B rule for inputs in a box ``[l, h]`` (Montavon et al. 2017, deep Taylor decomposition, Eq. 12).

    ``R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i' (x_i' w_i'j − l_i' w_i'j⁺ − h_i' w_i'j⁻) · R_j``;
    the bias is left out, so the rule conserves relevance.  ``low`` and ``high`` are shaped like ``x``.
    """
    w = module.weight.detach()
    w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)

    def z(t, lo, hi):
        return linear_map(module, t, w) - linear_map(module, lo, w_pos) - linear_map(module, hi, w_neg)

    with torch.no_grad():
        s = safe_divide(relevance, z(x, low, high))
    g_x, g_low, g_high = vjp(z, [x, low, high], s)
    return x * g_x + low * g_low + high * g_high


def winner_take_all(module: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """Max-pooling: all relevance of a window goes to its maximum ([113], Sec. 4.2.1)."""
    (grad,) = vjp(module, [a], relevance)
    return grad
