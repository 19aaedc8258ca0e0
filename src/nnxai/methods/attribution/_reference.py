"""What the attribution methods with a reference input share (Integrated Gradients [114], DeepLIFT [112],
occlusion [72], LIME [42], meaningful perturbation [150], the Shapley player methods): the reference is
zero or the per-channel mean of the train split, learnt by :meth:`ReferenceAttribution.fit` and recorded
in ``meta["baseline"]`` so that metrics (``completeness``) can recompute f(x_ref).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from nnxai.methods.base import AttributionMethod
from nnxai.ops.maps import REFERENCES, channel_means, constant_reference
from nnxai.params import Choice

#: The declaration of a reference parameter (``baseline`` or ``fill``); subclasses may restate the help.
REFERENCE = Choice("reference input x_ref: zeros, or the per-channel (per-feature) mean of the train split",
                   REFERENCES)


def reference_per_channel(kind: str, x_train: torch.Tensor) -> torch.Tensor:
    """The reference's value per channel (per feature for tables), shape ``(C,)``, in ``x_train``'s dtype."""
    if kind == "mean":
        return channel_means(x_train)
    return torch.zeros(x_train.shape[1], dtype=x_train.dtype)


class ReferenceAttribution(AttributionMethod):
    """An attribution method relative to a reference input chosen by the parameter ``reference_param``
    (``"zero"`` or ``"mean"``, the per-channel train mean).

    Attributes
    ----------
    reference_per_channel_ : torch.Tensor
        ``(C,)`` value of the reference per channel (per feature for tables), learnt by :meth:`fit`.
    reference_ : torch.Tensor
        ``(1, *input_shape)`` reference input, constant per channel, on the train split's device.
    """

    uses_baseline = True
    reference_param: ClassVar[str] = "baseline"
    parameters = {**AttributionMethod.parameters, "baseline": REFERENCE}

    def _fit(self, model: nn.Module, train) -> None:
        x_train = train.x
        self.reference_per_channel_ = reference_per_channel(self.params[self.reference_param], x_train)
        self.reference_ = constant_reference(self.reference_per_channel_, tuple(x_train.shape[1:]))

    def _run(self, ctx):
        record, n_inputs = super()._run(ctx)
        record.meta["baseline"] = {"kind": self.params[self.reference_param],
                                   "per_channel": [float(v) for v in self.reference_per_channel_]}
        return record, n_inputs

    def reference_for(self, inputs: torch.Tensor, baselines: torch.Tensor | None = None) -> torch.Tensor:
        """``baselines``, or the fitted reference, as a detached tensor of the inputs' dtype and device.

        Raises
        ------
        RuntimeError
            If no ``baselines`` are given and the method was not fitted.
        """
        reference = self._default_reference(inputs) if baselines is None else baselines
        return torch.as_tensor(reference, dtype=inputs.dtype, device=inputs.device).detach()

    def _default_reference(self, inputs: torch.Tensor) -> torch.Tensor:
        """The fitted reference ``(1, ...)`` on the inputs' device (in the train split's dtype)."""
        if not hasattr(self, "reference_"):
            raise RuntimeError(f"method {self.spec.id!r}: the reference ({self.reference_param}="
                               f"{self.params[self.reference_param]!r}) is learnt from the train split: call "
                               "fit(model, train_split) first, or pass baselines to attribute()")
        return self.reference_.to(inputs.device)
