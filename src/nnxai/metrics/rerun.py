"""Re-run an attribution method on other weights or other inputs, exactly as its explain stage runs it.

No metric is registered here.  The robustness metrics (continuity, fragility, the invariances) explain
other inputs with the cell's model; the sanity checks of [75] explain the same inputs with a randomised
copy of the model, and ROAR [150] explains training inputs with the model.  Whatever a method learns
before explaining (a reference input, input bounds, a density, a forest, an explainer network, its seed)
is its fitted state (:meth:`~nnxai.methods.base.Method.fit`): :func:`fitted_method` fits the method once
for the cell's model and reuses that fit, and fits a fresh copy for any other model, every time (the
cascading randomisation re-initialises layers of one copy in place, so a copy is never reused).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nnxai.methods.base import AttributionMethod, Method


def check_rerunnable(method_cls: type) -> str | None:
    """Why :func:`attribute_as_explained` cannot re-run ``method_cls`` (it is not a per-input
    :class:`AttributionMethod`), or ``None``."""
    name = getattr(method_cls, "__name__", method_cls)
    if not (isinstance(method_cls, type) and issubclass(method_cls, AttributionMethod)):
        return f"{name} is not an AttributionMethod, so it cannot be re-run"
    return None


def fitted_method(method: Method, ctx, model: nn.Module | None = None) -> Method:
    """``method`` fitted for ``model`` (default: the cell's ``ctx.model``) on the cell's train split and seed.

    The cell's model is fitted once, in place, and the fit reused by every later call; another model gets
    a fresh copy of the method (same parameters) fitted for it.
    """
    model = ctx.model if model is None else model
    if method.is_fitted_for(model):
        return method
    target = method if model is ctx.model else type(method)(**copy.deepcopy(method.params))
    return target.fit(model, ctx.train, seed=ctx.seed, info=ctx.info)


def attribute_batches(method: AttributionMethod, model: nn.Module, inputs: torch.Tensor,
                      targets: torch.Tensor) -> torch.Tensor:
    """Validated attributions of ``inputs`` for ``targets``, in batches of the method's ``batch_size``."""
    size = method.params["batch_size"]
    chunks = [method(model, xb, tb).detach() for xb, tb in zip(inputs.split(size), targets.split(size))]
    return torch.cat(chunks) if chunks else inputs[:0].clone()


def attribute_as_explained(method: AttributionMethod, ctx, model: nn.Module, inputs: torch.Tensor,
                           targets: torch.Tensor) -> torch.Tensor:
    """The attributions ``method`` gives ``inputs`` for classes ``targets`` with ``model``, fitted as its
    explain stage fits it (train split and seed of ``ctx``); batches of its ``batch_size``; on
    ``inputs.device``.

    Raises
    ------
    ValueError
        If ``method`` is not an :class:`AttributionMethod`, or the numbers of inputs and targets differ.
    """
    reason = check_rerunnable(type(method))
    if reason:
        raise ValueError(reason)
    if len(inputs) != len(targets):
        raise ValueError(f"{len(targets)} targets for {len(inputs)} inputs")
    fitted = fitted_method(method, ctx, model)
    return attribute_batches(fitted, model, inputs, torch.as_tensor(targets, dtype=torch.long, device=inputs.device))
