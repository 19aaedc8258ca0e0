"""Metrics of counterfactual visual explanations (CVE, Goyal et al. [78]): how few feature-cell edits turn the
query into the distractor's class, and for how many queries they do.

Both re-apply each record entry's edits to the network instead of trusting the record: the query's and the
distractor's last-conv-layer features are recomputed from the test split (``feature_maps``), the listed
query cells are replaced by the listed distractor cells (:func:`nnxai.methods.rule.local.cve.apply_edits`),
and the network's head classifies the result.  An entry *flips* when that class is the entry's
``distractor_class``.

* ``flip_rate``: the fraction of explained inputs whose edits flip the decision (higher is better; the
  search of [78] stops when the decision flips, so anything below 1 means no distractor was found or the
  record does not hold);
* ``edits_to_flip``: the mean number of edits over the inputs that flip (lower is better: the paper's
  minimum-edit objective ``||a||_1``, reported by its authors as the average number of edits);
  ``edits_to_flip.fraction``: the same as a fraction of the grid's ``h x w`` cells, comparable across
  networks of different grids.
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.explanations import LocalRules
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric


def verified_flips(record: LocalRules, ctx) -> np.ndarray:
    """Per entry, whether its edits, re-applied to the network, give the distractor's class."""
    from nnxai.methods.rule.local.cve import apply_edits, feature_maps, head   # lazy: metrics load first

    if not isinstance(record, LocalRules):
        raise ValueError(f"counterfactual edit metrics score LocalRules records, got {type(record).__name__}")
    model = ctx.model
    param = next(model.parameters())
    flips = np.zeros(len(record.explanations), dtype=bool)
    for k, (index, entry) in enumerate(zip(record.indices, record.explanations)):
        if entry.get("distractor") is None:
            continue
        pair = ctx.test.x[[int(index), int(entry["distractor"])]]
        query, distractor = feature_maps(model, pair)
        edited = apply_edits(query, distractor, entry["edits"])[None].to(param.dtype).to(param.device)
        with torch.no_grad():
            flips[k] = int(head(model, edited).argmax(1).item()) == int(entry["distractor_class"])
    return flips


@register_metric
class FlipRate(Metric):
    """Fraction of explained inputs whose counterfactual edits, re-applied, make the network answer the
    distractor's class."""

    id = "flip_rate"
    higher_is_better = True
    kinds = frozenset({"local_rule"})
    description = "fraction of explained inputs whose feature-cell edits flip the network to the distractor's class"

    def __call__(self, record, ctx, method=None):
        return {"flip_rate": PerInput(verified_flips(record, ctx).astype(np.float64))}


@register_metric
class EditsToFlip(Metric):
    """Mean number of feature-cell edits over the inputs whose edits flip the decision (``.fraction``: per
    cell of the grid); NaN when none flips."""

    id = "edits_to_flip"
    higher_is_better = False
    kinds = frozenset({"local_rule"})
    description = "mean number of feature-cell replacements that flip the decision (flipped inputs only)"

    def __call__(self, record, ctx, method=None):
        flips = verified_flips(record, ctx)
        edits = np.array([len(e["edits"]) for e in record.explanations], dtype=np.float64)
        grid = record.extra.get("grid") or [np.nan, np.nan]
        cells = float(grid[0]) * float(grid[1])
        counts = np.where(flips, edits, np.nan)
        return {"edits_to_flip": PerInput(counts), "edits_to_flip.fraction": PerInput(counts / cells)}
