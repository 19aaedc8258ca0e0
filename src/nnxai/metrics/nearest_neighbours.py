"""``label_agreement``: do the training examples that explain a prediction by similarity [146] carry the label
the network predicted?

Caruana et al. justify a case-based explanation by its cases: a prediction is explained well when the
training cases the network finds most similar to the input are of the class it predicts (a user reading
them would draw the network's conclusion).  For each explained input ``t`` with prediction ``ŷ_t`` and
neighbours ``N_t`` (the record's ``examples``, train positions):

* ``label_agreement``: ``|{i ∈ N_t : y_i = ŷ_t}| / |N_t|``, ``y_i`` the neighbour's training label;
* ``label_agreement.true_label``: the same fraction against the input's true label ``y_t``;
* ``label_agreement.knn_accuracy``: whether the ``|N_t|``-NN classifier (majority label of ``N_t``; a tie goes
  to the tied label of the nearest neighbour) predicts ``y_t``: the accuracy of the case base read as a
  classifier in the network's representation.

Each is a mean over the explained inputs (:class:`~nnxai.intervals.PerInput`, with its bootstrap interval);
higher is better.  Labels are read from the run's splits (``ctx.train.y``, ``ctx.test.y``), predictions from
the record's ``targets``.
"""

from __future__ import annotations

import numpy as np

from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric


def majority_label(labels: np.ndarray) -> int:
    """The most frequent label of a row ordered nearest first; ties go to the tied label seen first."""
    values, counts = np.unique(labels, return_counts=True)
    tied = set(values[counts == counts.max()].tolist())
    return int(next(v for v in labels.tolist() if v in tied))


def neighbour_table(record, n_train: int) -> np.ndarray:
    """The record's ``examples`` as an ``(inputs, k)`` integer array of train positions, checked."""
    rows = [list(r) for r in record.examples]
    if not rows or any(len(r) == 0 for r in rows) or len({len(r) for r in rows}) != 1:
        raise ValueError("label_agreement needs the same positive number of neighbours for every explained input; "
                         f"the record has {sorted({len(r) for r in rows})} per input")
    table = np.asarray(rows, dtype=np.int64)
    if table.min() < 0 or table.max() >= n_train:
        raise ValueError(f"neighbour positions must lie in the train split 0..{n_train - 1}")
    return table


@register_metric
class LabelAgreement(Metric):
    id = "label_agreement"
    higher_is_better = True
    kinds = frozenset({"example"})
    description = ("fraction of each input's nearest training examples whose label is the network's prediction "
                   "(sub-keys: against the true label, and the k-NN classifier's accuracy) [146]")

    def __call__(self, record, ctx, method):
        train_y, test_y = np.asarray(ctx.train.y), np.asarray(ctx.test.y)
        table = neighbour_table(record, len(train_y))
        labels = train_y[table]
        predicted = np.asarray(record.targets, dtype=np.int64)
        true = test_y[np.asarray(record.indices, dtype=np.int64)]
        if len(predicted) != len(table):
            raise ValueError(f"{len(predicted)} predictions for {len(table)} explained inputs")
        knn = np.array([majority_label(row) for row in labels])
        return {
            "label_agreement": PerInput((labels == predicted[:, None]).mean(1)),
            "label_agreement.true_label": PerInput((labels == true[:, None]).mean(1)),
            "label_agreement.knn_accuracy": PerInput(knn == true),
        }
