"""What the metrics that re-run a method on changed inputs or networks share (``continuity``, ``fragility``,
``input_invariance``, ``implementation_invariance``).

No metric is registered here.  Each of them scores the first ``n_inputs`` inputs of a record (the record's
inputs are already a seeded sample of the test split, so its first ones are one too) and re-runs the method
through :func:`~nnxai.metrics.rerun.attribute_as_explained`, fitted as the explain stage fits it (reference
input, seed, LRP's bounds: the cell's fit is reused).  Perturbation sizes are relative to the
per-channel (per-feature) value range of the train split (:func:`channel_box`); per-input randomness comes
from :func:`~nnxai.ops.noise.input_noise`, so scores do not depend on batching.
"""

from __future__ import annotations

import math

import torch

from nnxai.metrics.attribution import explained_inputs
from nnxai.ops.maps import channel_range
from nnxai.ops.noise import input_noise
from nnxai.params import Float, Int

#: The inputs a re-running metric scores.
N_INPUTS = Int("explained inputs scored: the record's first (a seeded sample of the test split already); "
               "bounds the cost of re-running the method", low=1, at_most="test")
#: How far two maps may differ and still agree (the invariance metrics).
TOLERANCE = Float("largest normalised difference max_i |Φ₂_i − Φ₁_i| / scale of an input's two maps that "
                  "still counts as agreement", low=0.0)


def scored_inputs(record, ctx, n_inputs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``: the first ``n_inputs`` inputs the record explains and their classes."""
    inputs, targets, _ = explained_inputs(record, ctx)
    return inputs[:n_inputs], targets[:n_inputs]


def channel_box(x_train: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``: the per-channel (per-feature) minimum and maximum of the train split, shaped
    ``(1, C, 1, ...)`` to broadcast against ``like``, in its dtype and on its device."""
    low, high = channel_range(x_train)
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
