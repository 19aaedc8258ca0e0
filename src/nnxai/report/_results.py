"""Reading the run's measurements, ``data/metrics/all.csv``, for the results figures and tables.

``all.csv`` is the tidy table :func:`nnxai.pipeline.aggregate` writes: one row per dataset, model,
method, metric key and seed.  A metric key is a registered metric's ``id`` or ``id.sub``
(``pixel_flipping.random``, ``localisation.mass``, ``roar.k10``, ``roar.random.k10``); the part before
the first dot is the metric *family*.  Nothing here lists methods or metrics: orders come from the
method registry (:func:`nnxai.registry.specs`) and directions from the metric registry
(:func:`nnxai.metrics.base.metrics`); ids that neither registry knows are kept and placed last.

Sub-key conventions read here (those the metric modules write): a part ``random`` marks a random
baseline (``pixel_flipping.random``); a last part ``k<number>`` is one step of a perturbation curve
(``roar.k10``, ``roar.random.k10``); any other part names a sub-score or a curve (``localisation.mass``,
``insertion_deletion.insertion``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from nnxai import registry
from nnxai.data import DATASETS
from nnxai.data.splits import SPLITS
from nnxai.paths import MODEL_ROW, prepared_path
from nnxai.taxonomy import ExplanationType

ALL_CSV = "data/metrics/all.csv"
COLUMNS = ("dataset", "model", "method", "metric", "value", "seed")
MODEL_ROWS = MODEL_ROW  #: the ``method`` of the model's own metrics (accuracy), see nnxai.paths
RANDOM = "random"
_STEP = re.compile(r"k(\d+(?:\.\d+)?)")


def read_results(workdir: Path) -> pd.DataFrame:
    """Read ``<workdir>/data/metrics/all.csv`` with a ``family`` column added.

    Parameters
    ----------
    workdir : pathlib.Path
        The run's work directory.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, model, method, metric, value, seed, family``; ``value`` is float, ``NaN``
        where the metric could not be computed.

    Raises
    ------
    FileNotFoundError
        If the file does not exist (the figures and tables are drawn from a finished evaluation).
    ValueError
        If a column of :data:`COLUMNS` is missing.
    """
    path = Path(workdir) / ALL_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the results figures and tables are drawn from the "
                                "run's metrics (make them with `snakemake evaluate_all` or "
                                "`python -m nnxai aggregate`)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing; expected {list(COLUMNS)}")
    frame["value"] = pd.to_numeric(frame["value"].replace({"": "nan", "None": "nan"}), errors="coerce")
    frame["family"] = frame["metric"].str.split(".", n=1).str[0]
    return frame


@dataclass(frozen=True)
class MetricKey:
    """A metric key split into its parts: ``roar.random.k10`` → family ``roar``, random, step 10."""

    family: str
    curve: str           #: the parts that are neither ``random`` nor a step, joined by dots ('' if none)
    random: bool
    step: float | None   #: the ``k<number>`` of a perturbation-curve point, ``None`` for a score


def parse_key(key: str) -> MetricKey:
    """Split a metric key of all.csv (see the module docstring for the conventions)."""
    family, *parts = key.split(".")
    step = None
    if parts and (match := _STEP.fullmatch(parts[-1])):
        step = float(match.group(1))
        parts = parts[:-1]
    return MetricKey(family, ".".join(p for p in parts if p != RANDOM), RANDOM in parts, step)


def method_order(ids) -> list[str]:
    """``ids`` in registry order; ids the registry does not know come last, sorted."""
    ids = set(ids)
    known = [s.id for s in registry.specs() if s.id in ids]
    return known + sorted(ids - set(known))


def first_seen(values) -> list[str]:
    """Distinct values in order of first appearance (all.csv is sorted by path, so this is stable)."""
    return list(dict.fromkeys(values))


def is_attribution_row_method(method_id: str) -> bool:
    """Rows of an attribution method: the registry says so, or the method is unknown to it (kept, so
    that a method registered later than the run is not lost); never the model's own rows."""
    if method_id == MODEL_ROWS:
        return False
    try:
        return registry.spec(method_id).explanation_type == ExplanationType.ATTRIBUTION
    except registry.UnknownMethodError:
        return True


def dataset_kind(name: str) -> str:
    """``image`` or ``tabular`` from :data:`nnxai.data.DATASETS`; ``unknown`` for a name it lacks."""
    info = DATASETS.get(name)
    return info.kind if info is not None else "unknown"


def format_value(value: float) -> str:
    """Two significant digits, blank for NaN: the annotation of a heatmap cell."""
    return "" if pd.isna(value) else f"{value:.2g}"


#: The prepared array a rule set's ``feature_space`` reads (:class:`nnxai.explanations.RuleSet`).
FEATURE_ARRAYS = {"inputs": "x", "concepts": "concepts"}


def binary_columns(workdir: Path, dataset: str, feature_space: str, n_features: int) -> frozenset[int]:
    """The columns of ``dataset``'s ``feature_space`` that hold only 0 and 1 in every prepared split: the
    one-hot MONK inputs, shapes' binary concepts.  A rule's threshold on such a column is an attribute test
    (:func:`nnxai.report._format.attribute_literal`).  Empty when the splits are missing or their array does
    not have ``n_features`` columns: then no test is rewritten."""
    return _binary_columns(str(Path(workdir).resolve()), dataset, feature_space, n_features)


@lru_cache(maxsize=32)
def _binary_columns(workdir: str, dataset: str, feature_space: str, n_features: int) -> frozenset[int]:
    key = FEATURE_ARRAYS.get(feature_space)
    binary = np.ones(n_features, dtype=bool)
    for split in SPLITS:
        path = Path(workdir) / prepared_path(dataset, split)
        if key is None or not path.is_file():
            return frozenset()
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                return frozenset()
            values = data[key]
        if values.ndim != 2 or values.shape[1] != n_features:
            return frozenset()
        binary &= ((values == 0) | (values == 1)).all(axis=0)
    return frozenset(int(j) for j in np.flatnonzero(binary))
