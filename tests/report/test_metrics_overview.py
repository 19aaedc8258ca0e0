"""The one-page figures: the methods × metrics overview (ranks per data set) and the detail heatmap's pages."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from synthetic_results import METHODS, planted, write_all_csv

from nnxai import registry
from nnxai.metrics.base import metrics
from nnxai.report import FIGURES
from nnxai.report._figure import DPI, figure_style, new_figure
from nnxai.report._results import read_results
from nnxai.report.metrics_heatmap import PAGE_HEIGHT, PAGE_WIDTH, detail_blocks, heatmap_panels
from nnxai.report.metrics_overview import (MAX_PANELS, MODEL, _draw, geometry, metrics_overview, notes,
                                           rank_goodness, rank_methods)
from nnxai.taxonomy import ExplanationType
from nnxai.workflow import FIGURE_FORMATS
from nnxai.workflow import FIGURES as WORKFLOW_FIGURES

BIG_DATASETS = ("shapes", "digits", "causal")
BIG_MODELS = (MODEL, "l1")


def big_rows(datasets=BIG_DATASETS) -> tuple[list[tuple], list[str], list[str]]:
    """~30 methods × ~20 metrics × 3 data sets (2 models each), seeded; some cells never measured.

    Every registered attribution metric (about 18) plus two of unknown direction; localisation only on
    shapes, as sub-scores; shapley_error on four methods; conservation on the first method only; ROAR on
    shapes/baseline only (one column in the detail figure); the last method measured by nothing on digits.
    """
    rng = np.random.default_rng(0)
    attribution = [s.id for s in registry.specs() if s.explanation_type == ExplanationType.ATTRIBUTION]
    methods = attribution[:26] + [f"new_method_{k}" for k in range(30 - len(attribution[:26]))]
    families = [m for m, cls in metrics().items() if "attribution" in cls.kinds and not cls.universal]
    keys = [f for f in families if f != "localisation"] + ["localisation.mass", "localisation.rank",
                                                             "unknown_a", "unknown_b"]
    out = []
    for dataset in datasets:
        for model in BIG_MODELS:
            for m, method in enumerate(methods):
                if dataset == "digits" and m == len(methods) - 1:
                    continue
                for key in keys:
                    if key.startswith("localisation") and dataset != "shapes":
                        continue
                    if (key == "shapley_error" and m >= 4) or (key == "conservation" and m > 0):
                        continue
                    if key == "roar" and (dataset, model) != ("shapes", MODEL):
                        continue
                    for seed in (0, 1):
                        out.append((dataset, model, method, key, round(float(rng.normal(m, 3)), 4), seed))
    return out, methods, keys


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("big")
    table, methods, keys = big_rows()
    write_all_csv(path, table)
    return path, methods, keys


# ----------------------------------------------------------------------------- ranks
def test_ranks_follow_the_metric_direction():
    values = pd.DataFrame({"error": [0.3, 0.1, np.nan, 0.1], "score": [0.3, 0.1, 0.9, 0.5]}, index=list("abcd"))
    ranks = rank_methods(values, {"error": False, "score": True})
    # lower is better: the smallest error is rank 1, ties share the best rank, the unmeasured stays blank
    assert ranks.loc[["a", "b", "d"], "error"].tolist() == [3, 1, 1] and np.isnan(ranks.loc["c", "error"])
    assert ranks["score"].tolist() == [3, 4, 1, 2]
    colour = rank_goodness(ranks)
    assert colour["error"].tolist()[:2] == [0.0, 1.0] and np.isnan(colour.loc["c", "error"])
    assert colour["score"].tolist() == pytest.approx([1 / 3, 0, 1, 2 / 3])   # best 1 (yellow), last 0
    single = rank_goodness(rank_methods(pd.DataFrame({"x": [np.nan, 2.0]}), {"x": True}))
    assert single["x"].iloc[1] == 0.5                                        # one method: neutral colour


def test_overview_of_the_synthetic_run(tmp_path):
    write_all_csv(tmp_path)
    overview = metrics_overview(read_results(tmp_path))
    # one panel per data set with a baseline model (shapes' second model is left to the detail figure)
    assert [p.dataset for p in overview.panels] == ["shapes", "digits", "iris"]
    assert overview.unranked == ["mystery_metric"]
    shapes = overview.panels[0]
    # one headline key per family: localisation's first sub-score; runtime (universal) and roar (steps only) out
    assert sorted(shapes.values.columns) == ["completeness", "localisation.mass", "pixel_flipping"]
    assert list(shapes.values.index) == [*METHODS]
    assert shapes.values["pixel_flipping"].tolist() == pytest.approx([planted(i, 0) for i in range(len(METHODS))])
    # planted values grow with the method's index: the last is best where higher is better and worst where
    # lower is (completeness is an error)
    assert shapes.ranks["pixel_flipping"].tolist() == [4, 3, 2, 1]
    assert shapes.ranks["completeness"].tolist() == [1, 2, 3, 4]
    iris = overview.panels[2]
    assert iris.values["localisation.mass"].isna().all() and iris.ranks["localisation.mass"].isna().all()


def test_a_method_measured_once_is_ranked_in_its_column_only(big_run):
    path, methods, _ = big_run
    overview = metrics_overview(read_results(path))
    digits = next(p for p in overview.panels if p.dataset == "digits")
    assert digits.values.loc[methods[-1]].isna().all() and digits.ranks.loc[methods[-1]].isna().all()
    shapes = next(p for p in overview.panels if p.dataset == "shapes")
    assert shapes.ranks["shapley_error"].notna().sum() == 4
    assert sorted(shapes.ranks["shapley_error"].dropna()) == [1, 2, 3, 4]
    assert sorted(overview.unranked) == ["unknown_a", "unknown_b"]
    # a rank among one method says nothing: conservation is named with its method instead of drawn
    assert overview.alone == {"conservation": [methods[0]]} and "conservation" not in shapes.values.columns
    assert notes(overview) == [f"Not ranked, a single method measured: conservation ({methods[0]}).",
                               "Not ranked, direction unknown: unknown_a, unknown_b."]
    for panel in overview.panels:                 # ranks run from 1 to at most the column's measured methods
        measured = panel.values.notna().sum()
        assert (panel.ranks.min()[measured > 0] == 1).all() and (panel.ranks.max().fillna(0) <= measured).all()


# ----------------------------------------------------------------------------- the page
def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _media_boxes(pdf: bytes) -> list[tuple[float, float]]:
    """Width and height in points of each page of ``pdf``."""
    return [tuple(map(float, b)) for b in re.findall(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)]


def test_overview_files_fit_one_page(big_run, tmp_path):
    path, _, keys = big_run
    first = FIGURES["metrics_overview"](tmp_path / "a", workdir=path)
    second = FIGURES["metrics_overview"](tmp_path / "b", workdir=path)
    assert [p.name for p in first] == [f"metrics_overview.{ext}" for ext in FIGURE_FORMATS]
    pdf, png, html = (p.read_bytes() for p in first)
    assert pdf.startswith(b"%PDF") and png.startswith(b"\x89PNG") and b"data:image/png;base64," in html
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    width, height = _png_size(first[1])
    assert width == round(PAGE_WIDTH * DPI) and height <= PAGE_HEIGHT * DPI     # the text width, one page
    (page,) = _media_boxes(pdf)
    assert page[0] == pytest.approx(PAGE_WIDTH * 72) and page[1] <= PAGE_HEIGHT * 72 + 0.01
    assert "localisation.mass" in html.decode() and "shapley_error" in html.decode()


def test_overview_text_is_printable_and_inside_the_page(big_run):
    path, methods, _ = big_run
    overview = metrics_overview(read_results(path))
    with figure_style():
        fig = new_figure(PAGE_WIDTH, PAGE_HEIGHT)
        geo = _draw(fig, overview, notes(overview))
        fig.canvas.draw()
        box = fig.bbox
        texts = [t for t in fig.findobj(lambda o: hasattr(o, "get_text") and hasattr(o, "get_fontsize"))
                 if t.get_visible() and t.get_text()]
    assert len(geo.panels) == len(BIG_DATASETS) and not geo.left_out
    assert geo.row * 72 >= 7 - 1e-9                                      # rows at least 7 pt apart
    assert min(t.get_fontsize() for t in texts) >= 6
    shown = {t.get_text() for t in texts}
    assert set(methods) <= shown and set(BIG_DATASETS) <= shown and "localisation.mass" in shown
    assert any("conservation" in t for t in shown) and "conservation" not in shown    # named in a note only
    for text in texts:
        extent = text.get_window_extent()
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, text.get_text()
        assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, text.get_text()


def test_more_data_sets_than_fit_are_named(tmp_path):
    datasets = tuple(f"set{k}" for k in range(8))
    table, _, _ = big_rows(datasets)
    table = [r for r in table if not (r[0] == "set7" and r[3] != "pixel_flipping")]   # set7: least measured
    write_all_csv(tmp_path, table)
    overview = metrics_overview(read_results(tmp_path))
    assert len(overview.panels) == 8
    with figure_style():
        geo = geometry(new_figure(PAGE_WIDTH, PAGE_HEIGHT), overview, 0)
    assert len(geo.panels) <= MAX_PANELS and geo.height <= PAGE_HEIGHT
    assert "set7" in geo.left_out and len(geo.panels) + len(geo.left_out) == 8
    assert [p.dataset for p in geo.panels] == sorted(p.dataset for p in geo.panels)   # all.csv's order kept


def test_overview_without_baseline_attribution_results(tmp_path):
    write_all_csv(tmp_path, [("iris", "baseline", "model", "accuracy", 0.9, 0),
                             ("iris", "l1", "gradient", "pixel_flipping", 0.3, 0)])
    assert metrics_overview(read_results(tmp_path)).panels == []
    paths = FIGURES["metrics_overview"](tmp_path / "out", workdir=tmp_path)
    assert all(p.stat().st_size > 1_000 for p in paths)


def test_overview_is_a_workflow_figure():
    assert "metrics_overview" in FIGURES and "metrics_overview" in WORKFLOW_FIGURES


# ----------------------------------------------------------------------------- the detail figure's pages
def test_detail_blocks_trim_and_gather_single_columns(big_run):
    path, _, _ = big_run
    blocks, empty = detail_blocks(heatmap_panels(read_results(path)))
    assert empty == []
    *panels, strip = blocks
    assert strip.title.startswith("Measured on one dataset/model only")
    assert list(strip.values.columns) == ["roar ↓\nshapes/baseline"]
    assert strip.values.notna().all().all()
    for block in blocks:
        assert not block.values.isna().all(axis=0).any() and not block.values.isna().all(axis=1).any()
    assert all(b.values.shape[1] > 1 for b in panels)
    flip = next(b for b in panels if b.title == "pixel_flipping ↑")
    assert list(flip.values.columns) == [f"{d}/{m}" for d in BIG_DATASETS for m in BIG_MODELS]
    shapley = next(b for b in panels if b.title.startswith("shapley_error"))
    assert len(shapley.values) == 4                                      # only the methods it measured


def test_detail_figure_pages_are_one_page_high(big_run, tmp_path):
    path, _, _ = big_run
    paths = FIGURES["metrics_heatmap"](tmp_path / "a", workdir=path)
    again = FIGURES["metrics_heatmap"](tmp_path / "b", workdir=path)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]      # same data, same bytes
    pdf, html = paths[0].read_bytes(), paths[2].read_text()
    boxes = _media_boxes(pdf)
    assert len(boxes) > 1                                                # this run needs several pages
    assert all(w == pytest.approx(PAGE_WIDTH * 72) and h <= PAGE_HEIGHT * 72 + 0.01 for w, h in boxes)
    width, height = _png_size(paths[1])
    assert height <= PAGE_HEIGHT * DPI and width == len(boxes) * round(PAGE_WIDTH * DPI)
    assert html.count("data:image/png;base64,") == len(boxes)
    assert math.isclose(height, boxes[0][1] / 72 * DPI, abs_tol=1)
