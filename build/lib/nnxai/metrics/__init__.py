"""Evaluation metrics of the survey's Section V; importing this package registers all of them."""

import importlib
import pkgutil

from nnxai.metrics.base import Metric, applicable_metrics, metrics, register_metric

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Metric", "applicable_metrics", "metrics", "register_metric"]
