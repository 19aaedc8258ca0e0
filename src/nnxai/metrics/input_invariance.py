"""``input_invariance``: does the map ignore a constant input shift that the network absorbs? Kindermans et al. [143].

Kindermans, Hooker, Adebayo, Alber, Schütt, Dähne, Erhan & Kim [143] ("The (un)reliability of saliency
methods", Sec. 2) build two networks that compute the same function of differently pre-processed data:
the input is shifted by a constant, ``x₂ = x₁ + m₂``, and the first layer's bias absorbs it,
``b₂ = b₁ − W m₂``, so that the first layer's pre-activations, and hence every later activation and the
output, are equal: ``f₂(x₂) = f₁(x₁)``.  A method is *input invariant* when it gives the same map to
``x₁`` on ``f₁`` and to ``x₂`` on ``f₂``.  Gradients are (the networks have the same derivatives);
methods with a reference point are invariant only when the reference moves with the data — IG and
DeepLIFT with a *zero* reference are not, with a reference derived from the data (here the train mean)
they are (their Sec. 3–4, Fig. 3–5).

Construction (:func:`shifted_network`), for a scalar shift ``c`` (``shift``; [143] map MNIST from
[0, 1] to [−1, 0], ``c = −1``): the first weighted layer that sees the input gets the bias
``b − W·(c·1)``.  For a ``Linear`` layer that is ``b − c·W.sum(1)``.  For a ``Conv2d`` with zero padding
``W·(c·1)`` is not constant over positions (near the border fewer kernel taps see the image), so the bias
becomes a map over output positions, ``b − conv(c·1)`` (:class:`BiasMapConv2d`); exactly [143]'s
``b₂ = b₁ − W m₂`` with ``W`` the convolution's matrix.  The layer stays a ``Conv2d`` with zero padding, so
every method that walks the model's layers (LRP, DeepLIFT) and every head attribute (``gap``,
``classifier``, ``feature_maps``, for CAM) still works.  ``f₂(x + c) = f₁(x)`` is checked on the scored
inputs before any map is computed.

Second explanation.  The method explains ``x + c`` on ``f₂`` for the record's class, fitted for ``f₂`` on
the shifted train split (:func:`~nnxai.metrics.rerun.attribute_as_explained`: a fresh copy): what a method
learns from the data moves with it (the "mean" reference of IG, DeepLIFT and occlusion, LRP's input
bounds), while a fixed choice (the zero reference) does not, as in [143].  The first map is re-run the
same way with the cell's fit on the unshifted context, so both go through identical code.

Score (:func:`map_difference`): each pair of maps is compared on the scale of the larger of them,
``d = mean_i |Φ₂_i − Φ₁_i| / max(max_i |Φ₁_i|, max_i |Φ₂_i|)`` (0 when both are zero), so ``d`` is in [0, 2]
and does not depend on the units of the method.  ``input_invariance`` is the mean of ``d`` over the scored
inputs (lower is better); ``input_invariance.agreement`` the fraction of inputs whose largest normalised
difference ``max_i |Φ₂_i − Φ₁_i| / scale`` is at most ``tolerance`` (higher is better).  SmoothGrad draws
its noise from the input's values, so the two inputs get different noise and SmoothGrad differs by its
Monte-Carlo error even where its expectation is invariant.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from nnxai.data import loaded
from nnxai.intervals import PerInput
from nnxai.metrics._robustness import N_INPUTS, TOLERANCE, scored_inputs
from nnxai.metrics.attribution import FORWARD_BATCH
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.rerun import attribute_as_explained
from nnxai.params import Float, ParamError

#: Largest |f₂(x + c) − f₁(x)| accepted, relative to 1 + max |f₁(x)| (float32 rounding of the bias terms).
EQUIVALENCE_TOLERANCE = 1e-5


class BiasMapConv2d(nn.Conv2d):
    """A ``Conv2d`` whose bias is a map over output positions, ``bias_map`` (C_out, H_out, W_out).

    ``forward(x) = conv(x, W) + bias_map`` with the layer's own stride and zero padding; ``bias`` is
    ``None``, so LRP and DeepLIFT read the linear part from ``weight`` as for any ``Conv2d`` and the
    whole pre-activation from ``forward``; bias attribution reads ``bias_map`` as the layer's bias
    (:func:`~nnxai.methods.attribution.propagation.bias_attribution.output_bias`).
    """

    def __init__(self, conv: nn.Conv2d, bias_map: torch.Tensor):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=False,
                         padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
        self.weight.requires_grad_(conv.weight.requires_grad)
        self.register_buffer("bias_map", bias_map.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, None) + self.bias_map


def first_weighted_layer(model: nn.Module, inputs: torch.Tensor) -> tuple[str, nn.Module]:
    """``(name, module)`` of the first ``Linear``/``Conv2d`` the forward pass calls, checked to receive the
    model's input itself (flattened for a ``Linear``)."""
    calls = []

    def hook(module, args, _output):
        calls.append((module, args[0]))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(inputs[:1])
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise ValueError(f"input_invariance needs a model with a Linear or Conv2d layer; {type(model).__name__} has none")
    module, seen = calls[0]
    if seen.numel() != inputs[:1].numel() or not torch.equal(seen.reshape(-1), inputs[:1].reshape(-1)):
        raise ValueError(f"the first weighted layer ({type(module).__name__}) of {type(model).__name__} does not "
                         "see the raw input, so no bias can absorb a shift of it")
    name = next(n for n, m in model.named_modules() if m is module)
    return name, module


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def shifted_network(model: nn.Module, shift: float, inputs: torch.Tensor) -> nn.Module:
    """A deep copy ``f₂`` of ``model`` whose first layer absorbs the shift: ``f₂(x + shift) = model(x)``.

    ``inputs`` give the input shape (the bias map of a convolution depends on the image size).
    """
    name, layer = first_weighted_layer(model, inputs)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            new = copy.deepcopy(layer)
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features, dtype=layer.weight.dtype,
                                                                         device=layer.weight.device)
            new.bias = nn.Parameter(bias - shift * layer.weight.sum(dim=1), requires_grad=layer.weight.requires_grad)
        else:
            ones = torch.full((1, *inputs.shape[1:]), float(shift), dtype=layer.weight.dtype, device=layer.weight.device)
            absorbed = layer._conv_forward(ones, layer.weight, None)[0]
            bias = torch.zeros_like(absorbed) if layer.bias is None else layer.bias[:, None, None].expand_as(absorbed)
            new = BiasMapConv2d(layer, bias - absorbed)
    _replace(twin, name, new)
    return twin.eval()


