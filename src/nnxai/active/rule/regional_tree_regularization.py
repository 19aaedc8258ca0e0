"""Regional tree regularisation (Wu et al., AAAI 2020; survey ref. [118], Sec. IV-A): a network whose
decisions are simple *within each region* of the input space, explained by one shallow tree per region.

The paper partitions the input space into regions ``R_1..R_S`` given beforehand (by domain experts in its
clinical data sets) and replaces the global APL of tree regularisation [119] by the APLs of trees fitted
separately on each region's inputs, ``APL_s(W) = APL({x_n, y_hat_n(W) : x_n in R_s})``.  Its preferred
penalty is the "L0"-like one that penalises the most complex regions: ``max_s APL_s``, made trainable by
weighting the regions with ``SparseMax`` of their APLs; each ``APL_s`` has its own surrogate MLP, fitted on
the same trajectory of weights as in [119] (:mod:`nnxai.active.rule.tree_regularization`).

Choices:

* Regions: the cells of a k-d tree of depth ``region_depth`` on the training inputs (``2**region_depth``
  regions; each cell is split at the median of its widest-spread feature).  The paper's regions are supplied;
  a k-d tree is data-driven like k-means but its cells are *axis-aligned boxes*, as expert regions given by
  thresholds are, so a region is a conjunction of tests and the per-region trees join into one rule set
  that the rule metrics (fidelity) read unchanged.  It is deterministic, so the explanation recomputes it
  from the training split.
* ``aggregate``: ``max`` is ``sum_s sparsemax(APL_hat)_s * APL_hat_s`` with the SparseMax weights held
  fixed in the gradient (they select the regions to simplify); ``mean`` is the paper's average over regions.
* Tables only (``mlp``): the paper regularises MLPs and GRUs on tabular and time-series data, and the
  regions must be tests on the features the explanation reads (the trainer sees pixels, the image
  explanations concepts).
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.active.base import register_active
from nnxai.active.rule.tree_regularization import (
    APLRegulariser, explanation_features, fit_tree, path_lengths, training_params, tree_rules, tree_summary,
)
from nnxai.explanations import RuleSet
from nnxai.explanations.records import condition_holds
from nnxai.methods.base import RuleExtractor
from nnxai.ops.feature_space import predict_classes, split_features
from nnxai.params import Choice, Int
from nnxai.registry import register


def kd_regions(features: np.ndarray, depth: int) -> list[list[dict]]:
    """The ``2**depth`` cells of a k-d tree on ``features``, each as RuleSet conditions (1-of-1 tests)."""
    cells = [([], np.arange(len(features)))]
    for _ in range(int(depth)):
        split = []
        for conditions, rows in cells:
            values = features[rows] if len(rows) else features
            j = int(np.argmax(values.std(axis=0)))
            threshold = float(np.median(values[:, j]))
            below = features[rows, j] <= threshold
            for op, mask in (("<=", below), (">", ~below)):
                split.append((conditions + [{"m": 1, "literals": [{"feature": j, "op": op, "threshold": threshold}]}],
                              rows[mask]))
        cells = split
    return [conditions for conditions, _ in cells]


def region_of(features: np.ndarray, regions: list[list[dict]]) -> np.ndarray:
    """Index of the region of each row (the cells partition the space)."""
    out = np.full(len(features), -1, dtype=np.int64)
    for k, conditions in enumerate(regions):
        holds = np.ones(len(features), dtype=bool)
        for cond in conditions:
            holds &= condition_holds(cond, features)
        out[holds & (out < 0)] = k
    return out


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of ``z`` onto the simplex (Martins & Astudillo 2016)."""
    ordered, _ = torch.sort(z, descending=True)
    cumulative = ordered.cumsum(0)
    k = torch.arange(1, len(z) + 1, dtype=z.dtype, device=z.device)
    support = 1 + k * ordered > cumulative
    k_max = int(support.nonzero().max()) + 1
    tau = (cumulative[k_max - 1] - 1) / k_max
    return (z - tau).clamp_min(0)


def regional_apls(features: np.ndarray, labels: np.ndarray, region: np.ndarray, n_regions: int,
                  min_samples_leaf: int) -> np.ndarray:
    """APL_s of the tree fitted on each region's inputs (0 for an empty region)."""
    out = np.zeros(n_regions)
    for s in range(n_regions):
        rows = region == s
        if rows.any():
            tree = fit_tree(features[rows], labels[rows], min_samples_leaf)
            out[s] = path_lengths(tree, features[rows]).mean()
    return out


