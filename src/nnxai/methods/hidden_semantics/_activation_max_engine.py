"""The optimisation behind :mod:`~nnxai.methods.hidden_semantics.activation_max`: what a target unit's
activation is, which units exist, the statistics of real inputs the priors are scaled by, and the gradient
ascent of each regulariser.

A *target* is ``(layer, unit)``: ``("logits", c)`` for class ``c`` (its score before the softmax, as Simonyan
et al. [71] maximise), or a key of ``model.unit_layers()`` and a channel.  A channel's objective is the
spatial mean of its pre-activation map (the input of the layer's activation module): the "channel
objective" of Olah et al. [98]; the pre-activation rather than the ReLU's output, so that a unit silent at the
start still has a gradient.  What is *reported* as the unit's activation is the spatial mean of the layer's
output (after the nonlinearity), the quantity the metrics compare with real inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnxai.methods.hidden_semantics import _activation_max_regularisers as reg

LOGITS = "logits"
PIXEL_REGULARISERS = ("none", "l2", "blur", "total_variation", "yosinski")
REGULARISERS = (*PIXEL_REGULARISERS, "generator", "robust")


@dataclass(frozen=True)
class Target:
    layer: str
    unit: int


class UnitRecorder:
    """Forward hooks keeping, for each named unit layer, the input (pre-activation) and output of its module
    in the latest forward pass; removed by :meth:`close` (use as a context manager)."""

    def __init__(self, model: nn.Module, layers):
        modules = model.unit_layers()
        self.pre: dict[str, torch.Tensor] = {}
        self.post: dict[str, torch.Tensor] = {}
        self.handles = [modules[name].register_forward_hook(self._hook(name)) for name in layers]

    def _hook(self, name):
        def hook(_module, inputs, output):
            self.pre[name] = inputs[0]
            self.post[name] = output
        return hook

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _spatial_mean(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2).mean(2) if t.dim() > 2 else t


def unit_values(model: nn.Module, x: torch.Tensor, targets: list[Target]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(objective, activation)`` of each row's own target, ``(N,)`` each: logits for classes; for channels
    the spatial mean of the pre-activation and of the layer's output."""
    if len(targets) != len(x):
        raise ValueError(f"{len(targets)} targets for {len(x)} images")
    layers = sorted({t.layer for t in targets if t.layer != LOGITS})
    units = torch.as_tensor([t.unit for t in targets], device=x.device)
    rows = torch.arange(len(targets), device=x.device)
    with UnitRecorder(model, layers) as rec:
        logits = model(x)
        pre = logits.gather(1, units.clamp(max=logits.shape[1] - 1)[:, None])[:, 0]
        post = pre
        for layer in layers:
            sel = torch.as_tensor([t.layer == layer for t in targets], device=x.device)
            pick = (rows, units.clamp(max=rec.pre[layer].shape[1] - 1))
            pre = torch.where(sel, _spatial_mean(rec.pre[layer])[pick], pre)
            post = torch.where(sel, _spatial_mean(rec.post[layer])[pick], post)
    return pre, post


def layer_statistics(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, dict[str, torch.Tensor]]:
    """Per layer (and ``"logits"``), over the inputs ``x``: the channels' spatial-mean pre-activation and
    output ``(N, channels)`` and spatial-max output (the unit's strongest response in each input)."""
    layers = list(model.unit_layers())
    out: dict[str, dict[str, list]] = {name: {"pre": [], "post": [], "peak": []} for name in [LOGITS, *layers]}
    with torch.no_grad(), UnitRecorder(model, layers) as rec:
        for batch in x.split(batch_size):
            logits = model(batch)
            out[LOGITS]["pre"].append(logits)
            out[LOGITS]["post"].append(logits)
            out[LOGITS]["peak"].append(logits)
            for name in layers:
                post = rec.post[name]
                out[name]["pre"].append(_spatial_mean(rec.pre[name]))
                out[name]["post"].append(_spatial_mean(post))
                out[name]["peak"].append(post.flatten(2).max(2).values if post.dim() > 2 else post)
    return {name: {k: torch.cat(v) for k, v in parts.items()} for name, parts in out.items()}


