"""Guided Grad-CAM, Selvaraju et al. [103] (Sec. 3.2).

Grad-CAM maps (:mod:`~nnxai.methods.attribution.gradient.grad_cam`) are class-discriminative but coarse; guided
backpropagation [102] is fine-grained but hardly class-discriminative.  [103] fuses them "via pointwise
multiplication": the Grad-CAM map ``L^c`` is upsampled to the input resolution by bilinear interpolation
and multiplied, element by element, with the guided-backpropagation gradient ``G^c`` of ``y^c``:

    GuidedGradCAM^c(x) = G^c(x) ⊙ upsample(L^c)(x),

with ``L^c`` broadcast over the input channels.  The survey (Sec. III-C) describes exactly this product.

This is Captum's ``GuidedGradCam`` on ``model.last_conv_layer`` with ``interpolate_mode="bilinear"``
(Captum's default, ``"nearest"``, would not follow [103]; with bilinear the factor equals
:func:`~nnxai.methods.attribution.gradient.cam.upsample_to_input` of the Grad-CAM map).  Guided backpropagation
rewrites the backward pass of ReLU modules, so the method applies to ReLU CNNs only.  ``y^c`` is the
logit.  Where the Grad-CAM map is zero the attribution is zero.
"""

from __future__ import annotations

import warnings
import torch
from torch import nn

from nnxai.methods.attribution.gradient.cam import INTERPOLATE_MODE, check_images, in_batches, last_conv_layer
from nnxai.methods.base import AttributionMethod
from nnxai.registry import register


@register("guided_grad_cam")
class GuidedGradCAM(AttributionMethod):
    """Guided backpropagation ⊙ bilinearly upsampled Grad-CAM [103] (Captum ``GuidedGradCam``).

    Notes
    -----
    Signed (guided-backprop gradients can be negative), one value per input channel.  ``baselines`` are
    ignored.
    """

    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    activations = frozenset({"relu"})

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        check_images(inputs, self.spec.id)
        layer = last_conv_layer(model, self.spec.id)
        from captum.attr import GuidedGradCam  # lazy, see _captum.py

        explainer = GuidedGradCam(model, layer)

        def one(x, t):
            with warnings.catch_warnings():  # Captum announces its temporary ReLU hooks on every call
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                out = explainer.attribute(x.requires_grad_(True), target=t, interpolate_mode=INTERPOLATE_MODE)
            return out.to(x.dtype)

        return in_batches(one, inputs, target, self.params["batch_size"])
