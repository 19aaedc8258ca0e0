"""Training penalties: terms a model variant adds to the cross-entropy loss.

A variant names its penalty (:attr:`nnxai.models.variants.Variant.penalty`); the trainer adds
``penalty_weight * PENALTIES[name](model, inputs, targets, logits)`` to each batch's loss.  A new weight
penalty is one function here (or in any module) registered with ``@PENALTIES.register(name)`` plus a
:class:`~nnxai.models.variants.Variant` that names it.  An active method of the survey (Section IV), whose
loss needs state, network changes or hooks, is an :class:`nnxai.active.base.ActiveMethod` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nnxai.registration import Registry

#: The variant's penalty name when nothing is added to the loss.
NO_PENALTY = "none"

#: ``(model, inputs, targets, logits) -> scalar tensor``; ``logits`` is ``model(inputs)`` of this batch.
Penalty = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

#: Weight penalties by name (modules under nnxai.active may add theirs).
PENALTIES: Registry[Penalty] = Registry("training penalty", packages=("nnxai.active",))


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Weight matrices and kernels (biases excluded)."""
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


@PENALTIES.register("l1")
def l1_penalty(model: nn.Module, inputs=None, targets=None, logits=None) -> torch.Tensor:
    """Sum of |w| over the weights: the L1 sparsity baseline tree regularization [119] is compared with."""
    return sum(w.abs().sum() for w in _weights(model))


@PENALTIES.register("l2")
def l2_penalty(model: nn.Module, inputs=None, targets=None, logits=None) -> torch.Tensor:
    """Sum of w^2 over the weights: the L2 baseline of [119]."""
    return sum(w.pow(2).sum() for w in _weights(model))


def check_penalty(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is :data:`NO_PENALTY` or a registered penalty."""
    if name != NO_PENALTY and name not in PENALTIES:
        raise ValueError(f"penalty {name!r} is not one of {', '.join([NO_PENALTY, *PENALTIES])}")
