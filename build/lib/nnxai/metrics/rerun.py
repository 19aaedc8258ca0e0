"""Re-run an attribution method on other weights or other inputs, exactly as its explain stage runs it.

No metric is registered here.  The sanity check of [75] explains the same inputs and classes with a
randomised copy of the model, and ROAR [150] explains training inputs; both need the method as the
explain stage ran it.  Some methods set up state around :meth:`AttributionMethod._run` in their own
``_run`` before calling ``super()._run(ctx)``: the reference input built from the train split
(:class:`~nnxai.methods.attribution._reference.ReferenceAttribution`), SmoothGrad's noise seed, LRP's
input bounds.  Calling ``attribute`` directly would lose that state, and copying it here would have to
follow every new method.

:func:`attribute_as_explained` therefore runs the method's own ``_run`` chain on a subclass whose
method resolution order puts :class:`_PinnedRun` just above :class:`AttributionMethod`: each
``super()._run(ctx)`` of the method reaches :meth:`_PinnedRun._run`, which attributes the given inputs for
the given classes (instead of the seeded test inputs for their predicted classes), batch by batch.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
from torch import nn

from nnxai.explanations import AttributionMap
from nnxai.methods.base import AttributionMethod


class _PinnedRun(AttributionMethod):
    """The innermost ``_run`` of a re-run: attributes ``self._pinned = (inputs, targets)``."""

    def _run(self, ctx):
        inputs, targets = self._pinned
        size = self.params["batch_size"]
        chunks = [self(ctx.model, xb, tb).detach()
                  for xb, tb in zip(inputs.split(size), targets.split(size))]
        self._result = torch.cat(chunks) if chunks else inputs[:0].clone()
        record = AttributionMap(np.zeros((len(inputs), 0)), np.arange(len(inputs)), targets.cpu().numpy())
        return record, len(inputs)


@functools.cache
def _pinned_class(cls: type) -> type:
    return type(f"Pinned{cls.__name__}", (cls, _PinnedRun), {"__module__": __name__})


def _calls_super_run(run) -> bool:
    """Whether the function ``run`` calls ``super()._run`` (read from the names its code uses)."""
    code = getattr(run, "__code__", None)
    return code is not None and "super" in code.co_names and "_run" in code.co_names


def check_rerunnable(method_cls: type) -> str | None:
    """Why :func:`attribute_as_explained` cannot re-run ``method_cls``, or ``None``: it must be an
    :class:`AttributionMethod` whose every ``_run`` override calls ``super()._run``."""
    name = getattr(method_cls, "__name__", method_cls)
    if not (isinstance(method_cls, type) and issubclass(method_cls, AttributionMethod)):
        return f"{name} is not an AttributionMethod, so it cannot be re-run"
    for klass in method_cls.__mro__[:method_cls.__mro__.index(AttributionMethod)]:
        run = klass.__dict__.get("_run")
        if run is not None and not _calls_super_run(run):
            return f"{klass.__name__}._run does not call super()._run(ctx), so {name} cannot be re-run"
    return None


def attribute_as_explained(method: AttributionMethod, ctx, model: nn.Module, inputs: torch.Tensor,
                           targets: torch.Tensor) -> torch.Tensor:
    """The attributions ``method`` gives ``inputs`` for classes ``targets`` with ``model``, in the context
    ``ctx`` (its splits and seed) but with ``model`` in place of ``ctx.model``; batches of the method's
    ``batch_size``; on ``inputs.device``.

    Raises
    ------
    ValueError
        If ``method`` is not an :class:`AttributionMethod`, or its ``_run`` does not reach
        :meth:`AttributionMethod._run` through ``super()``.
    """
    reason = check_rerunnable(type(method))
    if reason:
        raise ValueError(reason)
    if len(inputs) != len(targets):
        raise ValueError(f"{len(targets)} targets for {len(inputs)} inputs")
    runner = _pinned_class(type(method))(**method.params)
    runner._pinned = (inputs, torch.as_tensor(targets, dtype=torch.long, device=inputs.device))
    runner._result = None
    runner._run(dataclasses.replace(ctx, model=model))
    if runner._result is None:
        raise ValueError(f"{type(method).__name__}._run did not reach AttributionMethod._run, so it cannot be "
                         "re-run on other weights or inputs")
    return runner._result
