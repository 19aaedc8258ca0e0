"""Shared plumbing of the attribution metrics (``pixel_flipping``, ``localisation``, ``completeness``).

No metric is registered here.  The helpers turn an :class:`~nnxai.explanations.AttributionMap` and an
explain context into tensors, run the model in bounded batches, and read the reference input that
reference-based methods record in ``meta["baseline"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nnxai.explanations import AttributionMap

#: Inputs per forward pass of a metric.  Only bounds memory; the scores do not depend on it.
FORWARD_BATCH = 512


def explained_inputs(record: AttributionMap, ctx: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs, targets, attributions)`` of a record: the explained test inputs, on the context's device.

    Raises
    ------
    ValueError
        If the record's indices fall outside the test split or its attributions are not shaped like the
        inputs they explain.
    """
    x_test = ctx.test.x
    idx = np.asarray(record.indices)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(x_test)):
        raise ValueError(f"record indices span {idx.min()}..{idx.max()}, the test split has {len(x_test)} inputs; "
                         "was it explained on another split size? rerun its explain stage")
    inputs = x_test[torch.as_tensor(idx, dtype=torch.long)].to(ctx.device)
    if tuple(record.attributions.shape) != tuple(inputs.shape):
        raise ValueError(f"attributions of shape {tuple(record.attributions.shape)} do not match the explained "
                         f"inputs {tuple(inputs.shape)}")
    attributions = torch.as_tensor(record.attributions, device=ctx.device)
    targets = torch.as_tensor(record.targets, dtype=torch.long, device=ctx.device)
    return inputs, targets, attributions


@torch.no_grad()
def class_scores(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, softmax: bool) -> torch.Tensor:
    """``f_c(x)`` for each input and its target: the logit, or its softmax probability; float64."""
    out = []
    for xb, tb in zip(inputs.split(FORWARD_BATCH), targets.split(FORWARD_BATCH)):
        logits = model(xb).double()
        scores = logits.softmax(dim=1) if softmax else logits
        out.append(scores.gather(1, tb[:, None])[:, 0])
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=inputs.device)


def reference_from_meta(meta: dict, inputs: torch.Tensor) -> torch.Tensor:
    """The reference input ``x_ref`` a method recorded in ``meta["baseline"]``, shaped ``(1, *inputs.shape[1:])``.

    The record holds ``{"kind": str, "per_channel": [...]}`` (one value per entry of axis 1, constant over
    the others: channels of images, features of tables), as written by
    :class:`~nnxai.methods.attribution.integrated_gradients.IntegratedGradients`.
    """
    baseline = meta.get("baseline")
    if not isinstance(baseline, dict) or "per_channel" not in baseline:
        raise ValueError(f"record of method {meta.get('method')!r} has no meta['baseline'] with 'per_channel' "
                         "values; a reference-based method must record its reference (rerun explain)")
    values = torch.as_tensor(baseline["per_channel"], dtype=inputs.dtype, device=inputs.device)
    if values.shape != (inputs.shape[1],):
        raise ValueError(f"meta['baseline'] has {len(values)} per-channel values, inputs have "
                         f"{inputs.shape[1]} channels")
    view = (1, len(values)) + (1,) * (inputs.dim() - 2)
    return values.reshape(view).expand((1, *inputs.shape[1:]))
