"""How similar two attribution maps are, as the sanity checks of Adebayo et al. [75] measure it.

No metric is registered here.  [75] (Sec. 3 and App.) compare the map of the trained model with the map
after randomisation by

- the Spearman rank correlation of the *absolute* maps and of the *signed* maps ("with and without
  absolute values"): :func:`spearman_rows`, ties given their average rank as in
  ``scipy.stats.spearmanr``;
- the structural similarity index (SSIM) of the maps normalised to [0, 1] for display:
  :func:`ssim_rows`, the SSIM of Wang et al. (2004) with the defaults of scikit-image's
  ``structural_similarity`` that [75] call (a 7×7 uniform window, K1 = 0.01, K2 = 0.03, sample
  covariances, the mean over the positions whose window lies inside the image).

[75] reduce an RGB attribution to a grey-scale map the way their visualisation does (the PAIR
``saliency`` library's ``VisualizeImageGrayscale``): :func:`grayscale_maps` sums the absolute values over
the channels, and :func:`normalise_grayscale` maps the minimum to 0 and the 99th percentile to 1,
clipping above.  The signed map sums the signed values over the channels.  A tabular attribution is its
own map.  Everything is batched over the first axis and computed in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from nnxai.intervals import PerInput

#: skimage.metrics.structural_similarity defaults (win_size=7, K1=0.01, K2=0.03, use_sample_covariance).
SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03
#: Percentile mapped to 1 by the display normalisation of [75] (PAIR ``VisualizeImageGrayscale``).
CLIP_PERCENTILE = 99.0


def grayscale_maps(attributions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_c |A_c|, Σ_c A_c)`` of image attributions ``(N, C, H, W)``, each ``(N, H, W)``; for tabular
    attributions ``(N, F)``, ``(|A|, A)``.  float64."""
    a = attributions.double()
    if a.dim() == 4:
        return a.abs().sum(dim=1), a.sum(dim=1)
    if a.dim() == 2:
        return a.abs(), a
    raise ValueError(f"attributions must be (N, C, H, W) images or (N, F) tables, got {tuple(a.shape)}")


def normalise_grayscale(maps: torch.Tensor) -> torch.Tensor:
    """Each map ``(N, ...)`` rescaled so that its minimum is 0 and its 99th percentile 1, clipped to [0, 1];
    a constant map becomes 0 (PAIR ``VisualizeImageGrayscale`` divides by zero there)."""
    flat = maps.double().flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    high = torch.quantile(flat, CLIP_PERCENTILE / 100, dim=1, keepdim=True)
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp(min=1e-300), torch.zeros_like(flat))
    return scaled.clamp(0.0, 1.0).reshape(maps.shape)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..P-1 of each row of ``values`` (N, P), tied values sharing their average rank."""
    ordered, order = values.sort(dim=1, stable=True)
    first = torch.searchsorted(ordered, ordered, right=False)
    last = torch.searchsorted(ordered, ordered, right=True) - 1
    mean_rank = (first + last).double() / 2
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's ρ between ``a[i].flatten()`` and ``b[i].flatten()`` for every ``i``, shape ``(N,)``.

    NaN where a map is constant (its ranks have no variance), as ``scipy.stats.spearmanr`` returns.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be compared")
    ra, rb = average_ranks(a.double().flatten(1)), average_ranks(b.double().flatten(1))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denominator = (ra.square().sum(dim=1) * rb.square().sum(dim=1)).sqrt()
    return torch.where(denominator > 0, (ra * rb).sum(dim=1) / denominator.clamp(min=1e-300),
                       torch.full_like(denominator, float("nan")))


def ssim_rows(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of every pair of 2-D maps ``a[i]``, ``b[i]`` (N, H, W), shape ``(N,)``.

    Equals ``skimage.metrics.structural_similarity(a[i], b[i], data_range=data_range)`` with its other
    defaults: local means and (sample, ``NP/(NP-1)``) variances over a 7×7 uniform window, SSIM =
    (2 μ_a μ_b + C1)(2 σ_ab + C2) / ((μ_a² + μ_b² + C1)(σ_a² + σ_b² + C2)), C_k = (K_k · data_range)²,
    averaged over the positions whose window lies inside the map (skimage filters the whole image, then
    crops (7 - 1)/2 pixels at every border; a pooling without padding yields exactly those positions).
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"SSIM compares (N, H, W) maps of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs maps of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels, got {tuple(a.shape[1:])}")
    x, y = a.double()[:, None], b.double()[:, None]

    def window_mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)

    n_window = SSIM_WINDOW ** 2
    sample = n_window / (n_window - 1)
    mx, my = window_mean(x), window_mean(y)
    vx = sample * (window_mean(x * x) - mx * mx)
    vy = sample * (window_mean(y * y) - my * my)
    vxy = sample * (window_mean(x * y) - mx * my)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return index.flatten(1).mean(dim=1)


def map_similarity(original: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """``{"spearman", "spearman_signed", "ssim"}`` of two attribution batches shaped alike, means over inputs.

    Spearman ρ of the absolute and of the signed grey-scale maps (:func:`grayscale_maps`), NaN inputs
    (constant maps) left out of the mean; SSIM of the absolute maps normalised to [0, 1]
    (:func:`normalise_grayscale`, ``data_range`` 1), for image attributions only: the 7×7 window does not
    apply to a feature vector (iris has 4 features), so tabular attributions get no ``ssim``.
    """
    if original.shape != other.shape:
        raise ValueError(f"attributions of shapes {tuple(original.shape)} and {tuple(other.shape)} differ")
    abs_a, signed_a = grayscale_maps(original)
    abs_b, signed_b = grayscale_maps(other)
    out = {"spearman": PerInput(spearman_rows(abs_a, abs_b)),
           "spearman_signed": PerInput(spearman_rows(signed_a, signed_b))}
    if original.dim() == 4:
        out["ssim"] = PerInput(ssim_rows(normalise_grayscale(abs_a), normalise_grayscale(abs_b)))
    return out
