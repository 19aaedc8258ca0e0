"""Metrics of Net2Vec [99] (Fong & Vedaldi, CVPR 2018), read from the record's held-out scores.

The embeddings are fitted on train-split images and every number is measured on held-out test images
(``meta["protocol"]`` of the record; :mod:`nnxai.methods.hidden_semantics.net2vec`).  Both metrics are means
over the concepts that have a segmentation embedding and a held-out pixel (the others carry ``None``), at the
record's ``headline_layer`` (the deepest conv layer, the paper's conv5), with the same mean per layer as
``<id>.<layer>``; the concept means get a bootstrap interval over concepts (:class:`~nnxai.intervals.PerInput`).

* ``concept_seg_iou``: the set IoU of the multi-filter segmentation ``σ(wᵀA + b) > 0.5`` with the concept
  masks (the paper's segmentation score); ``concept_seg_iou.single`` the same for the best single filter,
  ``concept_seg_iou.cls_ap`` the mean held-out AP of the classification embeddings.
* ``single_vs_multi_filter_gain``: multi-filter minus best-single-filter IoU per concept, the paper's
  headline (its abstract: "in most cases, multiple filters are required to code for a concept");
  ``.cls_ap`` the same difference of classification APs.
"""

from __future__ import annotations

import numpy as np

from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric


def _scores(record) -> tuple[dict, str]:
    scores = record.meta.get("scores")
    layer = record.meta.get("headline_layer")
    if not isinstance(scores, dict) or not scores or layer not in scores:
        raise ValueError("the record has no Net2Vec scores (meta['scores'] per layer with meta['headline_layer']); "
                         "it was not written by net2vec")
    return scores, layer


def _values(per_concept: dict, key: str, minus: str | None = None) -> np.ndarray:
    """One value per concept (NaN where the record has ``None``), or the difference of two keys."""
    out = []
    for entry in per_concept.values():
        a = entry.get(key)
        b = entry.get(minus) if minus else 0.0
        out.append(np.nan if a is None or b is None else float(a) - float(b))
    return np.asarray(out, dtype=np.float64)


def _means(scores: dict, headline: str, metric_id: str, subs: dict[str, tuple[str, str | None]]) -> dict:
    out = {}
    for sub, (key, minus) in subs.items():
        name = metric_id if sub == "" else f"{metric_id}.{sub}"
        out[name] = PerInput(_values(scores[headline], key, minus))
        if sub == "":
            for layer, per_concept in scores.items():
                out[f"{metric_id}.{layer}"] = PerInput(_values(per_concept, key, minus))
    return out


@register_metric
class ConceptSegIoU(Metric):
    id = "concept_seg_iou"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    needs_masks = True
    description = ("mean over concepts of the held-out set IoU of the Net2Vec multi-filter segmentation, at the "
                   "deepest layer and per layer [99]")

    def __call__(self, record, ctx, method):
        scores, headline = _scores(record)
        return _means(scores, headline, self.id, {"": ("seg_iou", None), "single": ("single_iou", None),
                                                  "cls_ap": ("cls_ap", None)})


@register_metric
class SingleVsMultiFilterGain(Metric):
    id = "single_vs_multi_filter_gain"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    needs_masks = True
    description = ("multi-filter minus best-single-filter held-out IoU, mean over concepts (the headline of "
                   "Net2Vec [99]); .cls_ap: the same for classification AP")

    def __call__(self, record, ctx, method):
        scores, headline = _scores(record)
        return _means(scores, headline, self.id, {"": ("seg_iou", "single_iou"), "cls_ap": ("cls_ap", "single_cls_ap")})
