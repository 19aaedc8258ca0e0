"""Gradient ⊙ Input, the row "Gradient ⊙ Input" of the survey's Table IV (after Ancona et al. [139]).

Table IV writes the attribution of feature ``x_i`` for class ``c`` as

    R_i^c(x) = x_i · ∂S_c(x)/∂x_i,

the element-wise product of the input with the gradient saliency of [71].  Ancona et al. [139] (Sec. 2
and Prop. 1–2) introduce it as the simplest "multiply-by-input" attribution and show that ε-LRP and
DeepLIFT (Rescale) reduce to it on ReLU networks without biases at a zero reference; on a linear model it
equals Integrated Gradients with a zero baseline, ``x_i · W_(c,i)``.  ``S_c`` is the class logit.

:class:`GradientXInput` wraps Captum's ``InputXGradient``; the sign is kept (positive = evidence for
class ``c``), unlike the ``|·|`` of the plain ``gradient`` saliency.
"""

from __future__ import annotations

from nnxai.methods.attribution._captum import CaptumAttribution
from nnxai.registry import register


@register("gradient_x_input")
class GradientXInput(CaptumAttribution):
    """Signed ``x ⊙ ∂S_c(x)/∂x`` of Table IV / [139] (Captum ``InputXGradient``).

    Notes
    -----
    No reference input: ``baselines`` passed to :meth:`attribute` are ignored (the implicit reference is
    zero, which is why the product with ``x`` is taken).
    """

    captum_class = "InputXGradient"
