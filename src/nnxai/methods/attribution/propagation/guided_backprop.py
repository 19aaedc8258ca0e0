"""Guided backpropagation, Springenberg, Dosovitskiy, Brox & Riedmiller [102].

Springenberg et al. (Sec. 3.4, Fig. 1) compare three ways of passing a signal ``δ_out`` back through a
ReLU whose forward input is ``z``:

* back-propagation (the gradient, [71]):   ``δ_in = δ_out · 1[z > 0]``;
* "deconvnet" (Zeiler & Fergus [72]):       ``δ_in = δ_out · 1[δ_out > 0]``;
* guided back-propagation:                 ``δ_in = δ_out · 1[z > 0] · 1[δ_out > 0]``.

As the survey puts it (Sec. III-C), guided backprop "combines the above two methods. It only takes into
account the gradients (the former method) that have positive error signal (the latter method) when
backpropagating through a ReLU layer."  Every other layer passes its ordinary gradient.

:class:`GuidedBackprop` wraps Captum's ``GuidedBackprop``, starting from the logit of the explained class
``c``; the result is signed and keeps every input channel.  Applies only to ReLU CNNs whose ReLUs are
``nn.ReLU`` modules, since the rule rewrites each module's backward pass.
"""

from __future__ import annotations

from nnxai.methods.attribution._captum import ReluRuleAttribution
from nnxai.registry import register


@register("guided_backprop")
class GuidedBackprop(ReluRuleAttribution):
    """Backward pass of the class logit, guided ReLU rule ``δ_out · 1[z > 0] · 1[δ_out > 0]`` [102]."""

    captum_class = "GuidedBackprop"
