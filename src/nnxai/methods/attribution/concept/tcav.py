"""TCAV, Testing with Concept Activation Vectors, Kim et al. ICML 2018 (survey ref. [63]).

Global attribution to *concepts* rather than pixels: how sensitive is the prediction of class ``k`` to
the concept ``C`` (the survey's example: "zebra" to "stripes")?  For each concept of the data set and
each class, at one layer ``l`` (see :mod:`~nnxai.ops.cav` for Eqs. (1), (2) and the
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

import numpy as np
import torch

from nnxai.explanations import ConceptScores
from nnxai.ops import cav as _cav
from nnxai.methods.base import ExplainContext, Method
from nnxai.params import BATCH_SIZE, Float, Int, Param, Str
from nnxai.registry import register

#: The declarations TCAV and ACE share: the layer, the runs of the t-test and the CAV classifier.
CAV_PARAMETERS: dict[str, Param] = {
    "layer": Str("unit layer l whose activations f_l hold the CAVs (model.unit_layers(); ConvNet: "
                          "conv1, conv2, conv3)"),
    "n_runs": Int("CAVs v_C^l per concept, each against another random set: the concept's sample of the "
                  "t-test (Sec. 3.2)", low=2),
    "n_random": Int("random-vs-random CAVs: the null sample of the t-test", low=2),
    "alpha": Float("significance level of the Bonferroni-corrected two-sided t-test", low=0.0, high=1.0,
                   low_open=True, high_open=True),
    "cav_l2": Float("L2 penalty of the logistic-regression CAV classifier (scikit-learn C = 1 / cav_l2)",
                    low=0.0, low_open=True),
    "batch_size": BATCH_SIZE,
}


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

    :meth:`fit` learns the CAVs from the train split (steps 1-3 of the module docstring): the concept CAVs
    ``concept_cavs_`` (``{concept: (n_runs, D)}``) and the random-vs-random ones ``random_cavs_``.
    Explaining scores them on the test split (step 4) and returns a
    :class:`~nnxai.explanations.ConceptScores` with one test per (concept, class).
    """
    trains = True            # fits linear concept classifiers (CAVs) (companion survey's 'Training' column)

    record_type = ConceptScores
    parameters = {
        **CAV_PARAMETERS,
        "n_concept_examples": Int("training images per concept set P_C and per random set (fewer when fewer "
                                  "hold the concept)", low=1),
        "n_inputs": Int("test images X_k of label k scored per class (Eq. 2)", low=1),
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    needs_concepts = True

    def _fit(self, model, train) -> None:
        p = self.params
        module = _cav.layer_module(model, p["layer"])
        concept_idx, self.skipped_concepts_ = self._concept_sets(train)
        rng = np.random.default_rng([self.seed, 63])
        n_ex = p["n_concept_examples"]
        concept_idx = {name: np.sort(rng.permutation(idx)[:n_ex]) for name, idx in concept_idx.items()}
        randoms = _cav.random_sets(len(train.x), n_ex, max(p["n_runs"], p["n_random"] + 1), rng)
        with _cav.eval_mode(model):
            acts, acts_index = self._activations(model, train, module, [*concept_idx.values(), *randoms])

        def rows(idx):
            return acts[np.searchsorted(acts_index, idx)]

        self.concept_sizes_ = {name: int(len(idx)) for name, idx in concept_idx.items()}
        self.concept_cavs_ = {name: _cav.cav_runs(rows(idx), [rows(r) for r in randoms[:p["n_runs"]]], p["cav_l2"])
                              for name, idx in concept_idx.items()}
        self.random_cavs_ = _cav.random_cavs([rows(r) for r in randoms], p["n_random"], p["cav_l2"])

    def _concept_sets(self, train) -> tuple[dict[str, np.ndarray], list[str]]:
        """The positions of each binary concept with 2 or more training examples, and the skipped ones."""
        where = getattr(self.info_, "name", None) or "the train split"
        if train.concepts is None:
            raise ValueError(f"TCAV needs concept annotations of the training images; {where} has none")
        # The names of the concept columns: the split's record, else the data set's declaration.
        names = list((train.meta or {}).get("concept_features") or getattr(self.info_, "concepts", ()))
        found = concept_sets(train.concepts, names)
        skipped = sorted(name for name in names if name in found and len(found[name]) < 2)
        found = {name: idx for name, idx in found.items() if len(idx) >= 2}
        if not found:
            raise ValueError(f"no binary concept of {where} has 2 or more training examples: {names}")
        return found, skipped

    def _run(self, ctx: ExplainContext) -> tuple[ConceptScores, int]:
        self.check_fitted(ctx.model)
        p = self.params
        module = _cav.layer_module(ctx.model, p["layer"])
        with _cav.eval_mode(ctx.model):
            gradients, n_scored = self._class_gradients(ctx, module)
        pairs = [(name, k) for name in self.concept_cavs_ for k in sorted(gradients)]
        tests, random = _cav.significance_tests(pairs, self.concept_cavs_, self.random_cavs_, gradients, p["alpha"])
        record = ConceptScores(
            concepts=list(self.concept_cavs_), layer=p["layer"], class_names=class_names(ctx), tests=tests,
            random_scores=[random.get(k, []) for k in range(ctx.info.n_classes)], alpha=float(p["alpha"]),
            meta={"n_concept_examples": dict(self.concept_sizes_),
                  "n_inputs_per_class": {str(k): int(len(g)) for k, g in gradients.items()},
                  "skipped_concepts": list(self.skipped_concepts_), "correction": "bonferroni",
                  "n_tests": len(tests)})
        return record, n_scored

    def _activations(self, model, train, module, index_sets) -> tuple[np.ndarray, np.ndarray]:
        """Flattened layer activations of the union of the training positions in ``index_sets``."""
        union = np.unique(np.concatenate(index_sets))
        inputs = train.x[torch.as_tensor(union, dtype=torch.long)]
        acts = _cav.layer_activations(model, module, inputs, self.params["batch_size"], _cav.model_device(model),
                                      "flatten")
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
