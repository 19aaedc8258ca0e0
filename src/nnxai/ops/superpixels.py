"""Interpretable components of an image and inputs composed from them: SLIC superpixels and the
``z' ⊙ x + (1 − z') ⊙ x_ref`` composition, shared by LIME [20] and Anchors [65] (its superpixel predicates)."""

from __future__ import annotations

import numpy as np
import torch


def superpixels(image: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """SLIC superpixels of one image ``(C, H, W)``, labelled 0..K−1 in order of first appearance; long (H, W)."""
    from skimage.segmentation import slic

    pixels = image.detach().cpu().double().permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    if pixels.shape[2] != 3:
        raise ValueError(f"SLIC superpixels need 1 or 3 channels, got {pixels.shape[2]}")
    labels = slic(pixels, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    _, first, dense = np.unique(labels.reshape(-1), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))            # relabel by first appearance in raster order
    return torch.as_tensor(order[dense].reshape(labels.shape), dtype=torch.long, device=image.device)


def compose(coins: torch.Tensor, index: torch.Tensor, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Inputs ``z' ⊙ x + (1 − z') ⊙ x_ref`` per component: ``coins`` (S, d), ``index`` shaped like ``x``."""
    on = coins[:, index]                                                    # (S, *x.shape)
    return on * x + (1 - on) * reference.reshape(x.shape)
