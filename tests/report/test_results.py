"""The results document (nnxai.report.results): sections from all.csv, values with their intervals, the
LaTeX version, and the README's section markers."""

from __future__ import annotations

import csv
import math

import pytest

from nnxai.explanations import ConceptScores
from nnxai.report import results


def write_run(workdir, rows):
    path = workdir / "data/metrics/all.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("dataset", "model", "method", "metric", "value", "seed", "ci_low", "ci_high", "n"))
        writer.writerows(rows)


@pytest.fixture
def run(tmp_path):
    write_run(tmp_path, [
        ("shapes", "baseline", "model", "accuracy", 0.996, 0, 0.99, 1.0, 500),
        ("shapes", "l1", "model", "accuracy", 0.95, 0, 0.93, 0.97, 500),
        ("shapes", "baseline", "gradient", "localisation.mass", 0.41, 0, 0.39, 0.43, 60),
        ("shapes", "baseline", "gradient", "pixel_flipping", 0.3, 0, math.nan, math.nan, 60),
        ("shapes", "baseline", "gradient", "pixel_flipping.random", 0.05, 0, 0.02, 0.08, 60),
        ("shapes", "baseline", "trepan", "fidelity", 0.9, 0, 0.85, 0.95, 500),
    ])
    folder = tmp_path / "data/explanations/shapes/baseline"
    folder.mkdir(parents=True)
    ConceptScores(concepts=["stripes"], layer="conv2", class_names=["neg", "pos"],
                  tests=[{"concept": "stripes", "class": 1, "tcav_score": 0.95, "run_scores": [0.9, 1.0],
                          "random_mean": 0.5, "p_value": 1e-6, "p_value_corrected": 1e-5, "significant": True}],
                  random_scores=[[], [0.4, 0.6]], alpha=0.05).save(folder / "tcav.json")
    return tmp_path


def test_values_carry_their_intervals_and_a_p_value_only_its_pair(run):
    parts = results.sections(run)
    assert set(parts) == {key for key, _, _ in results.SECTIONS}
    assert "| shapes | baseline | 0.996 [0.990, 1.000] | 500 |" in parts["accuracy"]
    assert "| shapes | l1 | 0.950 [0.930, 0.970] | 500 |" in parts["accuracy"]
    row = next(r for r in parts["attribution"].splitlines() if r.startswith("| gradient |"))
    assert "0.41 [0.39, 0.43]" in row and "| 0.30 |" in row          # no interval recorded: the value alone
    assert "| trepan | `fidelity` |" in parts["structured"]
    assert "| shapes | tcav | stripes | pos | 0.95 (0.07) | 0.50 (0.14) | 1e-05 | yes |" in parts["concepts"]


def test_document_sections_round_trip_and_latex(run, tmp_path):
    md, tex = results.write_results(tmp_path / "paper", workdir=run)
    text = md.read_text()
    parts = results.sections(run)
    for key, _, _ in results.SECTIONS:
        assert results.section_of(text, key) == parts[key]
    with pytest.raises(KeyError, match="no section"):
        results.section_of(text, "nonsense")
    latex = tex.read_text()
    assert r"\begin{longtable}" in latex and r"\subsection*{Test accuracy}" in latex
    assert "0.996 [0.990, 1.000]" in latex and r"\texttt{fidelity}" in latex
    assert "|" not in latex.replace(r"\textbar{}", "")                   # no stray Markdown pipes


def test_a_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the workflow first"):
        results.sections(tmp_path)


def test_the_seed_spread_is_set_against_the_interval_over_inputs(tmp_path):
    """Spread = largest minus smallest over the baseline and its replicas; it *moves* where it exceeds the
    half-width of the baseline's interval (0.396-0.404 on pixel flipping: spread 0.1 moves; accuracy's 0.004
    stays within 0.01)."""
    write_run(tmp_path, [
        ("shapes", "baseline", "model", "accuracy", 0.996, 0, 0.99, 1.0, 500),
        ("shapes", "baseline_seed1", "model", "accuracy", 0.992, 1, 0.98, 1.0, 500),
        ("shapes", "baseline_seed2", "model", "accuracy", 0.994, 2, 0.98, 1.0, 500),
        ("shapes", "baseline", "gradient", "pixel_flipping", 0.40, 0, 0.396, 0.404, 60),
        ("shapes", "baseline_seed1", "gradient", "pixel_flipping", 0.30, 1, 0.29, 0.31, 60),
        ("shapes", "baseline_seed2", "gradient", "pixel_flipping", 0.35, 2, 0.34, 0.36, 60),
        ("causal", "baseline", "model", "accuracy", 0.9, 0, 0.85, 0.95, 100),      # no replica: not listed
    ])
    text = results.seeds_section(results.read(tmp_path), tmp_path)
    assert "1 of 2 numbers move" in text and "other seeds (seed1, seed2)" in text
    assert "| shapes | (model) | test accuracy | 0.996 [0.990, 1.000] | 0.992 / 0.994 | 0.004 | within |" in text
    assert "| shapes | gradient | AOPC | 0.400 [0.396, 0.404] | 0.300 / 0.350 | 0.100 | *moves* |" in text
    assert "causal" not in text
    alone = {k: v for k, v in results.read(tmp_path).items() if not k[1].startswith("baseline_seed")}
    assert "No seed replica was measured" in results.seeds_section(alone, tmp_path)
