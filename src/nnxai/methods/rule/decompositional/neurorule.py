"""NeuroRule [83]: Setiono & Liu, "Understanding neural networks via rule extraction", IJCAI 1995, with the
RX algorithm of "Symbolic representation of neural networks", IEEE Computer 29(3), 1996.

The survey (Sec. III-A-2a): "(1) train the network and prune, (2) discretize (cluster) the activation values
of the hidden neurons, (3) extract the rules layer-wise and rewrite".  The steps, as implemented:

1. **Penalised training and pruning** of a copy of the network (:mod:`._setiono`: the penalty, the removal
   criterion ``max_p |v_pm w_ml| <= 4 eta2`` generalised to our networks, retraining, stop when the accuracy
   requirement fails).
2. **Clustering of the hidden activations** (the paper's "hidden node activation values clustering"): for
   each hidden unit, pass over the training patterns in order; a value joins the nearest cluster seed
   ``H(j)`` when ``|delta - H(j)| <= eps``, else it seeds a new cluster; each cluster is then represented by
   the mean of its values.  The network with every activation replaced by its cluster's value must still
   meet the required accuracy, else ``eps`` is decreased (halved here) and the clustering redone.
3. **RX rules.**  (a) Enumerate every combination of the discretised activation values, compute the
   network's outputs and generate perfect rules for them (X2R, :mod:`._x2r`); the class of the largest cover
   becomes the default rule.  (b) For each hidden condition the rules use, enumerate the input values that
   reach the unit and generate perfect rules for the condition.  (c) Substitute (b) into (a): rules from the
   inputs to the outputs.  They are then simplified as X2R prunes (a condition is dropped when the rule
   still covers no input of another class, on the enumerated input space), and rules implied by the others
   are removed.  Within a one-hot group, "= 0" on every column but one is written as "that column = 1"
   (the same test on valid inputs: X2R over the attribute itself would say "a5 = 4").

Applies to sigmoid MLPs on binarised inputs (MONK's one-hot robots): the enumeration in (b) runs over the
valid values of the attributes connected to a unit (one column of a one-hot group on), a condition reads
"input column = 1" or "= 0".

**Two hidden layers** (our networks are [32, 16]; the paper has one).  Pruning runs over every layer.  Only
the *first* hidden layer is discretised, it is the paper's hidden layer: given the discrete values of the
first layer the second layer takes finitely many values already, so step 3a enumerates the first layer's
cluster values and computes the outputs through the pruned second layer and the output layer.  With one
hidden layer this is the paper's algorithm exactly.

Where the enumeration would be too large (``MAX_DOMAIN`` combinations: a pruned network should never come
near it), the combinations that the training patterns reach are used instead, so the rules are exact on
those only; the record says so (``meta["neurorule"]["enumerated"]``).

Other choices: the paper says "decrease eps"; here it is halved (at most ``MAX_HALVINGS`` times; by then
every distinct value is its own cluster and the discretised network is the pruned one, which met the
requirement).  An activation is mapped to the *nearest* cluster value, also for the enumerated inputs of
step 3b that no training pattern reached (the paper assigns only the training patterns).  The required
accuracy is the pruning's (``min_accuracy`` with the ``eta1`` criterion).  ``cluster_eps`` is for sigmoid
activations in [0, 1]; the paper's units are tanh, in [-1, 1].

Exactness: with full enumeration the rule list classifies every valid input exactly as the pruned network
with discretised activations does (the tests check it on MONK's 432 robots); its fidelity to the given
network is what pruning and discretisation kept.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.decompositional import _setiono, _x2r
from nnxai.ops.feature_space import Field, feature_space, split_features
from nnxai.params import Float
from nnxai.registry import register

#: Largest enumeration (combinations of cluster values, or of a unit's input values).
MAX_DOMAIN = 1 << 16
#: Halvings of eps before the clustering keeps every distinct value (the pruned network itself).
MAX_HALVINGS = 40


def binary_inputs(info) -> bool:
    """Whether the data set's inputs are binarised 0/1 columns (MONK's one-hot robots: ``Dataset.binary_inputs``)."""
    return bool(getattr(info, "binary_inputs", False))


# -- step 2: clustering --------------------------------------------------------------------------------------

def cluster(values: np.ndarray, eps: float) -> np.ndarray:
    """The paper's one-pass clustering of one unit's activations (in pattern order): sorted cluster means."""
    seeds, sums, counts = [], [], []
    for v in np.asarray(values, dtype=np.float64):
        if seeds:
            d = np.abs(np.asarray(seeds) - v)
            j = int(np.argmin(d))
            if d[j] <= eps:
                sums[j] += v
                counts[j] += 1
                continue
        seeds.append(v)
        sums.append(v)
        counts.append(1)
    return np.sort(np.asarray(sums) / np.asarray(counts))


def nearest(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of every value (the discretisation map)."""
    return np.abs(np.asarray(values)[..., None] - centres).argmin(-1)


