"""The train split as the attribution methods that learn from it read it (prediction difference [108]
fits Gaussians to it, MAPLE [101] a random forest, L2X [110] an explainer network), in their
:meth:`~nnxai.methods.base.Method._fit`: its inputs, checked, on the device of the model they explain.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model without either."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def train_inputs(owner: str, model: nn.Module, train: Any) -> torch.Tensor:
    """``train.x`` (N, ...), detached, on ``model``'s device (where ``explain`` loads the model).

    Raises
    ------
    ValueError
        Naming ``owner``, if the split has fewer than 2 inputs or is not batched (N, ...).
    """
    x_train = torch.as_tensor(train.x)
    if x_train.dim() < 2 or len(x_train) < 2:
        raise ValueError(f"{owner}: fit needs a train split of at least 2 inputs (N, ...), got shape "
                         f"{tuple(x_train.shape)}")
    return x_train.detach().to(model_device(model))


def check_input_shape(owner: str, inputs: torch.Tensor, fitted_shape: tuple[int, ...]) -> None:
    """Raise a ValueError naming ``owner`` unless ``inputs`` (N, ...) are shaped like the train inputs."""
    if tuple(inputs.shape[1:]) != tuple(fitted_shape):
        raise ValueError(f"{owner}: inputs of shape {tuple(inputs.shape[1:])} do not match the train split's "
                         f"{tuple(fitted_shape)} the method was fitted on")
