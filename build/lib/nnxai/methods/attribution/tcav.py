"""TCAV, Testing with Concept Activation Vectors, Kim et al. ICML 2018 (survey ref. [63]).

Global attribution to *concepts* rather than pixels: how sensitive is the prediction of class ``k`` to
the concept ``C`` (the survey's example: "zebra" to "stripes")?  For each concept of the data set and
each class, at one layer ``l`` (see :mod:`~nnxai.methods.attribution._cav` for Eqs. (1), (2) and the
test of Sec. 3.2):

1. **Concept set** ``P_C``: up to ``n_concept_examples`` training images annotated with the concept.  The
   concepts are the binary columns of the split's concept table (``meta["concept_features"]``; for
   ``shapes``: ``shape=circle|square|triangle``, ``texture=stripes``, ``colour=red|green|blue``; the
   continuous ``size``, ``x``, ``y`` are not concepts).
2. **Random sets** ``R_0 … R_{M-1}``, ``M = max(n_runs, n_random + 1)``: seeded samples of
   ``n_concept_examples`` training images of any class.
3. **CAVs**: concept run ``r`` trains ``P_C`` against ``R_r`` (``r = 0 … n_runs - 1``); random run ``j``
   trains the random set ``R_j`` as if it were a concept against ``R_{(j+1) mod M}`` (``j = 0 …
   n_random - 1``), so that, as in the reference code, the null sample varies the "concept" set as well
   as its counterpart.  Activations are the layer's output flattened (the paper's bottleneck
   activations).
4. **Scores**: ``X_k`` is a seeded sample of ``n_inputs`` *test* images of label ``k``; each CAV gives one
   TCAV score (Eq. 2) per class; the concept's run scores are t-tested against the random-vs-random ones
   and Bonferroni-corrected over all (concept, class) pairs.

Layer.  On :class:`~nnxai.models.networks.ConvNet` use ``conv1`` or ``conv2``: ``conv3`` feeds the
global-average-pool and linear head, so ``∇h_{l,k}`` there is the same for every input and every TCAV
score is 0 or 1.

What to expect on ``shapes`` (positive iff ``texture = stripes`` and ``shape != triangle``): ``stripes``
significant for the positive class with a TCAV score near 1 (it is, on every trained CNN we checked).
The colour distractors are not guaranteed to come out insignificant: the test asks whether the
directional derivative along the CAV is consistently signed, not whether the class depends on the
concept, and at ``conv2`` of a trained CNN some colour CAVs are consistently signed (the network's
logit margins do shift with colour).  The test also holds the concept set fixed over the runs (as the
paper does), so a concept set that happens to differ from the random sets is judged against runs that
vary both sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nnxai.data import shapes
from nnxai.explanations import ConceptScores
from nnxai.methods.attribution import _cav
from nnxai.methods.base import ExplainContext, Method
from nnxai.registry import register


def concept_sets(table: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """``{name: positions}`` of the examples holding each binary (0/1) concept column of ``table``."""
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] != len(names):
        raise ValueError(f"concept table of shape {table.shape} does not match {len(names)} concept names")
    return {name: np.flatnonzero(table[:, j] > 0.5) for j, name in enumerate(names)
            if np.isin(table[:, j], (0.0, 1.0)).all()}


def class_names(ctx: ExplainContext) -> list[str]:
    names = ctx.test.meta.get("class_names") if ctx.test.meta else None
    return list(names) if names else [str(k) for k in range(ctx.info.n_classes)]


@register("tcav")
class TCAV(Method):
    """TCAV scores of every annotated concept for every class, with the t-test against random CAVs [63].

    Parameters
    ----------
    layer : str
        Unit layer the CAVs live in (``model.unit_layers()``; ConvNet: ``conv1``, ``conv2``, ``conv3``).
    n_concept_examples : int
        Training images per concept set and per random set (fewer when fewer hold the concept).
    n_runs : int
        CAVs per concept, each against a different random set (>= 2).
    n_random : int
        Random-vs-random CAVs, the null distribution of the t-test (>= 2).
    alpha : float
        Significance level of the Bonferroni-corrected test, in (0, 1).
    cav_l2 : float
        L2 penalty of the logistic-regression CAV classifier (> 0; scikit-learn ``C = 1 / cav_l2``).
    n_inputs : int
        Test images per class scored (``X_k``).
    batch_size : int
        Images per forward/backward pass.

    Returns (:meth:`explain`) a :class:`~nnxai.explanations.ConceptScores` with one test per
    (concept, class).
    """
    trains = True            # fits linear concept classifiers (CAVs) (companion survey's 'Training' column)

    record_type = ConceptScores
    param_names = ("layer", "n_concept_examples", "n_runs", "n_random", "alpha", "cav_l2", "n_inputs",
                   "batch_size")
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    needs_concepts = True

    def __init__(self, **params: Any):
        super().__init__(**params)
        _cav.check_params(f"method {self.spec.id!r}", self.params,
                          ("n_concept_examples", "n_runs", "n_random", "n_inputs", "batch_size"))

    def _run(self, ctx: ExplainContext) -> tuple[ConceptScores, int]:
        p = self.params
        module = _cav.layer_module(ctx.model, p["layer"])
        if ctx.train.concepts is None:
            raise ValueError(f"TCAV needs concept annotations of the training images; {ctx.dataset} has none")
        names = list(ctx.train.meta.get("concept_features", shapes.CONCEPT_FEATURES))
        found = concept_sets(ctx.train.concepts, names)
        skipped = sorted(name for name in names if name in found and len(found[name]) < 2)
        found = {name: idx for name, idx in found.items() if len(idx) >= 2}
        if not found:
            raise ValueError(f"no binary concept of {ctx.dataset} has 2 or more training examples: {names}")
        rng = np.random.default_rng([ctx.seed, 63])
        n_ex = p["n_concept_examples"]
        concept_idx = {name: np.sort(rng.permutation(idx)[:n_ex]) for name, idx in found.items()}
        randoms = _cav.random_sets(len(ctx.train.x), n_ex, max(p["n_runs"], p["n_random"] + 1), rng)

        was_training = ctx.model.training
        ctx.model.eval()
        try:
            acts, acts_index = self._activations(ctx, module, [*concept_idx.values(), *randoms])
            gradients, n_scored = self._class_gradients(ctx, module)
        finally:
            ctx.model.train(was_training)

        def rows(idx):
            return acts[np.searchsorted(acts_index, idx)]

        concept_cavs = {name: _cav.cav_runs(rows(idx), [rows(r) for r in randoms[:p["n_runs"]]], p["cav_l2"])
                        for name, idx in concept_idx.items()}
        random_cavs = _cav.random_cavs([rows(r) for r in randoms], p["n_random"], p["cav_l2"])
        pairs = [(name, k) for name in concept_idx for k in sorted(gradients)]
        tests, random = _cav.significance_tests(pairs, concept_cavs, random_cavs, gradients, p["alpha"])
        record = ConceptScores(
            concepts=list(concept_idx), layer=p["layer"], class_names=class_names(ctx), tests=tests,
            random_scores=[random.get(k, []) for k in range(ctx.info.n_classes)], alpha=float(p["alpha"]),
            meta={"n_concept_examples": {n: int(len(i)) for n, i in concept_idx.items()},
                  "n_inputs_per_class": {str(k): int(len(g)) for k, g in gradients.items()},
                  "skipped_concepts": skipped, "correction": "bonferroni", "n_tests": len(tests)})
        return record, n_scored

    def _activations(self, ctx, module, index_sets) -> tuple[np.ndarray, np.ndarray]:
        """Flattened layer activations of the union of the training positions in ``index_sets``."""
        union = np.unique(np.concatenate(index_sets))
        inputs = ctx.train.x[torch.as_tensor(union, dtype=torch.long)]
        acts = _cav.layer_activations(ctx.model, module, inputs, self.params["batch_size"], ctx.device, "flatten")
        return acts, union

    def _class_gradients(self, ctx, module) -> tuple[dict[int, np.ndarray], int]:
        """Layer gradients of logit ``k`` at the sampled test images of label ``k``, for every class."""
        labels = np.asarray(ctx.test.y)
        gradients = {}
        for k in range(ctx.info.n_classes):
            idx = _cav.class_inputs(labels, k, self.params["n_inputs"], ctx.seed)
            if len(idx):
                inputs = ctx.test.x[torch.as_tensor(idx, dtype=torch.long)]
                gradients[k] = _cav.layer_gradients(ctx.model, module, inputs, k, self.params["batch_size"],
                                                    ctx.device, "flatten")
        if not gradients:
            raise ValueError("the test split holds no labelled inputs to score")
        return gradients, sum(len(g) for g in gradients.values())
