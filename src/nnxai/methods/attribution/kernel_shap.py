"""KernelSHAP, Lundberg & Lee (survey [105]; Captum's ``KernelShap``).

SHAP values are the Shapley values of the game ``v(z') = f_c(h_x(z'))`` over simplified inputs
``z' ∈ {0, 1}^M`` (player present, or at the reference).  Lundberg & Lee's Theorem 2 ("Shapley kernel")
shows that LIME's weighted linear regression recovers them exactly when the loss is the squared error
over all coalitions weighted by

    π_x(z') = (M − 1) / ( (M choose |z'|) · |z'| · (M − |z'|) ),

which is infinite for ``|z'| ∈ {0, M}``: the intercept is pinned to ``v(∅)`` and the slopes sum to
``v(all) − v(∅)`` (*local accuracy*, their Property 1: Σ φ_i = f_c(x) − f_c(r)).  KernelSHAP samples
``n_samples`` coalitions instead of all ``2^M``.  Captum draws ``|z'| = k`` with probability
∝ ``(M − 1)/(k (M − k))`` and then a uniform coalition of that size, so the sampled coalitions follow the
kernel and enter an ordinary least-squares fit with weight 1; the empty and the full coalition are always
included, with weight 10⁶ in place of ∞.  Local accuracy therefore holds up to that finite weight
(relative error ≤ 1e-5 measured on toy models), and the values converge to the Shapley values as
``n_samples`` grows.

Game, reference and players as in :mod:`.shapley_sampling`: ``v(S) = f_c(x_S ∪ r_{P∖S})`` on the logit,
``r`` zero or the train mean, one player per feature of a table and per ``patch``-pixel cell of an image,
each cell's value spread evenly over its pixels; one input at a time with an RNG seeded from the input.
A single player (an image no larger than ``patch``) gets ``f_c(x) − f_c(r)``, its Shapley value.
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.methods.attribution._shapley_players import PlayerAttribution, input_seed, player_sizes, \
    player_sums, seeded, spread_over_players
from nnxai.registry import register

#: Most perturbed inputs in one forward pass; bounds memory only.
PASS_INPUTS = 512


@register("kernel_shap")
class KernelShap(PlayerAttribution):
    """KernelSHAP [105] of the class logit over feature / patch players.

    Parameters
    ----------
    n_explain : int
        Number of seeded test inputs explained by :meth:`explain`.
    batch_size : int
        Inputs per chunk of :meth:`explain` (each input is sampled on its own; no effect on results).
    n_samples : int
        Coalitions sampled per input (the empty and the full coalition included).
    patch : int
        Side in pixels of the grid cells that are the players of an image (ignored for tables).
    baseline : {"zero", "mean"}
        Value of absent players: zeros, or the per-channel mean of the train split.
    """
    model_agnostic = True    # queries the model's outputs only

    param_names = ("n_explain", "batch_size", "n_samples", "patch", "baseline")
    integer_params = ("n_explain", "batch_size", "n_samples", "patch")
    claims_completeness = True

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        reference = self.reference_for(inputs, baselines)
        groups, n_players = self.player_groups(tuple(inputs.shape[1:]))
        groups = groups.to(inputs.device)
        from captum.attr import KernelShap as CaptumKernelShap  # lazy, see gradient.py

        if n_players == 1:              # Captum's size distribution is 0/0 then; φ = v(P) − v(∅) exactly
            with torch.no_grad():
                ref = reference.expand_as(inputs)
                delta = (model(inputs.detach()) - model(ref)).gather(1, target[:, None].to(inputs.device))
            return spread_over_players(delta.double(), groups).to(inputs.dtype)
        explainer = CaptumKernelShap(model)
        values = []
        for j, x in enumerate(inputs.detach()):
            ref = reference if len(reference) == 1 else reference[j:j + 1]
            with seeded(input_seed(x, self.sampling_seed, "kernel_shap")), torch.no_grad():
                out = explainer.attribute(x[None], baselines=ref, target=int(target[j]), feature_mask=groups[None],
                                          n_samples=self.params["n_samples"],
                                          perturbations_per_eval=min(self.params["n_samples"], PASS_INPUTS))
            values.append(player_sums(out, groups, n_players) / player_sizes(groups, n_players))
        return spread_over_players(torch.cat(values), groups).to(inputs.dtype)
