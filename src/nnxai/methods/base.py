"""Base classes of the four explanation types, one verb each (after Captum's ``attribute``):

=====================  ===============  =====================================================
explanation type       verb             returns
=====================  ===============  =====================================================
attribution            ``attribute``    relevance tensor shaped like the inputs
rule                   ``extract``      :class:`~nnxai.explanations.RuleSet`
hidden semantics       ``label_units``  :class:`~nnxai.explanations.UnitConcepts`
example                ``select``       :class:`~nnxai.explanations.Examples`
=====================  ===============  =====================================================

A method declares what it applies to (``modalities``, ``architectures``, ``activations``,
``needs_masks``, ``needs_concepts``, ``needs_linear_head``) and its hyperparameters, once, in ``parameters``
(:mod:`nnxai.params`: name, type, range; no defaults, every value comes from the config of the active
profile, STYLE.md habit 5).  ``__init__`` only checks and stores them (scikit-learn's estimator contract).

Fitting is separate from explaining, as in scikit-learn and Captum: :meth:`Method.fit` learns what the method
needs from the model and the train split (a reference input, a density, a surrogate forest, an explainer
network, concept vectors) and returns the fitted method, whose learnt attributes end in ``_``; the metrics
reuse it for every re-explanation on the same model and fit a fresh copy for another model.  A method whose
``_fit`` learns nothing may be called without ``fit``; one that learns refuses to explain before it.
:meth:`Method.explain` is the one entry point the pipeline calls: it fits, explains, times the method and
fills the record's ``meta``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from nnxai.explanations import AttributionMap, Examples, Explanation, LocalRules, RuleSet, UnitConcepts
from nnxai.params import BATCH_SIZE, N_EXPLAIN, Declared, Param
from nnxai.taxonomy import MethodSpec
from nnxai.versions import library_versions


@dataclass
class ExplainContext:
    """Everything a method may read: the model, the prepared splits and where it runs."""

    model: nn.Module
    dataset: str
    model_id: str
    info: Any                      # nnxai.data.DatasetInfo
    train: Any                     # nnxai.data.PreparedSplit
    test: Any                      # nnxai.data.PreparedSplit
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    workdir: Path = Path(".")
    #: Where a metric may keep what several jobs of the run compute alike (``None``: nowhere, recompute).
    cache_dir: Path | None = None


def model_traits(model: nn.Module) -> dict[str, Any]:
    """Architecture facts that decide applicability: architecture, activation, GAP head, linear head, and
    ``standard_layers``: the module layout of the base ConvNet/MLP (false for an active method's network that
    adds layers, which the network-rewriting metrics cannot transform)."""
    kinds = {type(m).__name__ for m in model.modules()}
    activation = "sigmoid" if "Sigmoid" in kinds else "relu"
    traits = {"architecture": getattr(model, "architecture", "unknown"), "activation": activation,
              "gap_head": hasattr(model, "gap"), "linear_head": isinstance(getattr(model, "classifier", None), nn.Linear),
              "standard_layers": True}
    active = (getattr(model, "checkpoint", None) or {}).get("active")
    if active:   # an active method's network declares where it differs (nnxai.active.base.ActiveMethod.traits)
        from nnxai.active.base import ACTIVE
        traits.update(ACTIVE[active].traits)
    return traits


class Method(Declared, ABC):
    """Common machinery: parameter checking, applicability, timing and provenance."""

    spec: ClassVar[MethodSpec]                      # set by nnxai.registry.register
    record_type: ClassVar[type[Explanation]]
    #: The hyperparameters, declared once (:mod:`nnxai.params`); ``param_names`` is derived from them.
    parameters: ClassVar[dict[str, Param]] = {}
    modalities: ClassVar[frozenset[str]] = frozenset({"image", "tabular"})
    architectures: ClassVar[frozenset[str]] = frozenset({"cnn", "mlp"})
    activations: ClassVar[frozenset[str]] = frozenset({"relu", "sigmoid"})
    needs_masks: ClassVar[bool] = False
    needs_concepts: ClassVar[bool] = False
    needs_linear_head: ClassVar[bool] = False
    needs_gap_head: ClassVar[bool] = False
    #: Walks the network layer by layer with rules for the base ConvNet/MLP modules only (LRP, DASP's
    #: LPDN, bias attribution): not for an active method's network with other layers (``standard_layers``).
    needs_standard_layers: ClassVar[bool] = False
    # Model variants the method is run on (None: every variant it applies to); e.g. DeepConsensus compares
    # the baseline with its other seeds, which is meaningless for the shuffled-label control.
    only_models: ClassVar[frozenset[str] | None] = None
    #: Why this implementation is narrower than the published method, where it is (global CEM reads tables
    #: only); a refusal quotes it after what the class declares (:func:`nnxai.workflow.implementation_runs_on`).
    scope_note: ClassVar[str | None] = None
    #: Whether ``variant_n_explain`` and ``control_n_explain`` cap its counts on l1/l2, the active networks and
    #: the shuffled-label control: not for a method whose result is a population of maps (SpRAy's clusters
    #: need ~n_neighbors inputs per class).
    variant_cap: ClassVar[bool] = True
    #: Fits a model on a data set before it explains (an explainer, a surrogate, a density or a classifier
    #: trained once and used for many inputs: L2X's selector, MAPLE's forest, TCAV/ACE's concept
    #: classifiers). The "Training" column of the companion survey's Table 1 ("whether a method requires
    #: training on an unlabeled data set", after L2X [110]); optimising per input (LIME's local surrogate,
    #: a meaningful-perturbation mask) is not training there: the table marks LIME "No".
    trains: ClassVar[bool] = False
    #: Needs only the model's outputs (a black box: no gradients, activations or weights), so it keeps the
    #: default ``architectures`` and ``activations``. The "Model-agnostic" column of the companion survey's
    #: Table 1: occlusion, LIME, KernelSHAP, L2X, ...
    model_agnostic: ClassVar[bool] = False

    @classmethod
    def owner_name(cls) -> str:
        return f"method {cls.spec.id!r}" if hasattr(cls, "spec") else cls.__name__

    # -- fitting ---------------------------------------------------------------------------------------
    @classmethod
    def learns(cls) -> bool:
        """Whether :meth:`fit` learns anything (the class overrides :meth:`_fit`)."""
        return cls._fit is not Method._fit

    def fit(self, model: nn.Module, train: Any, *, seed: int = 0, info: Any = None) -> "Method":
        """Learn what explaining ``model`` needs from the train split; return ``self``, fitted.

        Parameters
        ----------
        model : nn.Module
            The model that will be explained (the fitted state belongs to it).
        train : PreparedSplit
            The train split (``.x``, ``.y`` and, where the data set has them, ``.concepts``, ``.masks``).
        seed : int
            Seed of the method's randomness (the run's seed).
        info : Dataset, optional
            The data set's declared interface (concepts, masks, rendering), for methods that use it.
        """
        self.model_, self.seed_, self.info_ = model, int(seed), info
        self._fit(model, train)
        self.fitted_ = True
        return self

    def _fit(self, model: nn.Module, train: Any) -> None:
        """Learn from ``train`` and ``model``; set attributes ending in ``_``.  The base learns nothing."""

    def is_fitted_for(self, model: nn.Module) -> bool:
        return getattr(self, "fitted_", False) and self.model_ is model

    def check_fitted(self, model: nn.Module) -> None:
        """Raise unless a method that learns was fitted for ``model``."""
        if self.learns() and not self.is_fitted_for(model):
            raise RuntimeError(f"method {self.spec.id!r} learns from the train split: call "
                               f"fit(model, train_split) for this model before explaining with it")

    @property
    def seed(self) -> int:
        """The seed of the method's randomness: the fitted seed, 0 before :meth:`fit`."""
        return getattr(self, "seed_", 0)

    @classmethod
    def why_not(cls, info: Any, traits: dict[str, Any]) -> str | None:
        """Why the method does not apply to this dataset/model, or ``None`` when it does."""
        if info.kind not in cls.modalities:
            return f"needs {'/'.join(sorted(cls.modalities))} data, {info.name} is {info.kind}"
        if traits["architecture"] not in cls.architectures:
            return f"needs a {'/'.join(sorted(cls.architectures))} model, got {traits['architecture']}"
        if traits["activation"] not in cls.activations:
            return f"needs {'/'.join(sorted(cls.activations))} units, got {traits['activation']}"
        if cls.needs_masks and not info.has_masks:
            return f"needs pixel-level concept masks, {info.name} has none"
        if cls.needs_concepts and not (info.has_concepts or info.kind == "tabular"):
            return f"needs concept features or tabular inputs, {info.name} has neither"
        if cls.needs_linear_head and not traits["linear_head"]:
            return "needs a linear output layer"
        if cls.needs_gap_head and not traits["gap_head"]:
            return "needs a global-average-pool head"
        if cls.needs_standard_layers and not traits.get("standard_layers", True):
            return "walks the base ConvNet/MLP layer by layer; this network adds other layers"
        return None

    @classmethod
    def check_run(cls, params: dict[str, Any], info: Any, n_test: int) -> str | None:
        """Why ``params`` cannot give a result on the data set ``info`` whose test split holds ``n_test``
        inputs, or ``None``.  The config check calls it for every data set of the run the method applies
        to, with the parameters as that data set gets them (thinned), before any job starts."""
        return None

    @classmethod
    def required_inputs(cls, params: dict[str, Any], dataset: str, model: str) -> list[str]:
        """Files (relative to the work directory) the method reads beyond the model's checkpoint and the
        prepared splits, e.g. the checkpoints of other seeds (DeepConsensus); the workflow makes them inputs."""
        return []

    def explain(self, ctx: ExplainContext) -> Explanation:
        reason = self.why_not(ctx.info, model_traits(ctx.model))
        if reason:
            raise ValueError(f"method {self.spec.id!r} does not apply to {ctx.dataset}/{ctx.model_id}: {reason}")
        start = time.perf_counter()
        self.fit(ctx.model, ctx.train, seed=ctx.seed, info=ctx.info)
        record, n_inputs = self._run(ctx)
        seconds = time.perf_counter() - start
        record.meta.update({
            "method": self.spec.id, "params": self.params, "dataset": ctx.dataset, "model": ctx.model_id,
            "seed": ctx.seed, "seconds": seconds, "n_inputs": n_inputs,
            "seconds_per_input": seconds / max(n_inputs, 1), "versions": library_versions(),
        })
        return record

    @abstractmethod
    def _run(self, ctx: ExplainContext) -> tuple[Explanation, int]:
        """Produce the record and the number of inputs it explains (for seconds per input)."""


