"""NeuroLinear [84]: Setiono & Liu, "NeuroLinear: from neural networks to oblique decision rules",
Neurocomputing 17(1), 1997 (also ECML 1997): NeuroRule's pipeline [83] for continuous inputs, whose rules
test hyperplanes ``w . x <op> t`` that need not be parallel to the axes.

1. **Penalised training and pruning** of a copy of the network, as NeuroRule (:mod:`._setiono`).
2. **Discretisation** of every hidden unit's activation values on the training patterns by Chi2
   (:mod:`._chi2`), labelled by the pruned network's classes, with inconsistency bound ``inconsistency``:
   the unit's range is cut at thresholds ``t_1 < ... < t_K``; a unit left with one interval is dropped.
3. **Rules for the outputs in terms of the discretised activations**: the training patterns' discretised
   activation tuples, collapsed to the distinct ones with their majority class and count (the "small data
   set"), go to X2R (:mod:`._x2r`); the class of the largest cover becomes the default rule.
4. **Rules for the discretised activations in terms of the inputs** need no search: the activation is
   ``sigmoid(w . x + b)``, increasing in ``w . x``, so "``h <= t``" is exactly the half-space
   ``w . x <= logit(t) - b``, and an interval of the unit is one or two such oblique literals
   (``{"weights": [[j, w_j], ...], "op", "threshold"}`` over the inputs the pruned unit still reads).
5. **Merging**: each hidden condition of step 3 is replaced by its literals.

Each hyperplane is written with its weights scaled so that the largest is 1 in magnitude (the threshold
with them), which leaves the half-space unchanged; a unit that reads a single input gives an axis-parallel
literal.

**Two hidden layers** (our networks are [32, 16]; the paper has one).  Pruning runs over every layer; the
*first* hidden layer is the paper's hidden layer, discretised in step 2, because its units are the only ones
that are linear in the inputs before the sigmoid (a second-layer unit's region is not a half-space).  The
second hidden layer and the output layer are the function that gives each training pattern its class in
step 3: the pruned network's class.  With one hidden layer this is the paper's algorithm.

Choices: Chi2's ``delta`` is the paper's "inconsistency rate of the data" where the data are the
activations labelled by the network (0); the configured value lets the discretisation lose what the
accuracy requirement of step 1 allows (``1 - min_accuracy``), since a rule set can be right on at most
``1 - delta`` of the discretised rows.  Step 3 reads the training rows only (unlike NeuroRule's enumeration
of every combination of cluster values): a combination of intervals that no training row reaches is
classified by X2R's generalisation, not by the network, so the rules are exact on the training rows (with
``delta = 0``) but need not be elsewhere; on MONK-1 this costs the robots with ``a1 = a2 = 2, a5 = 1``
when no training robot has them (the tests show it).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import special
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.decompositional import _chi2, _setiono, _x2r
from nnxai.ops.feature_space import split_features
from nnxai.params import Float
from nnxai.registry import register


def hyperplane(net: _setiono.Net, unit: int, activation: float) -> tuple[list, float]:
    """``w . x`` and ``t`` (scaled: max |w| = 1) with ``sigmoid(w . x + b) <= activation`` iff ``w . x <= t``."""
    w = (net.weights[0][unit] * net.masks[0][unit]).numpy()
    columns = np.flatnonzero(w)
    scale = float(np.abs(w[columns]).max())
    threshold = (float(special.logit(np.clip(activation, 1e-15, 1 - 1e-15))) - float(net.biases[0][unit])) / scale
    return [[int(j), float(w[j] / scale)] for j in columns], threshold


def interval_literals(net: _setiono.Net, unit: int, cuts: np.ndarray, lo: int, hi: int) -> list:
    """The literals of "the unit's activation lies in intervals lo..hi" (``cuts[lo-1] < h <= cuts[hi]``)."""
    literals = []
    for index, op in ((lo - 1, ">"), (hi, "<=")):
        if 0 <= index < len(cuts):
            weights, t = hyperplane(net, unit, float(cuts[index]))
            literals.append(_literal(weights, op, t))
    return literals


def _literal(weights: list, op: str, threshold: float) -> dict:
    """An oblique literal; one over a single input is written as the axis-parallel test it is (``-x <= t``
    as ``x > -t``: the two differ only on the hyperplane itself)."""
    if len(weights) > 1:
        return {"weights": weights, "op": op, "threshold": threshold}
    (j, w), = weights
    if w > 0:
        return {"feature": j, "op": op, "threshold": threshold}
    return {"feature": j, "op": "<=" if op == ">" else ">", "threshold": -threshold}


@register("neurolinear")
class NeuroLinear(RuleExtractor):
    """NeuroLinear [84]: prune, discretise the hidden activations by Chi2, X2R rules, oblique literals."""

    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    activations = frozenset({"sigmoid"})
    parameters = {
        **_setiono.PRUNING_PARAMETERS,
        "inconsistency": Float("largest inconsistency rate Chi2 may leave in the discretised activations (its "
                               "delta; 0: the discretised activations still determine the pruned network's "
                               "class on every training row)", low=0.0, high=1.0),
    }

    @classmethod
    def check_combination(cls, params: dict) -> None:
        _setiono.check_etas(cls.owner_name(), params)

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        p = self.params
        n_classes = int(ctx.info.n_classes)
        given, net, x, targets = _setiono.prepare(model, ctx.train.x, p, ctx.seed)
        with torch.no_grad():
            first = net.hidden(x)[0]
            labels = net.logits(x).argmax(1).numpy()
        units = net.alive(0)
        acts = first[:, units].numpy()
        cuts = _chi2.chi2(acts, labels, n_classes, float(p["inconsistency"]))
        kept = [k for k in range(len(units)) if len(cuts[k])]
        codes = np.column_stack([np.searchsorted(cuts[k], acts[:, k], side="left") for k in kept]) \
            if kept else np.zeros((len(acts), 0), dtype=np.int64)
        distinct, majority, counts = _x2r.collapse(codes, labels, n_classes)
        table = _x2r.Table(distinct, [len(cuts[k]) + 1 for k in kept], counts)
        hidden_rules, default = _x2r.decision_list(table, majority, n_classes)

        train = split_features(ctx.train, "inputs")
        rules = []
        for conditions, cls, _ in hidden_rules:
            literals = [lit for a, lo, hi in conditions
                        for lit in interval_literals(net, int(units[kept[a]]), cuts[kept[a]], lo, hi)]
            conds = [{"m": 1, "literals": [lit]} for lit in literals]
            rules.append({"conditions": conds, "prediction": int(cls), "support": 0})
        record = RuleSet(rules=rules, default=int(default), feature_names=list(
            ctx.train.meta.get("feature_names") or [f"x{j}" for j in range(train.shape[1])]),
            class_names=list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)]),
            feature_space="inputs")
        _fill_support(record, train)
        record.meta["neurolinear"] = {
            "given_connections": given.n_connections(), "pruned": net.summary(), "pruning_rounds": net.history,
            "network": net.to_json(),
            "first_layer_units": [int(u) for u in units], "discretised_units": [int(units[k]) for k in kept],
            "cuts": [cuts[k].tolist() for k in kept],
            "inconsistency": _chi2.inconsistency(codes, labels, n_classes), "tuples": int(len(distinct)),
            "hidden_rules": [{"conditions": [list(c) for c in r], "prediction": int(cls)} for r, cls, _ in hidden_rules],
            "rows": int(len(x))}
        return record


def _fill_support(record: RuleSet, features: np.ndarray) -> None:
    """``support``: training rows that reach the rule in the decision list and satisfy it."""
    from nnxai.explanations.records import condition_holds

    free = np.ones(len(features), dtype=bool)
    for rule in record.rules:
        fires = free.copy()
        for cond in rule["conditions"]:
            fires &= condition_holds(cond, features)
        rule["support"] = int(fires.sum())
        free &= ~fires
