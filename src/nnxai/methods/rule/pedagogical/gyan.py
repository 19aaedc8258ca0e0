"""Gyan [86]: propositional rules generalised into first-order rules by Plotkin's least general
generalisation (LGG [130]) (R. Nayak, "Generating rules with predicates, terms and variables from the pruned
neural networks", Neural Networks 22, 2009).

The survey (Sec. III-A-2-b): "After obtaining the propositional rules by the above methods, Gyan uses the
Least General Generalization (LGG [130]) method to generate first-order logic rules from them."  Steps:

1. Propositional rules: GRG [85] on the network's answers for the training inputs
   (:mod:`nnxai.methods.rule.pedagogical.grg`, with this method's ``n_bins``, ``max_samples``, ``max_rules``).
   Gyan takes the rules of any propositional extractor; GRG is the one chosen here.
2. Each rule becomes a clause over one object ``X``: a condition "attribute ``a`` takes a value in S" is the
   atom ``a(X, t)`` with the constant term ``t = S`` (a single value, or a set of values).
3. Plotkin's LGG of two clauses of the same class (Plotkin 1970): atoms of the same predicate (attribute) are
   paired, ``lgg(t, t) = t``, and two different terms ``s, t`` become a variable ``V(s, t)``, the *same*
   variable wherever the same pair occurs in the clause.  So the LGG of ``a1(X, 1), a2(X, 1)`` and
   ``a1(X, 2), a2(X, 2)`` is ``a1(X, V), a2(X, V)``: ``a1 = a2``, a first-order rule no propositional rule
   states (as ``lgg(p(a, f(a)), p(b, f(b))) = p(V, f(V))``).  An attribute in only one clause has no pair and
   is dropped; a variable that occurs once constrains nothing and is dropped too.
4. Generalisation: while some pair of rules of the same class has an LGG that, put in place of the earlier
   of the two (the later removed), does not lower the fidelity of the rule list on the training samples
   (the network's labels), the one whose LGG covers most training samples is generalised.  Nayak's aim is
   first-order rules that maintain "the accuracy and fidelity of the propositional rules" (abstract); this
   acceptance test, fidelity not lower on the training samples, is how this module enforces it.

Choices, stated:

* Nayak extracts from a pruned network; here the network is explained as it was trained (no pruning), as
  every pedagogical extractor of this project does.

* Constants are typed by their attribute's values: a variable may join two attributes only when they are
  one-hot groups with the same value names (MONK's a1, a2 and a4 take 1..3), since ``a = b`` compares
  values; pairs involving a *set* of values, or an attribute of real-valued bins, get a variable of their
  own (dropped), as "a1 in {1, 2} and a2 in {1, 2}" is no equality.
* Rules stay a decision list (GRG's order); a variable shared by k attributes is written as the k - 1
  equalities ``{"equal": [[cols of a], [cols of b]], "op": "=="}`` between consecutive ones.
* The clauses, as ``class(X) :- atoms``, are in the record's ``meta["clauses"]``.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.pedagogical import _attributes as attr_ops
from nnxai.methods.rule.pedagogical.grg import PARAMETERS, Table, greedy_cover, network_table, to_ruleset
from nnxai.registry import register

#: A clause body: attribute index -> term, ``("c", frozenset of values)`` or ``("v", variable number)``.
Clause = dict


@register("gyan")
class Gyan(RuleExtractor):
    """Gyan [86]: GRG's propositional rules generalised to first-order rules by LGG [130]."""

    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    parameters = dict(PARAMETERS)

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        table, _ = network_table(model, ctx, self.params)
        rules, default = greedy_cover(table, self.params["max_rules"])
        clauses = [clause_of_box(table.attrs, r.box) for r in rules]
        predictions = [r.prediction for r in rules]
        clauses, predictions = generalise(table, clauses, predictions, default)
        record = to_ruleset(table, clauses, default, ctx,
                            [clause_conditions(table.attrs, c) for c in clauses], predictions,
                            [clause_covers(table.attrs, c, table.values) for c in clauses])
        class_names = record.class_names
        record.meta.update({
            "clauses": [clause_text(table.attrs, c, class_names[p]) for c, p in zip(clauses, predictions)],
            "n_propositional_rules": len(rules),
            "first_order_rules": sum(any(t[0] == "v" for t in c.values()) for c in clauses)})
        return record


def clause_of_box(attrs: list, box: np.ndarray) -> Clause:
    """A propositional rule (a box) as a clause: one constant atom per constrained attribute."""
    off = attr_ops.offsets(attrs)
    clause = {}
    for a in range(len(attrs)):
        allowed = box[off[a]:off[a + 1]]
        if not allowed.all():
            clause[a] = ("c", frozenset(int(v) for v in np.flatnonzero(allowed)))
    return clause


def _single(term: tuple) -> bool:
    return term[0] == "v" or len(term[1]) == 1


