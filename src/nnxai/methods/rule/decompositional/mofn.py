"""M-of-N: rules of the form "if M of these N antecedents hold" from a trained sigmoid network (Towell & Shavlik,
"Extracting refined rules from knowledge-based neural networks", Machine Learning 13, 1993; survey ref. [82],
Sec. III-A-2a).  The paper's six steps, per hidden and output unit, layer by layer:

1. **Clustering.**  The unit's incoming links are grouped by weight with the join algorithm: every link starts
   as its own cluster and the two clusters whose mean weights are closest are merged while they differ by at
   most ``cluster_distance`` (on one axis the closest clusters are neighbours in weight order).
2. **Averaging.**  Every link takes its cluster's mean weight.
3. **Eliminating** clusters that cannot change whether the unit is active (net input above 0, activation
   above 0.5): (a) *algorithmically*, a cluster is dropped when no boolean input lets it change the unit's
   state whatever the other clusters do (exact over the sums the other clusters can reach; the interval of
   those sums when they are more than 2^16); (b) *empirically*, on the training inputs (the unit's boolean
   inputs: the attributes, or the network's units of the layer below above 0.5), the clusters are tried from
   the smallest total weight ``|w_c| n_c`` up, and one is dropped when removing it changes the unit's state on
   no training input.  The paper describes the step in words (drop the clusters that hardly matter to whether
   the unit is active); the two tests above are our reading of it.
4. **Optimising** the biases: with every weight frozen at its clustered value (0 for eliminated links), the
   biases of all units are retrained by backpropagation, as in the paper.  Here: ``bias_steps`` full-batch
   Adam steps (rate ``bias_lr``) from the network's own biases, on the booleanised network (boolean inputs,
   sigmoid units), minimising the cross-entropy of its output against the *network's* classes on the training
   inputs (we explain the network, so it is the teacher; the paper used the training examples' labels).
5. **Extracting**: one rule per unit, ``sum_c w_c nt(A_c) + b > 0`` (``nt``: the number of true antecedents of
   cluster ``c``); a negative cluster counts its antecedents negated, ``|w_c| nt(not A_c) > -b + sum |w_c| n_c``.
6. **Simplifying**: the rule becomes M-of-N conditions: a single cluster is "M of N" with the least ``M`` that
   passes the threshold; several clusters give the disjunction, over every *minimal* count vector ``k`` with
   ``sum_c |w_c| k_c > theta``, of the conjunctions ``k_c-of-A_c``.  The unit being inactive is likewise the
   disjunction over maximal failing vectors of "at most ``k_c`` of ``A_c``" (``(n_c - k_c)-of-{not A_c}``).

**Rewriting to the inputs** (the survey: layer-wise rules, then rewriting to eliminate hidden units; the paper
stops at rules over its KBANN network's named hidden units): a condition "k of these units" over units of the
layer below, whose rules are already rewritten, is expanded by the dynamic programme "at least k of N" of
:mod:`._kt_mofn_dnf`, conjunctions by products.  The output unit is ``sigmoid(z_1 - z_0)``; its rule predicts class 1
and its negation class 0.  When both are complete (no bound left a term out) the shorter one is listed with the
other class as the default (negation as failure, the paper's rules conclude a unit only when they fire);
otherwise both are listed, class 1 first, with the network's most frequent class on uncovered training inputs
as the default.

Bounds, reported in ``meta["extraction"]``: ``max_vectors``, the count vectors ``prod_c (n_c + 1)`` of one unit's
rule (while larger, the two closest remaining clusters are merged, step 1 continued; before step 4); and
``max_rules``, the terms of every rewritten DNF and the count vectors of a unit above the first hidden layer that
are rewritten (those covering the most training inputs first).  Continuous inputs are binarised at their
training medians (:mod:`._kt_mofn_network`); one-hot groups simplify the rewritten rules (:mod:`._kt_mofn_dnf`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.decompositional._kt_mofn_dnf import DNF, Rewriter, Space, decision_list
from nnxai.methods.rule.decompositional._kt_mofn_network import read_network, why_not_boolean
from nnxai.params import Float, Int
from nnxai.registry import register

#: Above this many reachable sums of the other clusters, algorithmic elimination uses their interval.
MAX_SUMS = 2 ** 16


@register("mofn")
class MofN(RuleExtractor):
    """M-of-N [82]: cluster, average, eliminate, optimise biases, M-of-N rule per unit, rewrite to the inputs."""

    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    activations = frozenset({"sigmoid"})
    needs_standard_layers = True
    parameters = {
        "cluster_distance": Float("join algorithm: clusters of links merge while their mean weights differ by at "
                                  "most this (logit units)", low=0.0, low_open=True),
        "bias_steps": Int("full-batch Adam steps optimising the biases with the clustered weights frozen", low=0),
        "bias_lr": Float("learning rate of the bias optimisation", low=0.0, low_open=True),
        "max_vectors": Int("most count vectors prod(n_c + 1) of a unit's rule; clusters merge further past it",
                           low=2),
        "max_rules": Int("most terms of every rewritten DNF (a unit's true or false; class 1 and class 0), and "
                         "count vectors rewritten per unit, by training cover", low=1),
    }

    @classmethod
    def why_not(cls, info, traits):
        return super().why_not(info, traits) or why_not_boolean(info)

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        net = read_network(model, ctx.train)
        clustered = [[cluster_unit(w, b, net.states[layer], self.params["cluster_distance"],
                                   self.params["max_vectors"]) for w, b in zip(weights, bias)]
                     for layer, (weights, bias) in enumerate(net.layers)]
        before = agreement(clustered, net)
        optimise_biases(clustered, net, self.params["bias_steps"], self.params["bias_lr"])
        space = Space(net.literals, net.groups)
        rewriter = Rewriter(space, self.params["max_rules"])
        below = None
        inexact = 0
        for layer, units in enumerate(clustered):
            states = net.states[layer]
            dnfs = [unit_dnfs(unit, states, below, rewriter) for unit in units]
            below = ([t for t, _ in dnfs], [f for _, f in dnfs])
            inexact += sum(not d.exact for pair in dnfs for d in pair)
        class1, class0 = below[0][0], below[1][0]
        exact = [(len(d.terms), -c, c, d) for c, d in ((1, class1), (0, class0)) if d.exact]
        if exact:
            _, _, cls, dnf = min(exact, key=lambda e: e[:2])
            listed = [(cls, dnf)]
            rules, _ = decision_list(listed, space, net.thresholds, net.classes)
            default = 1 - cls
        else:
            listed = [(1, class1), (0, class0)]
            rules, default = decision_list(listed, space, net.thresholds, net.classes)
        n_classes = int(ctx.info.n_classes)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        record = RuleSet(rules=rules, default=default, feature_names=list(net.names), class_names=class_names,
                         feature_space="inputs")
        record.meta["extraction"] = {
            **{k: self.params[k] for k in ("cluster_distance", "bias_steps", "max_vectors", "max_rules")},
            "clusters_per_unit": [[len(u["clusters"]) for u in units] for units in clustered],
            "eliminated_per_unit": [[u["eliminated"] for u in units] for units in clustered],
            "train_agreement_clustered": before, "train_agreement_optimised": agreement(clustered, net),
            "train_agreement_unit_rules": agreement(clustered, net, boolean=True),
            "inexact_dnfs": int(inexact), "class1_exact": bool(class1.exact), "class0_exact": bool(class0.exact),
            "binarised_inputs": [int(j) for j in np.flatnonzero(~net.binary)], "one_hot_groups": len(net.groups)}
        return record


# -- steps 1-3: clustering, averaging, eliminating --------------------------------------------------------------

def join(w: np.ndarray, distance: float) -> list[list[int]]:
    """The join algorithm on one axis: merge the two closest clusters (by mean weight) while their means differ
    by at most ``distance``; clusters in increasing order of mean weight, members in index order."""
    clusters = [[int(i)] for i in np.argsort(w, kind="stable")]
    means = [float(w[c[0]]) for c in clusters]
    while len(clusters) > 1:
        gaps = np.diff(means)
        g = int(np.argmin(gaps))
        if gaps[g] > distance:
            break
        _merge(clusters, means, g, w)
    return [sorted(c) for c in clusters]


def _merge(clusters: list, means: list, g: int, w: np.ndarray) -> None:
    clusters[g:g + 2] = [clusters[g] + clusters[g + 1]]
    means[g:g + 2] = [float(np.mean(w[clusters[g]]))]


def cluster_unit(w: np.ndarray, b: float, states: np.ndarray, distance: float, max_vectors: int) -> dict:
    """Steps 1-3 for one unit: ``{"clusters": [members], "weights": [mean], "bias", "eliminated"}`` with the
    eliminated clusters removed (their links weigh 0)."""
    clusters = join(w, distance)
    weights = [float(np.mean(w[c])) for c in clusters]
    keep = [not cannot_change(k, clusters, weights, b) for k in range(len(clusters))]
    clusters = [c for c, k in zip(clusters, keep) if k]
    weights = [v for v, k in zip(weights, keep) if k]
    eliminated = keep.count(False)
    counts = np.stack([states[:, c].sum(1) for c in clusters], 1) if clusters else np.zeros((len(states), 0))
    net = b + counts @ np.array(weights, dtype=np.float64) if clusters else np.full(len(states), float(b))
    for k in sorted(range(len(clusters)), key=lambda k: (abs(weights[k]) * len(clusters[k]), k)):
        without = net - weights[k] * counts[:, k]
        if np.array_equal(net > 0, without > 0):
            net, weights[k] = without, 0.0
            eliminated += 1
    clusters = [c for c, v in zip(clusters, weights) if v != 0.0]
    weights = [v for v in weights if v != 0.0]
    order = np.argsort(weights, kind="stable").tolist()
    clusters, weights = [clusters[i] for i in order], [weights[i] for i in order]
    while int(np.prod([len(c) + 1 for c in clusters])) > max_vectors:   # the bound: merge further
        g = int(np.argmin(np.diff(weights)))
        _merge(clusters, weights, g, w)
        clusters[g].sort()
    return {"clusters": clusters, "weights": weights, "bias": float(b), "eliminated": int(eliminated)}


def cannot_change(k: int, clusters: list, weights: list, b: float) -> bool:
    """Whether cluster ``k`` changes the unit's state (net input > 0) for no boolean input."""
    contribution = weights[k] * len(clusters[k])
    low, high = min(0.0, contribution), max(0.0, contribution)
    sums = np.zeros(1)
    for i, (c, v) in enumerate(zip(clusters, weights)):
        if i == k:
            continue
        sums = np.unique(np.round(sums[:, None] + v * np.arange(len(c) + 1)[None, :], 12))
        if len(sums) > MAX_SUMS:
            rest = [weights[j] * len(clusters[j]) for j in range(len(clusters)) if j != k]
            lo, hi = sum(min(0.0, r) for r in rest), sum(max(0.0, r) for r in rest)
            return not (lo <= -b - low and hi > -b - high)     # interval test: conservative (keeps the cluster)
    return not np.any((b + sums + low <= 0) & (b + sums + high > 0))


