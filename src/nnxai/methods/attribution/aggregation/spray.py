"""SpRAy, Spectral Relevance Analysis: Lapuschkin et al., "Unmasking Clever Hans predictors and assessing
what machines really learn", Nature Communications 2019 (survey ref. [67]).

SpRAy turns the local heatmaps of one class into a semi-local / global picture of the network's
*prediction strategies* (the survey, Sec. III-C "Passive, attribution, global": it "clusters on the
individual attributions and then summarizes some groups of prediction strategies").  The paper's Methods
section ("Spectral relevance analysis") lists its steps; here, for every class ``c`` predicted among the
explained inputs:

1. **Relevance maps** ``R(x)`` of the inputs predicted as ``c``, from the local method ``local_method``
   (the paper uses LRP [113]), for class ``c``.
2. **Downsizing** to a uniform ``heatmap_size × heatmap_size`` grid: the relevance summed over the
   channels, then averaged over blocks (adaptive average pooling), flattened; each map is scaled to unit
   Euclidean norm so that clusters group *where* the relevance lies rather than how much there is
   (our normalisation; the paper leaves it open).
3. **Spectral clustering** of the maps: a symmetric binary ``n_neighbors``-nearest-neighbour affinity
   ``W`` (``w_ij = 1`` when ``j`` is among the nearest neighbours of ``i`` or vice versa, Euclidean
   distances), the normalised Laplacian ``L = I − D^{-1/2} W D^{-1/2}`` (von Luxburg's tutorial, which the
   paper follows), its eigen-decomposition, and k-means on the rows of the first ``k`` eigenvectors
   normalised to unit length (Ng, Jordan & Weiss 2002), seeded.
4. **Eigengap analysis**: with eigenvalues ``0 = λ_1 ≤ λ_2 ≤ …``, the number of clusters is the ``k`` of
   the largest gap ``λ_{k+1} − λ_k`` among ``k = 1 … max_clusters`` (``L`` has eigenvalue 0 once per
   connected component of the graph, so well-separated strategies show as near-zero eigenvalues followed by
   a gap).  The first ``max_clusters + 1`` eigenvalues are kept in ``meta`` for the ``eigengap`` metric.
5. (t-SNE visualisation of the paper: not part of the record.)

A class with at most ``n_neighbors`` explained inputs has no ``n_neighbors``-NN graph and is skipped (its
inputs get cluster label −1; ``meta`` says why).  The record's ``attributions`` are the local maps
themselves; ``meta["spray"]`` holds, per class, the eigenvalues, the chosen ``k``, the cluster sizes and
the prototypes (mean downsized, normalised map of each cluster, as nested lists), and per input its
cluster label within its class.
"""

from __future__ import annotations


import numpy as np

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.aggregation._local import LocalAggregation, local_maps
from nnxai.methods.base import ExplainContext
from nnxai.params import Int
from nnxai.registry import register
from nnxai.ops.spectral import downsized_heatmaps, spectral_relevance_analysis


@register("spray")
class SpRAy(LocalAggregation):
    """Spectral relevance analysis of [67]: per class, spectral clustering of the local heatmaps with the
    eigengap choice of the number of clusters.  The local method (the paper: ``lrp``) and its parameters
    are ``local_method`` and ``local_params`` (its ``n_explain`` sets how many test inputs are analysed).
    """

    record_type = AttributionMap
    parameters = {
        **LocalAggregation.parameters,
        "heatmap_size": Int("side of the downsized heatmaps (step 2)", low=1),
        "n_neighbors": Int("neighbours of the k-nearest-neighbour affinity graph W (step 3)", low=1),
        "max_clusters": Int("largest number of clusters k the eigengap heuristic may choose (step 4)", low=1),
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    variant_cap = False   # clusters of maps per class: the variants explain as many inputs as the baseline

    @classmethod
    def check_run(cls, params, info, n_test):
        n = min(params["local_params"]["n_explain"], n_test)
        need = info.n_classes * (params["n_neighbors"] + 1)
        if n < need:
            return (f"{n} explained inputs over the {info.n_classes} classes of {info.name}: even if the predictions "
                    f"were balanced, no class would have the {params['n_neighbors'] + 1} inputs its "
                    f"{params['n_neighbors']}-nearest-neighbour graph needs; explain at least {need} "
                    f"(n_explain of the local method) or lower n_neighbors")
        return None

    def _run(self, ctx: ExplainContext) -> tuple[AttributionMap, int]:
        p = self.params
        indices, targets, attributions = local_maps(self.local, ctx)
        features = downsized_heatmaps(attributions, p["heatmap_size"])
        labels = np.full(len(indices), -1, dtype=np.int64)
        classes, skipped = {}, {}
        for c in np.unique(targets):
            members = np.flatnonzero(targets == c)
            if len(members) <= p["n_neighbors"]:
                skipped[str(int(c))] = (f"{len(members)} inputs predicted as class {int(c)}; the "
                                        f"{p['n_neighbors']}-nearest-neighbour graph needs more")
                continue
            found = spectral_relevance_analysis(features[members], p["n_neighbors"], p["max_clusters"], ctx.seed)
            labels[members] = found["labels"]
            side = p["heatmap_size"]
            classes[str(int(c))] = {
                "n_inputs": int(len(members)), "eigenvalues": found["eigenvalues"].tolist(),
                "n_clusters": found["n_clusters"], "eigengap": found["eigengap"],
                "sizes": found["sizes"].tolist(),
                "prototypes": found["prototypes"].reshape(-1, side, side).tolist()}
        meta = {"spray": {"labels": labels.tolist(), "classes": classes, "skipped_classes": skipped,
                          "heatmap_size": p["heatmap_size"]}}
        return AttributionMap(attributions, indices, targets, meta), len(indices)
