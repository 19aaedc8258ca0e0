"""MAME, Model Agnostic Multilevel Explanations: Ramamurthy, Vinzamuri, Zhang & Dhurandhar, NeurIPS 2020
(survey ref. [68]).

MAME builds a tree of explanations for many inputs ``x_1 … x_n``: the leaves are their local linear
explanations ``θ_i``, each inner node a linear explanation shared by a group of inputs, the root one global
explanation.  The tree is the path of solutions of one convex objective as its fusion strength ``β`` grows
([68] Sec. 3, Eq. (1)):

    min_Θ  Σ_i g(θ_i; x_i, f)  +  β Σ_{(i,j)} w_ij ||θ_i − θ_j||₂ ,

where ``g`` is the loss of the local explanation model of ``f`` around ``x_i`` and ``w_ij > 0`` for
similar inputs; explanations of neighbouring inputs fuse as ``β`` grows, and clusters merge until one
remains.  (:mod:`~nnxai.methods.attribution.aggregation._convex_clustering` holds the solver.)

**The local loss g is LIME's** ([68] instantiates ``g`` with LIME; LIME [20] Eq. 2 with the project's
sampler, kernel and ridge, :mod:`nnxai.methods.attribution.perturbation.lime`), on *feature groups*:
``patch_size × patch_size`` pixel patches (over all channels) for images, single features for tables
(:func:`nnxai.ops.groups.player_groups`).  For input ``x_i`` (explained class ``t_i``, the one the model
predicts) ``n_samples`` coin vectors ``z'_ik ∈ {0, 1}^G`` (group kept / replaced by the reference ``fill``;
the first all ones; :func:`~nnxai.methods.attribution.perturbation.lime.coin_samples`, seeded by the
input and ``ctx.seed``) give the model's probability ``y_ik = f_t(z_ik)`` of class ``t_i`` and the kernel
weight ``π_ik = exp(−D²/σ²)`` (:func:`~nnxai.methods.attribution.perturbation.lime.proximity`, ``σ =
kernel_width``), and

    g_i(θ) = min_b ½ Σ_k π_ik (y_ik − b − θᵀ z'_ik)²  +  ½ ρ ||θ||²  =  ½ θᵀ H_i θ − c_iᵀ θ + const,

``H_i = Z̃ᵢᵀ Π_i Z̃ᵢ + ρ I``, ``c_i = Z̃ᵢᵀ Π_i ỹ_i`` with ``Z̃, ỹ`` centred by their ``π``-weighted means (the
intercept ``b_i`` eliminated in closed form), ``ρ = alpha``.  Choices: the ridge ``ρ`` is LIME's (the LIME
package fits ``Ridge(alpha=1)``; the project's ``lime`` uses ``alpha``), which also makes every ``H_i``
positive definite, as the solver needs; the intercepts stay per input and are not fused (only the
coefficients enter the fusion penalty, [68] Eq. (1)); ``f`` is the class probability, as in LIME.  At
``β = 0`` the leaves are each input's own LIME solution ``θ_i = H_i⁻¹ c_i`` (= LIME's weighted ridge on these
groups), at full fusion the root is the one linear model of all samples, ``(Σ H_i)⁻¹ Σ c_i``.

A squared distance to precomputed local explanations (this project's earlier simplification) would be
cheaper to fuse; the exact quadratic ``g`` costs one ``G × G`` matrix per input, so the paper's objective is
solved as it stands.

* **Weights**: ``w_ij = 1`` on the edges of the ``n_neighbors``-nearest-neighbour graph of the *inputs*
  (their group means), joined with their minimum spanning tree so that one root exists.  (A Gaussian
  kernel on the distances makes the weights of the edges that join far groups vanish, so their fusion
  would need ``β`` many orders of magnitude larger than any grid reaches.)
* **Path**: ``β`` on a geometric grid of ``n_lambdas`` values from ``lambda_ratio · β_max`` to ``β_max``,
  the certified full-fusion value; each ``β`` is solved by accelerated dual projected gradient to a duality
  gap that separates fused from unfused explanations at resolution ``fusion_tol`` (relative to the RMS
  distance of the leaves to the root), at most ``max_iter`` iterations per solve; clusters are kept once
  formed (the algorithmic-regularisation path of Weylandt et al. 2020), which makes the levels nested.
  Each level records the duality gap its solves reached and the one they aimed at (``duality_gap``,
  ``gap_tolerance``): a gap above the tolerance means ``max_iter`` cut a solve short.

The record's ``attributions`` are each input's explanation at tree level ``level`` (0: the leaves, a level
above the root gives the root), spread evenly over the pixels (values) of each group so that group sums are
the coefficients.  ``meta["mame"]`` holds the tree: for every level its ``β``, the cluster of every input and
the cluster-level coefficient vectors, with the score modelled (``"probability"``); ``meta["baseline"]`` the
reference of absent groups.  The ``fidelity`` metric (:mod:`nnxai.metrics.multilevel`) reads both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution._coalitions import coalition_scores
from nnxai.methods.attribution._reference import reference_per_channel
from nnxai.methods.attribution.aggregation._convex_clustering import clustering_path, knn_tree_graph
from nnxai.methods.attribution.aggregation._local import predicted_classes
from nnxai.methods.attribution.perturbation.lime import coin_samples, proximity
from nnxai.methods.base import ExplainContext, Method, explained_indices
from nnxai.ops.groups import feature_groups, group_sums, spread_over_groups
from nnxai.ops.maps import REFERENCES, constant_reference
from nnxai.params import BATCH_SIZE, N_EXPLAIN, Choice, Float, Int
from nnxai.registry import register

#: The class score MAME's local models fit (LIME's), recorded in the tree for the fidelity metric.
SCORE = "probability"


def local_quadratic(coins: torch.Tensor, scores: torch.Tensor, weights: torch.Tensor,
                    alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(H, c)`` of ``g(θ) = min_b ½ Σ_k π_k (y_k − b − θᵀz_k)² + ½ α ||θ||² = ½ θᵀHθ − cᵀθ + const``
    (float64): the ``π``-weighted centred Gram matrix plus ``α I``, and the centred cross moments."""
    z, y, w = coins.double().cpu(), scores.double().cpu(), weights.double().cpu()
    zc = z - (w @ z) / w.sum()
    yc = y - (w @ y) / w.sum()
    hessian = zc.T @ (w[:, None] * zc) + alpha * torch.eye(z.shape[1], dtype=torch.float64)
    return hessian.numpy(), (zc.T @ (w * yc)).numpy()


