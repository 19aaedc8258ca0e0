"""Bootstrap intervals over the explained inputs (nnxai.intervals) and their way into all.csv."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from nnxai.intervals import FILE_KEY, Interval, PerInput, bootstrap_interval, from_file, summarise, to_file
from nnxai.io import BadFileError
from nnxai.stages.aggregate import aggregate


def test_per_input_is_the_mean_of_its_finite_values():
    value = PerInput(torch.tensor([1.0, 2.0, float("nan"), 6.0]))
    assert isinstance(value, float) and value == pytest.approx(3.0)
    assert value.values.shape == (4,)
    assert math.isnan(PerInput([]))
    assert PerInput(torch.tensor([True, False, True, True])) == pytest.approx(0.75)


def test_width_matches_the_normal_theory_interval():
    """For n = 400 draws of N(0, 1) the percentile bootstrap of the mean is close to ±1.96 s/√n."""
    x = np.random.default_rng(1).normal(size=400)
    ci = bootstrap_interval(x, seed=0)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert ci.n == 400
    assert ci.low < x.mean() < ci.high
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.12)


def test_coverage_is_near_the_nominal_level():
    """Over 150 samples of n = 60 from an exponential law (skewed), the 95% interval holds the true mean
    (1) in 88–99% of them; a wrong interval (e.g. ±1 standard error) covers about 68%."""
    rng = np.random.default_rng(7)
    hits = [bootstrap_interval(rng.exponential(size=60), seed=k, n_resamples=1000) for k in range(150)]
    coverage = np.mean([ci.low <= 1.0 <= ci.high for ci in hits])
    assert 0.88 <= coverage <= 0.99, coverage


def test_seeded_degenerate_and_too_small_samples():
    x = np.random.default_rng(2).uniform(size=50)
    assert bootstrap_interval(x, seed=3) == bootstrap_interval(x, seed=3)
    assert bootstrap_interval(np.full(20, 0.5), seed=0) == Interval(0.5, 0.5, 20)
    lone = bootstrap_interval([np.nan, 2.0, np.inf], seed=0)
    assert lone.n == 1 and math.isnan(lone.low) and math.isnan(lone.high)


def test_summarise_splits_values_and_intervals_and_round_trips_through_files():
    values, intervals = summarise({"a": PerInput([0.0, 1.0, 1.0, 0.0]), "a.count": 3}, seed=0)
    assert values == {"a": 0.5, "a.count": 3.0} and set(intervals) == {"a"}
    assert intervals["a"].n == 4 and 0.0 <= intervals["a"].low <= 0.5 <= intervals["a"].high <= 1.0
    nan = {"b": Interval(math.nan, math.nan, 1)}
    assert json.loads(json.dumps(to_file(nan))) == {"b": [None, None, 1]}
    back = from_file(to_file({**intervals, **nan}))
    assert back["a"] == intervals["a"] and math.isnan(back["b"].low)


def _run_folder(tmp_path, metric_file: dict):
    (tmp_path / "data/checkpoints/shapes").mkdir(parents=True)
    (tmp_path / "data/checkpoints/shapes/baseline.json").write_text(json.dumps({"seed": 0}))
    path = tmp_path / "data/metrics/shapes/baseline/gradient.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(metric_file))
    return ["data/metrics/shapes/baseline/gradient.json"]


def test_aggregate_writes_the_interval_beside_its_value(tmp_path):
    files = _run_folder(tmp_path, {"localisation.mass": 0.6, "runtime": 0.01,
                                   FILE_KEY: {"localisation.mass": [0.5, 0.7, 200]}})
    aggregate(tmp_path, files)
    rows = {r["metric"]: r for r in csv.DictReader((tmp_path / "data/metrics/all.csv").open())}
    assert list(rows["runtime"])[:6] == ["dataset", "model", "method", "metric", "value", "seed"]
    assert (rows["localisation.mass"]["ci_low"], rows["localisation.mass"]["ci_high"],
            rows["localisation.mass"]["n"]) == ("0.5", "0.7", "200")
    assert (rows["runtime"]["ci_low"], rows["runtime"]["n"]) == ("", "")
    summary = json.loads((tmp_path / "data/metrics/summary.json").read_text())
    assert summary["shapes"]["baseline"]["gradient"] == {"localisation.mass": 0.6, "runtime": 0.01}


@pytest.mark.parametrize("entries", [{"nowhere": [0, 1, 2]}, {"localisation.mass": [0.5]}, [1, 2]])
def test_aggregate_refuses_malformed_intervals(tmp_path, entries):
    files = _run_folder(tmp_path, {"localisation.mass": 0.6, FILE_KEY: entries})
    with pytest.raises(BadFileError, match=FILE_KEY):
        aggregate(tmp_path, files)
