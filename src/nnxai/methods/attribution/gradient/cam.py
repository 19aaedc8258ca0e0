"""Class Activation Mapping (CAM), Zhou, Khosla, Lapedriza, Oliva & Torralba [138].

CAM needs a CNN whose last convolutional layer is followed by global average pooling (GAP) and one linear
layer.  With ``f_k(x, y)`` the activation of unit ``k`` of the last conv layer at position ``(x, y)`` and
``w_k^c`` the weight of the linear layer from unit ``k`` to class ``c``, [138] (Sec. 2, Eqs. before and
after Fig. 2) defines the class activation map

    M_c(x, y) = Σ_k w_k^c f_k(x, y),

so that the class score is ``S_c = Σ_k w_k^c F_k = Σ_{x,y} M_c(x, y)`` with ``F_k = Σ_{x,y} f_k(x, y)``.
Our GAP is a *mean* over the ``Z = h·w`` positions and the linear layer has a bias, so here the identity
reads ``S_c = (1/Z) Σ_{x,y} M_c(x, y) + b_c`` (checked exactly by the tests).  ``S_c`` is the logit; the
bias, constant over positions, is not part of the map, as in [138].

Shape.  ``M_c`` lives on the ``h×w`` grid of the last conv layer; [138] upsamples it to the image size.
:func:`upsample_to_input` does that bilinearly (Captum's ``LayerAttribution.interpolate``, mode
``"bilinear"``, ``align_corners=False``) and repeats it over the input channels, so an attribution is
shaped ``(N, C, H, W)`` like the input and is the *same for every channel*: the survey's channel-max
saliency map (:func:`~nnxai.methods.attribution.gradient.saliency.saliency_map`) equals the upsampled ``M_c``.
Captum has no CAM; :func:`class_activation_map` computes it from ``model.feature_maps`` and
``model.classifier``.

This module also holds the helpers that Grad-CAM and Guided Grad-CAM share: :func:`upsample_to_input`,
:func:`last_conv_layer` and :func:`in_batches`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from nnxai.methods.base import AttributionMethod
from nnxai.registry import register

#: Captum's interpolation mode for class maps: bilinear, as in [103] Sec. 3.2 (Captum's default is nearest).
INTERPOLATE_MODE = "bilinear"


def upsample_to_input(maps: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling of ``(N, 1, h, w)`` class maps to the inputs' ``H×W``, repeated over channels.

    Parameters
    ----------
    maps : torch.Tensor
        ``(N, 1, h, w)`` maps on the grid of a conv layer.
    inputs : torch.Tensor
        ``(N, C, H, W)`` images the maps explain.

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)``, equal in every channel, in the dtype of ``inputs``.
    """
    from captum.attr import LayerAttribution  # lazy, see _captum.py

    up = LayerAttribution.interpolate(maps, tuple(inputs.shape[2:]), interpolate_mode=INTERPOLATE_MODE)
    return up.expand(-1, inputs.shape[1], -1, -1).to(inputs.dtype).contiguous()


def last_conv_layer(model: nn.Module, method_id: str) -> nn.Module:
    """``model.last_conv_layer`` (the module whose output the class maps weight) or a clear ValueError."""
    layer = getattr(model, "last_conv_layer", None)
    if not isinstance(layer, nn.Module):
        raise ValueError(f"method {method_id!r} needs a CNN with a 'last_conv_layer' module "
                         f"(nnxai.models.ConvNet); got {type(model).__name__}")
    return layer


def check_images(inputs: torch.Tensor, method_id: str) -> None:
    """Raise a ValueError unless ``inputs`` is an ``(N, C, H, W)`` batch of images."""
    if inputs.dim() != 4:
        raise ValueError(f"method {method_id!r} explains (N, C, H, W) images, got inputs of shape "
                         f"{tuple(inputs.shape)}")


def in_batches(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inputs: torch.Tensor,
               target: torch.Tensor, size: int) -> torch.Tensor:
    """``fn`` over consecutive batches of ``size`` inputs (and their targets), concatenated and detached."""
    return torch.cat([fn(x.detach().clone(), t).detach() for x, t in zip(inputs.split(size), target.split(size))])


def class_activation_map(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``M_c(x, y) = Σ_k w_k^c f_k(x, y)`` of [138] on the last conv layer's grid, shape ``(N, 1, h, w)``.

    Parameters
    ----------
    model : nn.Module
        A CNN with ``feature_maps(x)`` (the last conv layer's activations ``f``), a GAP head and a linear
        ``classifier`` (``w^c`` = row ``c`` of its weight).
    inputs : torch.Tensor
        ``(N, C, H, W)`` images.
    target : torch.Tensor
        ``(N,)`` class per input.
    """
    classifier = getattr(model, "classifier", None)
    if not (hasattr(model, "feature_maps") and hasattr(model, "gap") and isinstance(classifier, nn.Linear)):
        raise ValueError(f"CAM needs a CNN with feature_maps(), a global-average-pool head 'gap' and a linear "
                         f"'classifier' (nnxai.models.ConvNet); got {type(model).__name__}")
    with torch.no_grad():
        features = model.feature_maps(inputs.detach())
        weights = classifier.weight[target]
        if features.shape[1] != weights.shape[1]:
            raise ValueError(f"the last conv layer has {features.shape[1]} units, the classifier expects "
                             f"{weights.shape[1]}")
        return torch.einsum("nkhw,nk->nhw", features, weights.to(features.dtype))[:, None]


@register("cam")
class CAM(AttributionMethod):
    """Class activation map ``M_c = Σ_k w_k^c f_k`` of [138], upsampled bilinearly to the input.

    Notes
    -----
    Signed map (no ReLU, as in [138]); the same in every input channel.  ``baselines`` are ignored.
    """

    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    needs_gap_head = True
    needs_linear_head = True

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        check_images(inputs, self.spec.id)

        def one(x, t):
            return upsample_to_input(class_activation_map(model, x, t), x)

        return in_batches(one, inputs, target, self.params["batch_size"])
