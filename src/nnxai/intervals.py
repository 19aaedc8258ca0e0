"""Confidence intervals for metric values that are means over the explained inputs.

A metric that averages a per-input quantity (the mass of a map inside the evidence mask, an AOPC, a
rank correlation after randomisation, ...) returns it as :class:`PerInput`; the evaluate stage reports
the mean with a 95% percentile-bootstrap interval over the inputs (Efron & Tibshirani, *An Introduction
to the Bootstrap*, 1993, ch. 13), computed by :func:`scipy.stats.bootstrap` from a seeded generator, so
the interval is reproducible.  Non-finite per-input values (an input on which the quantity is undefined,
e.g. a constant map's rank correlation) are left out of both the mean and the interval, as ``nanmean``
leaves them out; ``n`` counts the inputs that remain.

Choice: the percentile interval rather than BCa, because BCa's jackknife acceleration is undefined on
constant samples (a method that gets every input right has a degenerate, not an undefined, interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: The entry of a metric file (``data/metrics/{dataset}/{model}/{method}.json``) beside ``{metric: value}``
#: that holds ``{metric: [low, high, n]}`` for the values that are means over inputs.
FILE_KEY = "_intervals"
LEVEL = 0.95         #: confidence level of every interval the project reports
N_RESAMPLES = 2000   #: bootstrap resamples: Monte-Carlo error of a 95% percentile bound ≈ 0.5% of its spread


class PerInput(float):
    """A metric value given as one number per explained input.  It *is* their mean (a ``float``: callers
    that compare or add metric values need not know), and keeps the per-input values in ``values`` so the
    evaluate stage can report an interval beside the mean."""

    values: np.ndarray

    def __new__(cls, values):
        if hasattr(values, "detach"):          # a torch tensor, on any device
            values = values.detach().cpu().double().numpy()
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        finite = values[np.isfinite(values)]
        self = super().__new__(cls, float(finite.mean()) if finite.size else math.nan)
        self.values = values
        return self


@dataclass(frozen=True)
class Interval:
    """A ``LEVEL`` bootstrap interval of a mean over ``n`` inputs (``low``/``high`` NaN when n < 2)."""

    low: float
    high: float
    n: int


def bootstrap_interval(values, seed: int, level: float = LEVEL, n_resamples: int = N_RESAMPLES) -> Interval:
    """The percentile-bootstrap interval of the mean of the finite ``values``.

    Parameters
    ----------
    values : array-like
        Per-input values; NaN and infinite entries are left out.
    seed : int
        Seeds the resampling (the run's seed: the same run gives the same interval).
    level : float
        Confidence level.
    n_resamples : int
        Bootstrap resamples.

    Returns
    -------
    Interval
        ``low <= mean <= high`` (up to resampling), equal bounds when every value is the same, and NaN
        bounds when fewer than two finite values remain.
    """
    from scipy.stats import bootstrap   # scipy is imported by the metrics anyway; not at module import

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return Interval(math.nan, math.nan, int(x.size))
    if np.all(x == x[0]):
        return Interval(float(x[0]), float(x[0]), int(x.size))
    result = bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_resamples, method="percentile",
                       vectorized=True, rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Interval(float(ci.low), float(ci.high), int(x.size))


def to_file(intervals: Mapping[str, Interval]) -> dict[str, list]:
    """``{metric: [low, high, n]}`` as a metric file and the metric cache keep it (NaN as ``None``)."""
    def number(x: float):
        return None if math.isnan(x) else x
    return {k: [number(v.low), number(v.high), v.n] for k, v in sorted(intervals.items())}


def from_file(entries: Mapping[str, object]) -> dict[str, Interval]:
    """The inverse of :func:`to_file` (``None`` back to NaN)."""
    def number(x) -> float:
        return math.nan if x is None else float(x)
    return {k: Interval(number(v[0]), number(v[1]), int(v[2])) for k, v in entries.items()}


def summarise(raw: Mapping[str, object], seed: int) -> tuple[dict[str, float], dict[str, Interval]]:
    """Split a metric's output into plain values and intervals: a :class:`PerInput` entry becomes its
    mean (a value) and its interval; any other entry is a number, kept as ``float``."""
    values, intervals = {}, {}
    for key, value in raw.items():
        if isinstance(value, PerInput):
            values[key] = float(value)
            intervals[key] = bootstrap_interval(value.values, seed)
        else:
            values[key] = float(value)
    return values, intervals
