"""DeconvNet attribution, Zeiler & Fergus [72].

Zeiler & Fergus (Sec. 2.1) project a unit's activity back to pixel space through a "deconvnet" attached
to each layer: *unpooling* with the max-pool switches recorded in the forward pass, *rectification* by a
ReLU, and *filtering* with the transposed filters.  The survey (Sec. III-C) notes after Simonyan et al.
[71] that this is the gradient of the class score except at ReLU layers: where back-propagation passes
``δ_in = δ_out · 1[z > 0]`` (``z`` the ReLU's forward input), DeconvNet passes

    δ_in = max(δ_out, 0),

ignoring the sign of the forward input.  Unpooling with switches and filtering with the transposed
kernels are exactly the gradients of max-pooling and convolution, so the whole projection is a backward
pass with that ReLU rule — what Captum's ``Deconvolution`` computes and :class:`DeconvNet` wraps.

Adaptations.  The signal starts at the logit of the explained class ``c`` (one-hot ``δ`` on the logits),
as for the other attribution methods here, rather than at a single feature-map activation as in [72];
the global-average-pool and linear head are passed by their gradients (they are linear).  The result is
signed and keeps every input channel; :func:`~nnxai.methods.attribution.gradient.saliency.saliency_map` gives the
survey's one-channel map.  Applies only to ReLU CNNs whose ReLUs are ``nn.ReLU`` modules (the project's
:class:`~nnxai.models.networks.ConvNet`), since the rule rewrites each module's backward pass.
"""

from __future__ import annotations

from nnxai.methods.attribution._captum import ReluRuleAttribution
from nnxai.registry import register


@register("deconvnet")
class DeconvNet(ReluRuleAttribution):
    """Backward pass of the class logit with the DeconvNet ReLU rule ``δ_in = max(δ_out, 0)`` [72]."""

    captum_class = "Deconvolution"
