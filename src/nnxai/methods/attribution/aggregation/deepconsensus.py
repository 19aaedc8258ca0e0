"""DeepConsensus: Salman, Payrovnaziri, Liu, Rengifo-Moreno & He, "DeepConsensus: consensus-based
interpretable deep neural networks with application to mortality prediction", IJCNN 2020 (survey ref.
[116]; the survey, Sec. III-C: "makes use of multiple neural networks.  Each of the network can provide its
own local attributions, on top of which a clustering is performed.  Those clusters, intuitively the
consensus of multiple models, can provide more robust interpretations").

The members are the explained network and the same network trained with other seeds (the model variants
``baseline_seed<k>`` for ``k`` in ``seeds``; :meth:`DeepConsensus.required_inputs` names their checkpoints,
the workflow trains them).  Following [116]:

* **(n, k) consensus** of the predictions: an input is accepted when at least ``min_agree`` of the ``n``
  members predict the explained class (the explained network's prediction).  Only accepted inputs get a
  consensus explanation and enter the clusters (the record's ``indices``): an input the ensemble does not
  agree on has no consensus to explain.  ``meta`` records the votes of every candidate input
  (``candidates``, ``votes``), so the share accepted is reported too (``consensus_agreement.prediction``).
* **Local linear explanations** of every member for the explained class, from the local method
  ``local_method`` (for ReLU networks the gradient is the weight vector of the local linear model that
  [116] clusters; the project's ``gradient`` gives its magnitudes ``|∂S_c/∂x|``).
* **Clusters and their consensus**: each member's explanations (grey-scale maps ``Σ_channels |A|``, scaled
  to unit norm) are clustered by k-means into ``n_clusters`` groups (seeded); each cluster of the explained
  network is matched, in every other member, with the cluster whose centroid correlates most with it
  (Pearson), and the consensus cluster is the mean of the matched centroids; ``meta`` keeps the matches,
  their correlations and the consensus centroids.  (How [116] matches clusters across models beyond "highly
  correlated" is our choice.)
* **Per-input consensus map** (the record's ``attributions``): the members' maps, each scaled to unit norm,
  averaged and rescaled to the members' mean norm,

      c(x) = (1/n Σ_m ||A_m(x)||) · (1/n Σ_m A_m(x) / ||A_m(x)||),

  so that identical members give back their common map.  (Averaging normalised maps is our reading of the
  per-input consensus; [116] reports consensus at the level of the clusters.)

For the ``consensus_agreement`` metric the record stores, per input, Spearman's rank correlation between
every pair of members' maps and between each member's map and the consensus, computed on the grey-scale
maps ``Σ_channels |A|`` as the sanity checks of [75] do (:mod:`nnxai.metrics.map_similarity`).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.aggregation._local import (LocalAggregation, check_local_applies, explained_batch,
                                                          model_maps, predicted_classes)
from nnxai.methods.base import ExplainContext
from nnxai.params import Int, List, ParamError
from nnxai.metrics.map_similarity import grayscale_maps, spearman_rows
from nnxai.models import load_model
from nnxai.registry import register


def member_ids(seeds: list[int], model: str) -> list[str]:
    """The other members' model ids: ``baseline_seed<k>`` for every seed, except the explained model."""
    return [f"baseline_seed{k}" for k in seeds if f"baseline_seed{k}" != model]


