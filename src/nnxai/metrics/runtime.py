"""The ``runtime`` metric: measured seconds per explained input (METHODS.md, Evaluation)."""

from __future__ import annotations

from nnxai.metrics.base import Metric, register_metric


@register_metric
class Runtime(Metric):
    id = "runtime"
    higher_is_better = False
    kinds = frozenset({"attribution", "concept_attribution", "rule", "hidden_semantics", "example"})
    universal = True
    reads_timing = True
    description = "wall-clock seconds per explained input, measured in the explain stage"

    def __call__(self, record, ctx, method):
        return {"runtime": float(record.meta["seconds_per_input"])}
