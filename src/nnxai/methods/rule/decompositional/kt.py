"""KT: rules from a trained sigmoid network by a bounded subset search per unit (Fu, "Rule learning by searching
on adapted nets", AAAI 1991; survey ref. [81], Sec. III-A-2a).

Every unit (hidden and output) is booleanised: true when its activation exceeds ``beta``, false below
``1 - beta``; its inputs are boolean attributes (the first layer) or the booleanised units of the layer below.
With ``theta = logit(beta)``, for a unit of weights ``w`` and bias ``b`` (survey's notation):

1. **pos-atts and neg-atts.**  Inputs of positive weight are pos-atts, of negative weight neg-atts (a zero
   weight is neither: it never matters).
2. **Stage 1, pos-atts.**  Every combination ``P`` of at most ``max_antecedents`` pos-atts (the empty one
   included) that can make the unit true on its own, without the neg-atts: ``b + sum_P w > theta``.
3. **Stage 2, neg-atts.**  For each such ``P``, every combination ``N`` of neg-atts, ``|P| + |N| <=
   max_antecedents``, such that the unit stays true with ``P`` present, ``N`` absent and every other neg-att
   present (the worst case; other pos-atts absent): ``b + sum_P w + sum_{neg-atts not in N} w > theta``.  The
   rule is ``IF P AND NOT N THEN unit``.  Only *minimal* rules are kept, those from which no literal can be
   dropped (the survey's O(2^n) search space; a superset of a rule is a rule).
4. **Rules for false** ("class 0") are the same search on ``(-w, -b)``: neg-atts present, pos-atts absent.
5. **Layer-wise generation, then rewriting**: the rules of a unit of layer ``l > 1`` read units of layer
   ``l - 1``; a literal "unit true" (false) is replaced by the unit's rules for true (false), already rewritten
   into the inputs, so a rule becomes a disjunction of products (:mod:`._kt_mofn_dnf`).  The output unit is
   the two-class softmax read as one sigmoid ``sigmoid(z_1 - z_0)`` (:mod:`._kt_mofn_network`): its rules for
   true predict class 1, for false class 0.

The search is exact within its bound (``tests/methods/rule/test_kt.py`` checks it against an enumeration of
every partial assignment of a small unit).  A rule proven for booleanised units is sound for the network only as
far as its units are near 0 or 1: a unit whose activation lies between ``1 - beta`` and ``beta`` is covered by
neither kind of rule (KT's price for soundness).

Bounds (the survey: KT "limits the number of attributes in the antecedent ... with the risk of missing some
rules"), all reported in ``meta["extraction"]``:

* ``max_antecedents``: literals of a unit-level rule (the paper's bound);
* ``max_rules``: terms of every rewritten DNF (each unit's true and false, so the output's class-1 and class-0
  rules), and the unit-level rules of a hidden layer above the first that are rewritten: those covering the
  most training inputs (booleanised network states) first.  Our bound: the paper extracted from networks a few
  units wide and did not need one; a [32, 16] network's products explode without it.

Choices of ours, beyond the paper: continuous inputs are binarised at their training medians
(:mod:`._kt_mofn_network`); one-hot groups (MONK's attributes) simplify rewritten rules and discard impossible
ones (:mod:`._kt_mofn_dnf`), while the unit search treats every column as an independent boolean attribute, as
Fu does.  The rule list gives class 1's rules, then class 0's; the default is the network's most frequent class
on the training inputs no rule covers.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.decompositional._kt_mofn_dnf import DNF, Rewriter, Space, decision_list, plain
from nnxai.methods.rule.decompositional._kt_mofn_network import read_network, why_not_boolean
from nnxai.params import Float, Int
from nnxai.registry import register


#: Most candidate rules (subsets of at most ``max_antecedents`` weighted inputs) of one unit's search.
MAX_SUBSETS = 20_000_000


@register("kt")
class KT(RuleExtractor):
    """KT [81]: pos-atts / neg-atts subset search per booleanised unit, layer-wise rules rewritten to the inputs."""

    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    activations = frozenset({"sigmoid"})
    needs_standard_layers = True
    parameters = {
        "beta": Float("a unit is true above this activation and false below 1 - beta [81]", low=0.5, high=1.0,
                      low_open=True, high_open=True),
        "max_antecedents": Int("most literals (pos-atts present + neg-atts absent) of a unit's rule [81]", low=1),
        "max_rules": Int("most terms of every rewritten DNF (a unit's true or false; the output's class-1 and "
                         "class-0 rules) and unit-level rules rewritten per unit, by training cover", low=1),
    }

    @classmethod
    def why_not(cls, info, traits):
        return super().why_not(info, traits) or why_not_boolean(info)

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        net = read_network(model, ctx.train)
        space = Space(net.literals, net.groups)
        rewriter = Rewriter(space, self.params["max_rules"])
        theta = math.log(self.params["beta"] / (1.0 - self.params["beta"]))
        k = int(self.params["max_antecedents"])
        stats = {"unit_rules": [], "per_layer": [], "rewritten": [], "inexact_dnfs": 0}
        below: tuple[list[DNF], list[DNF]] | None = None
        for layer, (weights, bias) in enumerate(net.layers):
            states = net.states[layer]
            found = {True: [], False: []}
            for w, b in zip(weights, bias):
                for truth, sign in ((True, 1.0), (False, -1.0)):
                    rules = search(sign * w, sign * b, theta, k, states)
                    found[truth].append(self._rewrite(rules, below, rewriter, stats))
                    stats["unit_rules"].append(len(rules))
            stats["per_layer"].append(int(sum(stats["unit_rules"])) - int(sum(stats["per_layer"])))
            below = (found[True], found[False])
            stats["inexact_dnfs"] += sum(not d.exact for d in found[True] + found[False])
        class1, class0 = below[0][0], below[1][0]
        rules, default = decision_list([(1, class1), (0, class0)], space, net.thresholds, net.classes)
        n_classes = int(ctx.info.n_classes)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        record = RuleSet(rules=rules, default=default, feature_names=list(net.names), class_names=class_names,
                         feature_space="inputs")
        record.meta["extraction"] = {
            "beta": self.params["beta"], "max_antecedents": k, "max_rules": self.params["max_rules"],
            "unit_rules_per_layer": stats["per_layer"], "most_unit_rules": int(max(stats["unit_rules"])),
            "unit_rules_rewritten": int(sum(stats["rewritten"])), "inexact_dnfs": int(stats["inexact_dnfs"]),
            "class1_exact": bool(class1.exact), "class0_exact": bool(class0.exact),
            "binarised_inputs": [int(j) for j in np.flatnonzero(~net.binary)], "one_hot_groups": len(net.groups)}
        return record

    def _rewrite(self, rules: list, below, rewriter: Rewriter, stats: dict) -> DNF:
        """A unit's rules (over its inputs) as a DNF over the network's inputs."""
        if below is None:     # the first layer reads the input attributes
            return rewriter.select([plain(j, True) for j in p] + [plain(j, False) for j in n] for p, n in rules)
        true, false = below
        chosen = rules[:rewriter.max_rules]
        stats["rewritten"].append(len(chosen))
        parts = [rewriter.conjunction([true[j] for j in p] + [false[j] for j in n]) for p, n in chosen]
        out = rewriter.union(parts)
        out.exact = out.exact and len(chosen) == len(rules)
        return out


def search(w: np.ndarray, b: float, theta: float, k: int, states: np.ndarray | None = None) -> list[tuple]:
    """KT's two-stage search for one unit: every minimal rule ``(P, N)`` (pos-atts present, neg-atts absent),
    ``|P| + |N| <= k``, that makes ``b + w.x > theta`` for every boolean input satisfying it.

    Sorted by the number of rows of ``states`` (the unit's boolean inputs on the training split) that satisfy
    the rule, most first, then by size and indices; unsorted support is 0 without ``states``.
    """
    w = np.asarray(w, dtype=np.float64)
    subsets = sum(math.comb(int(np.count_nonzero(w)), i) for i in range(k + 1))
    if subsets > MAX_SUBSETS:
        raise ValueError(f"KT: a unit of {np.count_nonzero(w)} weighted inputs has {subsets} rule candidates of at "
                         f"most {k} literals (more than {MAX_SUBSETS}); lower method_params.kt.max_antecedents")
    a = np.abs(w)
    pos, neg = np.flatnonzero(w > 0), np.flatnonzero(w < 0)
    need = theta - b - w[neg].sum()          # what P present and N absent must add to the worst case
    n_rows = 0 if states is None else len(states)
    negs = {q: _combos(neg, q, a) for q in range(min(k, len(neg)) + 1)}
    found = []
    for p in range(min(k, len(pos)) + 1):
        sets, total, low = _combos(pos, p, a)
        first = b + total > theta                                    # stage 1: P alone, without the neg-atts
        if not first.any():
            continue
        sets, total, low = sets[first], total[first], low[first]
        for q in range(min(k - p, len(neg)) + 1):
            nsets, ntotal, nlow = negs[q]
            gain = total[:, None] + ntotal[None, :]
            smallest = np.minimum(low[:, None], nlow[None, :])
            ok = (gain > need) & (gain - smallest <= need)           # stage 2: sound and minimal
            if not ok.any():
                continue
            rows, cols = np.nonzero(ok)
            support = np.zeros(len(rows))
            if n_rows:
                used_p, at_p = np.unique(rows, return_inverse=True)
                used_n, at_n = np.unique(cols, return_inverse=True)
                cover_p = _cover(states, sets[used_p], True)[:, at_p]
                cover_n = _cover(states, nsets[used_n], False)[:, at_n]
                support = (cover_p & cover_n).sum(0)
            for r, c, s in zip(rows, cols, support):
                found.append((-int(s), p + q, tuple(int(i) for i in sets[r]), tuple(int(i) for i in nsets[c])))
    found.sort()
    return [(p_set, n_set) for _, _, p_set, n_set in found]


def _combos(index: np.ndarray, size: int, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``size``-subset of ``index`` (rows), its total ``|w|`` and its smallest ``|w|`` (inf when empty)."""
    if size == 0:
        return np.zeros((1, 0), dtype=np.int64), np.zeros(1), np.full(1, np.inf)
    sets = np.array(list(combinations(index.tolist(), size)), dtype=np.int64).reshape(-1, size)
    return sets, a[sets].sum(1), a[sets].min(1)


def _cover(states: np.ndarray, sets: np.ndarray, present: bool) -> np.ndarray:
    """``(n_rows, n_sets)``: rows where every input of the set is present (absent)."""
    if sets.shape[1] == 0:
        return np.ones((len(states), len(sets)), dtype=bool)
    values = states if present else ~states
    out = np.ones((len(states), len(sets)), dtype=bool)
    for c in range(sets.shape[1]):
        out &= values[:, sets[:, c]]
    return out
