"""DeepSHAP (DeepLIFT-Shap), Lundberg & Lee (survey [105], Sec. 4.2 "Deep SHAP"; Captum's ``DeepLiftShap``).

Lundberg & Lee approximate SHAP values of a deep network with DeepLIFT [112]: with the reference set to
the expected input, DeepLIFT's multipliers, composed along the network by the chain rule, linearise every
unit and give "compositional approximations" of the SHAP values.  Their released implementation (and
Captum's ``DeepLiftShap``) takes the expectation over a *background set* ``B`` instead of plugging in one
expected input: the explanation is the average of DeepLIFT (rescale rule, [112] Sec. 3.5.2) against each
background input,

    φ_i(x) = (1/|B|) Σ_{b ∈ B} C_{Δx_i Δf_c}(x; b),

so that, with DeepLIFT's summation-to-delta, Σ_i φ_i(x) = f_c(x) − (1/|B|) Σ_b f_c(b) wherever DeepLIFT is
exact (MLPs; on the ConvNet its max-pools make it approximate, see :mod:`.deeplift`).  For a linear model
``f_c = w·x + c`` this is ``w ⊙ (x − E_B[b])``, the exact SHAP value with independent features ("Linear
SHAP", their Corollary 1).  ``f_c`` is the explained class's logit.

Background.  :meth:`DeepShap.fit` draws ``n_background`` inputs of the train split with a generator
seeded by the fitted seed (the run's seed) and ``explain`` records their indices in
``meta["background_indices"]``.  ``baselines`` passed to :meth:`DeepShap.attribute` *are* the background
set (each input is explained against all its rows) and replace the fitted one.
``completeness`` does not score DeepSHAP: its reference is a distribution, not one input.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from nnxai.methods.base import AttributionMethod
from nnxai.params import Int
from nnxai.registry import register


def background_indices(n_train: int, n_background: int, seed: int) -> torch.Tensor:
    """Sorted positions of ``min(n_background, n_train)`` train inputs, drawn with a generator seeded by ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.sort(torch.randperm(n_train, generator=gen)[:n_background]).values


@register("deep_shap")
class DeepShap(AttributionMethod):
    """DeepLIFT (rescale) of the class logit averaged over a background set of train inputs [105].

    ``batch_size`` inputs per call to Captum, each expanded to ``n_background`` rows.

    Attributes
    ----------
    background_indices_ : torch.Tensor
        Sorted positions in the train split of the background inputs, learnt by :meth:`fit`.
    background_ : torch.Tensor
        ``(n_background, ...)`` the background set ``B``.
    """

    parameters = {**AttributionMethod.parameters,
                  "n_background": Int("train inputs in the background set B over which DeepLIFT is averaged "
                                      "([105] Sec. 4.2)", low=1)}
    activations = frozenset({"relu"})
    uses_baseline = True
    baselines_are_background = True

    def _fit(self, model: nn.Module, train) -> None:
        self.background_indices_ = background_indices(len(train.x), self.params["n_background"], self.seed)
        self.background_ = train.x[self.background_indices_]

    def _run(self, ctx):
        record, n_inputs = super()._run(ctx)
        record.meta["background_indices"] = [int(i) for i in self.background_indices_]
        return record, n_inputs

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        owner = f"method {self.spec.id!r}"
        if any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules()):
            raise ValueError(f"{owner}: in-place nn.ReLU(inplace=True) modules cannot be hooked; use inplace=False")
        background = getattr(self, "background_", None) if baselines is None else baselines
        if background is None:
            raise RuntimeError(f"{owner}: the background set is drawn from the train split: call "
                               "fit(model, train_split) first, or pass baselines (the background inputs) to "
                               "attribute()")
        background = torch.as_tensor(background, dtype=inputs.dtype, device=inputs.device).detach()
        if len(background) == 1:      # Captum asks for two rows or more; the mean over copies is the same
            background = background.expand(2, *background.shape[1:])
        from captum.attr import DeepLiftShap  # lazy, see gradient.py

        explainer = DeepLiftShap(model, multiply_by_inputs=True)
        size = self.params["batch_size"]
        out = []
        with warnings.catch_warnings():   # Captum warns that it hooks the nonlinearities; we know
            warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
            for part, t in zip(inputs.detach().split(size), target.split(size)):
                leaf = part.clone().requires_grad_(True)
                out.append(explainer.attribute(leaf, baselines=background.clone(), target=t).detach())
        return torch.cat(out).to(inputs.dtype)
