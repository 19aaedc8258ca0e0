"""``fragility``: the change of a map under a label-preserving adversarial input perturbation [140]–[142].

Ghorbani, Abid & Zou [140] ("Interpretation of neural networks is fragile", AAAI 2019) search, within an
L∞ ball of radius ε around ``x``, for a perturbed input ``x̃`` that keeps the predicted label but whose
map ``I(x̃)`` differs most from ``I(x)``.  Their *iterative feature-importance attack* (Algorithm 1) takes
``P`` steps ``x^(p) = clip_ε(x^(p−1) + α · sign(∇_x D(I(x^(p−1)), I(x))))`` and returns, among the steps
that keep the label, the one of largest dissimilarity.  The *top-k attack* uses
``D = −Σ_{i∈B} I_i(x̃)``, ``B`` the ``k`` most important features of ``I(x)``, and the attack is scored by
the *top-k intersection* ``|B ∩ B̃| / k`` and the Spearman rank correlation between ``I(x)`` and
``I(x̃)`` (their Sec. 4, "Metrics").

Here ``I`` is the survey's saliency map of the method's attribution (:func:`saliency_map`, the channel
maximum; the features of a table), ``k = max(1, round(top_fraction · n))`` of its ``n`` positions, ties in
position order (:func:`ranks_from_relevance`).  ε (``epsilon``) and α (``step_size``) are fractions of each
channel's value range in the train split, and every step is also clipped to that range (widened to contain
``x``).  Every
candidate ``x^(p)`` is explained by the method itself (re-run as its explain stage ran it, for the record's
class), and the best candidate is the one with the lowest intersection (then the lowest Spearman ρ) whose
predicted label is that of ``x``; with none, ``x̃ = x``.

Every step's direction comes from *the gradient attack of [140]*, on the methods whose map has a closed
form we can differentiate (:data:`SURROGATES`: ``gradient``, ``gradient_x_input``,
``integrated_gradients``, ``smoothgrad``).  These maps are piecewise constant in ``x`` on a ReLU network
(second derivatives vanish), so, as [140] (Sec. 3) do, the attack differentiates the map of a *smooth
surrogate*, the network with every ``nn.ReLU`` replaced by ``Softplus(β)`` (``softplus_beta``); only the
direction comes from it, the candidates are scored with the real network and method.  Integrated
Gradients' surrogate uses a midpoint rule of ``path_steps`` points along the path from the recorded
reference; SmoothGrad's averages the gradients at the method's own noisy copies of the candidate (its
``n_samples``, ``noise_level`` and seed).  Steps continue from the last candidate (PGD).

One attack for every method scored, since scores of different attacks do not measure the same thing.  The
methods whose map is not differentiated here are *not attacked*, and :meth:`Fragility.why_not` says so:
the black-box methods (occlusion, prediction difference, LIME, MAPLE, the Shapley samplers, L2X), which
query only the network's outputs, and those whose map comes from a modified backward pass, an
optimisation or a propagation rule (DeconvNet, guided backpropagation, CAM, Grad-CAM, DeepLIFT, DeepSHAP,
DASP, LRP, bias attribution, meaningful perturbation, MAME).  [140] also attack DeepLIFT; here its map is
Captum's modified backward pass, which autograd cannot differentiate a second time.  A random-sign search
(the baseline of [140]) could run on all of them, but it is a weaker attack whose scores would sit beside
the gradient attack's as if they measured the same fragility.

Reported, means over the scored inputs: ``fragility`` = 1 − top-k intersection (lower is better: 0 when
the attack cannot move the top-k set), ``fragility.topk_intersection`` (higher is better) and
``fragility.spearman`` (higher is better; inputs whose maps are constant, where ρ is undefined, are left
out).  Cost: ``steps + 1`` attributions of ``n_inputs`` inputs, plus one surrogate double-backward per step.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from nnxai.intervals import PerInput
from nnxai.metrics._robustness import N_INPUTS, channel_box, scored_inputs
from nnxai.metrics.attribution import FORWARD_BATCH, reference_from_meta
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.map_similarity import spearman_rows
from nnxai.metrics._patches import ranks_from_relevance
from nnxai.metrics.rerun import attribute_as_explained
from nnxai.ops.maps import saliency_map
from nnxai.ops.noise import input_noise
from nnxai.params import Float, Int


def smooth_surrogate(model: nn.Module, beta: float) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.ReLU`` module replaced by ``nn.Softplus(beta)``, frozen."""
    smooth = copy.deepcopy(model)
    for parent in list(smooth.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Softplus(beta=beta))
    return smooth.requires_grad_(False).eval()


