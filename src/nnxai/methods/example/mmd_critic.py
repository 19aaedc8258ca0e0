"""MMD-critic: prototypes and criticisms (survey ref. [147]; Kim, Khanna, Koyejo, "Examples are not enough,
learn to criticize! Criticism for interpretability", NeurIPS 2016).

The data set is summarised by *prototypes*, training points whose empirical distribution is close to the
data's in maximum mean discrepancy, and *criticisms*, training points where the prototypes represent the
data worst.  Here the points live in the network's learnt representation: the penultimate features
``f(x) = model.embed(x)`` of the whole train split (the survey's "representative samples ... in terms of
latent representations"), so the prototypes summarise the data as the network sees them.

Steps (equations of the paper; the kernel algebra is in :mod:`nnxai.methods.example._mmd`):

1. **Kernel** (Sec. 4): ``k(x, y) = exp(-γ ||f(x) - f(y)||²)``.  ``kernel: local`` is the paper's
   MMD-local, ``k`` between points of the same training label and 0 across labels (the per-class kernel of
   its nearest-prototype experiments, which beat the global one there, and the reference code's default);
   ``kernel: global`` is MMD-global.  The greedy search runs once over all points either way, so with the
   local kernel the classes share the ``n_prototypes`` as the objective decides.
2. **Bandwidth**: the paper picks γ by cross-validation (its USPS γ is "obtained after cross validation"
   in the authors' code) of the nearest-prototype classifier.  We do the same on the train split, over a
   grid of multipliers ``g`` of the median heuristic, ``γ = g / median_{i<j} ||f(x_i) - f(x_j)||²`` (the
   grid is scale-free, so one config serves every network): for each ``g``, ``cv_folds`` seeded folds,
   prototypes selected on the other folds, classification accuracy of the held-out fold by its nearest
   prototype's label; the best mean accuracy wins, ties to the multiplier nearest 1.  A one-value grid
   fixes ``γ`` without cross-validation.
3. **Prototypes** (Eq. 4, Alg. 1): greedy maximisation of ``J_b(S)``, i.e. minimisation of ``MMD²(X,
   X_S)``, to ``n_prototypes`` points.  ``J_b`` is monotone submodular under the paper's diagonal-dominance
   condition on ``K`` (Theorem 3), where greedy is within ``1 - 1/e`` of the optimum; with the
   cross-validated γ the condition need not hold, and greedy is then the paper's heuristic.
4. **Criticisms** (Eq. 5): greedy maximisation of ``L(C) = Σ_{c∈C} |witness(c)| + log det K_{C,C}`` over
   the non-prototypes (the log-determinant regulariser keeps the criticisms diverse).

The :class:`~nnxai.explanations.Examples` record: for each explained test input, its nearest prototype in the
penultimate space (Euclidean, the 1-NN prototype classifier of the paper's Sec. 5.1 evaluation) and the
distance to it; ``targets`` are the network's predictions.  ``extra``: ``prototypes`` / ``criticisms``
(train positions in selection order), their ``*_classes`` (training labels) and ``*_witness`` (Eq. 3),
``nearest_prototype_class`` per explained input, ``gamma``, ``gamma_multiplier``, ``median_sq_distance``,
``kernel``, ``cv_accuracy`` (per grid value; empty for a one-value grid), ``objective`` (``J_b`` after each
prototype), ``mmd2`` (final MMD²), ``criticism_objective`` (``L`` after each criticism) and ``n_train``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from nnxai.explanations import Examples
from nnxai.methods.base import ExampleSelector, explained_indices
from nnxai.methods.example._latent import latent_features
from nnxai.methods.example._mmd import (
    RBFKernel, SquaredDistances, greedy_criticisms, greedy_prototypes, median_squared_distance,
    nearest_prototype, witness,
)
from nnxai.methods.example.nearest_neighbours import predictions
from nnxai.params import N_EXPLAIN, Choice, Float, Int, List
from nnxai.registry import register

KERNELS = ("local", "global")


def select_prototypes_and_criticisms(distances: SquaredDistances, gamma: float, n_prototypes: int,
                                     n_criticisms: int) -> dict:
    """Steps 3-4 on one point set (``distances`` carry the labels for the local kernel): prototypes,
    criticisms, witness values and objective values."""
    kernel = RBFKernel(distances, gamma)
    colmean = kernel.colmean()
    protos, values, proto_sums = greedy_prototypes(kernel, n_prototypes, colmean)
    w = witness(colmean, proto_sums, len(protos))
    crits, crit_values = greedy_criticisms(kernel, protos, n_criticisms, w) if n_criticisms else ([], [])
    return {"prototypes": protos, "objective": values, "criticisms": crits, "criticism_objective": crit_values,
            "witness": w, "mmd2": float(colmean.mean()) - values[-1]}


def cross_validate_gamma(distances: SquaredDistances, labels: torch.Tensor, multipliers: list[float],
                         median: float, n_prototypes: int, folds: int, seed: int):
    """Step 2: ``(best multiplier, held-out accuracy per multiplier)``: the 1-NN prototype classifier's
    accuracy on each fold, prototypes selected on the other folds (``distances`` carry the labels for the
    local kernel; ``labels`` are the training labels the classifier predicts)."""
    n = distances.n
    if len(multipliers) == 1:
        return float(multipliers[0]), []
    parts = [np.sort(p) for p in np.array_split(np.random.default_rng(seed).permutation(n), folds)]
    if min(n - len(p) for p in parts) < n_prototypes or min(len(p) for p in parts) < 1:
        raise ValueError(f"{folds}-fold cross-validation of γ needs folds of at least one point and "
                         f"{n_prototypes} prototypes in every training part; the train split has {n} points")
    correct = np.zeros(len(multipliers), dtype=np.int64)
    for f, held in enumerate(parts):
        fit = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != f]))
        sub = distances.subset(fit)
        for i, g in enumerate(multipliers):
            protos, _, _ = greedy_prototypes(RBFKernel(sub, g / median), n_prototypes)
            which, _ = nearest_prototype(distances.features[held], sub.features[protos])
            correct[i] += int((labels[fit][protos][which] == labels[held]).sum())
    accuracies = (correct / n).tolist()
    best = min(range(len(multipliers)), key=lambda i: (-accuracies[i], abs(math.log(multipliers[i])), multipliers[i]))
    return float(multipliers[best]), accuracies


@register("mmd_critic")
class MMDCritic(ExampleSelector):
    """Prototypes and criticisms of the train split in the network's penultimate space [147].

    :meth:`fit` embeds the train split, cross-validates γ and selects the prototypes and criticisms
    (``features_``, ``labels_``, ``gamma_``, ``selection_``); :meth:`select` assigns each explained test
    input its nearest prototype.
    """

    parameters = {
        "n_explain": N_EXPLAIN,
        "n_prototypes": Int("prototypes m selected greedily for J_b (Eq. 4, Alg. 1)", low=1, at_most="train"),
        "n_criticisms": Int("criticisms selected greedily for L(C) (Eq. 5); 0: none", low=0, at_most="train"),
        "kernel": Choice("local: the RBF kernel within each training label, 0 across (the paper's MMD-local); "
                         "global: one RBF kernel over all points", KERNELS),
        "gamma_grid": List("multipliers g of the median heuristic, γ = g / median ||f_i - f_j||², among which "
                           "γ is cross-validated by the nearest-prototype classifier's accuracy (one value: "
                           "fixed, no cross-validation)", Float("a bandwidth multiplier", low=0.0, low_open=True),
                           unique=True),
        "cv_folds": Int("folds of the cross-validation of γ (train split)", low=2),
    }

    def _fit(self, model: nn.Module, train) -> None:
        p = self.params
        self.features_ = latent_features(model, train.x)
        self.labels_ = torch.as_tensor(train.y).long().cpu()
        n = len(self.features_)
        if p["n_prototypes"] + p["n_criticisms"] > n:
            raise ValueError(f"mmd_critic: {p['n_prototypes']} prototypes and {p['n_criticisms']} criticisms "
                             f"need that many distinct training points; the train split has {n}")
        distances = SquaredDistances(self.features_, self.labels_ if p["kernel"] == "local" else None)
        self.median_ = median_squared_distance(self.features_, self.seed)
        self.multiplier_, self.cv_accuracy_ = cross_validate_gamma(
            distances, self.labels_, [float(g) for g in p["gamma_grid"]], self.median_, p["n_prototypes"],
            p["cv_folds"], self.seed)
        self.gamma_ = self.multiplier_ / self.median_
        self.selection_ = select_prototypes_and_criticisms(distances, self.gamma_, p["n_prototypes"],
                                                           p["n_criticisms"])

    def select(self, model: nn.Module, ctx) -> Examples:
        self.check_fitted(model)
        p, sel = self.params, self.selection_
        idx = explained_indices(len(ctx.test.x), p["n_explain"], ctx.seed)
        x = ctx.test.x[idx]
        f_test = latent_features(model, x, ctx.device)
        protos, crits = sel["prototypes"], sel["criticisms"]
        which, dist = nearest_prototype(f_test, self.features_[protos])
        nearest = torch.as_tensor(protos, dtype=torch.long)[which]
        w = sel["witness"]
        extra = {
            "prototypes": list(protos),
            "prototype_classes": self.labels_[protos].tolist(),
            "prototype_witness": w[protos].tolist(),
            "criticisms": list(crits),
            "criticism_classes": self.labels_[crits].tolist() if crits else [],
            "criticism_witness": w[crits].tolist() if crits else [],
            "nearest_prototype_class": self.labels_[nearest].tolist(),
            "kernel": p["kernel"],
            "gamma": self.gamma_,
            "gamma_multiplier": self.multiplier_,
            "median_sq_distance": self.median_,
            "cv_accuracy": list(self.cv_accuracy_),
            "objective": sel["objective"],
            "mmd2": sel["mmd2"],
            "criticism_objective": sel["criticism_objective"],
            "n_train": len(self.features_),
        }
        return Examples(indices=idx.tolist(), targets=predictions(model, x, ctx.device).tolist(),
                        examples=nearest[:, None].tolist(), scores=dist[:, None].tolist(), extra=extra)