def lime_losses(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
                index: torch.Tensor, n_groups: int, n_samples: int, kernel_width: float, alpha: float,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(H, c)`` stacked ``(B, G, G)``, ``(B, G)``: the LIME loss of every input of the batch on the groups
    ``index`` (absent groups at ``reference``), from ``n_samples`` seeded coin vectors each."""
    coins = torch.stack([coin_samples(x, n_groups, n_samples, seed) for x in inputs.detach()])
    scores = coalition_scores(model, inputs, reference, coins > 0, index, targets, SCORE)
    pairs = [local_quadratic(c, s, proximity(c, kernel_width), alpha) for c, s in zip(coins, scores)]
    return np.stack([h for h, _ in pairs]), np.stack([c for _, c in pairs])



@register("mame")
class MAME(Method):
    """Multilevel explanation tree of [68]: the fusion path of the LIME losses of ``n_explain`` test inputs
    on feature groups (see the module docstring)."""

    record_type = AttributionMap
    model_agnostic = True    # queries the model's outputs only
    parameters = {
        "n_explain": N_EXPLAIN,
        "batch_size": BATCH_SIZE,
        "patch_size": Int("side of the square pixel patches that form the feature groups of images (tables: one "
                          "group per feature, unused)", low=1),
        "fill": Choice("value of an absent group in a perturbed sample (z = z' ⊙ x + (1 − z') ⊙ x_ref): zeros, or "
                       "the per-channel (per-feature) mean of the train split", REFERENCES),
        "n_samples": Int("perturbed samples per input of its local LIME loss g ([20] Sec. 3.3)", low=2),
        "kernel_width": Float("width σ of LIME's proximity kernel π = exp(−D²/σ²) on the cosine distance of the "
                              "coin vector to all ones ([20] Sec. 3.3)", low=0, low_open=True),
        "alpha": Float("ridge ρ of each local loss, ½ρ||θ||² (LIME's Ridge penalty; > 0 keeps every H_i "
                       "positive definite)", low=0, low_open=True),
        "n_neighbors": Int("neighbours per input in the graph of the fusion penalty (weights w_ij)", low=1),
        "n_lambdas": Int("grid points of the fusion strength β", low=2),
        "lambda_ratio": Float("smallest β of the grid as a fraction of the full-fusion β_max", low=0.0, high=1.0,
                              low_open=True, high_open=True),
        "fusion_tol": Float("explanations closer than fusion_tol × the RMS distance of the leaves to the root "
                            "are fused", low=0.0, high=1.0, low_open=True, high_open=True),
        "max_iter": Int("most solver iterations per β and per round of merging", low=1),
        "level": Int("tree level whose explanations are the record's attributions (0: the leaves)", low=0),
    }

    def _fit(self, model: nn.Module, train) -> None:
        self.reference_per_channel_ = reference_per_channel(self.params["fill"], train.x)
        self.reference_ = constant_reference(self.reference_per_channel_, tuple(train.x.shape[1:]))

    def _run(self, ctx: ExplainContext) -> tuple[AttributionMap, int]:
        p = self.params
        indices = explained_indices(len(ctx.test.x), p["n_explain"], ctx.seed)
        if len(indices) < 2:
            raise ValueError(f"method 'mame': a tree needs at least 2 explained inputs, n_explain gives "
                             f"{len(indices)}")
        inputs = ctx.test.x[torch.as_tensor(indices, dtype=torch.long)].to(ctx.device)
        targets = predicted_classes(ctx.model, inputs, p["batch_size"])
        index, n_groups = feature_groups(tuple(inputs.shape[1:]), p["patch_size"])
        group_index = torch.as_tensor(index, dtype=torch.long, device=inputs.device)
        reference = self.reference_.to(device=inputs.device, dtype=inputs.dtype)
        parts = [lime_losses(ctx.model, xb, tb, reference, group_index, n_groups, p["n_samples"],
                             float(p["kernel_width"]), float(p["alpha"]), self.seed)
                 for xb, tb in zip(inputs.split(p["batch_size"]), targets.split(p["batch_size"]))]
        hessians = np.concatenate([h for h, _ in parts])
        linear = np.concatenate([c for _, c in parts])
        leaves = np.linalg.solve(hessians, linear[:, :, None])[:, :, 0]
        points = inputs.detach().cpu().double().numpy()
        counts = np.bincount(index.ravel(), minlength=n_groups)
        graph = knn_tree_graph(group_sums(points, index, n_groups) / counts, p["n_neighbors"])
        levels = clustering_path(leaves, graph, p["n_lambdas"], float(p["lambda_ratio"]), float(p["fusion_tol"]),
                                 p["max_iter"], hessians)
        chosen = min(p["level"], len(levels) - 1)
        explanation = levels[chosen].centres[levels[chosen].labels]
        tree = {"patch_size": p["patch_size"], "n_groups": n_groups, "level": chosen, "score": SCORE,
                "levels": [{"lambda": lv.lam, "n_clusters": int(lv.labels.max() + 1), "labels": lv.labels.tolist(),
                            "coefficients": lv.centres.tolist(), "duality_gap": lv.gap,
                            "gap_tolerance": lv.tolerance, "iterations": lv.iterations} for lv in levels]}
        baseline = {"kind": p["fill"], "per_channel": [float(v) for v in self.reference_per_channel_]}
        record = AttributionMap(spread_over_groups(explanation, index), indices, targets.cpu().numpy(),
                                {"mame": tree, "baseline": baseline})
        return record, len(indices)
