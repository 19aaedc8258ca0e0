"""The local attribution method that a global / semi-local method aggregates (SpRAy [67], MAME [68],
DeepConsensus [116]).

Such a method names one implemented :class:`~nnxai.methods.base.AttributionMethod` in its parameter
``local_method`` and gives that method's own parameters, nested, in ``local_params`` (the explain job
receives only the aggregating method's parameters, so the local method's sizes live inside them).  The
local method's ``n_explain`` decides how many seeded test inputs are explained (:func:`explained_indices`,
the same inputs as every other attribution method of the run) and its ``batch_size`` how they are batched.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from nnxai import registry
from nnxai.methods.base import AttributionMethod, ExplainContext, explained_indices, model_traits


def local_attribution_ids() -> list[str]:
    """Implemented attribution methods with a per-input ``attribute`` (the possible ``local_method``)."""
    return [m for m in registry.implemented_ids() if issubclass(registry.get(m), AttributionMethod)]


def build_local_method(owner: str, name: Any, params: Any) -> AttributionMethod:
    """Instantiate ``local_method`` with ``local_params``; a ValueError names a bad id or parameter."""
    allowed = local_attribution_ids()
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"{owner}: parameter 'local_method' must be one of {allowed}, got {name!r}")
    if not isinstance(params, dict):
        raise ValueError(f"{owner}: parameter 'local_params' must be a mapping of {name}'s parameters "
                         f"{sorted(registry.get(name).param_names)}, got {params!r}")
    return registry.get(name)(**params)


def check_local_applies(owner: str, method: AttributionMethod, ctx: ExplainContext, model: nn.Module) -> None:
    reason = method.why_not(ctx.info, model_traits(model))
    if reason:
        raise ValueError(f"{owner}: local method {method.spec.id!r} does not apply to {ctx.dataset}: {reason}")


def explained_batch(method: AttributionMethod, ctx: ExplainContext) -> tuple[np.ndarray, torch.Tensor]:
    """Positions and tensors of the test inputs the local method explains (its ``n_explain``, ``ctx.seed``)."""
    idx = explained_indices(len(ctx.test.x), method.params["n_explain"], ctx.seed)
    return idx, ctx.test.x[torch.as_tensor(idx, dtype=torch.long)].to(ctx.device)


@torch.no_grad()
def predicted_classes(model: nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(b).argmax(1) for b in inputs.split(batch_size)])


def attribute_batches(method: AttributionMethod, model: nn.Module, inputs: torch.Tensor,
                      targets: torch.Tensor, ctx: ExplainContext) -> np.ndarray:
    """``method``'s validated attributions of ``inputs`` for ``targets``, in batches of its ``batch_size``;
    a method that reads the train split or the seed (prediction difference, MAPLE, LIME, ...) gets them
    from ``ctx`` as in its own ``explain``."""
    size = method.params["batch_size"]
    bound = method.bound(ctx) if hasattr(method, "bound") else contextlib.nullcontext()
    with bound:
        return torch.cat([method(model, xb, tb).detach().cpu()
                          for xb, tb in zip(inputs.split(size), targets.split(size))]).numpy()


def local_maps(method: AttributionMethod, ctx: ExplainContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indices, targets, attributions)``: the local method's maps of the explained test inputs for the
    classes ``ctx.model`` predicts (as :meth:`AttributionMethod.explain` computes them)."""
    record = method.explain(ctx)
    return record.indices, record.targets, record.attributions
