"""Linguistic correlation analysis (survey ref. [100]; Dalvi, Durrani, Sajjad, Belinkov, Bau, Glass, "What is
one grain of sand in the desert? Analyzing individual neurons in deep NLP models", AAAI 2019), carried over
from words and their linguistic tags to inputs and the data set's concepts.

1. **Neurons**: every unit of every unit layer (``model.unit_layers()``), one number per input - a CNN
   channel's spatial mean, an MLP hidden unit as it is - all layers side by side (the paper probes the
   neurons of all layers together and then asks how the top ones spread over the layers): ``D`` neurons.
2. **Probe** (the paper's linguistic correlation analysis): for each concept ``c`` a logistic regression
   on the activations with elastic-net regularisation::

       L(θ) = -1/n Σ_i log P_θ(y_i | x_i) + λ1 ||θ||_1 + λ2 ||θ||_2^2

   minimised by scikit-learn's saga with ``C = 1 / (n (λ1 + 2 λ2))`` and ``l1_ratio = λ1 / (λ1 + 2 λ2)``:
   its objective ``C Σ_i ℓ_i + l1_ratio ||θ||_1 + (1 - l1_ratio)/2 ||θ||²`` is ``L`` times ``n C``, so the
   minimiser is the same (:func:`fit_probe`); the intercept is not penalised.
3. **Ranking** (the paper's neuron ranking algorithm): for a share ``p`` of the weight mass stepping through
   ``0, 1/stride, ..., 1``, each concept contributes its fewest neurons, by ``|θ_{c,k}|`` descending, whose
   cumulative weight reaches ``p`` of its total ``Σ_k |θ_{c,k}|``; at each step the neurons new to the union
   over concepts are appended to the ranking (:func:`neuron_ordering`).
4. **Top-activating inputs** of every neuron: the ``n_top_inputs`` held-out test inputs on which it is largest.
5. **Unit labels** (``units``): neuron ``k`` is named with the concept whose probe weights it most, relative
   to the probe's weight mass: ``concept = argmax_c |θ_{c,k}| / Σ_j |θ_{c,j}|``, ``score`` = that share (the
   quantity the ranking thresholds), ``sign`` of its weight (+1: the neuron speaks for the concept), ``rank``
   (1 = first).  A neuron that no probe weights has ``concept`` ``None``.

**Concepts** (:func:`concept_targets`): the binary (0/1) columns of the data set's concept table (``shapes``:
``shape=*``, ``texture=stripes``, ``colour=*``; the continuous ``size``, ``x``, ``y`` are not classes a
probe predicts); a data set without a concept table (``digits``, the tables) probes the **class label**:
``class=<name of class 1>`` for two classes, one-vs-rest ``class=<name>`` per class otherwise.  A concept
constant on the training sample is skipped (``meta["skipped_concepts"]``).

**Protocol**: probes, standardisation and ranking from ``n_train`` seeded train-split inputs; accuracies and
top inputs from ``n_inputs`` held-out test inputs (the seeded sample every method explains).

Choices where we depart from the paper:

* one binary probe per concept, where the paper trains one softmax probe per property (POS, SEM, ...) over
  tags that exclude each other; ``shapes`` concepts overlap (an image has a shape, a texture and a colour),
  and the class-label fallback keeps the same one-vs-rest form so that every data set reads alike;
* the activations are standardised per neuron on the training sample (a neuron that never changes gets
  weight 0): the paper's LSTM states share tanh's scale, ReLU channel means do not, and unscaled weights
  would rank a neuron's scale rather than its relevance;
* the likelihood is averaged over inputs (the paper writes a sum; its NeuroX code averages per batch), so
  ``λ1, λ2`` do not depend on the sample size;
* within one step of the ranking, where the paper's order is arbitrary, new neurons are ordered by their
  largest weight share; neurons no probe weights come last, by index.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from nnxai.explanations import UnitConcepts
from nnxai.methods.base import UnitLabeler, explained_indices
from nnxai.methods.hidden_semantics._unit_activations import layer_activations, model_device
from nnxai.ops.cav import eval_mode
from nnxai.params import BATCH_SIZE, Float, Int
from nnxai.registry import register

OWNER = "neuron_ranking"


def concept_targets(split, info) -> tuple[list[str], np.ndarray, str]:
    """``(names, targets (N, C) int 0/1, source)`` of a split: its binary concept-table columns (``source``
    ``"concept table"``), else its class label (``"class label"``)."""
    table = getattr(split, "concepts", None)
    if table is not None:
        table = np.asarray(table)
        names = list((split.meta or {}).get("concept_features") or getattr(info, "concepts", ()))
        if len(names) != table.shape[1]:
            raise ValueError(f"concept table of {table.shape[1]} columns but {len(names)} concept names")
        binary = [j for j in range(table.shape[1]) if np.isin(table[:, j], (0.0, 1.0)).all()]
        if binary:
            return [names[j] for j in binary], table[:, binary].astype(np.int64), "concept table"
    y = np.asarray(split.y).astype(np.int64)
    n_classes = int(getattr(info, "n_classes", 0) or (y.max() + 1 if len(y) else 0))
    classes = list((split.meta or {}).get("class_names") or [str(k) for k in range(n_classes)])
    if n_classes == 2:
        return [f"class={classes[1]}"], (y == 1).astype(np.int64)[:, None], "class label"
    return [f"class={classes[k]}" for k in range(n_classes)], (y[:, None] == np.arange(n_classes)).astype(np.int64), \
        "class label"


def neuron_activations(model: nn.Module, inputs: torch.Tensor, batch_size: int) -> tuple[np.ndarray, list]:
    """``(activations (N, D) float64, neurons [[layer, unit], ...])``: every unit of every unit layer, pooled."""
    with eval_mode(model):
        acts = layer_activations(model, inputs, batch_size, model_device(model), OWNER)
    neurons = [[layer, k] for layer, a in acts.items() for k in range(a.shape[1])]
    return torch.cat(list(acts.values()), 1).double().cpu().numpy(), neurons


def fit_probe(z: np.ndarray, y: np.ndarray, lambda_l1: float, lambda_l2: float, max_iter: int, tol: float,
              seed: int) -> tuple[np.ndarray, float, int]:
    """Weights ``(D,)``, intercept and saga epochs of the minimiser of ``-1/n Σ log P(y|z) + λ1||θ||_1 +
    λ2||θ||²`` (module docstring, step 2)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    strength = lambda_l1 + 2.0 * lambda_l2
    if strength > 0:
        C, l1_ratio = 1.0 / (len(z) * strength), lambda_l1 / strength
    else:
        C, l1_ratio = np.inf, 0.0
    clf = LogisticRegression(C=C, l1_ratio=l1_ratio, solver="saga", max_iter=max_iter, tol=tol, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(z, y)
    return clf.coef_[0].astype(np.float64), float(clf.intercept_[0]), int(np.max(clf.n_iter_))


def neuron_ordering(weights: np.ndarray, search_stride: int) -> tuple[list[int], list[int]]:
    """The paper's ranking of ``D`` neurons from probe weights ``(C, D)`` (signs ignored); also the ``cutoffs``:
    the ranking's length after each step of the weight-mass share."""
    w = np.abs(np.asarray(weights, dtype=np.float64))
    totals = w.sum(1)
    share = np.divide(w, totals[:, None], out=np.zeros_like(w), where=totals[:, None] > 0).max(0)
    sorted_idx = [np.argsort(-row, kind="stable") for row in w]
    cumulative = [np.cumsum(row[idx]) for row, idx in zip(w, sorted_idx)]
    seen = np.zeros(w.shape[1], dtype=bool)
    order, cutoffs = [], []
    for step in range(search_stride + 1):
        selected = np.zeros_like(seen)
        for c in range(len(w)):
            if totals[c] <= 0:
                continue
            reached = np.flatnonzero(cumulative[c] >= (step / search_stride) * totals[c] * (1 - 1e-12))
            chosen = sorted_idx[c][:reached[0] + 1 if len(reached) else w.shape[1]]
            selected[chosen[w[c, chosen] > 0]] = True
        new = np.flatnonzero(selected & ~seen)
        order += [int(k) for k in new[np.lexsort((new, -share[new]))]]
        seen |= selected
        cutoffs.append(len(order))
    order += [int(k) for k in np.flatnonzero(~seen)]
    return order, cutoffs


def standardise(x: np.ndarray, mean, scale) -> np.ndarray:
    return (x - np.asarray(mean)[None, :]) * np.asarray(scale)[None, :]


@register("neuron_ranking")
class NeuronRanking(UnitLabeler):
    """Elastic-net probes of the concepts on all neurons, neurons ranked by weight, their top-activating
    inputs (Dalvi et al. [100]); see the module docstring.

    Returns (:meth:`label_units`) a :class:`~nnxai.explanations.UnitConcepts` whose ``units`` are ``{layer,
    unit, concept, score, sign, rank, weights: {concept: θ}, top_inputs, top_activations}`` and whose ``meta``
    holds ``ranking`` ([layer, unit] pairs, first = most important), ``cutoffs``, ``probes`` (per concept:
    ``weights`` over ``neurons``, ``bias``, ``n_iter``), the ``standardisation`` (``mean``, ``scale``),
    ``accuracy`` and ``prevalence`` per concept, ``concept_source``, ``train_indices`` and ``test_indices``.
    """

    parameters = {
        "n_train": Int("train-split inputs the probes are fitted on (a seeded sample)", low=1, at_most="train"),
        "n_inputs": Int("held-out test inputs scored and searched for top activations (the seeded sample every "
                        "method explains)", low=1, at_most="test"),
        "lambda_l1": Float("λ1 of the elastic net (L1 weight, per mean log-likelihood)", low=0.0),
        "lambda_l2": Float("λ2 of the elastic net (squared-L2 weight, per mean log-likelihood)", low=0.0),
        "max_iter": Int("saga epochs at most per probe", low=1),
        "tol": Float("saga's stopping tolerance", low=0.0, low_open=True),
        "search_stride": Int("steps of the weight-mass share in the ranking algorithm (0, 1/stride, ..., 1)", low=1),
        "n_top_inputs": Int("top-activating held-out inputs kept per neuron", low=1),
        "batch_size": BATCH_SIZE,
    }
    trains = True            # fits the linear probes on the train split (companion survey's 'Training' column)
    variant_cap = False      # a probe's accuracy is a statistic of the input population, not one result per input

    def _fit(self, model: nn.Module, train) -> None:
        p = self.params
        names, targets, self.concept_source_ = concept_targets(train, self.info_)
        rng = np.random.default_rng([self.seed, 100])
        idx = np.sort(rng.permutation(len(train.x))[:min(p["n_train"], len(train.x))])
        acts, self.neurons_ = neuron_activations(model, train.x[idx], p["batch_size"])
        self.mean_ = acts.mean(0)
        std = acts.std(0)
        self.scale_ = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
        z = standardise(acts, self.mean_, self.scale_)
        y = targets[idx]
        self.concepts_, self.skipped_, weights, biases, epochs = [], [], [], [], []
        for c, name in enumerate(names):
            if len(np.unique(y[:, c])) < 2:
                self.skipped_.append(name)
                continue
            w, b, n_iter = fit_probe(z, y[:, c], p["lambda_l1"], p["lambda_l2"], p["max_iter"], p["tol"], self.seed)
            self.concepts_.append(name)
            weights.append(w)
            biases.append(b)
            epochs.append(n_iter)
        if not self.concepts_:
            where = getattr(self.info_, "name", None) or "the train split"
            raise ValueError(f"neuron_ranking: every concept of {where} is constant on the {len(idx)} training "
                             f"inputs sampled ({names}); no probe can be fitted")
        self.weights_, self.biases_, self.epochs_ = np.stack(weights), np.asarray(biases), epochs
        self.prevalence_ = {name: float(y[:, names.index(name)].mean()) for name in self.concepts_}
        self.train_indices_ = idx

    def label_units(self, model: nn.Module, ctx) -> UnitConcepts:
        self.check_fitted(model)
        p = self.params
        idx = explained_indices(len(ctx.test.x), p["n_inputs"], ctx.seed)
        acts, neurons = neuron_activations(model, ctx.test.x[idx], p["batch_size"])
        if neurons != self.neurons_:
            raise ValueError("the model's neurons differ from those the probes were fitted on")
        names, targets, _source = concept_targets(ctx.test, ctx.info)
        y = targets[idx][:, [names.index(c) for c in self.concepts_]]
        logits = standardise(acts, self.mean_, self.scale_) @ self.weights_.T + self.biases_
        accuracy = ((logits > 0) == (y == 1)).mean(0)
        order, cutoffs = neuron_ordering(self.weights_, p["search_stride"])
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        units = [self._unit(j, layer, k, int(rank[j]), acts[:, j], idx) for j, (layer, k) in enumerate(neurons)]
        meta = {
            "concept_source": self.concept_source_, "skipped_concepts": list(self.skipped_),
            "neurons": [list(n) for n in neurons], "ranking": [list(neurons[j]) for j in order], "cutoffs": cutoffs,
            "probes": {c: {"weights": self.weights_[i].tolist(), "bias": float(self.biases_[i]),
                           "n_iter": int(self.epochs_[i])} for i, c in enumerate(self.concepts_)},
            "standardisation": {"mean": self.mean_.tolist(), "scale": self.scale_.tolist()},
            "accuracy": {c: float(a) for c, a in zip(self.concepts_, accuracy)}, "prevalence": dict(self.prevalence_),
            "n_inputs": int(len(idx)), "n_train": int(len(self.train_indices_)),
            "test_indices": [int(i) for i in idx], "train_indices": [int(i) for i in self.train_indices_],
            "protocol": "probes fitted on n_train train-split inputs; accuracy and top inputs on n_inputs held-out "
                        "test inputs"}
        return UnitConcepts(units=units, concepts=list(self.concepts_), meta=meta)

    def _unit(self, j: int, layer: str, k: int, rank: int, activation: np.ndarray, idx: np.ndarray) -> dict:
        w = np.abs(self.weights_[:, j])
        totals = np.abs(self.weights_).sum(1)
        share = np.divide(w, totals, out=np.zeros_like(w), where=totals > 0)
        best = int(np.argmax(share))
        top = np.argsort(-activation, kind="stable")[:self.params["n_top_inputs"]]
        weighted = share[best] > 0
        return {"layer": layer, "unit": int(k), "concept": self.concepts_[best] if weighted else None,
                "score": float(share[best]), "sign": int(np.sign(self.weights_[best, j])) if weighted else 0,
                "rank": rank, "weights": {c: float(self.weights_[i, j]) for i, c in enumerate(self.concepts_)},
                "top_inputs": [int(i) for i in idx[top]], "top_activations": [float(v) for v in activation[top]]}
