"""Metrics of SpRAy records [67] (METHODS.md: ``eigengap``, ``cluster_purity``).

``eigengap``
    The eigengap heuristic of SpRAy's step 4, recomputed from the Laplacian eigenvalues each analysed class
    stores in ``meta["spray"]``: the largest gap ``λ_{k+1} − λ_k`` among the stored eigenvalues, averaged
    over the classes (a large gap: the heatmaps fall into well-separated prediction strategies).  Sub-keys
    ``eigengap.k`` (mean number of clusters implied), ``eigengap.class<c>`` and ``eigengap.k.class<c>``.
``cluster_purity``
    Purity of the clusters (one cluster = one SpRAy cluster of one class) with respect to ground-truth
    groups of the clustered inputs: Σ_clusters max_g |cluster ∩ g| / N.  On a data set with a concept table
    (``shapes``) the groups are the combinations of the concepts named in the parameter ``concepts`` (e.g.
    ``shape`` × ``texture``: the concept columns ``shape=…``, ``texture=…``); on the others the true labels.
    ``cluster_purity.chance``: the mean purity of ``n_permutations`` seeded random relabellings of the
    inputs within each class that keep the cluster sizes (what clusters unrelated to the groups score);
    ``cluster_purity.one_cluster``: the purity of one cluster per class (what clustering adds to).
"""

from __future__ import annotations

import numpy as np

from nnxai.data import DATASETS
from nnxai.explanations import AttributionMap
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.spectral import eigengap
from nnxai.params import Choice, Int, List


def spray_meta(record) -> dict:
    if not isinstance(record, AttributionMap) or "spray" not in record.meta:
        raise ValueError(f"SpRAy metrics score SpRAy records (meta['spray']), got a {type(record).__name__} of "
                         f"method {getattr(record, 'meta', {}).get('method', '?')!r}")
    spray = record.meta["spray"]
    if not spray["classes"]:
        raise ValueError(f"the SpRAy record analysed no class: {spray.get('skipped_classes')}")
    return spray


@register_metric
class Eigengap(Metric):
    """Largest gap among the first eigenvalues of each class's normalised Laplacian, averaged over classes."""

    id = "eigengap"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    description = "largest gap of the Laplacian spectrum of SpRAy's heatmap graph, and the k it implies"

    def __call__(self, record, ctx=None, method=None):
        out = {}
        for c, entry in spray_meta(record)["classes"].items():
            values = np.asarray(entry["eigenvalues"], dtype=np.float64)
            k, gap = eigengap(values, len(values) - 1)
            out[f"eigengap.class{c}"], out[f"eigengap.k.class{c}"] = gap, float(k)
        classes = spray_meta(record)["classes"]
        out["eigengap"] = float(np.mean([out[f"eigengap.class{c}"] for c in classes]))
        out["eigengap.k"] = float(np.mean([out[f"eigengap.k.class{c}"] for c in classes]))
        return out


def purity(clusters: np.ndarray, groups: np.ndarray) -> float:
    """Σ_clusters max_g |cluster ∩ g| / N for integer ``clusters`` and ``groups`` of equal length."""
    clusters, groups = np.asarray(clusters), np.asarray(groups)
    if len(clusters) == 0:
        raise ValueError("purity of an empty clustering")
    _, cluster_id = np.unique(clusters, return_inverse=True)
    _, group_id = np.unique(groups, return_inverse=True)
    table = np.zeros((cluster_id.max() + 1, group_id.max() + 1), dtype=np.int64)
    np.add.at(table, (cluster_id, group_id), 1)
    return float(table.max(axis=1).sum() / len(clusters))


def concept_names() -> list[str]:
    """The concepts of every registered data set's concept table (the ``<concept>`` of ``<concept>=<value>``)."""
    return sorted({column.split("=")[0] for dataset in DATASETS.values() for column in dataset.concepts
                   if "=" in column})


def ground_truth_groups(ctx, indices: np.ndarray, concepts: list[str]) -> np.ndarray:
    """One integer per input: the combination of the named concepts (concept table), else the label."""
    table = ctx.test.concepts
    if table is None:
        return np.asarray(ctx.test.y)[indices]
    names = list(ctx.test.meta.get("concept_features") or [])
    if len(names) != np.asarray(table).shape[1]:
        raise ValueError(f"{ctx.dataset}: the concept table has {np.asarray(table).shape[1]} columns but the split "
                         f"meta names {len(names)} concept features")
    columns = [j for j, name in enumerate(names) if name.split("=")[0] in concepts and "=" in name]
    missing = [c for c in concepts if not any(names[j].startswith(f"{c}=") for j in columns)]
    if missing:
        raise ValueError(f"cluster_purity: concepts {missing} are not columns of {ctx.dataset}'s concept table "
                         f"{names}")
    values = np.asarray(table)[np.asarray(indices)][:, columns] > 0.5
    return values.astype(np.int64) @ (2 ** np.arange(len(columns)))


@register_metric
class ClusterPurity(Metric):
    """Purity of SpRAy's clusters w.r.t. concept combinations (or labels), with its chance level."""

    id = "cluster_purity"
    higher_is_better = True
    kinds = frozenset({"attribution"})
    parameters = {
        "concepts": List("concepts whose value combinations are the ground-truth groups on a data set with a "
                         "concept table (its columns <concept>=<value>); elsewhere the labels are",
                         item=Choice("a concept", concept_names), unique=True),
        "n_permutations": Int("seeded random relabellings within each class (cluster sizes kept) whose mean "
                              "purity is the chance level", low=1),
    }
    description = "purity of SpRAy's clusters w.r.t. ground-truth concept combinations (or labels)"

    def __call__(self, record, ctx, method=None):
        labels = np.asarray(spray_meta(record)["labels"])
        keep = labels >= 0
        targets = np.asarray(record.targets)[keep]
        groups = ground_truth_groups(ctx, np.asarray(record.indices)[keep], self.params["concepts"])
        clusters = targets * (labels.max() + 1) + labels[keep]
        rng = np.random.default_rng(ctx.seed)
        chance = [purity(permuted_within(clusters, targets, rng), groups)
                  for _ in range(self.params["n_permutations"])]
        return {"cluster_purity": purity(clusters, groups), "cluster_purity.chance": float(np.mean(chance)),
                "cluster_purity.one_cluster": purity(targets, groups)}


def permuted_within(clusters: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clusters`` shuffled among the inputs of each class (cluster sizes kept)."""
    out = clusters.copy()
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        out[members] = clusters[rng.permutation(members)]
    return out
