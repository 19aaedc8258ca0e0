"""Grad-CAM (Gradient-weighted Class Activation Mapping), Selvaraju et al. [103].

With ``A^k`` the ``k``-th feature map of the last convolutional layer (``Z = h·w`` positions) and ``y^c``
the score of class ``c`` before the softmax, [103] (Sec. 3) weights each map by its average gradient and
keeps the positive part:

    α_k^c = (1/Z) Σ_i Σ_j ∂y^c / ∂A^k_ij                          (Eq. 1 of [103])
    L^c_Grad-CAM = ReLU(Σ_k α_k^c A^k)                             (Eq. 2 of [103])

This is Captum's ``LayerGradCam`` on ``model.last_conv_layer`` (the output of the last conv block's
activation) with ``relu_attributions=True``.  ``y^c`` is the logit.

Relation to CAM (Sec. 3.1 of [103]).  For a GAP head followed by a linear layer, ``y^c = Σ_k w_k^c
(1/Z) Σ_ij A^k_ij + b_c``, so ``∂y^c/∂A^k_ij = w_k^c / Z`` at every position and ``α_k^c = w_k^c / Z``:
Grad-CAM is exactly ``ReLU(M_c) / Z`` with ``M_c`` the CAM of [138] (asserted by the tests).  Grad-CAM
needs no GAP head, so it applies to every CNN, sigmoid ones included.

Shape.  ``L^c`` is upsampled bilinearly to the input's ``H×W`` ([103] Sec. 3.2) and repeated over the
input channels (:func:`~nnxai.methods.attribution.gradient.cam.upsample_to_input`): the attribution is the same in
every channel, so its channel-max saliency map equals the upsampled ``L^c``.
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.methods.attribution.gradient.cam import check_images, in_batches, last_conv_layer, upsample_to_input
from nnxai.methods.base import AttributionMethod
from nnxai.registry import register


def grad_cam_map(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L^c = ReLU(Σ_k α_k^c A^k)`` of [103] on the last conv layer's grid, shape ``(N, 1, h, w)``."""
    from captum.attr import LayerGradCam  # lazy, see _captum.py

    layer = last_conv_layer(model, "grad_cam")
    leaf = inputs.detach().clone()
    return LayerGradCam(model, layer).attribute(leaf, target=target, relu_attributions=True).detach()


@register("grad_cam")
class GradCAM(AttributionMethod):
    """Grad-CAM [103] on the last conv layer, upsampled bilinearly to the input.

    Notes
    -----
    Non-negative map (the ReLU of Eq. 2 in [103]); the same in every input channel.  ``baselines`` are
    ignored.
    """

    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        check_images(inputs, self.spec.id)
        last_conv_layer(model, self.spec.id)

        def one(x, t):
            return upsample_to_input(grad_cam_map(model, x, t), x)

        return in_batches(one, inputs, target, self.params["batch_size"])
