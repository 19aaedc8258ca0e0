"""Evaluation metrics (survey Section V).  A metric is a class that declares, as class variables, what it
scores (explanation kinds, requirements), whether higher is better (after Quantus) and its
hyperparameters, once, in ``parameters`` (:mod:`nnxai.params`: name, type, range, help; no defaults, the
values come from ``metric_params`` of the config).  ``__init__`` only checks and stores them; data go to
``__call__``.

A metric applies to a method when the method's record kind is in ``kinds``, the catalogue lists the
metric in the method's ``judged_by`` (METHODS.md) or the metric is ``universal``, and :meth:`why_not`
finds no missing requirement.  ``__call__`` returns ``{metric_id or metric_id.sub: value}``.

Metrics register themselves in :data:`METRICS` with :func:`register_metric`; the registry imports every
module of :mod:`nnxai.metrics` the first time it is read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from nnxai.explanations import Explanation
from nnxai.models.variants import VARIANTS
from nnxai.params import Declared, Param
from nnxai.registration import Registry

#: Every metric, by id (filled by :func:`register_metric` as the metric modules are imported).
METRICS: Registry[type["Metric"]] = Registry("metric", packages=("nnxai.metrics",))


def register_metric(cls: type["Metric"]) -> type["Metric"]:
    """Class decorator: register ``cls`` under its ``id``."""
    return METRICS.register(cls.id, cls)


class RunPlan(Protocol):
    """What a metric may ask about the run it is planned in (the workflow passes one to
    :meth:`Metric.cell_why_not`): its config, and which models and methods it runs."""

    cfg: dict

    def models_for(self, dataset: str) -> list[str]:
        """Model variants the run trains on ``dataset``."""

    def methods_for(self, dataset: str, model: str) -> list[str]:
        """Methods the run explains ``dataset``/``model`` with."""

    def model_traits(self, dataset: str, model: str) -> dict:
        """What the trained model offers (:func:`nnxai.methods.base.model_traits`), from the config."""


class Metric(Declared, ABC):
    id: ClassVar[str]
    higher_is_better: ClassVar[bool | None]      # None: descriptive (e.g. runtime is lower-better, size neutral)
    kinds: ClassVar[frozenset[str]]              # explanation kinds scored
    universal: ClassVar[bool] = False            # applies regardless of the method's judged_by list
    needs_masks: ClassVar[bool] = False
    #: The hyperparameters, declared once (:mod:`nnxai.params`); ``param_names`` is derived from them.
    parameters: ClassVar[dict[str, Param]] = {}
    description: ClassVar[str] = ""
    #: Re-runs the explanation method (many times): not computed on control models (see control_why_not).
    reexplains: ClassVar[bool] = False
    compares_control: ClassVar[bool] = False      # reads the control model's explanation of the same method
    #: Reads the records' wall-clock time (``meta["seconds"]``): its cached values are keyed on it too.
    reads_timing: ClassVar[bool] = False

    @classmethod
    def owner_name(cls) -> str:
        return f"metric {cls.id!r}" if hasattr(cls, "id") else cls.__name__

    @classmethod
    def applies(cls, method_cls: type, info: Any) -> bool:
        kind = method_cls.record_type.kind
        if kind not in cls.kinds:
            return False
        if not cls.universal and cls.id not in method_cls.spec.judged_by:
            return False
        return cls.why_not(method_cls, info) is None

    @classmethod
    def why_not(cls, method_cls: type, info: Any) -> str | None:
        if cls.needs_masks and not info.has_masks:
            return f"{info.name} has no ground-truth masks"
        return None

    @classmethod
    def cell_why_not(cls, run: RunPlan, dataset: str, model: str, method: str) -> str | None:
        """Why ``run`` does not compute this metric for the cell (dataset, model, method), or ``None``: e.g.
        a metric that needs another model of the run, or one the config restricts to some methods.  Called
        after :meth:`applies` holds."""
        return None

    @classmethod
    def control_why_not(cls, model: str) -> str | None:
        """Why a re-explaining metric skips ``model``: a control model (trained on shuffled labels) exists
        for its explanations to be compared against (sanity_data_randomisation, [75]); re-running every
        method on it to score robustness would double the cost of the image models and measure a network
        that learnt nothing.  Its cheap metrics (pixel flipping, entropy, ...) are kept as a reference."""
        known = VARIANTS.get(model)
        if cls.reexplains and known is not None and known.shuffle_labels:
            return (f"{cls.id} re-runs the method; {model} is a control model (shuffled labels) whose maps are "
                    f"only compared against")
        return None

    @classmethod
    def required_inputs(cls, cfg: dict, dataset: str, model: str, method: str) -> list[str]:
        """Files (relative to the work directory) the metric reads beyond the cell's own explanation and
        checkpoint, e.g. the same method's explanation of another model; the workflow makes them inputs."""
        return []

    @abstractmethod
    def __call__(self, record: Explanation, ctx: Any, method: Any) -> dict[str, float]:
        ...


def metrics() -> dict[str, type[Metric]]:
    """Every registered metric, by id (the registry imports the metric modules first)."""
    return dict(METRICS.items())


def applicable_metrics(method_cls: type, info: Any) -> list[str]:
    return [m for m, cls in metrics().items() if cls.applies(method_cls, info)]
