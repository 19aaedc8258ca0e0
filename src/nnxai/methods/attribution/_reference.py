"""What the attribution methods with a reference input share (Integrated Gradients [114], DeepLIFT [112],
occlusion [72]): the reference is zero or the per-channel mean of the train split, built once per
``explain`` and recorded in ``meta["baseline"]`` so that metrics (``completeness``) can recompute f(x_ref).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from nnxai.methods.base import AttributionMethod, ExplainContext
from nnxai.ops.maps import REFERENCES, channel_means, constant_reference







class ReferenceAttribution(AttributionMethod):
    """An attribution method relative to a reference input chosen by the parameter ``reference_param``
    (``"zero"`` or ``"mean"``, the per-channel train mean; checked in :meth:`__init__`)."""

    uses_baseline = True
    reference_param: ClassVar[str] = "baseline"

    def __init__(self, **params):
        super().__init__(**params)
        kind = self.params[self.reference_param]
        if kind not in REFERENCES:
            raise ValueError(f"method {self.spec.id!r}: parameter {self.reference_param!r} must be one of "
                             f"{list(REFERENCES)}, got {kind!r}")
        self._context_reference: torch.Tensor | None = None

    def reference_values(self, ctx: ExplainContext) -> torch.Tensor:
        """The reference's value per channel (per feature for tables), shape ``(C,)``."""
        x_train = ctx.train.x
        if self.params[self.reference_param] == "mean":
            return channel_means(x_train)
        return torch.zeros(x_train.shape[1], dtype=x_train.dtype)

    def _run(self, ctx):
        per_channel = self.reference_values(ctx)
        self._context_reference = constant_reference(per_channel, tuple(ctx.test.x.shape[1:])).to(ctx.device)
        try:
            record, n_inputs = super()._run(ctx)
        finally:
            self._context_reference = None
        record.meta["baseline"] = {"kind": self.params[self.reference_param],
                                   "per_channel": [float(v) for v in per_channel]}
        return record, n_inputs

    def _default_reference(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._context_reference is not None:
            return self._context_reference
        if self.params[self.reference_param] == "zero":
            return torch.zeros_like(inputs[:1])
        raise ValueError(f"{self.reference_param}='mean' is the per-channel mean of the train split: call "
                         "explain(ctx), or pass baselines to attribute()")
