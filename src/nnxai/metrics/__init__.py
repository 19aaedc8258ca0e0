"""Evaluation metrics of the survey's Section V.

Each metric registers itself in :data:`~nnxai.metrics.base.METRICS` where it is defined; reading the
registry (:func:`metrics`) imports every module of this package first.
"""

from nnxai.metrics.base import METRICS, Metric, applicable_metrics, metrics, register_metric

__all__ = ["METRICS", "Metric", "applicable_metrics", "metrics", "register_metric"]
