"""Metrics of hidden-semantics explanations, after Network Dissection [21] (Bau et al., CVPR 2017, Sec. 3).

* ``dissection_iou``: how well units segment their best concept — the mean over units of the best
  ``IoU_{k,c}`` (``dissection_iou``), the same per layer (``dissection_iou.<layer>``) and the fraction of
  units that are detectors, best IoU above the method's ``iou_threshold`` (``dissection_iou.detectors``).
* ``n_unique_detectors``: the paper's "number of unique detectors", the number of distinct concepts that
  at least one detector unit is labelled with.

A unit record needs ``layer``, ``concept``, its best IoU as ``iou`` (or ``score``), and ``detector``; when
``detector`` is absent it is ``iou > meta["params"]["iou_threshold"]`` of the record.
"""

from __future__ import annotations

import numpy as np

from nnxai.metrics.base import Metric, register_metric


def _unit_iou(unit: dict) -> float:
    if "iou" in unit:
        return float(unit["iou"])
    if "score" in unit:
        return float(unit["score"])
    raise ValueError(f"unit record {unit.get('layer')}/{unit.get('unit')} has neither 'iou' nor 'score'")


def _is_detector(unit: dict, record) -> bool:
    if "detector" in unit:
        return bool(unit["detector"])
    threshold = record.meta.get("params", {}).get("iou_threshold")
    if threshold is None:
        raise ValueError("unit records without 'detector' need meta['params']['iou_threshold'] in the record")
    return _unit_iou(unit) > float(threshold)


def _units(record) -> list:
    if not record.units:
        raise ValueError("the hidden-semantics record labels no units")
    return record.units


@register_metric
class DissectionIoU(Metric):
    id = "dissection_iou"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    needs_masks = True
    description = "mean best unit/concept IoU over units, per layer, and the fraction of detector units [21]"

    def __call__(self, record, ctx, method):
        units = _units(record)
        out = {"dissection_iou": float(np.mean([_unit_iou(u) for u in units]))}
        for layer in dict.fromkeys(u["layer"] for u in units):
            out[f"dissection_iou.{layer}"] = float(np.mean([_unit_iou(u) for u in units if u["layer"] == layer]))
        out["dissection_iou.detectors"] = float(np.mean([_is_detector(u, record) for u in units]))
        return out


@register_metric
class UniqueDetectors(Metric):
    id = "n_unique_detectors"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    needs_masks = True
    description = "number of distinct concepts with at least one detector unit [21]"

    def __call__(self, record, ctx, method):
        concepts = {u["concept"] for u in _units(record) if _is_detector(u, record)}
        return {"n_unique_detectors": float(len(concepts))}
