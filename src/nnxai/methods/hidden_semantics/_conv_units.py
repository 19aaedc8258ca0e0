"""What the filter-level hidden-semantics methods (deconvolution of the top activations [14], filter CAR [51]
of the 2nd survey) share: the model in eval mode for the duration of a computation (every module's own
``training`` flag restored afterwards), the convolutional unit layers, and the receptive field of a unit,
traced from the modules a forward pass runs before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn




def conv_unit_layers(model: nn.Module, owner: str) -> dict[str, nn.Module]:
    """``model.unit_layers()``, refused with a clear message when the model has none."""
    if not hasattr(model, "unit_layers"):
        raise ValueError(f"{owner}: the model has no unit_layers(); it needs a CNN of nnxai.models")
    layers = dict(model.unit_layers())
    if not layers:
        raise ValueError(f"{owner}: the model declares no unit layers")
    return layers


def check_maps(name: str, output: torch.Tensor, owner: str) -> None:
    if output.dim() != 4:
        raise ValueError(f"{owner}: unit layer {name!r} gives {output.dim()}-D activations; it needs "
                         "convolutional (N, filters, h, w) maps")


class StopForward(Exception):
    """Raised by a forward hook to end a forward pass once the activations it needs are recorded."""


def layer_outputs(model: nn.Module, x: torch.Tensor, layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The outputs of ``layers`` on ``x`` (no gradient); the forward pass stops after the last of them."""
    out: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, _inputs, output):
            out[name] = output.detach()
            if len(out) == len(layers):
                raise StopForward
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    try:
        with torch.no_grad():
            model(x)
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(set(layers) - set(out))
    if missing:
        raise ValueError(f"unit layers {missing} were not run by the model's forward pass")
    return out


# -- receptive fields ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One spatial operation on the way to a unit layer, per axis: ``out[i]`` reads inputs
    ``i * stride - padding + j * dilation`` for ``j`` in ``0..kernel-1``."""

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _step(name: str, module: nn.Module, size_in: tuple[int, int], size_out: tuple[int, int]) -> Step | None:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        if isinstance(module.padding, str):
            raise ValueError(f"module {name!r}: padding={module.padding!r} is not supported by the receptive-field "
                             "trace; give it explicit integers")
        dilation = getattr(module, "dilation", 1)
        return Step(name, _pair(module.kernel_size), _pair(module.stride or module.kernel_size),
                    _pair(module.padding), _pair(dilation))
    if size_in == size_out:
        return None                # pointwise in space: activations, normalisation, masks, dropout
    raise ValueError(f"module {name!r} ({type(module).__name__}) maps {size_in} to {size_out} pixels; the "
                     "receptive-field trace knows Conv2d, MaxPool2d and AvgPool2d only")


def trace_steps(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> list[Step]:
    """The spatial steps of the leaf modules that a forward pass of ``x`` (one input suffices) runs on 4-D
    maps before ``layer`` returns, in order.  Assumes the unit layer sits on a chain of them (the project's
    CNNs); a module that changes the map size without being a convolution or a pooling is refused."""
    names = {m: n for n, m in model.named_modules()}
    steps: list[Step] = []

    def hook(module, inputs, output):
        if module is layer:
            raise StopForward
        if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() == 4 and output.dim() == 4:
            step = _step(names[module], module, tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]))
            if step is not None:
                steps.append(step)

    leaves = [m for m in model.modules() if not list(m.children())]
    if layer not in leaves:
        leaves.append(layer)
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(x[:1])
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return steps


def receptive_box(steps: list[Step], row: int, col: int) -> list[int]:
    """``[top, left, bottom, right]`` (ends exclusive) of the input pixels that unit position ``(row, col)``
    reads through ``steps``; it may reach past the image, where the convolutions read their zero padding."""
    lo, hi = [row, col], [row, col]
    for step in reversed(steps):
        for a in (0, 1):
            lo[a] = lo[a] * step.stride[a] - step.padding[a]
            hi[a] = hi[a] * step.stride[a] - step.padding[a] + (step.kernel[a] - 1) * step.dilation[a]
    return [lo[0], lo[1], hi[0] + 1, hi[1] + 1]


def receptive_size(steps: list[Step]) -> tuple[int, int]:
    """Height and width of every unit's receptive field through ``steps``."""
    top, left, bottom, right = receptive_box(steps, 0, 0)
    return bottom - top, right - left


def crop(images: torch.Tensor, boxes: list[list[int]]) -> torch.Tensor:
    """The ``boxes`` of ``images`` (N, C, H, W), one per image, all of one size; outside the image: zeros
    (the convolutions' padding)."""
    heights = {b[2] - b[0] for b in boxes}
    widths = {b[3] - b[1] for b in boxes}
    if len(heights) != 1 or len(widths) != 1:
        raise ValueError(f"crop boxes of different sizes: {boxes}")
    h, w = heights.pop(), widths.pop()
    pad = max(h, w)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    return torch.stack([padded[i, :, b[0] + pad:b[2] + pad, b[1] + pad:b[3] + pad] for i, b in enumerate(boxes)])
