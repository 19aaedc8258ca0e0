"""What the metrics that re-run a method on changed inputs or networks share (``continuity``, ``fragility``,
``input_invariance``, ``implementation_invariance``).

No metric is registered here.  Each of them scores the first ``n_inputs`` inputs of a record (the record's
inputs are already a seeded sample of the test split, so its first ones are one too) and re-runs the method
through :func:`~nnxai.metrics.rerun.attribute_as_explained`, so the re-run sees the state the explain stage
set up (reference input, SmoothGrad's noise seed, LRP's bounds).  Perturbation sizes are relative to the
per-channel (per-feature) value range of the train split (:func:`channel_box`); per-input randomness comes
from :func:`~nnxai.methods.attribution.smoothgrad.input_noise`, so scores do not depend on batching.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from nnxai.methods.attribution.lrp import channel_range
from nnxai.methods.attribution.smoothgrad import input_noise
from nnxai.metrics.attribution import explained_inputs


def check_real(owner: str, params: dict, name: str, low: float | None = None, high: float | None = None,
               low_open: bool = True) -> None:
    """Raise a ValueError naming ``params[name]`` unless it is a finite real in the interval given.

    ``low`` is excluded when ``low_open`` (default) and included otherwise; ``high`` is included.
    """
    value = params[name]
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"<= {high}")
        raise ValueError(f"{owner}: parameter {name!r} must be a finite number"
                         f"{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}")


def scored_inputs(record, ctx, n_inputs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``: the first ``n_inputs`` inputs the record explains and their classes."""
    inputs, targets, _ = explained_inputs(record, ctx)
    return inputs[:n_inputs], targets[:n_inputs]


def channel_box(x_train: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``: the per-channel (per-feature) minimum and maximum of the train split, shaped
    ``(1, C, 1, ...)`` to broadcast against ``like``, in its dtype and on its device."""
    low, high = channel_range(x_train, image=False)
    view = (1, len(low)) + (1,) * (like.dim() - 2)
    return tuple(b.reshape(view).to(like.device, like.dtype) for b in (low, high))


def uniform_noise(inputs: torch.Tensor, n_samples: int, seed: int) -> torch.Tensor:
    """Noise uniform on ``[−1, 1]``, ``(N, n_samples, ...)``, each input's draws set by its values and ``seed``.

    The standard normal draws of :func:`input_noise` mapped through their CDF, ``u = erf(z / √2)``.
    """
    if len(inputs) == 0:
        return inputs.new_zeros((0, n_samples, *inputs.shape[1:]))
    z = torch.stack([input_noise(x, n_samples, seed) for x in inputs])
    return torch.erf(z.double() / math.sqrt(2.0)).to(inputs.dtype)
