"""LIME, Ribeiro, Singh & Guestrin [20]: a sparse-input linear model fitted to the classifier around ``x``.

LIME ([20] Sec. 3, Eq. 1) explains ``f`` at ``x`` by the interpretable model

    ξ(x) = argmin_{g ∈ G} L(f, g, π_x) + Ω(g),      L = Σ_{z ∈ Z} π_x(z) (f(z) − g(z'))²   ([20] Eq. 2),

over binary *interpretable* representations ``z' ∈ {0, 1}^d``: feature ``j`` of ``z'`` says whether the
``j``-th interpretable component of ``x`` is present in ``z``.  Components here are SLIC superpixels of the
image ([20] Sec. 3.1 uses superpixels for images; SLIC, Achanta et al., from scikit-image, is
deterministic, with ``n_segments`` and ``compactness``; grey images are replicated to three channels so that
SLIC compares colours in the same Lab space at the same compactness) or the columns of a table.  An absent
component takes the reference value (``fill``: the per-channel train mean, or 0; [20] greys superpixels
out), so ``z = z' ⊙ x + (1 − z') ⊙ x_ref`` per component.

Sampling ([20] Sec. 3.3): ``n_samples`` vectors ``z'`` whose entries are independent fair coins (the LIME
package's image sampler), the first one all ones (``x`` itself, as in the package).  Proximity: the
exponential kernel ``π_x(z) = exp(−D(x, z)² / σ²)`` ([20] Sec. 3.3) with ``σ = kernel_width`` and ``D`` the
cosine distance between ``z'`` and the all-ones ``x'``, ``D = 1 − sqrt(|z'|/d)`` (1 for ``z' = 0``), as the
LIME package computes it for images (the package then takes the kernel's square root, i.e. its width is
``σ√2`` in the paper's form).  ``f`` is the softmax probability of the explained class and
``G`` linear models with intercept, fitted by weighted ridge regression (``alpha``; 0: weighted least
squares; :func:`~nnxai.ops.surrogate.weighted_ridge`, scikit-learn's ``Ridge`` with sample weights), the LIME
package's default fitter for all ``d`` components (its K-Lasso selection, [20] Alg. 1, is not used: every
component gets a coefficient).  The result equals Captum's ``Lime`` run with this sampler, kernel and
``SkLearnRidge`` up to float rounding (tested), but the samples of all inputs of a batch go through the
model together (:func:`~._coalitions.coalition_scores`) instead of being built one by one in Python.

The attribution is the coefficient of each component at every pixel (every channel) of the superpixel, or
at the column; the intercepts go to ``meta["surrogate"]`` for the ``local_fidelity`` metric
(:mod:`nnxai.ops.surrogate`).  The coins of an input come from a generator seeded by its values and the
fitted seed (:func:`~nnxai.ops.noise.per_input_normals`); the reference is learnt by :meth:`Lime.fit`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from nnxai.methods.attribution._coalitions import coalition_scores
from nnxai.methods.attribution._reference import ReferenceAttribution
from nnxai.methods.base import AttributionMethod
from nnxai.ops.maps import REFERENCES
from nnxai.ops.noise import per_input_normals
from nnxai.ops.superpixels import compose, superpixels
from nnxai.ops.surrogate import LocalSurrogate, Neighbourhood
from nnxai.params import Choice, Float, Int
from nnxai.registry import register


def coin_samples(x: torch.Tensor, n_features: int, n_samples: int, seed: int) -> torch.Tensor:
    """``(n_samples, n_features)`` fair coins in {0, 1} seeded by the input ``x``; the first row all ones."""
    coins = (per_input_normals(x, n_samples * n_features, seed) > 0).reshape(n_samples, n_features)
    coins[0] = True
    return coins.to(x.dtype)


def proximity(coins: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """``exp(−D²/σ²)`` with ``D`` the cosine distance of each row of ``coins`` to all ones (1 for zeros)."""
    present = coins.double().sum(-1)
    distance = 1 - (present / coins.shape[-1]).sqrt()
    return torch.exp(-distance ** 2 / kernel_width ** 2)


@register("lime")
class Lime(LocalSurrogate, ReferenceAttribution):
    """Coefficients of LIME's weighted linear model over superpixels (columns), [20] Eq. 2.

    ``batch_size`` inputs per call of :meth:`attribute`; each input fits its own linear model.
    """
    model_agnostic = True    # queries the model's outputs only

    reference_param = "fill"
    parameters = {**AttributionMethod.parameters,
                  "fill": Choice("value x_ref of an absent component (z = z' ⊙ x + (1 − z') ⊙ x_ref): zeros, or "
                                 "the per-channel (per-feature) mean of the train split", REFERENCES),
                  "n_segments": Int("number of SLIC superpixels aimed at, the components of z' (images only)",
                                    low=1),
                  "compactness": Float("SLIC's balance of colour and space (higher: squarer superpixels; images "
                                       "only)", low=0, low_open=True),
                  "n_samples": Int("perturbed samples |Z| per input ([20] Sec. 3.3), at least 2 to fit a line",
                                   low=2),
                  "kernel_width": Float("width σ of the proximity kernel π_x = exp(−D²/σ²) on the cosine "
                                        "distance ([20] Sec. 3.3)", low=0, low_open=True),
                  "alpha": Float("ridge penalty of the linear fit of [20] Eq. 2 (0: weighted least squares)",
                                 low=0)}
    #: The intercepts ``b_x`` of the inputs explained so far, collected during :meth:`_run` only.
    def feature_index(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:
            return torch.arange(len(x), device=x.device)
        if x.dim() != 3:
            raise ValueError(f"method {self.spec.id!r} explains (C, H, W) images or (F,) table rows, got one input "
                             f"of shape {tuple(x.shape)}")
        segments = superpixels(x, self.params["n_segments"], float(self.params["compactness"]))
        return segments.expand_as(x)

    def neighbourhoods(self, model: nn.Module, inputs: torch.Tensor, n_samples: int, seed: int,
                       pool: torch.Tensor) -> Iterator[Neighbourhood]:
        """For each input ``x``, ``n_samples`` fresh coin vectors seeded by ``seed`` and ``x``, composed with
        the fitted reference and weighted by the proximity kernel; ``pool`` is unused."""
        width = float(self.params["kernel_width"])
        for x in inputs:
            index = self.feature_index(x)
            coins = coin_samples(x, int(index.max()) + 1, n_samples, seed)
            reference = self._default_reference(x[None])
            yield Neighbourhood(coins, compose(coins, index, x, reference), proximity(coins, width))

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        if inputs.dim() not in (2, 4):
            raise ValueError(f"method {self.spec.id!r} explains (N, C, H, W) images or (N, F) tables, got inputs "
                             f"of shape {tuple(inputs.shape)}")
        reference = self.reference_for(inputs, baselines)
        if len(inputs) == 0:
            return torch.zeros_like(inputs)
        n_samples, alpha = self.params["n_samples"], float(self.params["alpha"])
        width = float(self.params["kernel_width"])
        indices = [self.feature_index(x) for x in inputs.detach()]
        coins = [coin_samples(x, int(index.max()) + 1, n_samples, self.seed)
                 for x, index in zip(inputs.detach(), indices)]
        masks = torch.zeros(len(inputs), n_samples, max(c.shape[1] for c in coins), dtype=torch.bool,
                            device=inputs.device)
        for mask, c in zip(masks, coins):
            mask[:, :c.shape[1]] = c > 0
        scores = coalition_scores(model, inputs, reference, masks, torch.stack(indices), target, "probability")
        out = [self.surrogate_map(c, score, proximity(c, width), alpha, index)
               for c, index, score in zip(coins, indices, scores)]
        return torch.stack(out).to(inputs.dtype)
