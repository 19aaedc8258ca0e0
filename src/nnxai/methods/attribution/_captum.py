"""What the attribution methods that wrap one Captum class share: the parameters ``n_explain`` and
``batch_size`` (:attr:`AttributionMethod.parameters`), a detached leaf
copy of the inputs (Captum flips ``requires_grad`` on what it gets; the caller's tensor and its ``.grad``
stay untouched), batching by ``batch_size``, and a lazy import of Captum (which imports matplotlib: every
pipeline job is a fresh process, and most never need it).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from nnxai.methods.base import AttributionMethod


def check_relu_modules(owner: str, model: nn.Module) -> None:
    """Raise a ValueError unless ``model`` has ``nn.ReLU`` modules (the rule hooks them), none in place."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(f"{owner}: the model has no nn.ReLU module; "
                         "the rule rewrites the backward pass of ReLU modules")
    if any(m.inplace for m in relus):
        raise ValueError(f"{owner}: in-place nn.ReLU(inplace=True) modules cannot be hooked; "
                         "use inplace=False")


class CaptumAttribution(AttributionMethod):
    """An attribution method computed by one class of ``captum.attr``, batch by batch.

    Subclasses name the class in ``captum_class`` and may pass it arguments through :meth:`captum_kwargs`;
    ``hooks_relus`` marks the modified-backward rules (DeconvNet, guided backprop) that rewrite the
    backward pass of every ``nn.ReLU`` module.  Parameters: ``n_explain``, ``batch_size``; nothing is learnt
    from the train split, so :meth:`fit` is optional.
    """

    captum_class: ClassVar[str]
    hooks_relus: ClassVar[bool] = False

    def captum_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the Captum class's ``attribute``."""
        return {}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        if self.hooks_relus:
            check_relu_modules(f"method {self.spec.id!r}", model)
        import captum.attr

        explainer = getattr(captum.attr, self.captum_class)(model)
        size = self.params["batch_size"]
        with warnings.catch_warnings():   # Captum warns on every call that it hooks the ReLUs; we know
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            # Each chunk is its own leaf (a detached view: no copy, and no split node in the graph).
            out = [explainer.attribute(part.requires_grad_(True), target=t, **self.captum_kwargs()).detach()
                   for part, t in zip(inputs.detach().split(size), target.split(size))]
        return out[0] if len(out) == 1 else torch.cat(out)


class ReluRuleAttribution(CaptumAttribution):
    """A Captum backward pass that rewrites the rule of every ``nn.ReLU`` module (DeconvNet [72], guided
    backprop [102]): ReLU CNNs only, and no reference input (``baselines`` passed to :meth:`attribute` are
    ignored)."""

    hooks_relus = True
    architectures = frozenset({"cnn"})
    activations = frozenset({"relu"})