# -- step 4: optimising the biases -----------------------------------------------------------------------------

def _matrices(clustered: list, net) -> list[np.ndarray]:
    out = []
    for units, (weights, _) in zip(clustered, net.layers):
        m = np.zeros_like(weights)
        for u, unit in enumerate(units):
            for members, v in zip(unit["clusters"], unit["weights"]):
                m[u, members] = v
        out.append(m)
    return out


def _forward(matrices, biases, x):
    h = x
    for i, (m, b) in enumerate(zip(matrices, biases)):
        z = h @ m.T + b
        h = torch.sigmoid(z) if i < len(matrices) - 1 else z
    return h[:, 0]


def optimise_biases(clustered: list, net, steps: int, lr: float) -> None:
    """Step 4: retrain every bias with the clustered weights frozen; writes ``unit["bias"]``."""
    matrices = [torch.as_tensor(m) for m in _matrices(clustered, net)]
    biases = [torch.tensor([u["bias"] for u in units], dtype=torch.float64, requires_grad=True) for units in clustered]
    x = torch.as_tensor(net.literals, dtype=torch.float64)
    target = torch.as_tensor(net.classes, dtype=torch.float64)
    first = [torch.zeros_like(b) for b in biases]       # Adam's moments (Kingma & Ba 2015, Algorithm 1)
    second = [torch.zeros_like(b) for b in biases]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        loss = nn.functional.binary_cross_entropy_with_logits(_forward(matrices, biases, x), target)
        grads = torch.autograd.grad(loss, biases)
        with torch.no_grad():
            for b, g, m, v in zip(biases, grads, first, second):
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                b -= lr * (m / (1 - beta1 ** step)) / ((v / (1 - beta2 ** step)).sqrt() + eps)
    for units, b in zip(clustered, biases):
        for unit, value in zip(units, b.detach().numpy()):
            unit["bias"] = float(value)


