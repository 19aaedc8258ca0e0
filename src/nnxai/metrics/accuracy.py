"""``accuracy``: the test accuracy of every model variant (METHODS.md, Evaluation: "the price of active
intervention"; survey Sec. IV: an active method changes the network's training, and what the explanation
gains is read beside what the network loses).

It scores the model, not an explanation: its only kind is :data:`MODEL_KIND`, which no explanation record
has, so :meth:`Metric.applies` never plans it on a method (the catalogue's ``judged_by`` lists ``accuracy``
for the rule extractors and active methods; their rules' own accuracy is ``fidelity.label_accuracy``, see
:mod:`nnxai.metrics.rules`).  The evaluate stage computes every metric of this kind once per model, with
method ``model`` (:data:`nnxai.paths.MODEL_ROW`) in ``all.csv``.
"""

from __future__ import annotations

from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric
from nnxai.paths import MODEL_ROW
from nnxai.training.trainer import accuracy

#: The kind of the metrics that score the model itself (no explanation record has it): the ``method`` of
#: their rows, :data:`~nnxai.paths.MODEL_ROW`.
MODEL_KIND = MODEL_ROW


def model_metric_ids(registered: dict[str, type[Metric]]) -> list[str]:
    """The ids, sorted, of the registered metrics that score the model itself (kind :data:`MODEL_KIND`)."""
    return sorted(m for m, cls in registered.items() if MODEL_KIND in cls.kinds)


@register_metric
class ModelAccuracy(Metric):
    """Fraction of the test split the model classifies as labelled, with each input's 0/1 correctness as
    :class:`PerInput` (so the evaluate stage reports a bootstrap interval over the test inputs).  Called with
    ``record`` and ``method`` ``None``: it reads only ``ctx.model`` and ``ctx.test``."""

    id = "accuracy"
    higher_is_better = True
    kinds = frozenset({MODEL_KIND})
    description = "test accuracy of the model variant (the price of an active intervention; higher is better)"

    def __call__(self, record, ctx, method=None):
        correct = accuracy(ctx.model, ctx.test.x, ctx.test.y, per_input=True)
        return {"accuracy": PerInput(correct)}
