"""Metrics of concept attributions (:class:`~nnxai.explanations.ConceptScores`: TCAV [63], ACE [115]).

* ``tcav_score`` (higher: the explanation finds concepts the class depends on): for each tested
  (concept, class) pair, how far its mean TCAV score ``T`` moves from the mean random-vs-random score
  ``r`` towards the extreme it moves to, ``(T - r) / (1 - r)`` if ``T > r`` else ``(r - T) / r``, counted
  only when the pair passes the record's Bonferroni-corrected t-test and 0 otherwise; the mean over pairs.
  0: no concept is told apart from random ones; 1: every concept is significant and every class input
  moves the same way along it (TCAV 1 or 0).  Sub-keys ``tcav_score.<concept>.<class>``: the pair's mean
  TCAV score, the number the paper reports; ``tcav_score.random.<class>``: the random mean ``r``.
* ``p_value``: the statistical test of [63] per (concept, class) pair, reported pair by pair and
  aggregated only as a count, since an average of p-values is not a p-value.  ``p_value.<concept>.<class>``
  is each pair's Bonferroni-corrected p-value (of the two-sided t-test of its TCAV scores against the
  random CAVs'); ``p_value`` (higher: more of the tested concepts stand out from random ones) and
  ``p_value.significant`` are the fraction of pairs significant at the record's ``alpha`` after the
  correction, ``p_value.n_significant`` and ``p_value.n_pairs`` the counts ("k of n pairs significant").
  Whether a significant concept is one the label depends on (or a distractor) is for the reader of the
  pairs to judge against the data set's rule; the count does not tell them apart.
* ``concept_coherence`` (higher: more coherent discovered concepts; ACE only, it needs member segments):
  on data sets with ground-truth concept masks (``shapes``), the mean over discovered concepts of their
  *purity*: the largest, over true concepts ``c`` (the mask channels but ``evidence``), mean fraction of a
  member segment's pixels inside mask ``c``; 1 when every member lies inside one true concept.
  ``concept_coherence.chance`` is the same purity of all kept segments of the concept's class pooled
  (what a concept of randomly drawn members would score), averaged over concepts.  Without masks
  (``digits``) it is the mean within-concept cosine similarity of the members' channel-mean activations
  at the record's layer minus the mean between-concept similarity; both terms are reported on every data
  set as ``concept_coherence.within_cosine`` / ``.between_cosine``.  The activations are centred on their
  mean over all members first (ReLU activations are non-negative, so uncentred cosines all lie near 1):
  the difference is then about 0 for members grouped at random and, for ``K`` equally large concepts whose
  members coincide and differ from the other concepts', ``1 + 1 / (K - 1)``.
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.ops import cav as _cav
from nnxai.ops.segments import decode_runs, segment_patch
from nnxai.metrics.base import Metric, register_metric

EXCLUDED_MASKS = ("evidence",)
BATCH = 256


def _tests(record) -> list:
    if not record.tests:
        raise ValueError("the concept record tests no (concept, class) pair")
    return record.tests


def _pair(record, test) -> str:
    return f"{test['concept']}.{record.class_names[test['class']]}"


def significant_contrast(test: dict) -> float:
    """``(T - r) / (1 - r)`` or ``(r - T) / r`` for a significant pair, else 0 (see the module docstring)."""
    if not test["significant"]:
        return 0.0
    t, r = test["tcav_score"], test["random_mean"]
    if t > r:
        return (t - r) / (1.0 - r)
    return (r - t) / r if r > 0 else 0.0


@register_metric
class TCAVScore(Metric):
    id = "tcav_score"
    higher_is_better = True
    kinds = frozenset({"concept_attribution"})
    description = "mean significant move of the TCAV score away from random CAVs' towards 0 or 1 [63]"

    def __call__(self, record, ctx, method):
        tests = _tests(record)
        out = {"tcav_score": float(np.mean([significant_contrast(t) for t in tests]))}
        out.update({f"tcav_score.{_pair(record, t)}": float(t["tcav_score"]) for t in tests})
        for k, scores in enumerate(record.random_scores):
            if scores:
                out[f"tcav_score.random.{record.class_names[k]}"] = float(np.mean(scores))
        return out


@register_metric
class PValue(Metric):
    id = "p_value"
    higher_is_better = True
    kinds = frozenset({"concept_attribution"})
    description = ("fraction of (concept, class) pairs whose TCAV scores differ from random CAVs' (Bonferroni-"
                   "corrected t-test [63]); each pair's corrected p-value as a sub-key")

    def __call__(self, record, ctx, method):
        tests = _tests(record)
        significant = [bool(t["significant"]) for t in tests]
        share = float(np.mean(significant))
        out = {"p_value": share, "p_value.significant": share,
               "p_value.n_significant": float(sum(significant)), "p_value.n_pairs": float(len(tests))}
        out.update({f"p_value.{_pair(record, t)}": float(t["p_value_corrected"]) for t in tests})
        return out


def _member_masks(record, shape) -> list[list[np.ndarray]]:
    if not record.members or not any(record.members):
        raise ValueError("concept_coherence scores discovered concepts; the record has no member segments "
                         "(only ACE records do)")
    return [[decode_runs(m["runs"], shape) for m in members] for members in record.members]


def purity(coverage: np.ndarray) -> float:
    """``max_c mean_i coverage[i, c]``: the share of the members' pixels inside the best true concept."""
    return float(coverage.mean(axis=0).max())


