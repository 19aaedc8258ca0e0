"""Evaluation metrics (survey Section V).  A metric is a class that declares, as class variables, what it
scores (explanation kinds, requirements) and whether higher is better (after Quantus); hyperparameters
go to ``__init__`` from ``metric_params`` of the config, data to ``__call__``.

A metric applies to a method when the method's record kind is in ``kinds``, the catalogue lists the
metric in the method's ``judged_by`` (METHODS.md) or the metric is ``universal``, and :meth:`why_not`
finds no missing requirement.  ``__call__`` returns ``{metric_id or metric_id.sub: value}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from nnxai.explanations import Explanation

_METRICS: dict[str, type["Metric"]] = {}


def register_metric(cls: type["Metric"]) -> type["Metric"]:
    if cls.id in _METRICS and _METRICS[cls.id] is not cls:
        raise ValueError(f"metric {cls.id!r} registered twice")
    _METRICS[cls.id] = cls
    return cls


class Metric(ABC):
    id: ClassVar[str]
    higher_is_better: ClassVar[bool | None]      # None: descriptive (e.g. runtime is lower-better, size neutral)
    kinds: ClassVar[frozenset[str]]              # explanation kinds scored
    universal: ClassVar[bool] = False            # applies regardless of the method's judged_by list
    needs_masks: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    #: Re-runs the explanation method (many times): not computed on control models (see control_why_not).
    reexplains: ClassVar[bool] = False

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.param_names)
        missing = set(self.param_names) - set(params)
        if unknown or missing:
            raise ValueError(f"metric {self.id!r}: parameters {sorted(self.param_names)} expected; "
                             f"unknown {sorted(unknown)}, missing {sorted(missing)} (configs metric_params)")
        self.params = dict(params)

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
    def cell_why_not(cls, cfg: dict, dataset: str, model: str, method: str) -> str | None:
        """Why the run described by ``cfg`` does not compute this metric for the cell (dataset, model,
        method), or ``None``: e.g. a metric that needs another model of the matrix, or one the config
        restricts to some methods.  Called after :meth:`applies` holds."""
        return None

    @classmethod
    def control_why_not(cls, model: str) -> str | None:
        """Why a re-explaining metric skips ``model``: a control model (trained on shuffled labels) exists
        for its explanations to be compared against (sanity_data_randomisation, [75]); re-running every
        method on it to score robustness would double the cost of the image models and measure a network
        that learnt nothing.  Its cheap metrics (pixel flipping, entropy, ...) are kept as a reference."""
        from nnxai.models.variants import VARIANTS

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
    """Every registered metric (importing the metric modules registers them)."""
    import nnxai.metrics  # noqa: F401  (runs the registrations)

    return dict(_METRICS)


def applicable_metrics(method_cls: type, info: Any) -> list[str]:
    return [m for m, cls in metrics().items() if cls.applies(method_cls, info)]
