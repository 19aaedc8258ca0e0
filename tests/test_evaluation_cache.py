"""The metric cache's key (nnxai.evaluation_cache): what an explanation *is* decides it, not when it ran."""

from __future__ import annotations

import numpy as np

from nnxai.evaluation_cache import MetricCache, cell_key
from nnxai.explanations.records import AttributionMap, Examples

MAP = "data/explanations/shapes/baseline/gradient.npz"
EXAMPLES = "data/explanations/shapes/baseline/representer_points.json"


def _key(workdir, path, timing=False, **changes):
    base = {"metric_id": "pixel_flipping", "params": {"patch": 4}, "job": {"seed": 0},
            "modules": ["nnxai.metrics.pixel_flipping"]}
    base.update(changes)
    return cell_key(base["metric_id"], base["params"], base["job"], workdir, [path], base["modules"], timing=timing)


def _save_map(workdir, seconds, value=1.0):
    meta = {"method": "gradient", "params": {"n_explain": 2}, "seconds": seconds,
            "seconds_per_input": seconds / 2, "seed": 0}
    attributions = np.full((2, 1, 4, 4), value, dtype=np.float32)
    AttributionMap(attributions, np.array([3, 5]), np.array([0, 1]), meta).save(workdir / MAP)


def _save_examples(workdir, seconds, score=0.5):
    meta = {"method": "representer_points", "params": {"top_k": 1}, "seconds": seconds,
            "seconds_per_input": seconds, "seed": 0}
    Examples(indices=[3], targets=[1], examples=[[7]], scores=[[score]], extra={}, meta=meta).save(workdir / EXAMPLES)


def test_a_rerun_with_the_same_content_keeps_the_key_unless_the_metric_reads_the_time(tmp_path):
    (tmp_path / MAP).parent.mkdir(parents=True)
    _save_map(tmp_path, seconds=1.5)
    first, first_timed = _key(tmp_path, MAP), _key(tmp_path, MAP, timing=True)
    _save_map(tmp_path, seconds=2.5)                   # the same maps, computed again more slowly
    assert _key(tmp_path, MAP) == first
    assert _key(tmp_path, MAP, timing=True) != first_timed
    _save_map(tmp_path, seconds=2.5, value=2.0)         # other maps
    assert _key(tmp_path, MAP) != first


def test_json_records_are_keyed_on_their_content_too(tmp_path):
    (tmp_path / EXAMPLES).parent.mkdir(parents=True)
    _save_examples(tmp_path, seconds=1.0)
    first = _key(tmp_path, EXAMPLES)
    _save_examples(tmp_path, seconds=9.0)
    assert _key(tmp_path, EXAMPLES) == first
    _save_examples(tmp_path, seconds=9.0, score=0.75)
    assert _key(tmp_path, EXAMPLES) != first


def test_parameters_seed_and_code_are_part_of_the_key(tmp_path):
    (tmp_path / MAP).parent.mkdir(parents=True)
    _save_map(tmp_path, seconds=1.0)
    first = _key(tmp_path, MAP)
    assert _key(tmp_path, MAP, params={"patch": 2}) != first
    assert _key(tmp_path, MAP, job={"seed": 1}) != first
    assert _key(tmp_path, MAP, modules=["nnxai.metrics.entropy"]) != first
    assert _key(tmp_path, MAP, metric_id="entropy") != first


def test_cache_round_trip_and_unreadable_entries(tmp_path):
    cache = MetricCache(tmp_path)
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, "entropy", {"entropy": 1.5}, {"entropy": [1.0, 2.0, 12]})
    assert cache.get("ab" * 32) == ({"entropy": 1.5}, {"entropy": [1.0, 2.0, 12]})
    cache._path("cd" * 32).parent.mkdir(parents=True, exist_ok=True)
    cache._path("cd" * 32).write_text("{not json")
    assert cache.get("cd" * 32) is None                 # recomputed, not trusted