def lgg(first: Clause, second: Clause, attrs: list) -> Clause:
    """Plotkin's least general generalisation of two clauses (step 3), in canonical form."""
    pairs: dict = {}
    out = {}
    for a in sorted(set(first) & set(second)):
        s, t = first[a], second[a]
        if s == t and s[0] == "c":
            out[a] = s
        elif attrs[a].domain is not None and _single(s) and _single(t):
            key = (attrs[a].domain, (1,) + s if s[0] == "v" else s, (2,) + t if t[0] == "v" else t)
            out[a] = ("v", pairs.setdefault(key, len(pairs)))
        else:
            out[a] = ("v", -1 - a)        # a variable of its own: constrains nothing
    return canonical(out)


def canonical(clause: Clause) -> Clause:
    """Drop variables that occur once, number the others by first occurrence."""
    counts: dict = {}
    for term in clause.values():
        if term[0] == "v":
            counts[term[1]] = counts.get(term[1], 0) + 1
    names: dict = {}
    out = {}
    for a, term in sorted(clause.items()):
        if term[0] == "c":
            out[a] = term
        elif counts[term[1]] > 1:
            out[a] = ("v", names.setdefault(term[1], len(names)))
    return out


def _groups(clause: Clause) -> dict:
    """Variable -> the attributes it joins, in order."""
    groups: dict = {}
    for a, term in sorted(clause.items()):
        if term[0] == "v":
            groups.setdefault(term[1], []).append(a)
    return groups


def clause_covers(attrs: list, clause: Clause, values: np.ndarray) -> np.ndarray:
    """Bool per row of attribute values: the clause's body holds."""
    hold = np.ones(len(values), dtype=bool)
    for a, term in clause.items():
        if term[0] == "c":
            hold &= np.isin(values[:, a], sorted(term[1]))
    for members in _groups(clause).values():
        for a, b in zip(members, members[1:]):
            hold &= values[:, a] == values[:, b]
    return hold


def clause_conditions(attrs: list, clause: Clause) -> list[dict]:
    """RuleSet conditions: constants as value tests, each variable as equalities of consecutive attributes."""
    groups = _groups(clause)
    out = []
    for a, term in sorted(clause.items()):
        if term[0] == "c":
            allowed = np.zeros(attrs[a].card, dtype=bool)
            allowed[sorted(term[1])] = True
            out += attr_ops.value_conditions(attrs[a], allowed)
        elif groups[term[1]][0] == a:
            members = groups[term[1]]
            out += [{"m": 1, "literals": [{"equal": [list(attrs[p].columns), list(attrs[q].columns)], "op": "==",
                                           "names": [attrs[p].name, attrs[q].name]}]}
                    for p, q in zip(members, members[1:])]
    return out


def clause_text(attrs: list, clause: Clause, head: str) -> str:
    """``head(X) :- a1(X, V0), a2(X, V0), a5(X, 1).``; a set of values as ``a5(X, S), S in [2, 3, 4]``."""
    atoms = []
    for a, term in sorted(clause.items()):
        name = attrs[a].name
        if term[0] == "v":
            atoms.append(f"{name}(X, V{term[1]})")
        elif len(term[1]) == 1:
            atoms.append(f"{name}(X, {attrs[a].values[next(iter(term[1]))]})")
        else:
            atoms.append(f"{name}(X, S{a}), S{a} in [{', '.join(attrs[a].values[v] for v in sorted(term[1]))}]")
    return f"{head}(X) :- {', '.join(atoms) or 'true'}."


def list_fidelity(table: Table, covers: np.ndarray, predictions: np.ndarray, default: int) -> float:
    """Training samples on which the decision list (coverage rows ``covers``) gives the table's class."""
    if len(covers):
        fires = covers.any(axis=0)
        pred = np.where(fires, predictions[np.argmax(covers, axis=0)], default)
    else:
        pred = np.full(len(table.labels), default)
    return float(table.weights[pred == table.labels].sum())


def generalise(table: Table, clauses: list, predictions: list, default: int) -> tuple[list, list]:
    """Step 4: replace pairs of same-class rules by their LGG while the training fidelity does not drop."""
    clauses, predictions = list(clauses), list(predictions)
    covers = np.array([clause_covers(table.attrs, c, table.values) for c in clauses]).reshape(len(clauses), -1)
    current = list_fidelity(table, covers, np.array(predictions, dtype=np.int64), default)
    ids = list(range(len(clauses)))         # a rule keeps its id until it is generalised
    cache: dict = {}
    while True:
        best = None
        for i in range(len(clauses)):
            for j in range(i + 1, len(clauses)):
                if predictions[i] != predictions[j]:
                    continue
                if (ids[i], ids[j]) not in cache:
                    g = lgg(clauses[i], clauses[j], table.attrs)
                    cache[ids[i], ids[j]] = g, clause_covers(table.attrs, g, table.values)
                g, cov = cache[ids[i], ids[j]]
                trial = np.delete(covers, j, axis=0)
                trial[i] = cov
                fid = list_fidelity(table, trial, np.delete(np.array(predictions, dtype=np.int64), j), default)
                if fid < current - 1e-9:
                    continue
                key = (float(table.weights[cov].sum()), -i, -j)
                if best is None or key > best[0]:
                    best = (key, i, j, g, trial, fid)
        if best is None:
            return clauses, predictions
        _, i, j, g, covers, current = best
        clauses[i] = g
        ids[i] = max(ids) + 1
        del clauses[j], predictions[j], ids[j]