def resolve_layers(model: nn.Module, layers, model_name: str = "the model") -> list[str]:
    """The unit layers asked for (``"all"``: every key of ``model.unit_layers()``), checked by name."""
    known = list(model.unit_layers())
    if layers == "all":
        return known
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ValueError(f"activation_max: unknown unit layer(s) {unknown}; {model_name} has the unit layers "
                         f"{', '.join(known)} (classes are always visualised as '{LOGITS}')")
    return list(layers)


def check_targets(targets: list[Target], widths: dict[str, int], model_name: str = "the model") -> None:
    """A clear error for a target whose layer or unit does not exist (``widths``: channels per layer, with
    ``"logits"`` the number of classes)."""
    for t in targets:
        if t.layer not in widths:
            raise ValueError(f"activation_max: unknown unit layer {t.layer!r}; {model_name} has "
                             f"{', '.join(widths)}")
        if not 0 <= t.unit < widths[t.layer]:
            what = "classes" if t.layer == LOGITS else "channels"
            raise ValueError(f"activation_max: unit {t.unit} of layer {t.layer!r} does not exist: it has "
                             f"{widths[t.layer]} {what} (0..{widths[t.layer] - 1})")


@dataclass
class Prior:
    """What the regularisers read from real inputs (the train split's reference sample)."""

    low: float
    high: float
    mean: torch.Tensor          # (1, C, H, W) the mean image μ
    radius: float               # ρ: mean ||x - μ|| over the reference inputs (Erhan's norm constraint)
    variance: float             # mean pixel variance: the unit of the L2 penalty
    tv_real: float              # mean TV^β of the reference inputs: the unit of the TV penalty
    colour: np.ndarray          # (C, C) Lucid's colour decorrelation matrix
    generator: nn.Module | None = None
    code_mean: torch.Tensor | None = None
    code_std: torch.Tensor | None = None
    code_lower: torch.Tensor | None = None
    code_upper: torch.Tensor | None = None


def _penalty(name: str, image: torch.Tensor, prior: Prior, p: dict) -> torch.Tensor:
    if name == "l2":
        return p["l2"]["weight"] * reg.l2_penalty(image, prior.mean, prior.variance)
    if name == "total_variation":
        tv = p["total_variation"]
        return tv["weight"] * reg.total_variation(image, tv["beta"]) / prior.tv_real
    return torch.zeros(len(image), dtype=image.dtype, device=image.device)


