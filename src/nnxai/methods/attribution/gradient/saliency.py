"""Gradient saliency: the partial derivatives of the class score, Simonyan et al. [71], Baehrens et al. [137].

The survey's Table IV writes the *Gradient* attribution of feature ``x_i`` for class ``c`` as
``∂S_c(x)/∂x_i`` and (Sec. III-C) describes the saliency map of [71] as "the maximum absolute values of
the partial derivatives over all channels".  Simonyan et al. (Sec. 3.1, "class saliency extraction")
compute ``w = ∂S_c/∂I`` at the image ``I_0`` by one backward pass and take ``M_ij = max_ch |w_(i,j,ch)|``;
Baehrens et al. call the same vector the *explanation vector* of a classifier.

:class:`Gradient` wraps Captum's ``Saliency`` with ``abs=True``: :meth:`Gradient.attribute` returns
``|∂S_c/∂x|`` shaped like the input (one value per channel, so that the record keeps everything), and
:func:`saliency_map` reduces any attribution to the survey's map by the maximum over the channel axis.
``S_c`` is the logit of class ``c`` (the unnormalised class score of [71]), not its softmax probability.

The reduction to the survey's map, :func:`~nnxai.ops.maps.saliency_map`, is shared with the metrics.
"""

from __future__ import annotations


from nnxai.methods.attribution._captum import CaptumAttribution
from nnxai.registry import register


@register("gradient")
class Gradient(CaptumAttribution):
    """Saliency ``|∂S_c(x)/∂x|`` of [71], [137] (Captum ``Saliency``, ``abs=True``).

    Notes
    -----
    No reference input: ``baselines`` passed to :meth:`attribute` are ignored.  The channel-wise map is
    returned; the survey's single-channel map is :func:`saliency_map` of it.
    """

    captum_class = "Saliency"

    def captum_kwargs(self):
        return {"abs": True}
