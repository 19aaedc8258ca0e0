"""The two evaluations of MMD-critic's prototypes [147] (Kim, Khanna, Koyejo, NeurIPS 2016):

* ``mmd`` (lower is better): ``MMD²(X, X_S)`` of the paper's Eq. (2) between the train split ``X`` and the
  prototypes ``X_S``, in the network's penultimate space with the record's kernel (its ``gamma``, and the
  class-local or global RBF kernel it names): the quantity the prototypes were chosen to minimise,
  recomputed here from the model and the split rather than read from the record.  ``mmd.random``: the
  mean MMD² of ``n_random`` seeded random subsets of the train split of the same size, the reference a
  selection must beat; ``mmd.ratio``: ``mmd / mmd.random`` (below 1: better than random; comparable across
  networks, whose kernels differ in γ).
* ``nn_classifier_accuracy`` (higher is better): the paper's Sec. 5.1 evaluation, the nearest-prototype
  classifier: each explained test input gets the training label of its nearest prototype (the record's
  example); the fraction of inputs where that is the true label.  ``nn_classifier_accuracy.network_agreement``:
  the fraction where it is the network's prediction (how well the prototypes summarise what the network
  does).  Both are means over the explained inputs (:class:`~nnxai.intervals.PerInput`).
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.intervals import PerInput
from nnxai.methods.example._latent import latent_features
from nnxai.methods.example._mmd import RBFKernel, SquaredDistances, mmd2
from nnxai.metrics.base import Metric, register_metric
from nnxai.params import Int

REQUIRED = ("prototypes", "gamma", "kernel")


def _extra(record, keys) -> dict:
    missing = [k for k in keys if k not in record.extra]
    if missing:
        raise ValueError(f"the example record lacks extra entries {missing}; the MMD-critic metrics need "
                         f"{list(keys)} (written by mmd_critic)")
    return record.extra


@register_metric
class MMD(Metric):
    id = "mmd"
    higher_is_better = False
    kinds = frozenset({"example"})
    parameters = {"n_random": Int("seeded random subsets of the prototypes' size whose mean MMD² is mmd.random",
                                  low=1)}
    description = "MMD² between the prototypes and the train split in the latent space (Eq. 2 of [147])"

    def __call__(self, record, ctx, method):
        extra = _extra(record, REQUIRED)
        if extra["kernel"] not in ("local", "global"):
            raise ValueError(f"unknown kernel {extra['kernel']!r} in the record; expected local or global")
        features = latent_features(ctx.model, ctx.train.x, ctx.device)
        n, protos = len(features), [int(p) for p in extra["prototypes"]]
        if not protos or min(protos) < 0 or max(protos) >= n:
            raise ValueError(f"prototype positions must be a non-empty list in the train split 0..{n - 1}")
        labels = torch.as_tensor(np.asarray(ctx.train.y), dtype=torch.long)
        kernel = RBFKernel(SquaredDistances(features, labels if extra["kernel"] == "local" else None),
                           float(extra["gamma"]))
        colmean = kernel.colmean()
        value = mmd2(kernel, protos, colmean)
        rng = np.random.default_rng(ctx.seed)
        random = float(np.mean([mmd2(kernel, np.sort(rng.choice(n, len(protos), replace=False)).tolist(), colmean)
                                for _ in range(self.params["n_random"])]))
        return {"mmd": value, "mmd.random": random, "mmd.ratio": value / random if random > 0 else float("nan")}


@register_metric
class NNClassifierAccuracy(Metric):
    id = "nn_classifier_accuracy"
    higher_is_better = True
    kinds = frozenset({"example"})
    description = ("test accuracy of the nearest-prototype classifier (Sec. 5.1 of [147]); sub-key: agreement "
                   "with the network")

    def __call__(self, record, ctx, method):
        train_y, test_y = np.asarray(ctx.train.y), np.asarray(ctx.test.y)
        if not record.examples or any(len(row) != 1 for row in record.examples):
            raise ValueError("nn_classifier_accuracy needs exactly one example (the nearest prototype) per input")
        nearest = np.asarray([int(row[0]) for row in record.examples])
        if nearest.min() < 0 or nearest.max() >= len(train_y):
            raise ValueError(f"prototype positions must lie in the train split 0..{len(train_y) - 1}")
        predicted = train_y[nearest]
        true = test_y[np.asarray(record.indices, dtype=np.int64)]
        network = np.asarray(record.targets, dtype=np.int64)
        return {"nn_classifier_accuracy": PerInput(predicted == true),
                "nn_classifier_accuracy.network_agreement": PerInput(predicted == network)}
