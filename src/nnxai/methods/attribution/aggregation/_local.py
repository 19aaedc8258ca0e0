"""The local attribution method that a global / semi-local method aggregates (SpRAy [67], MAME [68],
DeepConsensus [116]).

Such a method names one implemented :class:`~nnxai.methods.base.AttributionMethod` in its parameter
``local_method`` and receives that method's parameters, complete, in ``local_params`` (the config takes them
from the local method's own block, with the composite's ``local_params`` on top:
:func:`nnxai.config.method_params`).  The local method's ``n_explain`` decides how many seeded test inputs
are explained (:func:`explained_indices`, the same inputs as every other attribution method of the run) and
its ``batch_size`` how they are batched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nnxai import registry
from nnxai.methods.base import AttributionMethod, ExplainContext, Method, explained_indices, model_traits
from nnxai.metrics.rerun import attribute_batches, fitted_method
from nnxai.params import Choice, Overrides


def local_attribution_ids() -> list[str]:
    """Implemented attribution methods with a per-input ``attribute`` (the possible ``local_method``)."""
    return [m for m in registry.implemented_ids() if issubclass(registry.get(m), AttributionMethod)]


#: The declarations every composite method shares.
LOCAL_PARAMETERS = {
    "local_method": Choice("id of the local attribution method whose per-input maps are aggregated",
                           choices=local_attribution_ids),
    "local_params": Overrides("that method's parameters (from its own config block; the composite's block "
                              "overrides some)", required=False),
}


def check_local_params(owner: str, params: dict[str, Any]) -> None:
    """``local_params`` checked against the declarations of ``local_method`` (a ParamError names ``owner``,
    the local method and the key); for a composite's :meth:`~nnxai.methods.base.Method.check_combination`."""
    name = params["local_method"]
    registry.get(name).checked_params(params.get("local_params", {}), owner=f"{owner}.local_params ({name})")


def build_local_method(params: dict[str, Any]) -> AttributionMethod:
    """The composite's ``local_method`` built with its ``local_params``."""
    return registry.get(params["local_method"])(**params.get("local_params", {}))


class LocalAggregation(Method):
    """Base of a method that aggregates the per-input maps of its ``local_method`` (built with its
    ``local_params`` as :attr:`local`); the subclass adds its own parameters to :data:`LOCAL_PARAMETERS`."""

    parameters = LOCAL_PARAMETERS

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        check_local_params(f"method {cls.spec.id!r}", params)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.local = build_local_method(self.params)


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


def model_maps(method: AttributionMethod, ctx: ExplainContext, model: nn.Module, inputs: torch.Tensor,
               targets: torch.Tensor) -> np.ndarray:
    """``method``'s validated attributions of ``inputs`` for ``targets`` with ``model``, in batches of its
    ``batch_size``, fitted for ``model`` as its explain stage fits it (train split and seed of ``ctx``:
    :func:`~nnxai.metrics.rerun.fitted_method`)."""
    return attribute_batches(fitted_method(method, ctx, model), model, inputs, targets).cpu().numpy()


def local_maps(method: AttributionMethod, ctx: ExplainContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indices, targets, attributions)``: the local method's maps of the explained test inputs for the
    classes ``ctx.model`` predicts (as :meth:`AttributionMethod.explain` computes them)."""
    record = method.explain(ctx)
    return record.indices, record.targets, record.attributions
