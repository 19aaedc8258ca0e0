"""``part_consistency``: does each interpretable filter fire on the same part in every image? After the
*location instability* evaluation of the interpretable CNN (Zhang, Wu & Zhu [70], experiments): a filter that
represents one part should place its peak on that part in every image where it fires.

The paper measures, over a filter's top images, the spread of the distances between the inferred part
position (the peak, projected to the image) and annotated landmarks.  ``shapes`` has no landmarks but
exact per-pixel concept masks, so the deviation is scored against the part itself: for each filter ``k``
and each of its top-activating images ``I`` (the record's ``top_images``), a hit when the peak's input
pixel (``peaks``) lies inside the mask of the filter's assigned concept (its ``concept``, the part
Network Dissection labels it with) on ``I``:

    part_consistency = mean over (filter, top image) pairs of 1[peak_k(I) ∈ M_{c_k}(I)]

Every filter has the same number of top images (the method's ``top_images``; fewer only where it fires on
fewer images), so this is, up to those, the mean over filters of each filter's hit rate.  It is returned
per (filter, image) pair (:class:`~nnxai.intervals.PerInput`, the bootstrap interval over those pairs);
higher is better, 1 when every filter always fires inside its part.

``part_consistency.chance``: the same mean of the masks' area fractions, the expected score of peaks
placed uniformly at random in the image — the reference a filter must beat.  ``part_consistency.objects``:
the score over the filters labelled with an object concept only (not ``background``): a filter that
always peaks at one fixed spot of the background is consistent, but it represents no part of the object.
"""

from __future__ import annotations

import numpy as np

from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric


BACKGROUND = "background"


def part_hits(units: list[dict], masks: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (filter, top image) pair: the hit ``1[peak ∈ M_c]``, the area fraction of ``M_c`` (chance) and
    whether ``c`` is an object concept (not :data:`BACKGROUND`).

    ``masks``: the test split's bool masks ``(N, C, H, W)``, channels named ``names``.
    """
    hits, chance, objects = [], [], []
    for unit in units:
        for key in ("concept", "top_images", "peaks"):
            if key not in unit:
                raise ValueError(f"unit {unit.get('layer')}/{unit.get('unit')} has no {key!r}: part_consistency "
                                 "scores records that list each filter's top images and peak positions")
        if unit["concept"] is None:
            continue
        if unit["concept"] not in names:
            raise ValueError(f"concept {unit['concept']!r} is not one of the masks {names}")
        channel = names.index(unit["concept"])
        if len(unit["top_images"]) != len(unit["peaks"]):
            raise ValueError(f"unit {unit.get('unit')}: {len(unit['top_images'])} top images but "
                             f"{len(unit['peaks'])} peaks")
        for image, (row, col) in zip(unit["top_images"], unit["peaks"]):
            mask = masks[image, channel]
            hits.append(float(mask[row, col]))
            chance.append(float(mask.mean()))
            objects.append(unit["concept"] != BACKGROUND)
    return np.asarray(hits), np.asarray(chance), np.asarray(objects, dtype=bool)


@register_metric
class PartConsistency(Metric):
    id = "part_consistency"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    needs_masks = True
    description = ("share of each filter's top images whose peak lies inside the mask of the filter's part, "
                   "over filters (location consistency of [70])")

    def __call__(self, record, ctx, method):
        if ctx.test.masks is None:
            raise ValueError(f"{ctx.dataset} has no ground-truth masks")
        names = list(ctx.test.meta.get("mask_names") or ctx.info.mask_names)
        hits, chance, objects = part_hits(record.units, np.asarray(ctx.test.masks), names)
        if hits.size == 0:
            raise ValueError("no filter of the record has a concept and top images to score")
        out = {"part_consistency": PerInput(hits), "part_consistency.chance": float(chance.mean())}
        if objects.any():
            out["part_consistency.objects"] = PerInput(hits[objects])
        return out
