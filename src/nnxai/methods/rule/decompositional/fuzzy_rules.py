"""Fuzzy rules equal to the network: Benítez, Castro & Requena, "Are artificial neural networks black boxes?",
IEEE TNN 8(5), 1997 (survey ref. [87]; the extension to deeper networks: Castro, Mantas & Benítez 2002, [88]).

**The paper's theorem (one hidden layer).**  A network with logistic hidden units and linear outputs,
``y_k = sum_j beta_jk A(sum_i w_ij x_i + tau_j) + b_k`` with ``A(u) = 1 / (1 + e^-u)``, *is* the fuzzy
additive rule system with one rule per hidden unit ``j``::

    R_j: IF sum_i w_ij x_i is greater than approximately t_j THEN y_k = beta_jk      (t_j = -tau_j)

where the fuzzy set "greater than approximately t" has the logistic membership ``A(s - t)`` (degree 1/2 at
``s = t``), and the system's output is the sum of the consequents weighted by the rules' degrees,
``y_k = sum_j degree(R_j) beta_jk + b_k`` (the output bias is what answers when no rule fires; the paper's
nets have none).  Equality is term by term.  The paper's second step is the *interactive-or*,

    a (*) b = a b / (a b + (1 - a)(1 - b)),

the ``A``-dual of ``+`` (its "f-duality"): ``A(x + y) = A(x) (*) A(y)``.  Proof: ``e^-x = (1 - A(x)) / A(x)``,
so ``A(x + y) = 1 / (1 + e^-x e^-y) = 1 / (1 + (1 - a)(1 - b) / (a b))`` with ``a = A(x)``, ``b = A(y)``.
Transported from the group ``(R, +)`` by the bijection ``A: R -> (0, 1)``, i-or is commutative, associative,
has the neutral element ``1/2 = A(0)`` and the inverse ``1 - a = A(-x)``: ``a (*) (1 - a) = 1/2``.  Hence
each antecedent splits into one fuzzy proposition per input: ``degree(R_j) = A(w_1j x_1) (*) ... (*)
A(w_nj x_n) (*) A(tau_j)``, "x_1 is A_1j i-or ... i-or x_n is A_nj", ``A_ij(x) = A(w_ij x)``.  A zero weight
gives the neutral term 1/2, so leaving it out changes nothing.

**Our networks have two hidden layers ([32, 16]); the equality holds layer by layer.**  The first hidden
layer's units are fuzzy *propositions* over the inputs, ``P_j: sum_i w_ij x_i is greater than approximately
t_j``, whose degree is, by the definition of its membership, exactly the unit's activation ``h1_j(x)``.  The
last hidden layer's units are the rules, over those propositions as linguistic variables (their degrees
play the part of the inputs in the theorem)::

    R_l: IF sum_j v_jl P_j is greater than approximately t_l THEN y_k = beta_lk

with ``degree(R_l) = A(sum_j v_jl degree(P_j) + tau_l) = A(sum_j v_jl h1_j + tau_l) = h2_l(x)``, and
``y_k = sum_l degree(R_l) beta_lk + b_k`` is the network's output.  By induction the same holds for any
depth (level-``d`` propositions over level ``d - 1``); one hidden layer is the paper's case, where the rules
read the inputs directly.  The i-or splits every level's antecedent as above ("P_j v_jl is A" terms).

The record (:class:`~nnxai.explanations.RuleSet` with ``inference = {"type": "fuzzy_ior", ...}``):

* ``rules``: one per last-hidden-layer unit, carrying its ``antecedent`` (weights over the previous level
  and bias), its ``consequent`` ``[beta_l1, ..., beta_lK]``, ``prediction`` = the class its consequent
  favours most (argmax), ``support`` = training inputs on which its degree exceeds 1/2 (where it "fires"
  in the crisp reading).  ``conditions``: one condition (m = 1: the i-or read as a disjunction) whose
  literals are the input-level propositions the rule reads, as oblique literals ``w . x > t``: op ``>``
  where the rule's degree grows with the proposition's degree (sign of ``v_jl``; for three or more hidden
  layers the sign of the product of the weights between them, a reading aid only), ``<=`` where it shrinks.
  These crisp literals are for size and reading; the decision is the fuzzy inference.
* ``inference``: the lower levels' weights and biases (``levels``) and the output bias; registered as
  ``RULE_INFERENCE["fuzzy_ior"]``, which evaluates every proposition and rule as the i-or of its terms
  (:func:`ior_logs`) and returns the argmax of the additive output.
* ``default``: the class of the output bias (the answer when no rule fires).
"""

from __future__ import annotations

import numpy as np
from scipy import special
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.explanations.records import RULE_INFERENCE
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.ops.feature_space import split_features
from nnxai.registry import register

INFERENCE = "fuzzy_ior"


# -- the i-or operator and the logistic fuzzy set -------------------------------------------------------------

def logistic(u) -> np.ndarray:
    """Membership ``A(u) = 1 / (1 + e^-u)`` of the paper's fuzzy set A."""
    return special.expit(np.asarray(u, dtype=np.float64))


