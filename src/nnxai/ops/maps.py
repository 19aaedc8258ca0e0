"""Maps and reference inputs shared by the attribution methods and the metrics that score them.

:func:`saliency_map` reduces an attribution to the survey's map (Simonyan et al. [71] Sec. 3.1: the
maximum over channels); :func:`channel_means` and :func:`constant_reference` build the uninformative
reference of IG [114], DeepLIFT [112], occlusion [72] and the perturbation metrics [149], [150];
:func:`channel_range` gives the input bounds of LRP's z^B rule [113] (learnt by ``LRP.fit``).
"""

from __future__ import annotations

import numpy as np
import torch


def saliency_map(attr: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The survey's saliency map of an attribution: the maximum over the channel axis for images.

    Parameters
    ----------
    attr : torch.Tensor or numpy.ndarray
        ``(N, C, H, W)`` image attributions or ``(N, F)`` tabular attributions.

    Returns
    -------
    Same type as ``attr``: ``(N, H, W)`` (``max_c attr[:, c]``, as in [71] Sec. 3.1) for images;
    ``(N, F)`` unchanged for tables, where every feature is its own "pixel".

    Notes
    -----
    For signed attributions (e.g. Integrated Gradients) the maximum keeps the most positive channel, so a
    pixel counts as relevant when some channel speaks *for* the class; ``|·|`` is not taken here.
    """
    if attr.ndim == 4:
        return attr.max(axis=1) if isinstance(attr, np.ndarray) else attr.amax(dim=1)
    if attr.ndim == 2:
        return attr
    raise ValueError(f"saliency_map expects (N, C, H, W) image or (N, F) tabular attributions, "
                     f"got shape {tuple(attr.shape)}")


REFERENCES = ("zero", "mean")


def channel_means(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over every axis but axis 1 (channels of images, features of tables), shape ``(C,)``."""
    dims = [d for d in range(x.dim()) if d != 1]
    return x.double().mean(dim=dims).to(x.dtype)


def constant_reference(per_channel: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """A ``(1, *input_shape)`` reference whose channel ``k`` is the constant ``per_channel[k]``."""
    view = (1, len(per_channel)) + (1,) * (len(input_shape) - 1)
    return per_channel.reshape(view).expand((1, *input_shape)).clone()


def channel_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (per-feature) ``(low, high)`` of ``x`` over every axis but 1: the data's own range."""
    dims = [d for d in range(x.dim()) if d != 1]
    return x.amin(dim=dims), x.amax(dim=dims)