def unit_rows(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(maps / ||maps||, ||maps||)`` per input (flattened); an all-zero map stays zero."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    norms = np.linalg.norm(flat, axis=1)
    return np.divide(flat, norms[:, None], out=np.zeros_like(flat), where=norms[:, None] > 0), norms


def consensus_maps(maps: np.ndarray) -> np.ndarray:
    """``c(x)`` of the module docstring for member maps ``(n_members, N, ...)``, shaped ``(N, ...)``."""
    units, norms = zip(*(unit_rows(m) for m in maps))
    direction = np.mean(units, axis=0)
    return (np.mean(norms, axis=0)[:, None] * direction).reshape(maps.shape[1:])


def rank_agreement(maps: np.ndarray, consensus: np.ndarray) -> dict[str, np.ndarray]:
    """Spearman ρ per input of the grey-scale maps: ``pairs`` (N, n_pairs) between members ``i < j``,
    ``to_consensus`` (N, n_members); NaN where a map is constant."""
    grey = [grayscale_maps(torch.as_tensor(m))[0] for m in maps]
    centre = grayscale_maps(torch.as_tensor(consensus))[0]
    pairs = [spearman_rows(grey[i], grey[j]) for i, j in itertools.combinations(range(len(grey)), 2)]
    return {"pairs": torch.stack(pairs, dim=1).numpy() if pairs else np.zeros((len(centre), 0)),
            "to_consensus": torch.stack([spearman_rows(g, centre) for g in grey], dim=1).numpy()}


def matched_clusters(maps: np.ndarray, n_clusters: int, seed: int) -> list[dict[str, Any]]:
    """k-means clusters of each member's unit-normalised maps, matched to the explained network's (member 0)
    by the Pearson correlation of their centroids.  One entry per cluster of member 0: its size, the matched
    cluster of every member, their correlations, and the consensus centroid (mean of the matched ones)."""
    from sklearn.cluster import KMeans

    k = min(n_clusters, maps.shape[1])
    fits = [KMeans(n_clusters=k, n_init=10, random_state=seed).fit(unit_rows(m)[0]) for m in maps]
    centroids = [f.cluster_centers_ for f in fits]
    out = []
    for j in range(k):
        matches, correlations = [j], [1.0]
        for other in centroids[1:]:
            r = [float(np.corrcoef(centroids[0][j], c)[0, 1]) for c in other]
            best = int(np.nanargmax(r)) if not np.all(np.isnan(r)) else 0
            matches.append(best)
            correlations.append(r[best])
        consensus = np.mean([c[m] for c, m in zip(centroids, matches)], axis=0)
        out.append({"size": int((fits[0].labels_ == j).sum()), "matches": matches, "correlations": correlations,
                    "centroid": consensus.reshape(maps.shape[2:]).tolist()})
    return out


@register("deepconsensus")
class DeepConsensus(LocalAggregation):
    """Consensus of the local explanations of networks trained with different seeds [116]; every member is
    explained with ``local_method`` and its ``local_params`` (whose ``n_explain`` sets how many test inputs
    are explained)."""
    trains = True            # fits extra networks, one per seed (companion survey's 'Training' column)

    record_type = AttributionMap
    parameters = {
        **LocalAggregation.parameters,
        "seeds": List("seed offsets k of the other members, the model variants baseline_seed<k>",
                      item=Int("seed offset k", low=1), unique=True),
        "min_agree": Int("k of the (n, k) consensus: members that must predict the explained class", low=1),
        "n_clusters": Int("k-means clusters of each member's explanations", low=1),
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    only_models = frozenset({"baseline"})   # consensus over the seeds of the baseline; not the shuffled-label control

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        owner = f"method {cls.spec.id!r}"
        if params["min_agree"] > len(params["seeds"]) + 1:
            raise ParamError(f"{owner}.min_agree: at most the {len(params['seeds']) + 1} members (the explained "
                             f"model and seeds {params['seeds']}), got {params['min_agree']}")
        super().check_combination(params)

    @classmethod
    def required_inputs(cls, params: dict[str, Any], dataset: str, model: str) -> list[str]:
        params = cls.checked_params(params)
        return [f"data/checkpoints/{dataset}/{m}.pt" for m in member_ids(params["seeds"], model)]

    def members(self, ctx: ExplainContext) -> list:
        """The explained model, then the seed variants, loaded from the work directory."""
        return [ctx.model] + [load_model(ctx.workdir / path, device=ctx.device)
                              for path in self.required_inputs(self.params, ctx.dataset, ctx.model_id)]

    def _run(self, ctx: ExplainContext) -> tuple[AttributionMap, int]:
        models = self.members(ctx)
        owner = f"method {self.spec.id!r}"
        for model in models:
            check_local_applies(owner, self.local, ctx, model)
        candidates, inputs = explained_batch(self.local, ctx)
        size = self.local.params["batch_size"]
        targets = predicted_classes(ctx.model, inputs, size)
        votes = torch.stack([predicted_classes(m, inputs, size) == targets for m in models]).sum(0)
        accepted = (votes >= self.params["min_agree"]).cpu()
        if not bool(accepted.any()):
            raise ValueError(f"{owner}: the ({len(models)}, {self.params['min_agree']}) vote accepts none of the "
                             f"{len(candidates)} inputs (votes {votes.tolist()}): lower min_agree")
        indices, inputs, targets = np.asarray(candidates)[accepted.numpy()], inputs[accepted], targets[accepted]
        maps = np.stack([model_maps(self.local, ctx, m, inputs, targets) for m in models])
        consensus = consensus_maps(maps)
        agreement = rank_agreement(maps, consensus)
        meta = {"deepconsensus": {
            "members": [ctx.model_id] + member_ids(self.params["seeds"], ctx.model_id),
            "candidates": np.asarray(candidates).tolist(), "votes": votes.cpu().tolist(),
            "min_agree": self.params["min_agree"],
            "spearman_pairs": agreement["pairs"].tolist(), "spearman_to_consensus": agreement["to_consensus"].tolist(),
            "clusters": matched_clusters(grey_stack(maps), self.params["n_clusters"], ctx.seed)}}
        return AttributionMap(consensus.astype(np.float32), indices, targets.cpu().numpy(), meta), len(candidates)


def grey_stack(maps: np.ndarray) -> np.ndarray:
    """Members' grey-scale maps ``Σ_channels |A|`` ``(n_members, N, H, W)`` (what the clusters summarise)."""
    return np.stack([grayscale_maps(torch.as_tensor(m))[0].numpy() for m in maps])