def discretise(net: _setiono.Net, x: torch.Tensor, targets: torch.Tensor, units: np.ndarray, p: dict,
               eps: float) -> tuple[list, float, float]:
    """Clusters of every unit, halving ``eps`` until the discretised network meets the required accuracy;
    returns the centres per unit, the ``eps`` used and the discretised network's accuracy."""
    with torch.no_grad():
        first = net.hidden(x)[0]
    acts = first[:, units].numpy()
    for _ in range(MAX_HALVINGS):
        centres = [cluster(acts[:, k], eps) for k in range(len(units))]
        acc = _setiono.accuracy(_discrete_logits(net, first, units, centres), targets, p["eta1"])
        if acc >= p["min_accuracy"]:
            break
        eps /= 2
    return centres, eps, acc


def _discrete_logits(net, first: torch.Tensor, units, centres) -> torch.Tensor:
    values = first.clone()
    for k, u in enumerate(units):
        values[:, u] = torch.from_numpy(centres[k][nearest(first[:, u].numpy(), centres[k])])
    with torch.no_grad():
        return net.logits_from(values)


def _logits_of_indices(net, n_first: int, units, centres, indices: np.ndarray) -> torch.Tensor:
    """Logits of combinations of cluster indices of the units (other first-layer units are cut off)."""
    values = torch.zeros(len(indices), n_first, dtype=torch.float64)
    for k, u in enumerate(units):
        values[:, u] = torch.from_numpy(centres[k][indices[:, k]])
    with torch.no_grad():
        return net.logits_from(values)


# -- the input space ----------------------------------------------------------------------------------------

def _domain(fields: list[Field], d: int, fallback: np.ndarray) -> tuple[np.ndarray, bool]:
    """Every valid input over ``fields`` (other columns 0), or the distinct training rows restricted to
    them when there are more than ``MAX_DOMAIN``; and whether it is the full enumeration."""
    total = int(np.prod([len(f.patterns) for f in fields])) if fields else 1
    columns = [c for f in fields for c in f.columns]
    if total > MAX_DOMAIN:
        rows = np.zeros_like(fallback)
        rows[:, columns] = fallback[:, columns]
        return np.unique(rows, axis=0), False
    out = np.zeros((total, d))
    for r, combo in enumerate(itertools.product(*[range(len(f.patterns)) for f in fields])):
        for f, k in zip(fields, combo):
            out[r, list(f.columns)] = f.patterns[k]
    return out, True


def _binary_field(fld: Field, train: np.ndarray) -> Field:
    """A one-hot group or a 0/1 column as an enumerable field; a real-valued column is refused."""
    if fld.patterns is not None:
        return fld
    column = train[:, list(fld.columns)]
    if not np.isin(column, (0.0, 1.0)).all():
        raise ValueError(f"NeuroRule reads binarised inputs: column {fld.columns[0]} takes values other than 0/1")
    return Field(fld.columns, np.array([[0.0], [1.0]]))


