"""What Net2Vec [99] and the neuron ranking of Dalvi et al. [100] share: the model in eval mode for a
computation (every module's own ``training`` flag restored afterwards), the activations of every unit layer
(``model.unit_layers()``) recorded by forward hooks that are always removed, the units pooled to one number
per input (a channel's spatial mean, a hidden unit as it is), and a forward pass with chosen units zeroed
(the ablation of [100]).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn




def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` lives (its first parameter or buffer; the CPU for a model with neither)."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def unit_layers(model: nn.Module, owner: str) -> dict[str, nn.Module]:
    """``model.unit_layers()``, refused with a message naming ``owner`` when the model has none."""
    if not hasattr(model, "unit_layers"):
        raise ValueError(f"{owner}: the model ({type(model).__name__}) names no unit layers (unit_layers())")
    layers = dict(model.unit_layers())
    if not layers:
        raise ValueError(f"{owner}: the model declares no unit layers")
    return layers


def layer_activations(model: nn.Module, inputs: torch.Tensor, batch_size: int, device: torch.device,
                      owner: str, maps: bool = False) -> dict[str, torch.Tensor]:
    """``{layer: activations of inputs}`` of every unit layer, in ``unit_layers()`` order, on ``device``.

    ``maps=True`` keeps convolutional maps ``(N, K, h, w)`` and refuses any other shape (Net2Vec segments
    with them); otherwise each unit is pooled to one number per input, ``(N, K)``: the spatial mean of a
    channel, a hidden unit as it is (:func:`pool_units`).
    """
    layers = unit_layers(model, owner)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    current: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, _inputs, output):
            current[name] = output.detach()
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                current.clear()
                model(inputs[start:start + batch_size].to(device))
                missing = [n for n in layers if n not in current]
                if missing:
                    raise ValueError(f"{owner}: unit layers {missing} were not run by the model's forward pass")
                for name in layers:
                    out = current[name]
                    if maps and out.dim() != 4:
                        raise ValueError(f"{owner}: unit layer {name!r} gives {out.dim()}-D activations; it needs "
                                         "convolutional (N, filters, h, w) maps")
                    parts[name].append(out.float() if maps else pool_units(out).float())
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def pool_units(output: torch.Tensor) -> torch.Tensor:
    """One number per unit and input: a channel's spatial mean (``(N, K, ...)`` maps), a hidden unit as it is."""
    if output.dim() == 2:
        return output
    if output.dim() >= 3:
        return output.flatten(2).mean(2)
    raise ValueError(f"unit layer output of shape {tuple(output.shape)}: expected (N, units[, h, w])")


@contextlib.contextmanager
def units_zeroed(model: nn.Module, zeroed: Mapping[str, np.ndarray], owner: str) -> Iterator[nn.Module]:
    """``model`` whose units ``zeroed[layer]`` (channel or hidden-unit indices) output 0 (a whole map for a
    channel) in every forward pass of the block; the hooks are removed afterwards."""
    layers = unit_layers(model, owner)
    unknown = sorted(set(zeroed) - set(layers))
    if unknown:
        raise ValueError(f"{owner}: unknown unit layers {unknown}; the model has {list(layers)}")

    def hook(index):
        def zero(_module, _inputs, output):
            out = output.clone()
            out[:, index.to(out.device)] = 0
            return out
        return zero

    handles = [layers[name].register_forward_hook(hook(torch.as_tensor(np.asarray(idx, dtype=np.int64))))
               for name, idx in zeroed.items() if len(idx)]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
