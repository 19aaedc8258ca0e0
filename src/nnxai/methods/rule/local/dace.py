"""DACE: distribution-aware counterfactual explanation by mixed-integer linear optimisation (survey ref. [79]).

Kanamori, Takagi, Kobayashi & Arimura, IJCAI 2020.  For an input ``x`` that the network ``H`` puts in class
``y``, DACE finds the action ``a`` (the counterfactual is ``x + a``) minimising its cost (Eq. 1)

    C_DACE(a | x) = d_M(x, x + a | Σ) + λ q_k(x + a | X*)      subject to  H(x + a) = y*,

where ``d_M`` is the Mahalanobis distance under the covariance ``Σ`` of the training data and ``q_k`` the
k-local outlier factor (Breunig et al.) of ``x + a`` among ``X*``, the training instances of the desired
class ``y*``.  Neither term is linear, so the paper replaces them (Sec. 4) by

* the **ℓ1-Mahalanobis distance** ``d_1M(a) = ||M a||_1`` with ``Σ⁻¹ = Mᵀ M``, ``M = Λ^{-1/2} Pᵀ`` from the
  eigendecomposition ``Σ = P Λ Pᵀ`` (as the authors' code; Prop. 1: ``d_M <= d_1M <= sqrt(D) d_M``),
  linearised by ``δ_r >= ±(M a)_r``;
* the **1-LOF approximation** ``q̂(x + a) = lrd_k(x⁽ⁿ⁾) · rd_k(x + a, x⁽ⁿ⁾)`` with ``x⁽ⁿ⁾`` the nearest
  neighbour of ``x + a`` in ``X*`` and ``rd_k(x, x') = max(Δ(x, x'), d_k(x'))`` (reachability distance,
  ``d_k``: the k-distance, ``lrd_k``: the local reachability density, both computed on ``X*`` beforehand):
  binaries ``μ_n`` select the neighbour (``Σ μ_n = 1``, ``Δ_n − Δ_m <= U_n (1 − μ_n)``),
  ``ρ_n >= d_k(x⁽ⁿ⁾) μ_n`` and ``ρ_n >= Δ_n − U_n (1 − μ_n)``, cost ``λ Σ_n lrd_k(x⁽ⁿ⁾) ρ_n``;
* the action set is finite (Sec. 3): each feature ``d`` takes one of the candidate values ``A_d`` (binaries
  ``π_{d,i}``, ``Σ_i π_{d,i} = 1``); a one-hot attribute (MONK's) takes one of its categories, so every
  counterfactual is a valid instance; a real feature takes one of ``n_candidates + 1`` evenly spaced
  values over its training range (the authors' grid) or keeps its value.  With a finite action set the
  squared Euclidean distance ``Δ`` of the authors' code is linear in ``π`` too;
* the network is encoded exactly with big-M constraints (:mod:`._relu_milp`, the paper's Sec. 4.3 for
  MLPs; the authors' code encodes one hidden layer, here every layer is), with bounds from linear
  programming over the candidate box (tighter than interval arithmetic), and ``H(x + a) = y*`` becomes
  ``logit_{y*} − logit_c >= margin`` for every other class ``c``;
* at most ``max_changes`` features (one-hot attributes) change (the sparsity constraint of the authors'
  code, ``max_change_num``).

The program is solved by HiGHS (``scipy.optimize.milp``) on a region around ``x`` that provably holds the
optimum, where LP-tightened big-M bounds make it far smaller (:mod:`._dace_program`): at most
``node_limit`` branch-and-bound nodes per round (the same work on every run) and at most ``time_limit``
seconds per input.  ``status`` says whether the counterfactual is proven optimal, or which limit stopped the
search (the cheapest valid counterfactual found is kept: the MILP's, or the beam search's incumbent).
Choices where the paper leaves room:

* ``y*``: the paper is binary (``y* = 1 − y``); with more classes, the network's runner-up class at ``x``.
* ``Σ``: the maximum-likelihood covariance of all training inputs; where it is singular (one-hot columns sum
  to 1 per attribute) its pseudo-inverse: ``M`` keeps the eigen-directions with eigenvalue above
  ``RANK_TOL`` of the largest, so the directions the data never vary in (and one-hot actions never take)
  cost nothing instead of ``1/ε``.
* ``X*``: the training inputs *labelled* ``y*`` (as the authors' code).  The nearest-neighbour selection
  needs ``N²`` rows; the authors' code subsamples ``X*`` to 20 MMD prototypes, here the ``n_anchors``
  distinct points of ``X*`` nearest to ``x`` are the candidates, since the counterfactual lies near ``x``
  and so does its nearest neighbour.  ``lrd_k`` and ``d_k`` are computed on all of ``X*`` (``k = n_neighbors``,
  the authors' 10), ``Δ`` is the squared Euclidean distance (their default ``p = 2``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.explanations import LocalRules
from nnxai.methods.base import ExplainContext, LocalRuleMethod
from nnxai.methods.rule.local._dace_program import (LofReference, Problem, candidate_settings, input_box,
                                                    l1_mahalanobis, mahalanobis_matrix, nearest_distinct, solve)
from nnxai.methods.rule.local._relu_milp import affine_relu_chain, box_region, chain_forward, tightened_bounds
from nnxai.ops.feature_space import feature_space, predict_classes
from nnxai.params import Float, Int
from nnxai.registry import register

__all__ = ["DACE", "l1_mahalanobis", "mahalanobis_matrix"]


@register("dace")
class DACE(LocalRuleMethod):
    """DACE [79]: the minimum ℓ1-Mahalanobis + λ·1-LOF counterfactual, by MILP over the exact ReLU MLP."""

    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    activations = frozenset({"relu"})
    needs_standard_layers = True
    parameters = {
        **LocalRuleMethod.parameters,
        "lam": Float("λ of Eq. (1): weight of the 1-LOF term against the ℓ1-Mahalanobis distance (the authors' "
                     "α)", low=0.0),
        "n_neighbors": Int("k of the k-distance and local reachability density of X* (authors: 10)", low=1),
        "n_anchors": Int("points of X* nearest to x that may be the counterfactual's nearest neighbour (N of "
                         "the 1-LOF constraints, N² rows; authors: 20 prototypes)", low=1),
        "n_candidates": Int("grid steps over the training range of every real feature (A_d has n + 1 values "
                            "and x_d; authors: 50-100)", low=1),
        "max_changes": Int("most features (one-hot attributes) the action may change (authors' "
                           "max_change_num)", low=1),
        "margin": Float("logit margin of y* over every other class required in the MILP", low=0.0),
        "node_limit": Int("branch-and-bound nodes HiGHS may explore per MILP round (the deterministic budget)",
                          low=1),
        "time_limit": Float("seconds per input after which the search stops whatever it has done (a safety net "
                            "above the node budget; a stop by it depends on the machine's load)", low=0.0,
                            low_open=True),
        "mip_gap": Float("HiGHS relative MIP gap at which a solution counts as optimal", low=0.0, high=1.0),
    }

    def _fit(self, model: nn.Module, train) -> None:
        self.train_x_ = train.x.reshape(len(train.x), -1).double().numpy()
        self.train_y_ = train.y.numpy()
        self.m_ = mahalanobis_matrix(self.train_x_)
        self.lof_ = {}

    def reference(self, target: int) -> LofReference:
        """The LOF reference of class ``target`` (fitted once per class)."""
        if target not in self.lof_:
            self.lof_[target] = LofReference.fit(self.train_x_[self.train_y_ == target], self.params["n_neighbors"])
        return self.lof_[target]

    def explain_inputs(self, model: nn.Module, ctx: ExplainContext, indices: np.ndarray) -> LocalRules:
        self.check_fitted(model)
        layers = affine_relu_chain(model)
        x_all = ctx.test.x[indices].reshape(len(indices), -1).double().numpy()
        device = next(model.parameters()).device
        with torch.no_grad():
            logits = model(ctx.test.x[indices].float().to(device)).double().cpu().numpy()
        if not np.allclose(chain_forward(layers, x_all), logits, atol=1e-4, rtol=1e-4):
            raise ValueError(f"dace: the traced Linear/ReLU chain of {type(model).__name__} does not reproduce "
                             "its outputs")
        space = feature_space(model, ctx)
        names = list(space.names)
        bounds = tightened_bounds(layers, box_region(*input_box(space.fields, self.train_x_, x_all)))
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(logits.shape[1])])
        entries = []
        for x, z in zip(x_all, logits):
            order = np.argsort(-z, kind="stable")
            entries.append(self.counterfactual(model, layers, bounds, space.fields, names, class_names, x,
                                               int(order[0]), int(order[1])))
        return LocalRules(indices=[int(i) for i in indices], targets=[int(np.argmax(z)) for z in logits],
                          explanations=entries, feature_names=names, class_names=class_names,
                          feature_space="inputs", extra={"mahalanobis_rank": int(len(self.m_))})

    def problem(self, layers, bounds, fields, names, x, desired: int) -> Problem:
        """The MILP data of input ``x`` and desired class ``desired``."""
        lof = self.reference(desired)
        return Problem(m=self.m_, lof=lof, anchors=nearest_distinct(lof.points, x, self.params["n_anchors"]),
                       settings=candidate_settings(fields, names, x, self.train_x_, self.params["n_candidates"]),
                       layers=layers, bounds=bounds, x=x, desired=desired, lam=self.params["lam"],
                       max_changes=self.params["max_changes"], margin=self.params["margin"])

    def counterfactual(self, model, layers, bounds, fields, names, class_names, x, original: int, desired: int) -> dict:
        """One input's entry: its counterfactual, the changes, the network's class of it, its cost."""
        p = self.problem(layers, bounds, fields, names, x, desired)
        solution = solve(p, self.params["node_limit"], self.params["time_limit"], self.params["mip_gap"])
        base = {"conditions": [], "original": original, "desired": desired, "status": solution.status,
                "rounds": solution.rounds}
        if solution.choice is None:
            why = ("the MILP is infeasible: no candidate action" if solution.status == "infeasible"
                   else f"none found within the {solution.status.replace('_', ' ')}")
            return {**base, "text": f"no counterfactual of class {class_names[desired]} ({why} with at most "
                                    f"{p.max_changes} changes)", "counterfactual": None, "changes": [],
                    "prediction": None, "valid": False, "cost": None}
        x_cf = p.point(solution.choice)
        prediction = int(predict_classes(model, x_cf[None].astype(np.float32))[0])
        md = float(l1_mahalanobis(p.m, x, x_cf)[0])
        q = float(p.lof.approx(x_cf, p.anchors)[0])
        changes = [{"feature": s.name, "columns": list(s.columns),
                    "from": s.labels[s.current] if s.categorical else float(x[s.columns[0]]),
                    "to": s.labels[c] if s.categorical else float(x_cf[s.columns[0]])}
                   for s, c in zip(p.settings, solution.choice) if c != s.current]
        said = " and ".join(f"{ch['feature']} from {_show(ch['from'])} to {_show(ch['to'])}" for ch in changes)
        return {**base, "text": f"change {said}: class {class_names[original]} -> {class_names[prediction]}",
                "counterfactual": x_cf.tolist(), "changes": changes, "prediction": prediction,
                "valid": prediction == desired,
                "cost": {"l1_mahalanobis": md, "lof_approx": q, "objective": md + p.lam * q}}


def _show(value) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"
