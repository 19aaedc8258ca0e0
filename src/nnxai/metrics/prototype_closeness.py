"""``prototype_closeness``: how close each learnt prototype is to a real training input, in the space where the
network compares them (lower is better).

Both prototype networks of the survey claim that their prototypes are interpretable because they are (near)
actual training data: Li et al. [76] add R1 (every prototype near some encoded training input) so that the
decoded prototypes look like real inputs; ProtoPNet [123] projects ("pushes") every prototype onto a latent
patch of a training image of its class, so the distance is zero by construction after the push.

* ``prototype_closeness``: for each prototype ``p_j``, ``min_i min_{z ∈ patches(f(x_i))} ||z - p_j||²`` over
  the whole train split (the squared latent distance both papers use; for [76] a patch is the whole latent
  vector, so this is the summand of R1 over all of D, paper Eq. 1), averaged over the prototypes
  (``PerInput`` over prototypes: the interval is over them).  Computed from the network, in float64, not
  read from the explanation record.
* ``prototype_closeness.pixel`` (networks with a decoder, [76]): the mean squared pixel error of the decoded
  prototype ``g(p_j)`` to its nearest training image, averaged over the prototypes: whether the decoded
  prototype looks like a real input, the claim the latent distance stands for.

The network gives ``latent_patches(x)`` (n, P, D) and ``prototype_vectors_flat()`` (m, D); a decoder network
also ``decode_prototypes()``.
"""

from __future__ import annotations

import torch

from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric

CHUNK = 128   # training inputs per forward pass (memory only)


@torch.no_grad()
def nearest_patch_distances(model, x: torch.Tensor, device=None) -> torch.Tensor:
    """``min_i min_{z ∈ patches(f(x_i))} ||z - p_j||²`` for every prototype ``j`` (float64, (m,))."""
    device = device if device is not None else next(model.parameters()).device
    protos = model.prototype_vectors_flat().detach().double().cpu()
    best = torch.full((len(protos),), float("inf"), dtype=torch.float64)
    p_norm = (protos * protos).sum(1)
    for xb in x.split(CHUNK):
        z = model.latent_patches(xb.to(device)).detach().double().cpu().flatten(0, 1)    # (b·P, D)
        d = (z * z).sum(1, keepdim=True) - 2 * z @ protos.T + p_norm[None]
        best = torch.minimum(best, d.clamp_min(0.0).min(0).values)
    return best


@torch.no_grad()
def nearest_pixel_errors(decoded: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error of each decoded prototype (m, ...) to its nearest image of ``x`` (float64)."""
    flat = decoded.detach().double().cpu().flatten(1)
    best = torch.full((len(flat),), float("inf"), dtype=torch.float64)
    for xb in x.split(CHUNK):
        diff = flat[:, None] - xb.double().flatten(1)[None]
        best = torch.minimum(best, diff.pow(2).mean(2).min(1).values)
    return best


@register_metric
class PrototypeCloseness(Metric):
    id = "prototype_closeness"
    higher_is_better = False
    kinds = frozenset({"example"})
    description = ("squared latent distance of each prototype to its nearest training input (patch) [76], [123]; "
                   ".pixel: decoded prototype to its nearest training image [76]")

    def __call__(self, record, ctx, method=None):
        model = ctx.model
        if not hasattr(model, "latent_patches") or not hasattr(model, "prototype_vectors_flat"):
            raise ValueError(f"prototype_closeness scores prototype networks; {type(model).__name__} has no "
                             "latent_patches/prototype_vectors_flat")
        model.eval()
        out = {"prototype_closeness": PerInput(nearest_patch_distances(model, ctx.train.x, ctx.device))}
        if hasattr(model, "decode_prototypes"):
            decoded = model.decode_prototypes()
            out["prototype_closeness.pixel"] = PerInput(nearest_pixel_errors(decoded, ctx.train.x))
        return out
