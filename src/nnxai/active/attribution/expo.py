"""ExpO, Plumb, Al-Shedivat, Cabrera, Perer, Xing & Talwalkar [120]: a network trained so that its local
linear explanations are faithful (neighbourhood fidelity) or stable, and those explanations.

[120] scores a local explanation ``e(x)`` of a model ``f`` by two quantities over a neighbourhood ``N_x``:

    NF(f, e) = E_{x~p} E_{x'~N_x} [(e(x)(x') − f(x'))²]        (neighbourhood fidelity, [120] Eq. 1)
    S(e)     = E_{x~p} E_{x'~N_x} [‖e(x) − e(x')‖²₂]            (stability, [120] Eq. 2)

and regularises ``f`` at training time with a differentiable estimate of either, over a regularisation
neighbourhood ``N_x^reg``:

- **ExpO-Fidelity** ([120] Alg. 1): draw ``x'_1..x'_m ~ N_x^reg``, fit the least-squares linear model
  ``β_x(θ) = argmin_β Σ_i (f_θ(x'_i) − β·[1, x'_i])²`` in closed form, and penalise its mean squared residual
  ``(1/m) Σ_i (f_θ(x'_i) − β_x(θ)·[1, x'_i])²``.  With ``X`` the ``m × (d+1)`` design (rows ``[1, x'_i]``) and
  ``H = X X⁺`` its hat matrix, the residual is ``(I − H) f_θ(X)``: linear in the outputs, so the penalty is
  differentiable through the network; ``H`` depends only on the sampled points (as in the authors' code,
  where the projection matrix is a stop-gradient);
- **ExpO-Stability** ([120] Sec. 3): ``(1/m) Σ_i ‖f_θ(x'_i) − f_θ(x)‖²₂``, the local variation of the output
  that bounds the variation of its explanations.

Choices made here (the paper's tabular experiments standardise the features; it does not regularise images
with Alg. 1, whose linear fit needs ``m > d + 1`` neighbours, and treats high dimensions with a 1-D variant):

- **Neighbourhood.**  ``N_x^reg`` is Gaussian in a perturbation space of ``d`` features: each column of a
  table, or each channel of each ``patch × patch`` cell of an image (the grid of MAPLE's features,
  :func:`~nnxai.methods.attribution.perturbation.maple.grid_index`; 48 cells on 3×32×32 at patch 8).  A
  neighbour is ``x' = x + U z`` with ``U`` spreading the offset ``z_j`` over every element of feature ``j``
  and ``z_j ~ N(0, (σ s_j)²)``, ``s_j`` the train split's standard deviation of the channel (column) of
  feature ``j``: σ is in the units of the paper's standardised features (its ``N_x^reg``: σ = 0.5).  On a
  table this is exactly the paper's ``N(x, σ²I)`` on standardised columns.  The local linear model is fitted
  on ``z`` (equivalently on ``x'`` restricted to that subspace).
- **Output.**  ``f`` is the network's vector of class probabilities (softmax), the score the explanation
  below and the ``local_fidelity`` metric model (:data:`~nnxai.ops.surrogate.SURROGATE_SCORE`); the
  penalty is the mean over neighbours and classes ([120]'s code averages the squared residual over the
  outputs too, on the raw outputs it explains).
- **Cost.**  Alg. 1 regularises a separate batch of 16 inputs with ``max(20, 2d)`` neighbours each; here
  ``n_inputs`` inputs of the training batch (the first ones: the batch is a seeded random sample) are
  regularised on every ``every``-th step with ``n_neighbours`` each (at least ``d + 2``, so that the fit
  leaves a residual), so the extra forward and backward passes per step are
  ``n_inputs · n_neighbours / every`` images.  The weight is a fixed ``weight`` (the paper rescales its ``c``
  by the ratio of the initial losses, which is unbounded where the untrained network is nearly linear).

The network is the base network, unchanged (ExpO is model-agnostic), so every passive method runs on it.
Its own explanation (:class:`ExpoExplanation`) is the paper's: the local linear model of the class
probability fitted by least squares on ``n_samples`` neighbours drawn from the same kind of neighbourhood.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from nnxai.active.base import ActiveMethod, register_active
from nnxai.methods.attribution.perturbation._train_data import check_input_shape, train_inputs
from nnxai.methods.attribution.perturbation.maple import grid_index
from nnxai.methods.base import AttributionMethod
from nnxai.ops.noise import per_input_normals
from nnxai.ops.surrogate import LocalSurrogate, Neighbourhood, coefficients_from_map
from nnxai.params import Choice, Float, Int, ParamError
from nnxai.registry import register

#: Neighbours of one input in one forward pass of the explanation (bounds memory, not results).
PASS_INPUTS = 512

SIGMA = Float("standard deviation σ of the Gaussian offsets of N_x, in units of each channel's (column's) "
              "train-split standard deviation (the paper's standardised features; its N_x^reg: 0.5)",
              low=0, low_open=True)
PATCH = Int("side of the image cells whose per-channel offsets span the perturbation space (images only; "
            "tables perturb each column)", low=1)


# -- the neighbourhood ----------------------------------------------------------------------------------------

def perturbation_space(shape: tuple[int, ...], patch: int) -> tuple[torch.Tensor, int]:
    """``(index, d)``: the feature (0..d−1) of every element of an input of ``shape``, and ``d``."""
    index = grid_index(tuple(shape), patch)
    return index, int(index.max()) + 1


def feature_scales(x_train: torch.Tensor, index: torch.Tensor, d: int) -> torch.Tensor:
    """``s_j``: the train split's standard deviation of the channel (column) of each feature; float64 (d,)."""
    x = x_train.detach().double()
    if x.dim() > 2:
        per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).std(dim=1)
        element = per_channel.reshape(-1, *([1] * (x.dim() - 2))).expand(x.shape[1:])
    else:
        element = x.std(dim=0)
    return coefficients_from_map(element.to(index.device), index, d)


