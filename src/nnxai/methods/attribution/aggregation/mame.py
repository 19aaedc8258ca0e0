"""MAME, Model Agnostic Multilevel Explanations: Ramamurthy, Vinzamuri, Zhang & Dhurandhar, NeurIPS 2020
(survey ref. [68]).

MAME builds a tree of explanations from the local linear explanations ``θ_i`` of many inputs: the leaves
are the local explanations, each inner node a linear explanation shared by a group of inputs, the root one
global explanation.  The tree is the path of solutions of a convex-clustering objective as its fusion
strength ``β`` grows (Sec. 3 of [68]):

    min_Θ  Σ_i g(θ_i; x_i, f)  +  β Σ_{(i,j)} w_ij ||θ_i − θ_j||₂ ,

where ``g`` is the loss of the local explanation of input ``x_i`` and ``w_ij`` are positive for similar
inputs; explanations of neighbouring inputs fuse as ``β`` grows, and clusters merge until one remains.

What is implemented here (:mod:`~nnxai.methods.attribution.aggregation._convex_clustering` holds the solver):

* **Local explanations** ``θ̂_i`` are the maps of the local attribution method ``local_method`` summed over
  *feature groups*: ``patch_size × patch_size`` patches (over all channels) for images, single features for
  tables.  With a contribution-type local method at a zero reference (``gradient_x_input``, IG, DeepLIFT,
  LRP) ``θ̂_i,g`` reads as the coefficient of group ``g`` in the linear model
  ``f(x_i with only the groups s ⊆ G kept) ≈ b + Σ_{g∈s} θ_g`` over LIME's interpretable features (group
  kept / zeroed); exactly so for a linear model.  The ``fidelity`` metric tests how well it holds.
* **Simplification of g.** In [68] ``g`` is the loss of a local explanation model fitted to the black box
  around ``x_i`` (LIME-like, on sampled neighbours); here the local explanations ``θ̂_i`` are computed first
  and ``g(θ_i) = ½ ||θ_i − θ̂_i||²``, so the tree is the convex-clustering path of the local explanations
  (Eq. (1) of :mod:`~nnxai.methods.attribution.aggregation._convex_clustering`, ``λ = β``).
* **Weights**: ``w_ij = 1`` on the edges of the ``n_neighbors``-nearest-neighbour graph of the *inputs*
  (their group means), joined with their minimum spanning tree so that one root exists.  (A Gaussian
  kernel on the distances makes the weights of the edges that join far groups vanish, so their fusion
  would need ``β`` many orders of magnitude larger than any grid reaches.)
* **Path**: ``β`` on a geometric grid of ``n_lambdas`` values from ``lambda_ratio · β_max`` to ``β_max``,
  the certified full-fusion value; each ``β`` is solved by accelerated dual projected gradient to a duality
  gap that separates fused from unfused explanations at resolution ``fusion_tol`` (relative to the
  spread of the ``θ̂_i``), at most ``max_iter`` iterations per solve; clusters are kept once formed (the
  algorithmic-regularisation path of Weylandt et al. 2020), which makes the levels nested.  Each level
  records the duality gap its solves reached and the one they aimed at (``duality_gap``,
  ``gap_tolerance``): a gap above the tolerance means ``max_iter`` cut a solve short.

The record's ``attributions`` are each input's explanation at tree level ``level`` (0: the leaves, i.e. the
local explanations; a level above the root gives the root), spread evenly over the pixels (values) of each
group so that group sums are the coefficients.  ``meta["mame"]`` holds the tree: for every level its ``β``,
the cluster of every input and the cluster-level coefficient vectors.
"""

from __future__ import annotations


import numpy as np

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.aggregation._convex_clustering import clustering_path, knn_tree_graph
from nnxai.methods.attribution.aggregation._local import LocalAggregation, local_maps
from nnxai.methods.base import ExplainContext
from nnxai.params import Float, Int
from nnxai.registry import register
from nnxai.ops.groups import feature_groups, group_sums, spread_over_groups


@register("mame")
class MAME(LocalAggregation):
    """Multilevel explanation tree of [68] from the local explanations of ``local_method`` (a
    contribution-type one, see the module docstring), with its parameters ``local_params`` (its
    ``n_explain`` sets how many test inputs the tree holds)."""

    record_type = AttributionMap
    parameters = {
        **LocalAggregation.parameters,
        "patch_size": Int("side of the square pixel patches that form the feature groups of images (tables: one "
                          "group per feature, unused)", low=1),
        "n_neighbors": Int("neighbours per input in the graph of the fusion penalty (weights w_ij)", low=1),
        "n_lambdas": Int("grid points of the fusion strength β", low=2),
        "lambda_ratio": Float("smallest β of the grid as a fraction of the full-fusion β_max", low=0.0, high=1.0,
                              low_open=True, high_open=True),
        "fusion_tol": Float("explanations closer than fusion_tol × their RMS spread are fused", low=0.0, high=1.0,
                            low_open=True, high_open=True),
        "max_iter": Int("most solver iterations per β and per round of merging", low=1),
        "level": Int("tree level whose explanations are the record's attributions (0: the leaves)", low=0),
    }

    def _run(self, ctx: ExplainContext) -> tuple[AttributionMap, int]:
        p = self.params
        indices, targets, attributions = local_maps(self.local, ctx)
        if len(indices) < 2:
            raise ValueError(f"method 'mame': a tree needs at least 2 explained inputs, local_params.n_explain "
                             f"gives {len(indices)}")
        index, n_groups = feature_groups(tuple(attributions.shape[1:]), p["patch_size"])
        local = group_sums(attributions, index, n_groups)
        inputs = ctx.test.x[indices].detach().cpu().numpy()
        counts = np.bincount(index.ravel(), minlength=n_groups)
        graph = knn_tree_graph(group_sums(inputs, index, n_groups) / counts, p["n_neighbors"])
        levels = clustering_path(local, graph, p["n_lambdas"], float(p["lambda_ratio"]), float(p["fusion_tol"]),
                                 p["max_iter"])
        chosen = min(p["level"], len(levels) - 1)
        explanation = levels[chosen].centres[levels[chosen].labels]
        tree = {"patch_size": p["patch_size"], "n_groups": n_groups, "level": chosen,
                "levels": [{"lambda": lv.lam, "n_clusters": int(lv.labels.max() + 1), "labels": lv.labels.tolist(),
                            "coefficients": lv.centres.tolist(), "duality_gap": lv.gap,
                            "gap_tolerance": lv.tolerance, "iterations": lv.iterations} for lv in levels]}
        return AttributionMap(spread_over_groups(explanation, index), indices, targets, {"mame": tree}), len(indices)