def _fields_of(fields: list[Field], columns) -> list[Field]:
    columns = set(int(c) for c in columns)
    return [f for f in fields if columns & set(f.columns)]


@register("neurorule")
class NeuroRule(RuleExtractor):
    """NeuroRule [83]: prune, cluster the hidden activations, RX rules layer by layer, substituted."""

    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    activations = frozenset({"sigmoid"})
    parameters = {
        **_setiono.PRUNING_PARAMETERS,
        "cluster_eps": Float("initial eps of the activation clustering (a value joins a cluster whose seed is "
                             "within eps); halved until the discretised network meets min_accuracy",
                             low=0.0, high=1.0, low_open=True),
    }

    @classmethod
    def check_combination(cls, params: dict) -> None:
        _setiono.check_etas(cls.owner_name(), params)

    @classmethod
    def why_not(cls, info, traits):
        reason = super().why_not(info, traits)
        if reason is None and not binary_inputs(info):
            return f"needs binarised 0/1 inputs (NeuroRule [83]; NeuroLinear is its continuous form), {info.name} has continuous ones"
        return reason

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        space = feature_space(model, ctx)
        train = split_features(ctx.train, "inputs")
        fields = [_binary_field(f, train) for f in space.fields]
        p = self.params
        given, net, x, targets = _setiono.prepare(model, ctx.train.x, p, ctx.seed)
        n_classes = int(ctx.info.n_classes)
        units = net.alive(0)
        centres, eps, disc_acc = discretise(net, x, targets, units, p, float(p["cluster_eps"]))
        n_first = net.weights[0].shape[0]

        # 3a: hidden -> output, over every combination of cluster values
        sizes = [len(c) for c in centres]
        enumerated = int(np.prod(sizes)) <= MAX_DOMAIN
        if enumerated:
            listed = list(itertools.product(*[range(s) for s in sizes]))
            combos = np.array(listed, dtype=np.int64).reshape(len(listed), len(units))
        else:
            first = net.hidden(torch.as_tensor(train))[0][:, units].numpy()
            combos = np.unique(np.column_stack([nearest(first[:, k], centres[k]) for k in range(len(units))]), axis=0)
        classes = _logits_of_indices(net, n_first, units, centres, combos).argmax(1).numpy()
        hidden_rules, default = _x2r.decision_list(_x2r.Table(combos, sizes), classes, n_classes)

        # 3b: inputs -> each hidden condition used; 3c: substitution
        unit_value = {}
        for k, u in enumerate(units):
            fields_m = _fields_of(fields, torch.nonzero(net.masks[0][u]).flatten().tolist())
            dom, full = _domain(fields_m, train.shape[1], train)
            enumerated &= full
            act = torch.sigmoid(torch.as_tensor(dom) @ (net.weights[0][u] * net.masks[0][u]) + net.biases[0][u])
            cols = [c for f in fields_m for c in f.columns]
            unit_value[k] = (dom, nearest(act.numpy(), centres[k]), cols)
        dnf_cache = {}
        merged = []
        for conditions, cls, _ in hidden_rules:
            parts = [self._condition_dnf(unit_value, cond, dnf_cache) for cond in conditions]
            for combo in itertools.product(*parts):
                conj = {}
                if all(conj.setdefault(c, v) == v for part in combo for c, v in part):
                    merged.append((conj, cls))

        # simplification on the input space of every unit the rules read
        used = sorted({c for conj, _ in merged for c in conj})
        used_fields = _fields_of(fields, used)
        dom, full = _domain(used_fields, train.shape[1], train)
        enumerated &= full
        dom_classes = self._discrete_classes(net, units, centres, dom)
        rules = self._simplify(merged, dom, dom_classes, used_fields, n_classes)
        support = [(int(_holds(r, train).sum())) for r, _ in rules]
        record = RuleSet(
            rules=[{"conditions": [_literal(c, v) for c, v in sorted(r.items())], "prediction": int(cls),
                    "support": s} for (r, cls), s in zip(rules, support)],
            default=int(default), feature_names=list(space.names),
            class_names=list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)]),
            feature_space="inputs")
        record.meta["neurorule"] = {
            "given_connections": given.n_connections(), "pruned": net.summary(), "pruning_rounds": net.history,
            "network": net.to_json(),
            "first_layer_units": [int(u) for u in units], "cluster_values": [c.tolist() for c in centres],
            "cluster_eps": eps, "discretised_accuracy": disc_acc, "enumerated": bool(enumerated),
            "hidden_rules": [{"conditions": [list(c) for c in r], "prediction": int(cls)} for r, cls, _ in hidden_rules],
            "rows": int(len(x))}
        return record

    @staticmethod
    def _condition_dnf(unit_value: dict, cond: tuple, cache: dict) -> list:
        """Step 3b: perfect rules over the unit's input columns for "the unit's cluster index in lo..hi"."""
        if cond not in cache:
            k, lo, hi = cond
            dom, value, cols = unit_value[k]
            table = _x2r.Table(dom[:, cols].astype(np.int64), [2] * len(cols))
            conjs = _x2r.cover(table, (value >= lo) & (value <= hi))
            cache[cond] = [[(cols[a], v) for a, v, _ in conj] for conj in conjs]
        return cache[cond]

    @staticmethod
    def _discrete_classes(net, units, centres, dom: np.ndarray) -> np.ndarray:
        first = net.hidden(torch.as_tensor(dom))[0]
        return _discrete_logits(net, first, units, centres).argmax(1).numpy()

    @staticmethod
    def _simplify(merged: list, dom: np.ndarray, dom_classes: np.ndarray, fields, n_classes: int) -> list:
        """X2R's pruning of the substituted rules on the enumerated input space, per class."""
        cols = [c for f in fields for c in f.columns]
        position = {c: a for a, c in enumerate(cols)}
        table = _x2r.Table(dom[:, cols].astype(np.int64), [2] * len(cols))
        out = []
        groups = [f.columns for f in fields if len(f.columns) > 1]
        for cls in range(n_classes):
            conjs = [[(position[c], v, v) for c, v in sorted(one_hot_form(conj, groups).items())]
                     for conj, k in merged if k == cls]
            if not conjs:
                continue
            positive = dom_classes == cls
            conjs = [_x2r.generalise(table, r, positive) for r in conjs if table.holds(r).any()]
            conjs = _x2r.drop_redundant(table, list({tuple(r): r for r in conjs}.values()), positive)
            ranked = sorted(conjs, key=lambda r: -int(table.holds(r).sum()))
            for r in ranked:
                out.append(({cols[a]: lo for a, lo, hi in r if lo == hi}, cls))
        return out