def ior(*degrees) -> np.ndarray:
    """The interactive-or of degrees in [0, 1] (broadcast): ``prod a / (prod a + prod (1 - a))``.

    Undefined (NaN) when one argument is 0 and another 1, as in the paper; 1/2 is neutral.
    """
    a = np.stack(np.broadcast_arrays(*[np.asarray(d, dtype=np.float64) for d in degrees]))
    yes, no = np.prod(a, axis=0), np.prod(1.0 - a, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return yes / (yes + no)


def ior_logs(log_yes: np.ndarray, log_no: np.ndarray, axis: int = -1) -> np.ndarray:
    """The i-or of terms given as ``log a`` and ``log (1 - a)`` along ``axis``: ``1 / (1 + prod (1 - a) /
    prod a)``, in logarithms so that many terms neither underflow nor round a degree of 1 - 1e-17 to 1."""
    return special.expit(np.sum(log_yes, axis=axis) - np.sum(log_no, axis=axis))


def term_logs(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log A(u)`` and ``log (1 - A(u))`` of the term "u is A" (stable for any ``u``)."""
    return special.log_expit(u), special.log_expit(-u)


def level_degrees(inputs: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Degrees ``(n, units)`` of the propositions ``sum_i w_ui z_i is greater than approximately -tau_u``,
    each the i-or of its terms "w_ui z_i is A" and "tau_u is A" (zero weights give the neutral 1/2)."""
    terms = inputs[:, None, :] * weights[None, :, :]                      # (n, units, inputs)
    yes, no = term_logs(terms)
    bias_yes, bias_no = term_logs(bias)
    return ior_logs(np.concatenate([yes, np.broadcast_to(bias_yes[None, :, None], (len(inputs), len(bias), 1))], 2),
                    np.concatenate([no, np.broadcast_to(bias_no[None, :, None], (len(inputs), len(bias), 1))], 2))


def rule_degrees(rule_set: RuleSet, features: np.ndarray) -> np.ndarray:
    """Degree of every rule ``(n, n_rules)``: the levels of propositions bottom-up, then the rules."""
    z = np.asarray(features, dtype=np.float64)
    for level in rule_set.inference["levels"]:
        weights, bias = (np.asarray(level[k], dtype=np.float64) for k in ("weights", "bias"))
        z = level_degrees(z, weights, bias)
    n_rules = len(rule_set.rules)
    weights = np.array([r["antecedent"]["weights"] for r in rule_set.rules], dtype=np.float64).reshape(n_rules, -1)
    bias = np.array([r["antecedent"]["bias"] for r in rule_set.rules], dtype=np.float64)
    return level_degrees(z, weights, bias)


def fuzzy_outputs(rule_set: RuleSet, features: np.ndarray) -> np.ndarray:
    """The additive system's outputs ``y_k = sum_l degree(R_l) beta_lk + b_k``, shape ``(n, K)``."""
    beta = np.array([r["consequent"] for r in rule_set.rules], dtype=np.float64).reshape(len(rule_set.rules), -1)
    return rule_degrees(rule_set, features) @ beta + np.asarray(rule_set.inference["output_bias"], dtype=np.float64)


def fuzzy_classes(rule_set: RuleSet, features: np.ndarray) -> np.ndarray:
    """``RULE_INFERENCE["fuzzy_ior"]``: the class with the largest output of the fuzzy system."""
    return np.argmax(fuzzy_outputs(rule_set, features), axis=1).astype(np.int64)


RULE_INFERENCE.register(INFERENCE, fuzzy_classes)


# -- extraction ------------------------------------------------------------------------------------------------

def sigmoid_layers(model: nn.Module) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The hidden layers ``(W (units, inputs), tau)`` and the output layer ``(beta^T (K, units), b)`` of a
    sigmoid MLP (``model.features``: Linear, Sigmoid, ...; ``model.classifier``: Linear), in float64."""
    modules = list(model.features.children()) if hasattr(model, "features") else []
    if not modules or len(modules) % 2 or not isinstance(getattr(model, "classifier", None), nn.Linear):
        raise ValueError("fuzzy rules read an MLP: features = (Linear, Sigmoid) x depth, classifier = Linear")
    hidden = []
    for linear, act in zip(modules[::2], modules[1::2]):
        if not isinstance(linear, nn.Linear) or not isinstance(act, nn.Sigmoid):
            raise ValueError(f"fuzzy rules need Linear + Sigmoid hidden layers, got {type(linear).__name__} + "
                             f"{type(act).__name__}")
        hidden.append(_numpy(linear))
    return hidden, _numpy(model.classifier)


def _numpy(linear: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    weight = linear.weight.detach().cpu().double().numpy().copy()
    bias = linear.bias.detach().cpu().double().numpy().copy() if linear.bias is not None else np.zeros(len(weight))
    return weight, bias


@register("fuzzy_rules")
class FuzzyRules(RuleExtractor):
    """The fuzzy rule system equal to a sigmoid MLP [87], [88] (module docstring): nothing to choose."""

    parameters = {}
    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    activations = frozenset({"sigmoid"})
    needs_standard_layers = True
    needs_linear_head = True

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        hidden, (out_weight, out_bias) = sigmoid_layers(model)
        names = list(ctx.train.meta.get("feature_names") or [f"x{j + 1}" for j in range(hidden[0][0].shape[1])])
        classes = list(ctx.train.meta.get("class_names") or [str(k) for k in range(len(out_bias))])
        record = build_rule_set(hidden, out_weight, out_bias, names, classes)
        degrees = rule_degrees(record, split_features(ctx.train, "inputs"))
        for rule, fired in zip(record.rules, (degrees > 0.5).sum(axis=0)):
            rule["support"] = int(fired)
        return record


def build_rule_set(hidden: list[tuple[np.ndarray, np.ndarray]], out_weight: np.ndarray, out_bias: np.ndarray,
                   names: list[str], classes: list[str]) -> RuleSet:
    """The rule system of a sigmoid MLP given its layers (see :func:`sigmoid_layers`)."""
    *levels, (rule_weight, rule_bias) = hidden
    first_weight, first_bias = hidden[0]
    # the sign linking each rule to each input-level proposition (the weights themselves for two layers)
    direction = np.eye(len(rule_bias)) if not levels else rule_weight
    for weight, _ in reversed(levels[1:]):
        direction = direction @ weight
    rules = []
    for u in range(len(rule_bias)):
        if levels:
            literals = [_oblique(first_weight[j], first_bias[j], ">" if direction[u, j] > 0 else "<=")
                        for j in range(len(first_bias)) if direction[u, j] != 0]
        else:
            literals = [_oblique(first_weight[u], first_bias[u], ">")]
        consequent = out_weight[:, u]
        rules.append({"conditions": [{"m": 1, "literals": literals}], "prediction": int(np.argmax(consequent)),
                      "support": 0, "unit": u,
                      "antecedent": {"weights": rule_weight[u].tolist(), "bias": float(rule_bias[u])},
                      "consequent": consequent.tolist()})
    inference = {"type": INFERENCE, "levels": [{"weights": w.tolist(), "bias": b.tolist()} for w, b in levels],
                 "output_bias": out_bias.tolist(), "membership": "logistic", "operator": "i-or"}
    text = system_text(hidden, out_weight, out_bias, names, classes)
    return RuleSet(rules=rules, default=int(np.argmax(out_bias)), feature_names=list(names), class_names=classes,
                   feature_space="inputs", inference=inference, text=text)


def _oblique(weights: np.ndarray, bias: float, op: str) -> dict:
    return {"weights": [[int(i), float(w)] for i, w in enumerate(weights) if w != 0], "op": op,
            "threshold": float(-bias)}


# -- the rules as a person reads them ----------------------------------------------------------------------------

def _weighted_sum(weights: np.ndarray, names: list[str]) -> str:
    terms = [(w, names[i]) for i, w in enumerate(weights) if w != 0]
    if not terms:
        return "0"
    text = " ".join(f"{'-' if w < 0 else '+'} {abs(w):.3g}*{name}" for w, name in terms)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def _variable(name: str) -> str:
    return f"[{name}]" if any(c in name for c in "=<> ") else name


def system_text(hidden, out_weight, out_bias, names, classes) -> str:
    """The system in words: the levels of propositions, the rules with their consequents, the output."""
    lines = ['Fuzzy rule system equal to the network (Benitez, Castro & Requena 1997): "s is greater than '
             'approximately t" has degree A(s - t), A(u) = 1/(1 + exp(-u)); the terms of each sum combine by the '
             'i-or a (*) b = ab / (ab + (1 - a)(1 - b)), A(s1 + s2 - t) = A(s1) (*) A(s2) (*) A(-t).']
    variables = [_variable(n) for n in names]
    *levels, (rule_weight, rule_bias) = hidden
    for d, (weight, bias) in enumerate(levels, start=1):
        lines.append(f"Level-{d} propositions (hidden layer {d}) over "
                     f"{'the inputs' if d == 1 else f'the level-{d - 1} propositions'}:")
        own = [f"P{d}.{j + 1}" if len(levels) > 1 else f"P{j + 1}" for j in range(len(bias))]
        for j in range(len(bias)):
            lines.append(f"  {own[j]}: {_weighted_sum(weight[j], variables)} is greater than approximately "
                         f"{-bias[j]:.3g}")
        variables = own
    lines.append(f"Rules (hidden layer {len(hidden)}) over "
                 f"{'the inputs' if not levels else 'the degrees of the propositions'}:")
    for u in range(len(rule_bias)):
        then = ", ".join(f"y({c}) = {out_weight[k, u]:.3g}" for k, c in enumerate(classes))
        lines.append(f"  R{u + 1}: IF {_weighted_sum(rule_weight[u], variables)} is greater than approximately "
                     f"{-rule_bias[u]:.3g} THEN {then}")
    bias = ", ".join(f"{c}: {out_bias[k]:.3g}" for k, c in enumerate(classes))
    lines.append(f"Output: y(k) = sum over the rules of degree(R) * y_R(k) + bias ({bias}); the class with the "
                 f"largest y(k); ELSE (no rule fires) {classes[int(np.argmax(out_bias))]}")
    return "\n".join(lines)
