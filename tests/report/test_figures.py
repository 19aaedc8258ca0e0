"""The results figures (metrics heatmap, perturbation curves, runtime), drawn from a synthetic all.csv."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from synthetic_results import CELLS, METHODS, ROAR_STEPS, planted, rows, runtime, write_all_csv

from nnxai.metrics.base import metrics
from nnxai.report import FIGURES
from nnxai.report._results import method_order, parse_key, read_results
from nnxai.report.metrics_heatmap import goodness, heatmap_panels
from nnxai.report.perturbation_curves import CURVE_FAMILIES, curve_rows
from nnxai.report.runtime import runtime_values
from nnxai.workflow import FIGURE_FORMATS
from nnxai.workflow import FIGURES as WORKFLOW_FIGURES

RESULTS_FIGURES = ("metrics_heatmap", "perturbation_curves", "runtime")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    write_all_csv(path)
    return path


@pytest.fixture(scope="module")
def frame(workdir):
    return read_results(workdir)


# ----------------------------------------------------------------------------- reading all.csv
@pytest.mark.parametrize("key, expected", [
    ("pixel_flipping", ("pixel_flipping", "", False, None)),
    ("pixel_flipping.random", ("pixel_flipping", "", True, None)),
    ("localisation.mass", ("localisation", "mass", False, None)),
    ("roar.k10", ("roar", "", False, 10.0)),
    ("roar.random.k90", ("roar", "", True, 90.0)),
    ("insertion_deletion.insertion.k2", ("insertion_deletion", "insertion", False, 2.0)),
])
def test_parse_key(key, expected):
    parsed = parse_key(key)
    assert (parsed.family, parsed.curve, parsed.random, parsed.step) == expected


def test_read_results_keeps_nan_and_adds_the_family(frame):
    iris = frame[(frame["dataset"] == "iris") & (frame["metric"] == "localisation.mass")]
    assert len(iris) and iris["value"].isna().all()
    assert set(frame.loc[frame["metric"].str.startswith("roar."), "family"]) == {"roar"}


def test_missing_results_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="all.csv"):
        read_results(tmp_path)


# ----------------------------------------------------------------------------- heatmap data
def test_goodness_makes_the_best_method_one_whatever_the_direction():
    values = pd.DataFrame({"a": [0.1, 0.4, 0.3], "b": [2.0, 2.0, np.nan], "c": [5.0, np.nan, np.nan]},
                          index=["m1", "m2", "m3"])
    up, down = goodness(values, True), goodness(values, False)
    assert up["a"].tolist() == pytest.approx([0.0, 1.0, 2 / 3])
    assert down["a"].tolist() == pytest.approx([1.0, 0.0, 1 / 3])
    assert up["b"].iloc[:2].tolist() == [0.5, 0.5] and down["b"].iloc[:2].tolist() == [0.5, 0.5]  # a tie
    assert up["c"].iloc[0] == 0.5                                    # a single method
    assert up.isna().equals(values.isna()) and down.isna().equals(values.isna())  # blanks stay blank


def test_heatmap_colour_follows_higher_is_better(frame):
    panels = {p.key: p for p in heatmap_panels(frame)}
    # completeness is an error (lower is better): the method with the smallest value is the best
    comp = panels["completeness"]
    assert comp.higher_is_better is False and metrics()["completeness"].higher_is_better is False
    assert (comp.goodness.idxmax() == comp.values.idxmin()).all()
    flip = panels["pixel_flipping"]
    assert flip.higher_is_better is True
    assert (flip.goodness.idxmax() == flip.values.idxmax()).all()
    # the same values, with the registry's direction reversed, give the mirrored colours
    registered = dict(metrics())
    registered["pixel_flipping"] = SimpleNamespace(higher_is_better=False, kinds=frozenset({"attribution"}),
                                                   universal=False)
    reversed_flip = {p.key: p for p in heatmap_panels(frame, registered)}["pixel_flipping"]
    assert np.allclose(reversed_flip.goodness, 1 - flip.goodness, equal_nan=True)


def test_heatmap_panels_rows_columns_and_values(frame):
    panels = heatmap_panels(frame)
    keys = [p.key for p in panels]
    # main ids only; a family without one (localisation) shows its sub-scores; baselines and steps go
    assert {"pixel_flipping", "completeness", "localisation.mass", "localisation.rank"} <= set(keys)
    assert not any(parse_key(k).random or parse_key(k).step is not None for k in keys)
    assert "runtime" not in keys and "dissection_iou" not in keys and "accuracy" not in keys
    mystery = next(p for p in panels if p.key == "mystery_metric")       # unknown id: kept, no direction
    assert mystery.higher_is_better is None and keys[-1] == "mystery_metric"
    for panel in panels:
        assert list(panel.values.index) == method_order(METHODS) == [*METHODS]  # registry order, unknown last
        assert list(panel.values.columns) == [f"{d}/{m}" for d, m in CELLS]
    flip = next(p for p in panels if p.key == "pixel_flipping")
    for c, (d, m) in enumerate(CELLS):
        for i, method in enumerate(METHODS):
            assert flip.values.loc[method, f"{d}/{m}"] == pytest.approx(planted(i, c))
    mass = next(p for p in panels if p.key == "localisation.mass")
    assert mass.values["iris/baseline"].isna().all() and mass.goodness["iris/baseline"].isna().all()


# ----------------------------------------------------------------------------- curves and runtime data
def test_curve_rows_draw_steps_scores_and_notes(frame):
    by_family = {r.family: r for r in curve_rows(frame)}
    assert list(by_family)[:3] == list(CURVE_FAMILIES)
    assert by_family["insertion_deletion"].style == "empty"
    flip = by_family["pixel_flipping"]
    assert flip.style == "bars" and np.allclose(flip.random["value"], 0.05)
    roar = by_family["roar"]
    assert roar.style == "curve" and sorted(set(roar.values["step"])) == list(map(float, ROAR_STEPS))
    # mean over the models of a dataset: shapes has two (cells 0 and 1)
    got = roar.values.set_index(["dataset", "method", "step"])["value"]
    ig = METHODS.index("integrated_gradients")
    expected = np.mean([1 - planted(ig, c) * 0.3 for c in (0, 1)])
    assert got[("shapes", "integrated_gradients", 30.0)] == pytest.approx(expected)
    assert roar.random.set_index(["dataset", "step"])["value"][("iris", 50.0)] == pytest.approx(0.95)


def test_runtime_values_in_registry_order_without_non_positive(workdir):
    table = rows() + [("iris", "baseline", "gradient", "runtime", 0.0, 1),
                      ("iris", "baseline", "gradient", "runtime", math.nan, 2)]
    write_all_csv(workdir / "with_zero", table)
    values = runtime_values(read_results(workdir / "with_zero"))
    assert list(dict.fromkeys(values["method"])) == [*METHODS]
    gradient_iris = values[(values["method"] == "gradient") & (values["dataset"] == "iris")
                           & (values["model"] == "baseline")]
    iris_baseline = CELLS.index(("iris", "baseline"))
    assert gradient_iris["seconds"].tolist() == pytest.approx([runtime(0, iris_baseline)])  # 0, NaN left out


# ----------------------------------------------------------------------------- the files
def test_results_figures_are_registered_for_the_workflow():
    for name in RESULTS_FIGURES:
        assert name in FIGURES and name in WORKFLOW_FIGURES


@pytest.mark.parametrize("name", RESULTS_FIGURES)
def test_figure_files_are_written_and_reproducible(name, workdir, tmp_path):
    first = FIGURES[name](tmp_path / "a", workdir=workdir)
    second = FIGURES[name](tmp_path / "b", workdir=workdir)
    assert [p.name for p in first] == [f"{name}.{ext}" for ext in FIGURE_FORMATS]
    pdf, png, html = (p.read_bytes() for p in first)
    assert pdf.startswith(b"%PDF") and png.startswith(b"\x89PNG") and b"data:image/png;base64," in html
    assert all(len(p.read_bytes()) > 5_000 for p in first)
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.mark.parametrize("name", RESULTS_FIGURES)
def test_figures_render_a_run_without_their_metrics(name, tmp_path):
    write_all_csv(tmp_path, [("iris", "baseline", "model", "accuracy", 0.9, 0),
                             ("iris", "baseline", "trepan", "fidelity", 0.8, 0),
                             ("iris", "baseline", "gradient", "unheard_of.sub", 0.3, 0)])
    paths = FIGURES[name](tmp_path / "out", workdir=tmp_path)
    assert all(p.stat().st_size > 1_000 for p in paths)