def one_hot_form(conj: dict, groups: list) -> dict:
    """A conjunction of "column = 0/1" tests in its shortest form on valid one-hot inputs: within a group, a
    column that is 1 makes the group's "= 0" tests redundant, and "= 0" on all columns but one is "that one
    = 1" (e.g. "a5=1 = 0 and a5=2 = 0 and a5=3 = 0" is "a5=4 = 1").  Contradictions are left to the caller."""
    conj = dict(conj)
    for columns in groups:
        tested = {c: conj[c] for c in columns if c in conj}
        if any(tested.values()):
            if sum(tested.values()) == 1:
                for c, v in tested.items():
                    if not v:
                        del conj[c]
        elif len(tested) == len(columns) - 1:
            for c in tested:
                del conj[c]
            conj[next(c for c in columns if c not in tested)] = 1
    return conj


def _literal(column: int, value: int) -> dict:
    """"input column = 1" (``> 0.5``) or "= 0" (``<= 0.5``) as a 1-of-1 condition."""
    return {"m": 1, "literals": [{"feature": int(column), "op": ">" if value else "<=", "threshold": 0.5}]}


def _holds(conj: dict, x: np.ndarray) -> np.ndarray:
    out = np.ones(len(x), dtype=bool)
    for c, v in conj.items():
        out &= (x[:, c] > 0.5) == bool(v)
    return out