def agreement(clustered: list, net, boolean: bool = False, literals: np.ndarray | None = None,
              classes: np.ndarray | None = None) -> float:
    """Fraction of inputs (default: the training inputs' attributes) on which the clustered network gives the
    network's class; ``boolean``: with every unit a step at net input 0, i.e. what the extracted M-of-N rules
    compute layer by layer before they are rewritten into the inputs."""
    h = np.asarray(net.literals if literals is None else literals, dtype=np.float64)
    for i, (m, units) in enumerate(zip(_matrices(clustered, net), clustered)):
        z = h @ m.T + np.array([u["bias"] for u in units])
        h = (z > 0).astype(np.float64) if boolean else 0.5 * (1.0 + np.tanh(z / 2.0))   # the sigmoid, stably
    target = net.classes if classes is None else classes
    return float(np.mean((z[:, 0] > 0).astype(int) == target))


# -- steps 5-6: extracting, simplifying, rewriting ---------------------------------------------------------------

def count_vectors(sizes: list[int], weights: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimal count vectors with ``weights . k > theta`` and maximal ones with ``weights . k <= theta``
    (``0 <= k_c <= sizes[c]``); ``weights`` positive."""
    grid = np.indices([n + 1 for n in sizes]).reshape(len(sizes), -1).T if sizes else np.zeros((1, 0), dtype=int)
    total = grid @ weights if sizes else np.zeros(1)
    big = np.inf
    lowest = np.where(grid > 0, weights[None, :], big).min(1) if sizes else np.full(1, big)
    room = np.where(grid < np.array(sizes)[None, :], weights[None, :], big).min(1) if sizes else np.full(1, big)
    minimal = (total > theta) & (total - lowest <= theta)
    maximal = (total <= theta) & (total + room > theta)
    return grid[minimal], grid[maximal]


def unit_dnfs(unit: dict, states: np.ndarray, below, rewriter: Rewriter) -> tuple[DNF, DNF]:
    """Steps 5-6 and the rewriting for one unit: the DNFs (over the inputs) of the unit active and inactive."""
    clusters, weights = unit["clusters"], np.array(unit["weights"], dtype=np.float64)
    sizes = np.array([len(c) for c in clusters], dtype=np.int64)
    signs = weights > 0
    theta = -unit["bias"] + float(np.sum(-weights[~signs] * sizes[~signs]))
    true_k, false_k = count_vectors(sizes.tolist(), np.abs(weights), theta)
    # antecedents true per cluster on the training inputs (the negated links of a negative cluster)
    counts = np.stack([np.where(s, states[:, c], ~states[:, c]).sum(1) for c, s in zip(clusters, signs)], 1) \
        if clusters else np.zeros((len(states), 0), dtype=np.int64)
    out = []
    for vectors, active in ((true_k, True), (false_k, False)):
        # literals of cluster c that must hold: k_c of A_c (active), n_c - k_c of not A_c (at most k_c of A_c)
        needs = vectors if active else sizes[None, :] - vectors
        support = _support(counts, vectors, active)
        order = sorted(range(len(needs)), key=lambda i: (-int(support[i]), int(needs[i].sum()), tuple(needs[i])))
        needs = needs[order]
        polarity = signs == active      # literal "true" (unit true) for each cluster's members
        if below is None:
            dnf = rewriter.select(_input_term(n, clusters, polarity) for n in needs)
        else:
            dnf = _rewrite(needs, clusters, polarity, below, rewriter)
        out.append(dnf)
    return out[0], out[1]


def _support(counts: np.ndarray, vectors: np.ndarray, active: bool, chunk: int = 1024) -> np.ndarray:
    """Training inputs whose per-cluster counts reach (active) or stay within (inactive) each vector."""
    out = np.zeros(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        v = vectors[start:start + chunk][None]
        hold = (counts[:, None, :] >= v) if active else (counts[:, None, :] <= v)
        out[start:start + chunk] = hold.all(2).sum(0)
    return out


def _input_term(needs: np.ndarray, clusters: list, polarity: np.ndarray) -> list:
    """A count vector as M-of-N conditions over the input attributes."""
    return [(int(n), tuple(sorted((int(j), bool(p)) for j in members)))
            for n, members, p in zip(needs, clusters, polarity) if n > 0]


def _rewrite(needs: np.ndarray, clusters: list, polarity: np.ndarray, below, rewriter: Rewriter) -> DNF:
    """The top ``max_rules`` count vectors rewritten through the DNFs of the units below."""
    chosen = needs[:rewriter.max_rules]
    true, false = below
    tables = {}
    for c, (members, p) in enumerate(zip(clusters, polarity)):
        deepest = int(chosen[:, c].max()) if len(chosen) else 0
        if deepest > 0:
            tables[c] = rewriter.at_least(deepest, [true[j] if p else false[j] for j in members])
    parts = [rewriter.conjunction([tables[c][n] for c, n in enumerate(row) if n > 0]) for row in chosen]
    out = rewriter.union(parts)
    out.exact = out.exact and len(chosen) == len(needs)
    return out
