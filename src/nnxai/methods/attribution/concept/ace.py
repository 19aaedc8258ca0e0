"""ACE, Automatic Concept-based Explanations, Ghorbani, Wexler, Zou & Kim, NeurIPS 2019 (survey ref. [115]).

TCAV [63] needs concept example sets chosen by a person; ACE discovers them from the images of a class
(the paper's Sec. 3 and Fig. 1), then scores them with TCAV:

1. **Segment** the ``n_images`` test images of label ``k`` with SLIC at several ``resolutions``, and turn
   each segment into a patch resized to the input size on a train-mean background
   (:mod:`~nnxai.ops.segments`).
2. **Cluster** the patches' activations at ``layer`` (averaged over space per channel, the reference
   code's default ``channel_mean=True``) with k-means (scikit-learn, seeded, ``n_clusters``).
3. **Filter** (the reference code's ``_cluster`` conditions): a cluster becomes a concept if it has at
   least ``min_members`` segments and they are *popular*: from more distinct images than half its size,
   or from more than a quarter of its size and a quarter of the discovery images, or from more than a
   tenth of its size when it holds more segments than half the discovery images.  Outliers are removed by
   keeping the ``n_members`` segments closest to the cluster centre.
4. **Importance**: the TCAV score (Eq. 2 of [63]) of each discovered concept for its class, computed on
   the discovery images, with ``n_runs`` CAVs against random sets of ``n_members`` *random segments*
   (patches of the segments of ``n_images`` random training images of any class), and the same two-sided
   t-test against ``n_random`` random-vs-random CAVs with Bonferroni correction as TCAV
   (:mod:`~nnxai.ops.cav`).  The reference code draws its random sets from random
   images; segments on a mean background differ from whole images in ways any CAV would pick up, so the
   random sets are segments here, as the concepts are.  With channel-mean activations the sensitivity
   is the derivative of shifting every position of the layer by the CAV, ``Σ_hw ∇h_{l,k} · v``.

Concepts are named ``<class>_concept<j>``; the record keeps each one's class and member segments (image,
resolution, SLIC label, bounding box, area and pixel runs), which ``concept_coherence`` reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nnxai.explanations import ConceptScores
from nnxai.ops import cav as _cav
from nnxai.ops.segments import segments_and_patches
from nnxai.methods.attribution.concept.tcav import class_names
from nnxai.methods.base import ExplainContext, Method
from nnxai.registry import register

#: k-means restarts: scikit-learn's long-standing default, which the reference code relies on.
KMEANS_N_INIT = 10
REDUCE = "channel_mean"


def popular(images: np.ndarray, n_discovery: int) -> bool:
    """The reference code's conditions on a cluster whose members come from ``images`` (one per member)."""
    n, distinct = len(images), len(np.unique(images))
    highly_common = distinct > 0.5 * n
    mildly = distinct > 0.25 * n and distinct > 0.25 * n_discovery
    non_common_but_large = distinct > 0.1 * n and n > 0.5 * n_discovery
    return bool(highly_common or mildly or non_common_but_large)


def discover(acts: np.ndarray, images: np.ndarray, n_discovery: int, n_clusters: int, min_members: int,
             n_members: int, seed: int) -> list[np.ndarray]:
    """k-means on ``acts``; the members (row positions, nearest first) of every kept cluster."""
    from sklearn.cluster import KMeans

    k = min(n_clusters, len(acts))
    if k < 1:
        return []
    km = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit(acts)
    distance = km.transform(acts)[np.arange(len(acts)), km.labels_]
    concepts = []
    for j in range(k):
        members = np.flatnonzero(km.labels_ == j)
        if len(members) < min_members or not popular(images[members], n_discovery):
            continue
        concepts.append(members[np.argsort(distance[members], kind="stable")[:n_members]])
    return concepts


def _check_resolutions(owner: str, resolutions: Any) -> None:
    if (not isinstance(resolutions, (list, tuple)) or not resolutions
            or any(isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1 for r in resolutions)):
        raise ValueError(f"{owner}: parameter 'resolutions' must be a non-empty list of integers >= 1 "
                         f"(SLIC n_segments), got {resolutions!r}")


