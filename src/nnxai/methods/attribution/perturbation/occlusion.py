"""Occlusion sensitivity, Zeiler & Fergus [72] (Sec. 4.2), as sensitivity analysis [108], [109].

The survey (Sec. III-C) measures the importance of features by "how much the model output will change
upon the change of a feature (or features)", occlusion being one such change [72], [108], [109].  Zeiler &
Fergus "systematically occlud[e] different portions of the input image with a grey square, and monitor[]
the output of the classifier" as a function of the square's position (their Fig. 7).

Definition used here (Captum's ``Occlusion``).  A ``window × window`` square spanning *all* channels slides
over the image with step ``stride``; for each position ``W`` the occluded image replaces the pixels of
``W`` by the reference ``r`` (``fill``) and the drop of the explained logit is

    d_W(x) = S_c(x) − S_c(x ⊙ (1 − m_W) + r ⊙ m_W),

with ``m_W`` the window's mask.  The attribution of input value ``x_i`` is the *mean* drop over the
windows that cover it (Captum divides the summed drops by the coverage count):

    A_i(x) = Σ_{W ∋ i} d_W(x) / #{W : W ∋ i},

the same for every channel of a pixel.  When ``(H − window)`` is not a multiple of ``stride`` Captum adds
one last, cropped window at the bottom/right edge, so every pixel is covered.  ``S_c`` is the logit (Zeiler
& Fergus plot the class probability).

Tables.  An MLP's input has no spatial layout, so each feature is occluded alone (window one feature,
stride 1; ``window`` and ``stride`` apply to images only): ``A_i = S_c(x) − S_c(x with x_i ← r_i)``, which
for a linear model is ``w_{c,i} (x_i − r_i)``.

Reference.  ``fill="zero"``: zeros.  ``fill="mean"``: the per-channel mean of the *train* split (per
feature for tables), the "grey square" of [72] for normalised images.  As for Integrated Gradients,
:meth:`Occlusion.fit` learns it from the train split and ``explain`` stores it in
``meta["baseline"] = {"kind", "per_channel"}``.
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.methods.attribution._reference import ReferenceAttribution
from nnxai.methods.base import AttributionMethod
from nnxai.ops.maps import REFERENCES
from nnxai.params import Choice, Int, ParamError
from nnxai.registry import register

#: Most occluded inputs in one forward pass; bounds memory (results change only by float rounding).
PASS_INPUTS = 512


def window_counts(size: int, window: int, stride: int) -> int:
    """Window positions along one axis of ``size`` values, Captum's ``ceil((size − window)/stride) + 1``."""
    return -(-(size - window) // stride) + 1


@register("occlusion")
class Occlusion(ReferenceAttribution):
    """Mean drop of the class logit when a sliding square (one feature for tables) is filled [72]."""
    model_agnostic = True    # queries the model's outputs only

    reference_param = "fill"
    parameters = {**AttributionMethod.parameters,
                  "window": Int("side of the occluding grey square of [72] in pixels (images only)", low=1),
                  "stride": Int("step between square positions in pixels, at most `window` (images only)", low=1),
                  "fill": Choice("what replaces the occluded values, the reference r: zeros, or the per-channel "
                                 "(per-feature) mean of the train split", REFERENCES)}

    @classmethod
    def check_combination(cls, params: dict) -> None:
        if params["stride"] > params["window"]:
            raise ParamError(f"method {cls.spec.id!r}: parameter 'stride' ({params['stride']}) must not exceed "
                             f"'window' ({params['window']}), or some pixels would never be occluded")

    def window_shape(self, inputs: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Captum's ``(sliding_window_shapes, strides)``: a square over all channels, or one feature."""
        if inputs.dim() == 2:
            return (1,), (1,)
        if inputs.dim() != 4:
            raise ValueError(f"method {self.spec.id!r} explains (N, C, H, W) images or (N, F) tables, got inputs "
                             f"of shape {tuple(inputs.shape)}")
        window, stride = self.params["window"], self.params["stride"]
        if window > min(inputs.shape[2:]):
            raise ValueError(f"method {self.spec.id!r}: parameter 'window' ({window}) exceeds the image size "
                             f"{tuple(inputs.shape[2:])}")
        return (inputs.shape[1], window, window), (1, stride, stride)

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        shapes, strides = self.window_shape(inputs)
        reference = self.reference_for(inputs, baselines)
        n_windows = 1
        for size, w, s in zip(inputs.shape[1:], shapes, strides):
            n_windows *= window_counts(size, w, s)
        size = self.params["batch_size"]
        from captum.attr import Occlusion as CaptumOcclusion  # lazy, see _captum.py

        occlusion = CaptumOcclusion(model)
        chunks = []
        for start in range(0, len(inputs), size):
            part = slice(start, start + size)
            ref = reference if len(reference) == 1 else reference[part]
            x = inputs[part].detach()
            per_eval = max(1, min(n_windows, PASS_INPUTS // len(x)))
            with torch.no_grad():
                out = occlusion.attribute(x, sliding_window_shapes=shapes, strides=strides,
                                          baselines=ref.detach(), target=target[part],
                                          perturbations_per_eval=per_eval)
            chunks.append(out.detach().to(inputs.dtype))  # Captum returns float32 after its count division
        return torch.cat(chunks)