def spread(offsets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``U z``: offsets ``(..., d)`` spread over the elements of their features, ``(..., *index.shape)``."""
    return offsets[..., index.reshape(-1)].reshape(*offsets.shape[:-1], *index.shape)


def offsets_like(x: torch.Tensor, n: int, d: int, scales: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``n`` offsets ``z ~ N(0, diag(σ s)²)`` of the one input ``x``, seeded by ``x`` and ``seed``; (n, d)."""
    normals = per_input_normals(x.detach().cpu(), n * d, seed).double().reshape(n, d)
    return (normals * (sigma * scales.cpu())).to(x.device)


def residual_projector(offsets: torch.Tensor) -> torch.Tensor:
    """``I − H``, ``H = X X⁺`` the hat matrix of the design ``X = [1, z]``: ``offsets`` (R, m, d) → (R, m, m).

    Computed without gradient (it depends on the sampled points only); the pseudo-inverse keeps it defined
    where a feature never moves (a constant channel).
    """
    with torch.no_grad():
        z = offsets.double()
        design = torch.cat([torch.ones_like(z[..., :1]), z], dim=-1)
        hat = design @ torch.linalg.pinv(design)
        return torch.eye(z.shape[1], dtype=z.dtype, device=z.device) - hat


def fidelity_penalty(outputs: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """ExpO-Fidelity ([120] Alg. 1): the mean squared residual of the least-squares linear fit of
    ``outputs`` (R, m, K) on ``[1, offsets]`` (R, m, d), averaged over inputs, neighbours and outputs."""
    projector = residual_projector(offsets).to(outputs.dtype)
    return (projector @ outputs).pow(2).mean()


def stability_penalty(outputs: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """ExpO-Stability ([120] Sec. 3): ``(1/m) Σ_i ‖f(x'_i) − f(x)‖²``, ``outputs`` (R, m, K), ``centre``
    (R, K), averaged over the R inputs."""
    return (outputs - centre[:, None]).pow(2).sum(-1).mean()


# -- the training-time part ---------------------------------------------------------------------------------

@register_active
class Expo(ActiveMethod):
    """ExpO-Fidelity or ExpO-Stability added to the cross-entropy ([120] Alg. 1; module docstring)."""

    id = "expo"
    description = "ExpO: neighbourhood-fidelity / stability regulariser [120]"
    architectures = frozenset({"cnn", "mlp"})
    parameters = {
        "regulariser": Choice("fidelity: ExpO-Fidelity, the residual of the local least-squares fit ([120] "
                              "Alg. 1); stability: ExpO-Stability, the local variation of the output",
                              ("fidelity", "stability")),
        "weight": Float("weight of the penalty added to the batch's cross-entropy", low=0, low_open=True),
        "sigma": SIGMA,
        "patch": PATCH,
        "n_neighbours": Int("neighbours m drawn per regularised input (fidelity needs m >= d + 2; [120]'s "
                            "code: max(20, 2d))", low=2),
        "n_inputs": Int("inputs of the training batch regularised per regularised step ([120]: 16, in a "
                        "separate batch)", low=1),
        "every": Int("regularise every k-th optimiser step (1: every step)", low=1),
    }

    def setup(self, model, train, info, device, seed):
        x_train = train[0]
        self.index_, self.d_ = perturbation_space(tuple(x_train.shape[1:]), self.params["patch"])
        if self.params["regulariser"] == "fidelity" and self.params["n_neighbours"] < self.d_ + 2:
            raise ParamError(f"active method 'expo': n_neighbours {self.params['n_neighbours']} cannot leave a "
                             f"residual of a linear fit on d = {self.d_} features (+ intercept); give at least "
                             f"{self.d_ + 2} (the paper's rule: max(20, 2d) = {max(20, 2 * self.d_)}), or a "
                             "larger patch")
        self.index_ = self.index_.to(device)
        self.scales_ = feature_scales(x_train, self.index_.cpu(), self.d_).float().to(device)
        self.generator_ = torch.Generator().manual_seed(int(seed) + 120)
        self.step_, self.values_ = 0, []

    def penalty(self, model, inputs, targets, logits):
        self.step_ += 1
        if (self.step_ - 1) % self.params["every"]:
            return None
        x = inputs[:self.params["n_inputs"]]
        r, m = len(x), self.params["n_neighbours"]
        normals = torch.randn((r, m, self.d_), generator=self.generator_).to(x.device)
        offsets = normals * (float(self.params["sigma"]) * self.scales_)
        neighbours = x[:, None] + spread(offsets, self.index_).to(x.dtype)
        outputs = model(neighbours.reshape(r * m, *x.shape[1:])).softmax(dim=1).reshape(r, m, -1)
        if self.params["regulariser"] == "fidelity":
            value = fidelity_penalty(outputs, offsets)
        else:
            value = stability_penalty(outputs, logits[:r].softmax(dim=1))
        self.values_.append(float(value.detach()))
        return float(self.params["weight"]) * value

    def after_epoch(self, model, epoch):
        values, self.values_ = self.values_, []
        return {f"expo_{self.params['regulariser']}": float(np.mean(values)) if values else float("nan")}

    def finish(self, model, train, val, device):
        return {"regulariser": self.params["regulariser"], "n_features": self.d_,
                "extra_images_per_step": self.params["n_inputs"] * self.params["n_neighbours"] / self.params["every"]}


# -- the network's own explanation --------------------------------------------------------------------------

@register("expo")
class ExpoExplanation(LocalSurrogate, AttributionMethod):
    """The local linear model [120] explains an ExpO network with: least squares of the class probability on
    ``n_samples`` Gaussian offsets of the perturbation space (module docstring), its coefficient ``β_j`` at
    every element of feature ``j`` and its intercept in ``meta["surrogate"]``.

    Attributes
    ----------
    scales_ : torch.Tensor
        ``s_j``, the train split's standard deviation of each feature's channel (column), float64 (d,).
    input_shape_ : tuple of int
        Shape of one train input; the inputs explained must have it.
    """

    only_models = frozenset({"expo"})
    parameters = {**AttributionMethod.parameters,
                  "n_samples": Int("neighbours x' ~ N_x each local linear model is fitted on (at least d + 2)",
                                   low=3),
                  "sigma": SIGMA,
                  "patch": PATCH}

    @classmethod
    def check_run(cls, params, info, n_test):
        _, d = perturbation_space(tuple(info.input_shape), params["patch"])
        if params["n_samples"] < d + 2:
            return (f"n_samples {params['n_samples']} cannot fit a linear model on d = {d} features with a "
                    f"residual; give at least {d + 2}")
        return None

    def _fit(self, model: nn.Module, train: Any) -> None:
        x_train = train_inputs(f"method {self.spec.id!r}", model, train)
        self.input_shape_ = tuple(x_train.shape[1:])
        index, d = perturbation_space(self.input_shape_, self.params["patch"])
        self.scales_ = feature_scales(x_train.cpu(), index, d)

    def feature_index(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (1, 3):
            raise ValueError(f"method {self.spec.id!r} explains (C, H, W) images or (F,) table rows, got one input "
                             f"of shape {tuple(x.shape)}")
        return grid_index(tuple(x.shape), self.params["patch"]).to(x.device)

    def _draw(self, x: torch.Tensor, n_samples: int, seed: int) -> Neighbourhood:
        index = self.feature_index(x)
        offsets = offsets_like(x, n_samples, len(self.scales_), self.scales_, float(self.params["sigma"]), seed)
        inputs = x.detach()[None] + spread(offsets, index).to(x.dtype)
        return Neighbourhood(offsets, inputs, torch.ones(n_samples, dtype=torch.float64, device=x.device))

    def neighbourhoods(self, model: nn.Module, inputs: torch.Tensor, n_samples: int, seed: int,
                       pool: torch.Tensor) -> Iterator[Neighbourhood]:
        """For each input ``x``, ``n_samples`` fresh offsets seeded by ``seed`` and ``x``, equally weighted
        (N_x is a sampling law, not a kernel); ``pool`` is unused."""
        for x in inputs:
            yield self._draw(x, n_samples, seed)

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        check_input_shape(f"method {self.spec.id!r}", inputs, self.input_shape_)
        out = []
        for x, c in zip(inputs.detach(), target.tolist()):
            hood = self._draw(x, self.params["n_samples"], self.seed)
            with torch.no_grad():
                probs = torch.cat([model(part).double().softmax(dim=1)[:, c]
                                   for part in hood.inputs.split(PASS_INPUTS)])
            out.append(self.surrogate_map(hood.features, probs, hood.weights, 0.0, self.feature_index(x)))
        if not out:
            return torch.zeros_like(inputs)
        return torch.stack(out).to(device=inputs.device, dtype=inputs.dtype)