def mask_purity(record, masks: np.ndarray, mask_names: list, member_masks) -> tuple[float, float]:
    """Mean purity of the concepts and its chance level (each class's kept segments pooled)."""
    keep = [i for i, n in enumerate(mask_names) if n not in EXCLUDED_MASKS]
    coverage = []
    for members, segs in zip(record.members, member_masks):
        true = masks[[m["image"] for m in members]][:, keep]                    # (members, concepts, H, W)
        seg = np.stack(segs)[:, None]
        coverage.append((true & seg).sum(axis=(2, 3)) / seg.sum(axis=(2, 3)))
    classes = record.concept_classes or [0] * len(record.concepts)
    pooled = {k: np.concatenate([c for c, kk in zip(coverage, classes) if kk == k]) for k in set(classes)}
    return (float(np.mean([purity(c) for c in coverage])),
            float(np.mean([purity(pooled[k]) for k in classes])))


def cosine_coherence(record, ctx, member_masks) -> tuple[float, float]:
    """Mean within-concept and between-concept cosine similarity of the members' centred activations."""
    fill = torch.as_tensor(record.meta.get("fill") or
                           ctx.train.x.float().mean(dim=(0, *range(2, ctx.train.x.dim()))).tolist(),
                           dtype=ctx.test.x.dtype)
    patches, owner = [], []
    for j, (members, segs) in enumerate(zip(record.members, member_masks)):
        for m, seg in zip(members, segs):
            patches.append(segment_patch(ctx.test.x[m["image"]], seg, fill))
            owner.append(j)
    module = _cav.layer_module(ctx.model, record.layer)
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        acts = _cav.layer_activations(ctx.model, module, torch.stack(patches), BATCH, ctx.device,
                                      record.meta.get("activations", "channel_mean"))
    finally:
        ctx.model.train(was_training)
    acts = acts - acts.mean(axis=0)         # ReLU activations are non-negative: uncentred cosines are all ~1
    norms = np.linalg.norm(acts, axis=1, keepdims=True)
    return within_between_cosine(acts / np.where(norms > 0, norms, 1.0), np.asarray(owner))


def within_between_cosine(unit: np.ndarray, owner: np.ndarray) -> tuple[float, float]:
    """Mean cosine over pairs of distinct members of one concept (averaged over concepts) and over pairs
    from different concepts, for unit rows ``unit``; from group sums (``Σ_{i,j∈g} u_i·u_j = ||Σ_{i∈g} u_i||²``),
    so no members × members matrix is formed."""
    groups = [unit[owner == j] for j in np.unique(owner)]
    sums = [g.sum(axis=0) for g in groups]
    squares = np.array([s @ s for s in sums])
    sizes = np.array([len(g) for g in groups], dtype=np.float64)
    self_terms = np.array([(g * g).sum() for g in groups])
    many = sizes > 1
    within = ((squares - self_terms)[many] / (sizes * (sizes - 1))[many]).mean() if many.any() else np.nan
    total = unit.sum(axis=0)
    cross_pairs = sizes.sum() ** 2 - (sizes ** 2).sum()
    between = (total @ total - squares.sum()) / cross_pairs if cross_pairs > 0 else np.nan
    return float(within), float(between)


@register_metric
class ConceptCoherence(Metric):
    id = "concept_coherence"
    higher_is_better = True
    kinds = frozenset({"concept_attribution"})
    description = ("purity of discovered concepts w.r.t. ground-truth concept masks, else within- minus "
                   "between-concept cosine similarity of activations [115]")

    def __call__(self, record, ctx, method):
        member_masks = _member_masks(record, tuple(ctx.test.x.shape[-2:]))
        n_test = len(ctx.test.x)
        bad = [m["image"] for members in record.members for m in members if not 0 <= m["image"] < n_test]
        if bad:
            raise ValueError(f"member segments of test image {bad[0]} but the test split has {n_test} images; "
                             "was the record made on another split size? rerun its explain stage")
        within, between = cosine_coherence(record, ctx, member_masks)
        out = {"concept_coherence.within_cosine": within, "concept_coherence.between_cosine": between}
        if ctx.test.masks is not None:
            names = list(ctx.test.meta.get("mask_names") or ctx.info.mask_names)
            if len(names) != ctx.test.masks.shape[1]:
                raise ValueError(f"{ctx.test.masks.shape[1]} mask channels but mask names {names}")
            out["concept_coherence"], out["concept_coherence.chance"] = mask_purity(
                record, ctx.test.masks, names, member_masks)
        else:
            out["concept_coherence"] = within - between
        return out