def _input_gradient(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``∂S_c/∂x`` with its graph kept, so that it can be differentiated again."""
    scores = model(x).gather(1, targets[:, None]).sum()
    (grad,) = torch.autograd.grad(scores, x, create_graph=True)
    return grad


def _gradient(method, model, x, targets, reference, path_steps):
    return _input_gradient(model, x, targets).abs()


def _gradient_x_input(method, model, x, targets, reference, path_steps):
    return x * _input_gradient(model, x, targets)


def _integrated_gradients(method, model, x, targets, reference, path_steps):
    alphas = (torch.arange(path_steps, dtype=x.dtype, device=x.device) + 0.5) / path_steps
    view = (1, path_steps) + (1,) * (x.dim() - 1)
    points = (reference[:, None] + alphas.reshape(view) * (x - reference)[:, None]).flatten(0, 1)
    grads = _input_gradient(model, points, targets.repeat_interleave(path_steps))
    return (x - reference) * grads.reshape(len(x), path_steps, *x.shape[1:]).mean(dim=1)


def _smoothgrad(method, model, x, targets, reference, path_steps):
    """``|mean_k ∂S_c(x + ε_k)/∂x|`` with the method's own noise draws (as :func:`smoothed_gradient`)."""
    n, level = int(method.params["n_samples"]), float(method.params["noise_level"])
    flat = x.detach().flatten(1)
    sigma = (level * (flat.amax(1) - flat.amin(1))).reshape(len(x), 1, *(1,) * (x.dim() - 1))
    noise = torch.stack([input_noise(xi.detach(), n, method.seed) for xi in x]).to(x.dtype)
    points = (x[:, None] + sigma * noise).flatten(0, 1)
    grads = _input_gradient(model, points, targets.repeat_interleave(n))
    return grads.reshape(len(x), n, *x.shape[1:]).mean(dim=1).abs()


#: Differentiable maps (on the smooth surrogate) of the methods the gradient attack applies to, by method id;
#: each is called as ``surrogate(method, smooth_model, x, targets, reference, path_steps)``.
SURROGATES: dict[str, Callable] = {
    "gradient": _gradient,
    "gradient_x_input": _gradient_x_input,
    "integrated_gradients": _integrated_gradients,
    "smoothgrad": _smoothgrad,
}


def topk_sets(maps: torch.Tensor, k: int) -> torch.Tensor:
    """Bool ``(N, n)``: the ``k`` largest entries of each saliency map ``(N, n)``, ties in position order."""
    return ranks_from_relevance(maps) < k


def attack_direction(surrogate: Callable, method, smooth: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                     top: torch.Tensor, reference: torch.Tensor | None, path_steps: int) -> torch.Tensor:
    """``sign(∇_x D)`` of the top-k attack, ``D = −Σ_{i∈B} I_i(x)`` on the surrogate's map; like ``x``."""
    chunk = max(1, FORWARD_BATCH // path_steps)
    out = []
    for start in range(0, len(x), chunk):
        part = slice(start, start + chunk)
        leaf = x[part].detach().clone().requires_grad_(True)
        ref = None if reference is None else reference.expand_as(x)[part]
        with torch.enable_grad():
            maps = saliency_map(surrogate(method, smooth, leaf, targets[part], ref, path_steps)).flatten(1)
            objective = -(maps * top[part]).sum()
            if objective.requires_grad:      # the map of a linear model does not depend on x at all
                (grad,) = torch.autograd.grad(objective, leaf, allow_unused=True, materialize_grads=True)
            else:
                grad = torch.zeros_like(leaf)
        out.append(grad.sign())
    return torch.cat(out) if out else x.clone()


def predicted(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(b).argmax(1) for b in x.split(FORWARD_BATCH)]) if len(x) else x.new_zeros(0).long()


@register_metric
class Fragility(Metric):
    """Top-k intersection and rank correlation after the iterative attack of [140], on the methods whose map
    it can differentiate (:data:`SURROGATES`)."""

    id = "fragility"
    reexplains = True
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {
        "n_inputs": N_INPUTS,
        "steps": Int("attack steps P of Algorithm 1 of [140] (each re-runs the method on every scored input)",
                     low=1),
        "epsilon": Float("L∞ radius ε of the attack, a fraction of each channel's value range in the train split",
                         low=0.0, low_open=True),
        "step_size": Float("step α of the attack, a fraction of the same range", low=0.0, low_open=True),
        "top_fraction": Float("k / n: share of the map's n positions in the top-k set B of [140]",
                              low=0.0, high=1.0, low_open=True),
        "softplus_beta": Float("β of the Softplus(β) that replaces ReLU in the gradient attack's smooth surrogate "
                               "[140] (larger: closer to ReLU)", low=0.0, low_open=True),
        "path_steps": Int("midpoints of the Riemann sum of Integrated Gradients' surrogate path integral [114]",
                          low=1),
    }
    description = "1 - top-k intersection of the map before and after a label-preserving L-inf attack on the map"

    @classmethod
    def why_not(cls, method_cls, info):
        method_id = getattr(getattr(method_cls, "spec", None), "id", None)
        if method_id not in SURROGATES:
            how = ("it queries only the network's outputs, so its map has no derivative to follow"
                   if getattr(method_cls, "model_agnostic", False) else
                   "its map comes from a modified backward pass, an optimisation or a propagation rule that is "
                   "not differentiated here")
            return (f"not attacked: the gradient attack of [140] needs a differentiable map and {how} "
                    f"(attacked: {', '.join(SURROGATES)})")
        return super().why_not(method_cls, info)

    def __call__(self, record, ctx, method):
        inputs, targets = scored_inputs(record, ctx, self.params["n_inputs"])
        best, intersection, spearman = self.attack(record, ctx, method, inputs, targets)
        return {"fragility": PerInput(1.0 - intersection), "fragility.topk_intersection": PerInput(intersection),
                "fragility.spearman": PerInput(spearman)}

    def attack(self, record, ctx, method, inputs, targets):
        """``(x̃, top-k intersection, Spearman ρ)`` per input: the best label-preserving candidate."""
        p = self.params
        if len(inputs) == 0:
            raise ValueError(f"metric {self.id!r}: the record explains no inputs")
        low, high = channel_box(ctx.train.x, inputs)
        epsilon, alpha = float(p["epsilon"]) * (high - low), float(p["step_size"]) * (high - low)
        low, high = torch.minimum(low, inputs), torch.maximum(high, inputs)     # a test input may lie outside
        labels = predicted(ctx.model, inputs)
        original = saliency_map(attribute_as_explained(method, ctx, ctx.model, inputs, targets)).flatten(1)
        k = max(1, round(float(p["top_fraction"]) * original.shape[1]))
        top = topk_sets(original, k)
        method_id = getattr(getattr(type(method), "spec", None), "id", None)
        if method_id not in SURROGATES:
            raise ValueError(f"metric {self.id!r} attacks only {', '.join(SURROGATES)} (a differentiable map); "
                             f"got {method_id!r}")
        surrogate = SURROGATES[method_id]
        smooth = smooth_surrogate(ctx.model, float(p["softplus_beta"]))
        reference = reference_from_meta(record.meta, inputs) if getattr(method, "uses_baseline", False) else None
        best, best_maps = inputs.clone(), original.clone()
        best_inter = torch.ones(len(inputs), dtype=torch.float64, device=inputs.device)
        best_rho = torch.ones_like(best_inter)
        view = (-1,) + (1,) * (inputs.dim() - 1)
        current = inputs
        for _ in range(p["steps"]):        # PGD: on from the last step, wherever its label went
            direction = attack_direction(surrogate, method, smooth, current, targets, top, reference,
                                         p["path_steps"])
            candidate = torch.minimum(torch.maximum(current + alpha * direction, inputs - epsilon), inputs + epsilon)
            candidate = torch.minimum(torch.maximum(candidate, low), high)
            maps = saliency_map(attribute_as_explained(method, ctx, ctx.model, candidate, targets)).flatten(1)
            inter = (topk_sets(maps, k) & top).sum(dim=1).double() / k
            rho = spearman_rows(maps, original).nan_to_num(nan=1.0)
            better = (predicted(ctx.model, candidate) == labels) & (
                (inter < best_inter) | ((inter == best_inter) & (rho < best_rho)))
            best = torch.where(better.reshape(view), candidate, best)
            best_maps = torch.where(better[:, None], maps, best_maps)
            best_inter, best_rho = torch.where(better, inter, best_inter), torch.where(better, rho, best_rho)
            current = candidate
        return best, best_inter, spearman_rows(best_maps, original)
