"""Prediction difference analysis with conditional sampling, Zintgraf, Cohen, Adel & Welling [108].

The relevance of a feature (set) ``x_i`` for class ``c`` is the *weight of evidence* ([108] Sec. 2,
after Robnik-Šikonja & Kononenko)

    WE_i(c|x) = log₂ odds(c|x) − log₂ odds(c|x_\\i),      odds(c|x) = p(c|x) / (1 − p(c|x)),

where ``p(c|x)`` is the model's softmax probability and the prediction without ``x_i`` marginalises it out,
``p(c|x_\\i) = Σ_{x_i} p(x_i|x_\\i) p(c|x_\\i, x_i)`` ([108] Eq. 1), estimated from ``n_samples`` draws of
``x_i`` from its *conditional* distribution given the rest ([108] Sec. 3.1, "conditional sampling"):

    p(c|x_\\i) ≈ (1/S) Σ_{s=1}^{S} p(c | x with x_i ← x̃_i^(s)),      x̃_i^(s) ~ p(x_i | x_\\i).

Both probabilities pass through the Laplace correction ``p ← (p N + 1) / (N + K)`` ([108] Sec. 2), with
``N`` the size of the train split and ``K`` the number of classes, so that the log-odds stay finite.
Positive WE: the feature is evidence *for* ``c``; negative: against.

Images ([108] Sec. 3.1–3.2).  ``x_i`` is a ``window`` × ``window`` patch spanning every channel (``k``),
resampled given the surrounding ``l × l`` patch, ``l = k + 2·padding``, from one multivariate normal fitted
to the ``l × l × C`` windows of the train images (one Gaussian for every location; the fitting windows are
taken at every ``k``-th position, to bound the cost; :mod:`._conditional_gaussian` gives the conditional).
Where the ``l × l`` window crosses the image border, the conditioning uses only its in-image part (the
marginal of the same Gaussian).  *Multivariate analysis*: the patch slides with step ``stride``
(``stride < window`` makes patches overlap; a last patch is added at the bottom/right edge so every pixel is
covered) and the relevance of a pixel is the mean WE of the patches that contain it ([108] Sec. 3.2); it is
the same for every channel.

Tables.  Each feature alone is resampled given all the others, from a normal fitted to the train split
(univariate analysis); ``window``, ``padding`` and ``stride`` apply to images only.

:meth:`PredictionDifference.fit` fits the Gaussian(s) to the train split once per model; the draws for an
input come from a generator seeded by its values and the fitted seed
(:func:`~nnxai.ops.noise.per_input_normals`), so results do not depend on batching and the global RNG is
untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nnxai.methods.attribution.perturbation._conditional_gaussian import (Conditional, Gaussian, conditional,
                                                                          fit_gaussian)
from nnxai.methods.attribution.perturbation._train_data import check_input_shape, train_inputs
from nnxai.methods.base import AttributionMethod
from nnxai.ops.noise import per_input_normals
from nnxai.params import Int, ParamError
from nnxai.registry import register

#: Most perturbed inputs in one forward pass; bounds memory (results change only by float rounding).
PASS_INPUTS = 1024
#: Train images per chunk when accumulating the window covariance.
FIT_CHUNK = 256


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Top/left offsets of the sliding patches along one axis, the last one flush with the edge."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def laplace(p: torch.Tensor, n_train: int, n_classes: int) -> torch.Tensor:
    """Laplace-corrected probability ``(p N + 1) / (N + K)`` of [108] Sec. 2."""
    return (p * n_train + 1) / (n_train + n_classes)


def weight_of_evidence(p_full: torch.Tensor, p_without: torch.Tensor, n_train: int, n_classes: int) -> torch.Tensor:
    """``log₂ odds(c|x) − log₂ odds(c|x_\\i)`` ([108] Sec. 2) of Laplace-corrected probabilities."""
    a, b = laplace(p_full.double(), n_train, n_classes), laplace(p_without.double(), n_train, n_classes)
    return torch.log2(a / (1 - a)) - torch.log2(b / (1 - b))


def fit_window_gaussian(x_train: torch.Tensor, side: int, step: int) -> Gaussian:
    """Normal of the ``side × side × C`` windows of ``x_train`` (N, C, H, W) at every ``step``-th position,
    coordinates in (channel, row, column) order; accumulated in float64 over chunks of images."""
    total, outer, count = 0.0, 0.0, 0
    for chunk in x_train.split(FIT_CHUNK):
        windows = chunk.double().unfold(2, side, step).unfold(3, side, step)     # (n, C, rows, cols, side, side)
        windows = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, chunk.shape[1] * side * side)
        total = total + windows.sum(0)
        outer = outer + windows.T @ windows
        count += len(windows)
    mean = total / count
    cov = (outer - count * torch.outer(mean, mean)) / (count - 1)
    return Gaussian(mean, cov, count)


@dataclass(frozen=True)
class PatchGroup:
    """Patches whose ``l × l`` windows lie alike across the border, hence share one conditional."""

    positions: torch.Tensor   # (P,) patch numbers, in raster order
    inner: torch.Tensor       # (P, d1) flat image indices of each patch (all channels)
    outer: torch.Tensor       # (P, d2) flat image indices of the in-image rest of each window
    law: Conditional


def patch_groups(gaussian: Gaussian, shape: tuple[int, int, int], k: int, pad: int, stride: int,
                 ) -> tuple[list[PatchGroup], torch.Tensor]:
    """The patch groups of an image of ``shape`` (C, H, W), and the pixel mask (P, H·W) of every patch."""
    C, H, W = shape
    side = k + 2 * pad
    ch, ii, jj = torch.meshgrid(torch.arange(C), torch.arange(side), torch.arange(side), indexing="ij")
    ch, ii, jj = ch.flatten(), ii.flatten(), jj.flatten()
    in_patch = (ii >= pad) & (ii < pad + k) & (jj >= pad) & (jj < pad + k)
    corners = [(r, c) for r in window_starts(H, k, stride) for c in window_starts(W, k, stride)]
    members: dict[tuple[int, int, int, int], list[int]] = {}
    for number, (r, c) in enumerate(corners):
        cut = (max(0, pad - r), max(0, r + k + pad - H), max(0, pad - c), max(0, c + k + pad - W))
        members.setdefault(cut, []).append(number)
    groups = []
    for cut, numbers in sorted(members.items()):
        inside = (ii >= cut[0]) & (ii < side - cut[1]) & (jj >= cut[2]) & (jj < side - cut[3])
        inner_w, outer_w = torch.nonzero(in_patch).flatten(), torch.nonzero(inside & ~in_patch).flatten()
        rows = torch.tensor([corners[n][0] for n in numbers])[:, None] - pad
        cols = torch.tensor([corners[n][1] for n in numbers])[:, None] - pad
        flat = ch * H * W + (rows + ii) * W + (cols + jj)                     # (P, side²·C), may be off-image
        groups.append(PatchGroup(torch.tensor(numbers), flat[:, inner_w], flat[:, outer_w],
                                 conditional(gaussian, inner_w, outer_w)))
    pixels = torch.zeros(len(corners), H * W)
    for number, (r, c) in enumerate(corners):
        pixels[number].view(H, W)[r:r + k, c:c + k] = 1
    return groups, pixels


@torch.no_grad()
def class_probability(model: nn.Module, inputs: torch.Tensor, target: int) -> torch.Tensor:
    """Softmax probability of class ``target`` for every input, in passes of at most ``PASS_INPUTS``."""
    return torch.cat([model(part).softmax(dim=1)[:, target] for part in inputs.split(PASS_INPUTS)])


@register("prediction_difference")
class PredictionDifference(AttributionMethod):
    """Weight of evidence of each patch (feature) under conditional sampling, [108] Sec. 2–3.

    Attributes
    ----------
    laws_ : list of Conditional, or (list of PatchGroup, torch.Tensor)
        The conditionals fitted to the train split: one per feature of a table, or the patch groups and
        pixel masks of an image (on the CPU).
    n_train_ : int
        Size ``N`` of the train split (Laplace correction).
    input_shape_ : tuple of int
        Shape of one train input; the inputs explained must have it.
    """
    model_agnostic = True    # queries the model's outputs only

    parameters = {**AttributionMethod.parameters,
                  "window": Int("side k of the resampled square patch x_i, all channels ([108] Sec. 3.2; images "
                                "only)", low=1),
                  "padding": Int("width (l − k)/2 of the frame the patch is conditioned on ([108] Sec. 3.2; 0: "
                                 "marginal sampling; images only)", low=0),
                  "stride": Int("step between patch positions, at most `window` (multivariate analysis, [108] "
                                "Sec. 3.2; images only)", low=1),
                  "n_samples": Int("conditional draws S per patch (feature) estimating p(c|x_\\i) ([108] Eq. 1)",
                                   low=1)}

    @classmethod
    def check_combination(cls, params: dict) -> None:
        if params["stride"] > params["window"]:
            raise ParamError(f"method {cls.spec.id!r}: parameter 'stride' ({params['stride']}) must not exceed "
                             f"'window' ({params['window']}), or some pixels would never be resampled")

    def _fit(self, model: nn.Module, train) -> None:
        """Fit the normal(s) of [108] Sec. 3.2 to the train split and their conditionals."""
        owner = f"method {self.spec.id!r}"
        x_train = train_inputs(owner, model, train)
        if x_train.dim() == 4:
            self._check_image(tuple(x_train.shape[1:]))
        elif x_train.dim() != 2:
            raise ValueError(f"{owner} explains (N, C, H, W) images or (N, F) tables, got a train split of "
                             f"shape {tuple(x_train.shape)}")
        self.input_shape_ = tuple(x_train.shape[1:])
        self.n_train_ = len(x_train)
        self.laws_ = self._laws(x_train, self.input_shape_)

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        check_input_shape(f"method {self.spec.id!r}", inputs, self.input_shape_)
        if len(inputs) == 0:
            return torch.zeros_like(inputs)
        explain_one = self._image_evidence if inputs.dim() == 4 else self._table_evidence
        with torch.no_grad():
            n_classes = model(inputs[:1].detach()).shape[1]
            out = [explain_one(model, x, int(c), self.laws_, self.n_train_, n_classes)
                   for x, c in zip(inputs.detach(), target)]
        return torch.stack(out).to(inputs.dtype)

    def _check_image(self, shape: tuple[int, int, int]) -> None:
        side = self.params["window"] + 2 * self.params["padding"]
        if side > min(shape[1:]):
            raise ValueError(f"method {self.spec.id!r}: window + 2·padding = {side} exceeds the image size "
                             f"{tuple(shape[1:])}")

    def _laws(self, x_train: torch.Tensor, shape: tuple[int, ...]):
        """The conditionals (on the CPU): image patch groups and pixel masks, or one per feature of a table."""
        if len(shape) == 1:
            gaussian = fit_gaussian(x_train.cpu())
            features = torch.arange(shape[0])
            return [conditional(gaussian, features[i:i + 1], features[features != i]) for i in features]
        k, pad = self.params["window"], self.params["padding"]
        gaussian = fit_window_gaussian(x_train.cpu(), k + 2 * pad, k)
        return patch_groups(gaussian, shape, k, pad, self.params["stride"])

    def _table_evidence(self, model, x, c, laws: list[Conditional], n_train, n_classes):
        d, S = len(x), self.params["n_samples"]
        normals = per_input_normals(x, d * S, self.seed).reshape(d, S, 1)
        others = [torch.cat([x[:i], x[i + 1:]]) for i in range(d)]
        perturbed = x.expand(d, S, d).clone()
        for i, law in enumerate(laws):
            perturbed[i, :, i] = law.sample(others[i].cpu(), normals[i].cpu())[:, 0].to(x)
        p_without = class_probability(model, perturbed.reshape(d * S, d), c).reshape(d, S).mean(1)
        return weight_of_evidence(class_probability(model, x[None], c), p_without, n_train, n_classes)

    def _image_evidence(self, model, x, c, laws, n_train, n_classes):
        groups, pixels = laws
        S, flat = self.params["n_samples"], x.reshape(-1)
        d1 = groups[0].inner.shape[1]
        normals = per_input_normals(x, len(pixels) * S * d1, self.seed).cpu()
        p_without = torch.zeros(len(pixels), dtype=torch.float64)
        used = 0
        for group in groups:
            P = len(group.positions)
            draws = normals[used:used + P * S * d1].reshape(P, S, d1)
            used += P * S * d1
            samples = group.law.sample(flat.cpu()[group.outer], draws).to(x)            # (P, S, d1)
            perturbed = flat.expand(P, S, len(flat)).clone()
            perturbed.scatter_(2, group.inner[:, None, :].expand(P, S, d1).to(x.device), samples)
            probs = class_probability(model, perturbed.reshape(P * S, *x.shape), c).reshape(P, S)
            p_without[group.positions] = probs.mean(1).double().cpu()
        p_full = class_probability(model, x[None], c).double().cpu()
        evidence = weight_of_evidence(p_full, p_without, n_train, n_classes)             # (P,)
        relevance = (evidence[:, None] * pixels).sum(0) / pixels.sum(0)
        return relevance.reshape(1, *x.shape[1:]).expand_as(x).to(x.device)
