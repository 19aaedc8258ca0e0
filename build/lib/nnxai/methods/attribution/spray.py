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

from numbers import Integral
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution._local import build_local_method, local_maps
from nnxai.methods.base import ExplainContext, Method
from nnxai.registry import register

#: k-means restarts on the spectral embedding (scikit-learn's default); the best inertia is kept.
KMEANS_RESTARTS = 10


def downsized_heatmaps(attributions: np.ndarray, size: int) -> np.ndarray:
    """Step 2: channel-summed relevance ``(N, C, H, W)`` averaged onto a ``size × size`` grid, flattened to
    ``(N, size²)`` and scaled to unit Euclidean norm (an all-zero map stays zero)."""
    a = torch.as_tensor(np.asarray(attributions), dtype=torch.float64)
    if a.dim() != 4:
        raise ValueError(f"SpRAy clusters image heatmaps (N, C, H, W), got shape {tuple(a.shape)}")
    pooled = F.adaptive_avg_pool2d(a.sum(dim=1, keepdim=True), size).flatten(1).numpy()
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.divide(pooled, norms, out=np.zeros_like(pooled), where=norms > 0)


def knn_affinity(features: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Symmetric binary ``n_neighbors``-nearest-neighbour affinity ``(N, N)`` (ties broken by position)."""
    n = len(features)
    if not 1 <= n_neighbors < n:
        raise ValueError(f"a {n_neighbors}-nearest-neighbour graph needs more than {n_neighbors} points, got {n}")
    sq = (features ** 2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * features @ features.T
    np.fill_diagonal(d2, np.inf)
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :n_neighbors]
    w = np.zeros((n, n))
    w[np.repeat(np.arange(n), n_neighbors), nearest.ravel()] = 1.0
    return np.maximum(w, w.T)


def laplacian_spectrum(affinity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of ``L = I − D^{-1/2} W D^{-1/2}``."""
    degree = affinity.sum(1)
    if (degree <= 0).any():
        raise ValueError("every point needs a neighbour in the affinity graph")
    scale = 1.0 / np.sqrt(degree)
    laplacian = np.eye(len(affinity)) - scale[:, None] * affinity * scale[None, :]
    values, vectors = np.linalg.eigh(laplacian)
    return np.clip(values, 0.0, None), vectors


def eigengap(eigenvalues: np.ndarray, max_clusters: int) -> tuple[int, float]:
    """Step 4: ``(k, λ_{k+1} − λ_k)`` of the largest gap among ``k = 1 … max_clusters`` (fewer when fewer
    eigenvalues are given; the first maximum on ties)."""
    values = np.asarray(eigenvalues, dtype=np.float64)[:max_clusters + 1]
    if len(values) < 2:
        raise ValueError(f"the eigengap needs at least 2 eigenvalues, got {len(values)}")
    gaps = np.diff(values)
    k = int(np.argmax(gaps)) + 1
    return k, float(gaps[k - 1])


def spectral_labels(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Step 3: k-means (seeded) on the unit-normalised rows of the first ``k`` eigenvectors (NJW)."""
    if k == 1:
        return np.zeros(len(vectors), dtype=np.int64)
    from sklearn.cluster import KMeans

    embedding = vectors[:, :k]
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = np.divide(embedding, norms, out=np.zeros_like(embedding), where=norms > 0)
    labels = KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit_predict(embedding)
    return canonical_labels(labels)


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0, 1, … in order of first appearance (k-means numbers them arbitrarily)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse]


def spectral_relevance_analysis(features: np.ndarray, n_neighbors: int, max_clusters: int,
                                seed: int) -> dict[str, Any]:
    """Steps 3–4 on downsized maps ``features`` (N, D) of one class.

    Returns ``{"labels", "eigenvalues" (the first max_clusters + 1), "n_clusters", "eigengap", "sizes",
    "prototypes" (k, D)}``.
    """
    values, vectors = laplacian_spectrum(knn_affinity(features, n_neighbors))
    k, gap = eigengap(values, max_clusters)
    labels = spectral_labels(vectors, k, seed)
    prototypes = np.stack([features[labels == c].mean(0) for c in range(k)])
    return {"labels": labels, "eigenvalues": values[:max_clusters + 1], "n_clusters": k, "eigengap": gap,
            "sizes": np.bincount(labels, minlength=k), "prototypes": prototypes}


def check_spray_params(owner: str, params: dict[str, Any]) -> None:
    for name, low in (("heatmap_size", 1), ("n_neighbors", 1), ("max_clusters", 1)):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ValueError(f"{owner}: parameter {name!r} must be an integer >= {low}, got {value!r}")


@register("spray")
class SpRAy(Method):
    """Spectral relevance analysis of [67]: per class, spectral clustering of the local heatmaps with the
    eigengap choice of the number of clusters.

    Parameters
    ----------
    local_method : str
        Id of the local attribution method whose heatmaps are clustered (the paper: ``lrp``).
    local_params : dict
        That method's parameters (its ``n_explain`` sets how many test inputs are analysed).
    heatmap_size : int
        Side of the downsized heatmaps (step 2).
    n_neighbors : int
        Neighbours of the k-nearest-neighbour affinity graph (step 3).
    max_clusters : int
        Largest number of clusters the eigengap heuristic may choose (step 4).
    """

    record_type = AttributionMap
    param_names = ("local_method", "local_params", "heatmap_size", "n_neighbors", "max_clusters")
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})

    def __init__(self, **params: Any):
        super().__init__(**params)
        owner = f"method {self.spec.id!r}"
        check_spray_params(owner, self.params)
        self.local = build_local_method(owner, self.params["local_method"], self.params["local_params"])

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
