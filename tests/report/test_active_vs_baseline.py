"""The comparison of passive explanations on the regularised variants against the baseline (issue 11)."""

from __future__ import annotations

import csv

import pytest

from nnxai.report.active_vs_baseline import paired_cells, summary, write_active_summary, write_active_vs_baseline
from nnxai.report._results import read_results

COLUMNS = ["dataset", "model", "method", "metric", "value", "seed", "ci_low", "ci_high", "n"]


def write_csv(workdir, rows):
    path = workdir / "data/metrics/all.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return workdir


@pytest.fixture
def run(tmp_path):
    # pixel_flipping: higher is better; continuity (max-sensitivity): lower is better
    return write_csv(tmp_path, [
        ("shapes", "baseline", "gradient", "pixel_flipping", 0.50, 0, 0.45, 0.55, 200),
        ("shapes", "l1", "gradient", "pixel_flipping", 0.70, 0, 0.62, 0.78, 40),     # better, separate
        ("shapes", "expo", "gradient", "pixel_flipping", 0.52, 0, 0.40, 0.64, 40),   # overlaps: same
        ("shapes", "baseline", "gradient", "continuity", 2.0, 0, 1.8, 2.2, 10),
        ("shapes", "l1", "gradient", "continuity", 3.0, 0, 2.6, 3.4, 10),           # higher = worse
        ("shapes", "expo", "gradient", "continuity", 1.0, 0, "", "", ""),           # no interval: not judged
        ("shapes", "baseline", "gradient", "pixel_flipping.random", 0.1, 0, 0.0, 0.2, 200),   # a sub-key: left out
        ("shapes", "baseline_shuffled_labels", "gradient", "pixel_flipping", 0.9, 0, 0.85, 0.95, 110),   # a control
        ("shapes", "baseline", "model", "accuracy", 0.99, 0, 0.98, 1.0, 1000),
        ("shapes", "l1", "model", "accuracy", 0.97, 0, 0.96, 0.98, 1000),
        ("shapes", "expo", "model", "accuracy", 0.95, 0, 0.94, 0.96, 1000),
    ])


def test_cells_are_judged_by_direction_and_non_overlapping_intervals(run):
    cells = paired_cells(read_results(run)).set_index(["variant", "metric"])
    assert cells.loc[("l1", "pixel_flipping"), "better"] == 1
    assert cells.loc[("expo", "pixel_flipping"), "better"] == 0
    assert cells.loc[("l1", "continuity"), "better"] == -1          # lower is better: 3.0 > 2.0 is worse
    assert cells.loc[("expo", "continuity")].isna()["better"]
    assert "baseline_shuffled_labels" not in cells.index.get_level_values("variant")
    assert not cells.index.get_level_values("metric").str.contains(".", regex=False).any()


def test_summary_counts_and_accuracies(run):
    table = summary(read_results(run)).set_index("variant")
    assert table.loc["l1", ["better", "worse", "same", "judged", "cells"]].tolist() == [1, 1, 0, 2, 2]
    assert table.loc["expo", ["better", "worse", "same", "judged", "cells"]].tolist() == [0, 0, 1, 1, 2]
    assert table.loc["expo", "accuracy"] == pytest.approx(0.95)
    assert table.loc["expo", "baseline_accuracy"] == pytest.approx(0.99)


def test_writers_produce_their_files(run, tmp_path):
    out = tmp_path / "out"
    figure = write_active_vs_baseline(out, run)
    table = write_active_summary(out, run)
    assert {p.suffix for p in figure} == {".pdf", ".png", ".html"}
    text = (out / "active_summary.md").read_text()
    assert "| shapes | l1 | 0.970 (0.990) | 1 | 1 | 0 | 0 |" in text
    assert all(p.is_file() for p in table)