def explained_indices(n_test: int, n_explain: int, seed: int) -> np.ndarray:
    """The test inputs every attribution method explains: a seeded sample, the same for all methods."""
    if n_explain < 1:
        raise ValueError(f"n_explain must be >= 1, got {n_explain}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_test)[:min(n_explain, n_test)])


def output_size(model: nn.Module, inputs: torch.Tensor) -> int:
    """Number of classes ``model`` scores for inputs shaped like ``inputs`` (one forward pass of one row, no
    cache: it costs less than any attribution of the batch it checks)."""
    with torch.no_grad():
        return int(model(inputs[:1]).shape[1])


class AttributionMethod(Method):
    """Attribution (survey Sec. III-C): relevance of each input feature for the output of class ``target``.

    ``attribute(model, inputs, target, baselines=None)`` takes a batch ``inputs`` (N, ...), integer
    ``target`` (N,) and, for reference-based methods, ``baselines`` broadcastable to ``inputs``; it
    returns a tensor shaped like ``inputs``.  It leaves the model's parameters and ``inputs.grad`` alone.
    ``param_names`` always include ``n_explain`` (how many test inputs) and ``batch_size``.
    """

    record_type = AttributionMap
    parameters = {"n_explain": N_EXPLAIN, "batch_size": BATCH_SIZE}
    uses_baseline: ClassVar[bool] = False
    #: ``baselines`` is a background set of any size (DeepSHAP), not one reference per input.
    baselines_are_background: ClassVar[bool] = False
    # Claims Σ attributions = f(x) − f(x_ref) (IG [114], DeepLIFT [112]); the completeness metric scores
    # only such methods: occlusion has a reference too but spreads each window's drop over its pixels.
    claims_completeness: ClassVar[bool] = False

    def _check_baselines(self, baselines: torch.Tensor, inputs: torch.Tensor) -> None:
        """One reference per input, or one for all; a background set (``baselines_are_background``) may
        have any number of rows ``B >= 1`` of the inputs' shape."""
        row_shape = ", ".join(map(str, inputs.shape[1:]))
        same_rows = baselines.dim() == inputs.dim() and baselines.shape[1:] == inputs.shape[1:]
        if self.baselines_are_background:
            if not same_rows or not len(baselines):
                raise ValueError(f"baseline shape {tuple(baselines.shape)} (a background set) must be "
                                 f"(B, {row_shape}), B >= 1, for inputs {tuple(inputs.shape)}")
            return
        try:
            torch.broadcast_shapes(baselines.shape, inputs.shape)
        except RuntimeError:
            raise ValueError(f"baseline shape {tuple(baselines.shape)} does not broadcast to inputs "
                             f"{tuple(inputs.shape)}") from None
        if not same_rows:
            raise ValueError(f"baseline shape {tuple(baselines.shape)} must match inputs {tuple(inputs.shape)} "
                             f"(or (1, {row_shape}))")

    @abstractmethod
    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        ...

    def __call__(self, model, inputs, target, baselines=None):
        """Validated :meth:`attribute`: checks that a method that learns was fitted for ``model``, the
        ``target`` range and the ``baselines`` shape before computing."""
        self.check_fitted(model)
        target = torch.as_tensor(target, dtype=torch.long).reshape(-1)
        if len(target) == 1 and len(inputs) > 1:
            target = target.expand(len(inputs))
        if len(target) != len(inputs):
            raise ValueError(f"{len(target)} targets for {len(inputs)} inputs")
        n_classes = output_size(model, inputs)
        bad = target[(target < 0) | (target >= n_classes)]
        if len(bad):
            raise ValueError(f"target class {bad[0].item()} out of range: the model has {n_classes} classes (0..{n_classes - 1})")
        if baselines is not None:
            baselines = torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device)
            self._check_baselines(baselines, inputs)
        out = self.attribute(model, inputs, target, baselines)
        if out.shape != inputs.shape:
            raise RuntimeError(f"{self.spec.id} returned shape {tuple(out.shape)} for inputs {tuple(inputs.shape)}")
        return out

    def _run(self, ctx):
        model = ctx.model
        x_test = ctx.test.x
        idx = explained_indices(len(x_test), self.params["n_explain"], ctx.seed)
        inputs = x_test[idx].to(ctx.device)
        with torch.no_grad():
            targets = torch.cat([model(b).argmax(1) for b in inputs.split(self.params["batch_size"])])
        chunks = [self(model, xb, tb).detach().cpu()
                  for xb, tb in zip(inputs.split(self.params["batch_size"]), targets.split(self.params["batch_size"]))]
        attributions = torch.cat(chunks).numpy()
        return AttributionMap(attributions, idx, targets.cpu().numpy()), len(idx)


