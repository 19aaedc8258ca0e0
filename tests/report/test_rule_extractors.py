"""The rule-extractor figure reads each global rule method's size, fidelity and planted-rule recovery."""

from __future__ import annotations

from test_active_vs_baseline import write_csv

from nnxai.report._results import read_results
from nnxai.report.rule_extractors import rule_points, write_rule_extractors


def test_points_pair_size_fidelity_and_recovery_on_sets_with_a_planted_rule(tmp_path):
    run = write_csv(tmp_path, [
        ("monks1", "baseline_sigmoid", "trepan", "fidelity", 1.0, 0, 1.0, 1.0, 432),
        ("monks1", "baseline_sigmoid", "trepan", "n_leaves", 4, 0, "", "", ""),
        ("monks1", "baseline_sigmoid", "trepan", "rule_recovery", 1.0, 0, "", "", ""),
        ("monks3", "baseline", "trepan", "fidelity", 0.9, 0, 0.87, 0.93, 432),
        ("monks3", "baseline", "trepan", "n_leaves", 7, 0, "", "", ""),
        ("monks3", "baseline", "trepan", "rule_recovery", 0.0, 0, "", "", ""),
        ("iris", "baseline", "trepan", "fidelity", 0.95, 0, 0.9, 1.0, 30),          # no planted rule: left out
        ("monks1", "l1", "trepan", "fidelity", 0.95, 0, 0.9, 1.0, 432),            # not a plain network
        ("monks1", "baseline_sigmoid", "gradient", "pixel_flipping", 0.5, 0, 0.4, 0.6, 432),   # not a rule method
    ])
    points = rule_points(read_results(run)).set_index(["dataset", "model"])
    assert list(points.index) == [("monks1", "baseline_sigmoid"), ("monks3", "baseline")]
    assert points.loc[("monks1", "baseline_sigmoid"), "recovered"]
    assert not points.loc[("monks3", "baseline"), "recovered"]
    assert points.loc[("monks3", "baseline"), "rules"] == 7                   # a tree's leaves stand for its rules
    assert points.loc[("monks3", "baseline"), "fidelity_low"] == 0.87
    paths = write_rule_extractors(tmp_path / "figures", run)
    assert sorted(p.suffix for p in paths) == [".html", ".pdf", ".png"] and all(p.stat().st_size for p in paths)