@register_active
class RegionalTreeRegularization(APLRegulariser):
    """Regional tree regularisation [118]: one APL surrogate per region, penalty on their max (SparseMax) or
    mean."""

    id = "regional_tree_regularization"
    description = "Regional tree regularisation: per-region APL surrogates, SparseMax over regions [118]"
    architectures = frozenset({"mlp"})
    parameters = {
        **APLRegulariser.parameters,
        "region_depth": Int("depth of the k-d tree whose cells are the regions (2**depth regions)", low=1, high=6),
        "aggregate": Choice("how the regions' APLs become the penalty: max (SparseMax-weighted, the paper's) or "
                            "mean", ("max", "mean")),
    }

    def __init__(self, **params):
        super().__init__(**params)
        self.n_outputs = 2 ** self.params["region_depth"]

    def setup(self, model, train, info, device, seed):
        full = train[0].reshape(len(train[0]), -1).numpy().astype(np.float64)
        self.regions = kd_regions(full, self.params["region_depth"])
        super().setup(model, train, info, device, seed)

    def prepare(self, features):
        # the regions were built on the flattened training inputs (setup): they must be assigned in that same
        # feature space, i.e. the APL trees must read those inputs (not, e.g., a concept table), or a region's
        # tests would compare thresholds of one feature with the values of another
        inputs = self.apl_x.reshape(len(self.apl_x), -1).numpy().astype(np.float64)
        if features.shape != inputs.shape or not np.array_equal(features, inputs):
            raise AssertionError(f"regional_tree_regularization: the regions were built on the flattened inputs "
                                 f"({inputs.shape[1]} features) but the APL trees read another feature space "
                                 f"(shape {features.shape})")
        self.apl_region = region_of(features, self.regions)
        if (self.apl_region < 0).any():
            raise AssertionError("regional_tree_regularization: an APL input lies in no region")

    def true_apls(self, labels):
        return regional_apls(self.apl_features, labels, self.apl_region, self.n_outputs,
                             self.params["min_samples_leaf"])

    def combine(self, estimates):
        if self.params["aggregate"] == "mean":
            return estimates.mean()
        return (sparsemax(estimates.detach()) * estimates).sum()


@register("regional_tree_regularization")
class RegionalTrees(RuleExtractor):
    """The network's own explanation [118]: one CART per region (fitted to its predictions on the training
    inputs of that region); the rules are the regions' tests followed by their tree's path, each rule
    carrying ``region`` and ``path_length`` (the tree's tests only); ``tree["regions"]`` lists each region's
    tests, depth, leaves and training APL."""

    only_models = frozenset({"regional_tree_regularization"})
    parameters = {}

    def extract(self, model, ctx):
        params = training_params(model, "regional_tree_regularization")
        kind, names = explanation_features(ctx)
        features = split_features(ctx.train, kind)
        regions = kd_regions(features, params["region_depth"])
        region = region_of(features, regions)
        labels = predict_classes(model, ctx.train.x)
        n_classes = int(ctx.info.n_classes)
        default = int(np.bincount(labels, minlength=n_classes).argmax())
        rules, summaries = [], []
        for s, conditions in enumerate(regions):
            rows = region == s
            if not rows.any():
                rules.append({"conditions": conditions, "prediction": default, "support": 0, "path_length": 0,
                              "region": s})
                summaries.append({"region": s, "conditions": conditions, "depth": 0, "n_leaves": 1, "apl_train": 0.0,
                                  "n_train": 0})
                continue
            tree = fit_tree(features[rows], labels[rows], params["min_samples_leaf"])
            rules += tree_rules(tree, prefix=conditions, extra={"region": s})
            summary = tree_summary(tree, features[rows])
            summaries.append({"region": s, "conditions": conditions, "n_train": int(rows.sum()), **summary})
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        tree = {"depth": max(t["depth"] for t in summaries), "n_leaves": sum(t["n_leaves"] for t in summaries),
                "regional_apl_train": [t["apl_train"] for t in summaries], "regions": summaries,
                "min_samples_leaf": int(params["min_samples_leaf"])}
        return RuleSet(rules=rules, default=default, feature_names=names, class_names=class_names,
                       feature_space=kind, tree=tree)
