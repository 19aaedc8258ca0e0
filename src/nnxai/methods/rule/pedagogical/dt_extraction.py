"""Decision-tree extraction of Krishnan, Sivakumar & Bhattacharya (Pattern Recognition 32, 1999; survey ref. [90]).

The paper extracts the tree "from input data generated from trained neural networks instead of doing it
directly from the data", in three steps (its abstract and Sec. 3):

1. **Prototypes by a genetic algorithm.**  For every class ``c`` a GA queries the network and searches the
   input space for *prototypes* of ``c``: inputs the network assigns to ``c``.  The fitness of a chromosome
   (an input vector) is the network's output for ``c``, here its softmax probability ``p_c(x)``.  This is
   the simple GA (Goldberg 1989): a population of ``population`` vectors drawn from the training
   distribution (TREPAN's product-of-marginals model, :mod:`nnxai.ops.feature_space`, so that every
   chromosome is a valid input: one value per categorical attribute), fitness-proportional (roulette-wheel)
   selection, one-point crossover between fields with probability ``crossover_rate``, and mutation that
   redraws each field from its training marginal with probability ``mutation_rate``; ``generations``
   generations.  Every chromosome evaluated is a network query.
2. **Prototype selection.**  The distinct chromosomes of all runs are labelled by the network (the class of
   largest output) and those it assigns with confidence ``max_c p_c(x) >= confidence`` are kept: the
   prototypes the network is sure of, whichever class's search found them.
3. **Induction.**  "A standard induction method like ID3 or C5.0" grows the tree on the selected prototypes:
   :mod:`._c45` (``criterion``: ID3's information gain or C4.5/C5.0's gain ratio; ``prune_confidence``:
   C4.5's pessimistic pruning at that confidence, ``null`` for none, ID3's unpruned tree; ``min_cases``).

Choices where the paper's text was not available to this implementation beyond the abstract's three steps:
the GA's operators and rates above (the textbook simple GA, fields as genes), the fitness (the softmax
output of the class), the selection rule (confidence threshold, duplicates removed), and a chromosome made
invalid by crossover or mutation in a concept space (an object that no longer fits the image) being
replaced by its first parent.  With no prototype selected, the tree is one leaf predicting the network's
majority class on the training split.

What the selection does (measured in ``tests/methods/rule/test_dt_extraction.py``): a class to which the
network never gives ``confidence`` (an undertrained or shuffled-label network) has no prototypes and is
absent from the tree; a low threshold keeps nearly every chromosome, and on a nearly complete, balanced
prototype set the gain of attributes that act only jointly is zero (MONK-1's ``a1 = a2`` under ``a5 != 1``),
so ID3/C4.5 stop there (Quinlan's myopia): at 0.5, MONK-1's tree has fidelity 360/432 instead of 1.

Images: CNNs on ``shapes`` are explained over its concept table, as TREPAN's are: a chromosome is a concept
vector, rendered by the data set and shown to the CNN.  The result is a :class:`RuleSet` with one rule per
leaf and ``tree`` (``depth``, ``n_leaves``, ``n_queries``, ``n_prototypes`` per class).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.pedagogical import _c45
from nnxai.methods.rule.pedagogical._oracle import Oracle
from nnxai.ops.feature_space import FeatureSpace, NodeModel, draw, predict_classes, sample
from nnxai.params import Choice, Float, Int
from nnxai.registry import register


@register("dt_extraction")
class DTExtraction(RuleExtractor):
    """Krishnan et al. [90]: GA-searched prototypes per class, labelled by the network, then ID3 / C5.0."""

    parameters = {
        "population": Int("chromosomes (input vectors) in the GA's population, per class searched", low=2),
        "generations": Int("generations of the GA per class; population x (generations + 1) queries per class",
                           low=0),
        "crossover_rate": Float("probability that a selected pair is crossed (one-point, between fields)",
                                low=0.0, high=1.0),
        "mutation_rate": Float("probability that a field of a child is redrawn from its training marginal",
                               low=0.0, high=1.0),
        "confidence": Float("prototype selection: keep the distinct chromosomes the network assigns with "
                            "probability >= confidence", low=0.0, high=1.0),
        "criterion": Choice("induction: ID3's information gain or C4.5/C5.0's gain ratio", ("gain", "gain_ratio")),
        "prune_confidence": Float("C4.5's pessimistic pruning at this confidence level (CF; C4.5: 0.25); null: "
                                  "no pruning (ID3)", low=0.0, high=1.0, low_open=True, high_open=True,
                                  nullable=True),
        "min_cases": Int("a test needs two branches with at least this many prototypes (C4.5's -m)", low=1),
    }

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        rng = np.random.default_rng(ctx.seed)
        oracle = Oracle(model, ctx)
        space, n_classes = oracle.space, int(ctx.info.n_classes)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        chromosomes, probs = [], []
        for c in range(n_classes):
            x, p = genetic_search(space, oracle, c, self.params, rng)
            chromosomes.append(x)
            probs.append(p)
        x, labels = select_prototypes(np.concatenate(chromosomes), np.concatenate(probs), self.params["confidence"])
        if len(x):
            nodes = _c45.grow(space, x, labels, n_classes, self.params["criterion"], self.params["min_cases"])
        else:                          # nothing selected: one leaf, the network's majority on the train split
            majority = int(np.argmax(np.bincount(predict_classes(model, ctx.train.x), minlength=n_classes)))
            nodes = [_c45.TreeNode(0, 0, [], x, labels, n_classes, majority)]
        if self.params["prune_confidence"] is not None:
            _c45.prune_pessimistic(nodes[0], self.params["prune_confidence"])
        return _c45.to_ruleset(nodes[0], space, class_names, n_queries=int(oracle.n_queries),
                               n_prototypes=[int(np.sum(labels == c)) for c in range(n_classes)])


def genetic_search(space: FeatureSpace, oracle: Oracle, target: int, params: dict,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The simple GA maximising the network's output for class ``target``; returns every chromosome
    evaluated (all generations) and the network's class probabilities for them."""
    root = NodeModel.root(space)
    size = params["population"]
    population = sample(space, root, [], size, rng)
    probs = oracle.probs(population, rng)
    seen_x, seen_p = [population], [probs]
    tails = _crossover_tails(space)
    for _ in range(params["generations"]):
        fitness = probs[:, target]
        weights = fitness / fitness.sum() if fitness.sum() > 0 else np.full(len(fitness), 1.0 / len(fitness))
        parents = rng.choice(len(population), size=size, p=weights)
        children = population[parents].copy()
        for a in range(0, size - 1, 2):
            if tails and rng.random() < params["crossover_rate"]:
                tail = tails[rng.integers(len(tails))]
                children[[a, a + 1]] = np.where(tail, children[[a + 1, a]], children[[a, a + 1]])
        children = _mutate(space, root, children, params["mutation_rate"], rng)
        bad = ~space.valid(children)
        children[bad] = population[parents[bad]]
        population = children
        probs = oracle.probs(population, rng)
        seen_x.append(population)
        seen_p.append(probs)
    return np.concatenate(seen_x), np.concatenate(seen_p)


