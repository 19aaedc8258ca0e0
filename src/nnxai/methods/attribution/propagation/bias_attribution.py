"""Bias attribution by bias back-propagation (BBp), Wang, Zhou & Bilmes 2019 (survey [111]).

On a network of piecewise-linear units (ReLU, max-pool, average pool, linear and convolutional layers)
the logit of class ``c`` is, around ``x``, exactly a linear model ([111], Sec. 2):

    f_c(x) = ∇f_c(x) · x + b_c(x),     b_c(x) = Σ_layers Σ_units ∂f_c/∂z_u · b_u,

the gradient being the weights of the local linear model and ``b_c(x)`` its bias, which gradient methods
ignore.  BBp ([111], Sec. 3, Algorithm 1) attributes ``b_c(x)`` to the input features: starting at the
output layer, the bias held by each unit is passed to the units of the layer below, and there combined
with their own bias terms, down to the input.  Here the bias *held* by a pre-activation unit ``u`` of a
linear layer ``z = W a + b`` is its own contribution to the output, ``∂f_c/∂z_u · b_u``, plus what the layers
above passed to it; it is split among the layer's inputs ``a_i`` with weights ``α_ui`` (``Σ_i α_ui = 1``).
[111] leaves the split open and compares several choices; two are implemented:

- ``rule="abs_contribution"``: ``α_ui = |W_ui a_i| / Σ_j |W_uj a_j|``, in proportion to the magnitude of
  each input's contribution to ``z_u``;
- ``rule="uniform"``: ``α_ui = 1 / (number of inputs of u)``, an even split.

A ReLU, a max-pool and a flatten hand a unit's bias to the unit it reads (the max-pool to its window's
maximum); an average pool is a linear layer without bias.  A unit whose inputs all contribute zero
(``Σ_j |W_uj a_j| = 0``: a patch of zero pixels, dead units below) splits evenly, so that nothing is
lost.  An element-wise gate ``y = x ∘ g(x)`` (the interpretable CNN's template mask [70],
:mod:`._lrp_rules`) is, around ``x``, the linear map ``diag(g(x))`` without bias (the gate is piecewise
constant in ``x``): it scales the linear path (``∂f_c/∂x_i = g_i ∂f_c/∂y_i``) and each output unit hands its
bias to the one input it reads (``α = 1``), so the identity below holds on the interpretable CNN too.  A
layer whose bias is a map over output positions (``bias_map``: the shifted twin of
``input_invariance``, whose first convolution absorbs the shift) gives each position's unit its own bias
(:func:`output_bias`), so that the twin's local bias is attributed in full too.  As every split sums to one, the input attributions ``β`` satisfy

    Σ_i β_i(x) = b_c(x) = f_c(x) − ∇f_c(x) · x,

the identity the ``completeness`` metric checks for this method (:attr:`BiasAttribution.completeness_identity`).
The pass runs in float64 on a copy of the model, so the identity holds to rounding.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from torch import nn

from nnxai.methods.attribution.propagation._lrp_rules import (AVERAGING, WEIGHTED, WalksLayers, fixed_gate, is_gate,
                                                              layer_chain, linear_map, replay, safe_divide, vjp)
from nnxai.methods.base import AttributionMethod
from nnxai.params import Choice
from nnxai.registry import register

RULES = ("abs_contribution", "uniform")


def output_bias(module: nn.Module, out: torch.Tensor) -> torch.Tensor | None:
    """The bias a weighted layer adds to its outputs, broadcastable to ``out``: one per unit (``bias``), or
    one per output position for a layer that carries a ``bias_map`` buffer (the shifted twin of input
    invariance [143], whose first convolution absorbs the input shift in a bias map); ``None`` without."""
    bias_map = getattr(module, "bias_map", None)
    if bias_map is not None:
        return bias_map.detach().to(out.dtype).reshape(1, *out.shape[1:])
    if module.bias is None:
        return None
    return module.bias.detach().reshape(1, -1, *([1] * (out.dim() - 2)))


def split_bias(module: nn.Module, a: torch.Tensor, held: torch.Tensor, rule: str) -> torch.Tensor:
    """Pass the bias ``held`` by the outputs of a linear map (``Linear``, ``Conv2d``, average pool) to its
    inputs ``a``: ``β_i = Σ_u α_ui held_u`` with the weights of ``rule`` (module docstring)."""
    if isinstance(module, WEIGHTED):
        magnitude = module.weight.detach().abs()
        ones_weight = torch.ones_like(magnitude)

        def contribution(t):
            return linear_map(module, t, magnitude)

        def connections(t):
            return linear_map(module, t, ones_weight)
    else:
        contribution = connections = module
    ones = torch.ones_like(a)
    with torch.no_grad():
        fan_in = connections(ones)
        total = contribution(a.abs()) if rule == "abs_contribution" else torch.zeros_like(fan_in)
        proportional = safe_divide(held, total)
        even = torch.where(total == 0, safe_divide(held, fan_in), torch.zeros_like(held))
    (by_contribution,) = vjp(contribution, [a.abs()], proportional)
    (by_count,) = vjp(connections, [ones], even)
    return a.abs() * by_contribution + by_count


def bias_backpropagation(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, rule: str,
                         owner: str = "bias_attribution") -> torch.Tensor:
    """Input attribution ``β`` of the local bias ``b_c(x)`` of the target logit; float64, shaped like inputs.

    ``model`` must be a chain of the modules :func:`~._lrp_rules.layer_chain` accepts; it is evaluated on a
    float64 copy.
    """
    net = copy.deepcopy(model).double().requires_grad_(False)
    x = inputs.detach().double()
    chain = layer_chain(net, x, owner)
    acts = replay(chain, x)
    out = acts[-1]
    grad = torch.zeros_like(out).scatter_(1, target[:, None], 1.0)     # ∂f_c / ∂(layer output)
    held = torch.zeros_like(out)                                      # bias held by each output unit
    for layer, a in zip(reversed(chain), reversed(acts[:-1])):
        module = layer.module
        with torch.no_grad():
            out_shape = module(a).shape                               # undo a reshape between layers
        grad, held = grad.reshape(out_shape), held.reshape(out_shape)
        bias = output_bias(module, grad) if isinstance(module, WEIGHTED) else None
        if bias is not None:
            held = held + grad * bias
        if isinstance(module, WEIGHTED + AVERAGING):
            new_held = split_bias(module, a, held, rule)
        elif isinstance(module, nn.MaxPool2d):
            (new_held,) = vjp(module, [a], held)                      # to each window's maximum
        else:                                                         # ReLU, Flatten, Dropout, Identity, gate
            new_held = held.reshape(a.shape)
        if is_gate(module):                                           # the gate scales the linear path
            grad = grad.reshape(a.shape) * fixed_gate(module, a)
        else:
            (grad,) = vjp(module, [a], grad)
        held = new_held
    return held.reshape(inputs.shape)


@register("bias_attribution")
class BiasAttribution(WalksLayers, AttributionMethod):
    """Bias back-propagation [111]: the input attribution of the bias term of the local linear model.

    Notes
    -----
    ReLU networks only (piecewise linear); no reference input, ``baselines`` are ignored.
    """

    parameters = {**AttributionMethod.parameters,
                  "rule": Choice("how a unit splits the bias it holds among its inputs, weights α_ui of [111] "
                                 "Sec. 3: in proportion to |W_ui a_i|, or evenly", RULES)}
    activations = frozenset({"relu"})
    rules_source = "bias back-propagation [111]"
    claims_completeness = True
    #: Σ attributions = f_c(x) − ∇f_c(x)·x (the local bias), not f_c(x) − f_c(x_ref): read by the
    #: completeness metric.
    completeness_identity: ClassVar[str] = "bias_term"

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        size = self.params["batch_size"]
        parts = [bias_backpropagation(model, xb, tb, self.params["rule"], f"method {self.spec.id!r}")
                 for xb, tb in zip(inputs.split(size), target.split(size))]
        return torch.cat(parts).to(inputs.dtype)