class RuleExtractor(Method):
    """Rule as explanation (survey Sec. III-A): ``extract(model, ctx)`` returns a :class:`RuleSet`."""

    record_type = RuleSet
    needs_concepts = True

    @abstractmethod
    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        ...

    def _run(self, ctx):
        return self.extract(ctx.model, ctx), len(ctx.test.y)


class LocalRuleMethod(Method):
    """Rules and counterfactuals for single inputs (survey Sec. III-A, local and semi-local scope: CEM [69],
    CDRP [77], CVE [78], DACE [79], Anchors [65]): ``explain_inputs(model, ctx, indices)`` explains the test
    inputs at ``indices`` (the seeded sample every method explains, :func:`explained_indices`, of
    ``n_explain``) and returns a :class:`LocalRules` record with one entry per input."""

    record_type = LocalRules
    parameters = {"n_explain": N_EXPLAIN}

    @abstractmethod
    def explain_inputs(self, model: nn.Module, ctx: ExplainContext, indices: np.ndarray) -> LocalRules:
        ...

    def _run(self, ctx):
        indices = explained_indices(len(ctx.test.y), self.params["n_explain"], ctx.seed)
        record = self.explain_inputs(ctx.model, ctx, indices)
        if list(record.indices) != [int(i) for i in indices]:
            raise RuntimeError(f"{self.spec.id} explained test inputs {list(record.indices)[:5]}..., asked for "
                               f"{[int(i) for i in indices][:5]}...")
        return record, len(indices)


class UnitLabeler(Method):
    """Hidden semantics (survey Sec. III-B): ``label_units(model, ctx)`` returns :class:`UnitConcepts`."""

    record_type = UnitConcepts

    @abstractmethod
    def label_units(self, model: nn.Module, ctx: ExplainContext) -> UnitConcepts:
        ...

    def _run(self, ctx):
        return self.label_units(ctx.model, ctx), len(ctx.test.y)


class ExampleSelector(Method):
    """Explanation by example (survey Sec. III-D): ``select(model, ctx)`` returns :class:`Examples`."""

    record_type = Examples

    @abstractmethod
    def select(self, model: nn.Module, ctx: ExplainContext) -> Examples:
        ...

    def _run(self, ctx):
        record = self.select(ctx.model, ctx)
        return record, len(record.indices)