@register("ace")
class ACE(Method):
    """Concepts discovered by clustering segments, ranked by TCAV with the significance test [115].

    Parameters
    ----------
    layer : str
        Unit layer (``model.unit_layers()``; ConvNet: ``conv1``, ``conv2``, ``conv3``).
    n_images : int
        Discovery images per class (test split) and random images (train split).
    resolutions : list of int
        SLIC ``n_segments`` of the multi-resolution segmentation (the paper: 15, 50, 80 on ImageNet).
    compactness : float
        SLIC compactness (> 0; the reference code uses 20).
    n_clusters : int
        k-means clusters per class (the paper: 25).
    min_members : int
        Smallest cluster that can become a concept.
    n_members : int
        Segments kept per concept, the closest to its centre; also the size of the random sets.
    n_runs, n_random, alpha, cav_l2, batch_size
        As for :class:`~nnxai.methods.attribution.concept.tcav.TCAV`.
    """
    trains = True            # fits k-means concepts and CAVs (companion survey's 'Training' column)

    record_type = ConceptScores
    param_names = ("layer", "n_images", "resolutions", "compactness", "n_clusters", "min_members", "n_members",
                   "n_runs", "n_random", "alpha", "cav_l2", "batch_size")
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})

    def __init__(self, **params: Any):
        super().__init__(**params)
        owner = f"method {self.spec.id!r}"
        _cav.check_params(owner, self.params, ("n_images", "n_clusters", "min_members", "n_members", "n_runs",
                                               "n_random", "batch_size"))
        _check_resolutions(owner, self.params["resolutions"])
        c = self.params["compactness"]
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not np.isfinite(c) or c <= 0:
            raise ValueError(f"{owner}: parameter 'compactness' must be a finite number > 0, got {c!r}")
        if self.params["min_members"] > self.params["n_members"]:
            raise ValueError(f"{owner}: min_members ({self.params['min_members']}) must not exceed n_members "
                             f"({self.params['n_members']})")

    def _run(self, ctx: ExplainContext) -> tuple[ConceptScores, int]:
        p = self.params
        module = _cav.layer_module(ctx.model, p["layer"])
        fill = ctx.train.x.float().mean(dim=(0, *range(2, ctx.train.x.dim())))
        was_training = ctx.model.training
        ctx.model.eval()
        try:
            pool = self._random_pool(ctx, module, fill)
            found = [self._discover_class(ctx, module, fill, k) for k in range(ctx.info.n_classes)]
        finally:
            ctx.model.train(was_training)
        found = [f for f in found if f is not None]
        if not found:
            raise ValueError("the test split holds no labelled images to discover concepts in")

        rng = np.random.default_rng([ctx.seed, 115])
        randoms = [pool[i] for i in _cav.random_sets(len(pool), p["n_members"],
                                                      max(p["n_runs"], p["n_random"] + 1), rng)]
        null = _cav.random_cavs(randoms, p["n_random"], p["cav_l2"])
        names, classes, members, cavs, pairs, gradients = [], [], [], {}, [], {}
        labels = class_names(ctx)
        for k, gradient, concepts in found:
            gradients[k] = gradient
            for j, (acts, segments) in enumerate(concepts, start=1):
                name = f"{labels[k]}_concept{j}"
                names.append(name)
                classes.append(k)
                members.append([s.describe() for s in segments])
                cavs[name] = _cav.cav_runs(acts, randoms[:p["n_runs"]], p["cav_l2"])
                pairs.append((name, k))
        if not pairs:
            raise ValueError(f"ACE discovered no concept: no cluster had {p['min_members']} popular segments; "
                             "lower min_members or raise n_images")
        tests, random = _cav.significance_tests(pairs, cavs, null, gradients, p["alpha"])
        record = ConceptScores(
            concepts=names, layer=p["layer"], class_names=labels, tests=tests,
            random_scores=[random.get(k, []) for k in range(ctx.info.n_classes)], alpha=float(p["alpha"]),
            concept_classes=classes, members=members,
            meta={"n_random_segments": int(len(pool)), "correction": "bonferroni", "n_tests": len(tests),
                  "activations": REDUCE, "fill": fill.tolist()})
        return record, sum(len(g) for g in gradients.values())

    def _random_pool(self, ctx, module, fill) -> np.ndarray:
        """Channel-mean activations of the segments of ``n_images`` seeded random training images."""
        rng = np.random.default_rng([ctx.seed, 115, 0])
        idx = np.sort(rng.permutation(len(ctx.train.x))[:self.params["n_images"]])
        _segments, patches = segments_and_patches(ctx.train.x[torch.as_tensor(idx)], idx,
                                                  self.params["resolutions"], self.params["compactness"], fill)
        return _cav.layer_activations(ctx.model, module, patches, self.params["batch_size"], ctx.device, REDUCE)

    def _discover_class(self, ctx, module, fill, k):
        """``(k, layer gradients of the discovery images, [(member activations, member segments), ...])``."""
        p = self.params
        idx = _cav.class_inputs(np.asarray(ctx.test.y), k, p["n_images"], ctx.seed)
        if not len(idx):
            return None
        images = ctx.test.x[torch.as_tensor(idx)]
        segments, patches = segments_and_patches(images, idx, p["resolutions"], p["compactness"], fill)
        acts = _cav.layer_activations(ctx.model, module, patches, p["batch_size"], ctx.device, REDUCE)
        image_of = np.array([s.image for s in segments])
        clusters = discover(acts, image_of, len(idx), p["n_clusters"], p["min_members"], p["n_members"],
                            seed=int(np.random.default_rng([ctx.seed, 115, 1 + k]).integers(2**31)))
        gradient = _cav.layer_gradients(ctx.model, module, images, k, p["batch_size"], ctx.device, REDUCE)
        return k, gradient, [(acts[m], [segments[i] for i in m]) for m in clusters]
