"""Spectral clustering of relevance maps, the numerics of SpRAy [67] (Lapuschkin et al. 2019, Sec. 2.2):
downsized heatmaps, a symmetric k-nearest-neighbour affinity, the normalised Laplacian's spectrum, the
eigengap that chooses the number of clusters, k-means on the spectral embedding.  The SpRAy method and
its ``eigengap`` / ``cluster_purity`` metrics both use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


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