def _crossover_tails(space: FeatureSpace) -> list[np.ndarray]:
    """Column masks of the one-point crossover: with the fields in column order, the columns of fields
    ``k, k+1, ...`` for every cut ``k = 1 .. n_fields - 1`` (a one-hot group is never cut)."""
    fields = sorted(space.fields, key=lambda f: min(f.columns))
    tails = []
    for k in range(1, len(fields)):
        mask = np.zeros(space.train.shape[1], dtype=bool)
        mask[[c for f in fields[k:] for c in f.columns]] = True
        tails.append(mask)
    return tails


def _mutate(space: FeatureSpace, root: NodeModel, x: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Redraw each field of each row from its training marginal with probability ``rate``."""
    if rate <= 0 or not len(x):
        return x
    d = x.shape[1]
    fresh = draw(space, root, np.full(d, -np.inf), np.full(d, np.inf), len(x), rng)
    hit = rng.random((len(x), len(space.fields))) < rate
    out = x.copy()
    for f, fld in enumerate(space.fields):
        cols = list(fld.columns)
        out[np.ix_(hit[:, f], cols)] = fresh[np.ix_(hit[:, f], cols)]
    return out


def select_prototypes(x: np.ndarray, probs: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The distinct chromosomes with their network class, kept where the network's probability of that
    class is at least ``confidence``."""
    if not len(x):
        return x, np.zeros(0, dtype=np.int64)
    x, first = np.unique(x, axis=0, return_index=True)
    probs = probs[first]
    keep = probs.max(axis=1) >= confidence
    return x[keep], np.argmax(probs[keep], axis=1).astype(np.int64)
