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

import numpy as np
import torch

from nnxai.explanations import ConceptScores
from nnxai.ops import cav as _cav
from nnxai.ops.segments import segments_and_patches
from nnxai.methods.attribution.concept.tcav import CAV_PARAMETERS, class_names
from nnxai.methods.base import ExplainContext, Method
from nnxai.params import Float, Int, List, ParamError
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


@register("ace")
class ACE(Method):
    """Concepts discovered by clustering segments, ranked by TCAV with the significance test [115].

    :meth:`fit` learns what does not depend on the explained class from the train split: the patch
    background ``fill_`` (the train mean per channel), the random sets of segments ``random_sets_`` (step 4)
    and the random-vs-random CAVs ``random_cavs_``.  Explaining discovers the concepts of every class in
    the test images (steps 1-3), trains their CAVs against ``random_sets_`` and tests them.
    """
    trains = True            # fits k-means concepts and CAVs (companion survey's 'Training' column)

    record_type = ConceptScores
    parameters = {
        **CAV_PARAMETERS,
        "n_images": Int("discovery images per class (test split), and random images (train split)", low=1),
        "resolutions": List("SLIC n_segments of the multi-resolution segmentation (the paper: 15, 50, 80 on "
                            "ImageNet)", item=Int("SLIC n_segments", low=1)),
        "compactness": Float("SLIC compactness (the reference code: 20)", low=0.0, low_open=True),
        "n_clusters": Int("k-means clusters per class (the paper: 25)", low=1),
        "min_members": Int("smallest cluster that can become a concept", low=1),
        "n_members": Int("segments kept per concept, the closest to its centre; also the size of the random "
                         "sets", low=1),
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})

    @classmethod
    def check_combination(cls, params) -> None:
        if params["min_members"] > params["n_members"]:
            raise ParamError(f"method {cls.spec.id!r}: min_members ({params['min_members']}) must not exceed "
                             f"n_members ({params['n_members']}), the segments a concept keeps")

    def _fit(self, model, train) -> None:
        p = self.params
        module = _cav.layer_module(model, p["layer"])
        self.fill_ = train.x.float().mean(dim=(0, *range(2, train.x.dim())))
        with _cav.eval_mode(model):
            pool = self._random_pool(model, train, module)
        rng = np.random.default_rng([self.seed, 115])
        self.random_sets_ = [pool[i] for i in _cav.random_sets(len(pool), p["n_members"],
                                                                max(p["n_runs"], p["n_random"] + 1), rng)]
        self.random_cavs_ = _cav.random_cavs(self.random_sets_, p["n_random"], p["cav_l2"])
        self.n_random_segments_ = int(len(pool))

    def _random_pool(self, model, train, module) -> np.ndarray:
        """Channel-mean activations of the segments of ``n_images`` seeded random training images."""
        rng = np.random.default_rng([self.seed, 115, 0])
        idx = np.sort(rng.permutation(len(train.x))[:self.params["n_images"]])
        _segments, patches = segments_and_patches(train.x[torch.as_tensor(idx)], idx, self.params["resolutions"],
                                                  self.params["compactness"], self.fill_)
        return _cav.layer_activations(model, module, patches, self.params["batch_size"], _cav.model_device(model),
                                      REDUCE)

    def _run(self, ctx: ExplainContext) -> tuple[ConceptScores, int]:
        self.check_fitted(ctx.model)
        p = self.params
        module = _cav.layer_module(ctx.model, p["layer"])
        with _cav.eval_mode(ctx.model):
            found = [self._discover_class(ctx, module, k) for k in range(ctx.info.n_classes)]
        found = [f for f in found if f is not None]
        if not found:
            raise ValueError("the test split holds no labelled images to discover concepts in")
        names, classes, members, cavs, pairs, gradients = [], [], [], {}, [], {}
        labels = class_names(ctx)
        for k, gradient, concepts in found:
            gradients[k] = gradient
            for j, (acts, segments) in enumerate(concepts, start=1):
                name = f"{labels[k]}_concept{j}"
                names.append(name)
                classes.append(k)
                members.append([s.describe() for s in segments])
                cavs[name] = _cav.cav_runs(acts, self.random_sets_[:p["n_runs"]], p["cav_l2"])
                pairs.append((name, k))
        if not pairs:
            raise ValueError(f"ACE discovered no concept: no cluster had {p['min_members']} popular segments; "
                             "lower min_members or raise n_images")
        tests, random = _cav.significance_tests(pairs, cavs, self.random_cavs_, gradients, p["alpha"])
        record = ConceptScores(
            concepts=names, layer=p["layer"], class_names=labels, tests=tests,
            random_scores=[random.get(k, []) for k in range(ctx.info.n_classes)], alpha=float(p["alpha"]),
            concept_classes=classes, members=members,
            meta={"n_random_segments": self.n_random_segments_, "correction": "bonferroni", "n_tests": len(tests),
                  "activations": REDUCE, "fill": self.fill_.tolist()})
        return record, sum(len(g) for g in gradients.values())

    def _discover_class(self, ctx, module, k):
        """``(k, layer gradients of the discovery images, [(member activations, member segments), ...])``."""
        p = self.params
        idx = _cav.class_inputs(np.asarray(ctx.test.y), k, p["n_images"], ctx.seed)
        if not len(idx):
            return None
        images = ctx.test.x[torch.as_tensor(idx)]
        segments, patches = segments_and_patches(images, idx, p["resolutions"], p["compactness"], self.fill_)
        acts = _cav.layer_activations(ctx.model, module, patches, p["batch_size"], ctx.device, REDUCE)
        image_of = np.array([s.image for s in segments])
        clusters = discover(acts, image_of, len(idx), p["n_clusters"], p["min_members"], p["n_members"],
                            seed=int(np.random.default_rng([ctx.seed, 115, 1 + k]).integers(2**31)))
        gradient = _cav.layer_gradients(ctx.model, module, images, k, p["batch_size"], ctx.device, REDUCE)
        return k, gradient, [(acts[m], [segments[i] for i in m]) for m in clusters]