def check_equivalent(model: nn.Module, twin: nn.Module, inputs: torch.Tensor, twin_inputs: torch.Tensor) -> None:
    """Raise a RuntimeError unless ``twin(twin_inputs)`` equals ``model(inputs)`` to :data:`EQUIVALENCE_TOLERANCE`."""
    with torch.no_grad():
        for a, b in zip(inputs.split(FORWARD_BATCH), twin_inputs.split(FORWARD_BATCH)):
            expected, got = model(a), twin(b)
            gap = float((got - expected).abs().max())
            if gap > EQUIVALENCE_TOLERANCE * (1.0 + float(expected.abs().max())):
                raise RuntimeError(f"the rebuilt network is not equivalent to the model: outputs differ by {gap:.3g}")


def map_difference(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input: mean and max of ``|second − first|`` over features, divided by the larger map's max ``|·|``.

    Both ``(N,)`` float64; 0 where both maps are zero.
    """
    a, b = first.double().flatten(1), second.double().flatten(1)
    scale = torch.maximum(a.abs().amax(dim=1), b.abs().amax(dim=1)) if a.shape[1] else a.new_zeros(len(a))
    difference = (b - a).abs()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return difference.mean(dim=1) / safe, difference.amax(dim=1) / safe


def shifted_context(ctx, shift: float):
    """``ctx`` with both splits' inputs shifted by ``shift`` (its model stays the cell's: a method re-run on
    the shifted network is a fresh copy fitted on the shifted train split)."""
    train = dataclasses.replace(loaded(ctx.train), x=ctx.train.x + shift)
    test = dataclasses.replace(ctx.test, x=ctx.test.x + shift)
    return dataclasses.replace(ctx, train=train, test=test)


@register_metric
class InputInvariance(Metric):
    """Change of the map under a constant input shift absorbed by the first layer's bias [143]."""

    id = "input_invariance"
    reexplains = True
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {
        "n_inputs": N_INPUTS,
        "shift": Float("the constant c added to every input value, x₂ = x₁ + c, absorbed by the first layer's "
                       "bias b₂ = b₁ − W m₂ ([143] Sec. 2); nonzero"),
        "tolerance": TOLERANCE,
    }
    description = "mean normalised difference of the maps of x on f and of x + c on f with its bias absorbing c"

    @classmethod
    def cell_why_not(cls, run, dataset, model, method):
        traits = run.model_traits(dataset, model) if hasattr(run, "model_traits") else {}
        if not traits.get("standard_layers", True):
            return (f"{model}'s network adds layers to the base ConvNet/MLP (an active method's design) whose "
                    "outputs the twin cannot be checked to match at float precision (e.g. ProtoPNet's "
                    "log((d+1)/(d+eps)) similarity amplifies rounding near a pushed prototype)")
        return None

    @classmethod
    def check_combination(cls, params):
        if params["shift"] == 0:
            raise ParamError(f"metric {cls.id!r}.shift: expected a nonzero number (0 shifts nothing), got 0")

    def __call__(self, record, ctx, method):
        shift = float(self.params["shift"])
        inputs, targets = scored_inputs(record, ctx, self.params["n_inputs"])
        twin = shifted_network(ctx.model, shift, inputs)
        check_equivalent(ctx.model, twin, inputs, inputs + shift)
        first = attribute_as_explained(method, ctx, ctx.model, inputs, targets)
        second = attribute_as_explained(method, shifted_context(ctx, shift), twin, inputs + shift, targets)
        mean, largest = map_difference(first, second)
        return {"input_invariance": PerInput(mean),
                "input_invariance.agreement": PerInput(largest <= self.params["tolerance"])}