def synthesise(model: nn.Module, targets: list[Target], scales: torch.Tensor, name: str, prior: Prior,
               p: dict, seed: int, device) -> torch.Tensor:
    """The image maximising each target's activation under regulariser ``name``, ``(T, C, H, W)`` in the
    input range.  Normalised gradient ascent on ``J = Σ_t a_t(x_t) / s_t - λ Ω(x_t)`` (``s_t`` the target's
    spread over real inputs, ``scales``: each unit's objective in standard deviations, so one weight fits every
    unit): ``q ← q + η_k g / mean|g|`` per image, the step decaying linearly from ``η_0 = p["lr"]`` to 0 over
    ``p["steps"]`` steps (the step rule of Wang et al.'s and Nguyen et al.'s code, with Nguyen's linear
    decay), then the regulariser's operator.  Randomness (start, transformations) draws from ``seed`` only."""
    n = len(targets)
    shape = tuple(prior.mean.shape[1:])
    rng = torch.Generator().manual_seed(int(seed))
    span = prior.high - prior.low
    mean = prior.mean.to(device)
    init_std = p["init_std"]
    fourier = None
    if name in PIXEL_REGULARISERS:
        start = mean + init_std * span * torch.randn((n, *shape), generator=rng).to(device)
        param = start.clamp(prior.low, prior.high)
    elif name == "generator":
        # optimise u = h / r, r the mean width of the code channels' bounds: lr is a fraction of the code's range,
        # as it is of the input range for pixels
        unit = float((prior.code_upper - prior.code_lower).mean()) or 1.0
        code = prior.code_mean + prior.code_std * torch.randn((n, *prior.code_mean.shape[1:]), generator=rng)
        param = torch.maximum(torch.minimum(code, prior.code_upper), prior.code_lower).to(device) / unit
    elif name == "robust":
        rp = p["robust"]
        fourier = reg.FourierImage(shape, rp["decay_power"], prior.colour, prior.low, prior.high, device)
        param = (init_std * torch.randn(fourier.spectrum_shape(n), generator=rng)).to(device)
    else:
        raise ValueError(f"unknown regulariser {name!r}; choose from {', '.join(REGULARISERS)}")
    param = param.clone().requires_grad_(True)
    scales = scales.to(device)
    steps = int(p["steps"])
    step_unit = span if name in PIXEL_REGULARISERS else 1.0          # pixels: lr is a fraction of the range

    def render(q):
        if name == "generator":
            return prior.generator(q * unit)
        if name == "robust":
            return fourier.render(q)
        return q

    for step in range(steps):
        image = render(param)
        seen = image
        if name == "robust":
            rp = p["robust"]
            seen = reg.random_transform(image, rng, rp["pad"], rp["jitter"], rp["scales"], rp["angles"],
                                        fill=prior.low + 0.5 * span)
        objective, _ = unit_values(model, seen, targets)
        total = (objective / scales - _penalty(name, image, prior, p)).sum()
        (grad,) = torch.autograd.grad(total, [param])
        with torch.no_grad():
            size = grad.abs().flatten(1).mean(1).clamp_min(1e-30).view(-1, *([1] * (grad.dim() - 1)))
            param += p["lr"] * step_unit * (1.0 - step / steps) * grad / size
            _after_step(name, param, grad, step, prior, p, mean, unit if name == "generator" else 1.0)
    with torch.no_grad():
        return render(param).clamp(prior.low, prior.high).detach()


def _after_step(name: str, param: torch.Tensor, grad: torch.Tensor, step: int, prior: Prior, p: dict,
                mean: torch.Tensor, unit: float) -> None:
    """The regulariser's operator on the parameters after gradient step ``step``, in place."""
    low, high = prior.low, prior.high
    if name == "none":
        param.copy_((mean + reg.project_ball(param - mean, prior.radius)).clamp(low, high))
    elif name in ("l2", "total_variation"):
        param.clamp_(low, high)
    elif name == "blur":
        b = p["blur"]
        sigma = max(b["sigma_end"], b["sigma_start"] * b["decay"] ** (step // b["every"]))
        param.copy_(reg.blur_deblur(param.clamp(low, high), step, sigma, b["every"], b["deblur_ratio"], b["deblur_iterations"],
                                    low, high).clamp(low, high))
    elif name == "yosinski":
        y = p["yosinski"]
        delta = reg.yosinski_clip(param - mean, grad, step, y["decay"], y["blur_sigma"], y["blur_every"],
                                  y["norm_percentile"], y["contribution_percentile"])
        param.copy_((mean + delta).clamp(low, high))
    elif name == "generator":
        g = p["generator"]
        code = param * unit * g["code_decay"]
        code = torch.maximum(torch.minimum(code, prior.code_upper.to(code.device)), prior.code_lower.to(code.device))
        param.copy_(code / unit)


def finite_scale(values: torch.Tensor) -> torch.Tensor:
    """Each column's standard deviation (``1`` where it is 0 or not finite): the unit of a target's objective."""
    std = values.double().std(0) if len(values) > 1 else torch.ones(values.shape[1], dtype=torch.float64)
    return torch.where(torch.isfinite(std) & (std > 1e-8), std, torch.ones_like(std)).float()


def mean_radius(x: torch.Tensor, mean: torch.Tensor) -> float:
    return float((x - mean).flatten(1).norm(dim=1).mean())


def safe_float(v) -> float:
    v = float(v)
    return v if math.isfinite(v) else float("nan")
