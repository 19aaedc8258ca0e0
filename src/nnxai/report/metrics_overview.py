"""Figure: a one-page overview of the attribution methods, ranked per metric, one panel per data set.

The detail figure (:mod:`nnxai.report.metrics_heatmap`) gives every value of every attribution metric on
every dataset/model over several pages; this one is read at a glance.  For the ``baseline`` model of each
data set with attribution results, a panel has the attribution methods as rows (registry order) and the
attribution metrics as columns, one per family with the key the detail figure draws first (the family's
main id, else its first sub-score: ``localisation.mass``).  A cell holds the method's *rank* within its
column: 1 is the best of the methods measured, by the metric's ``higher_is_better`` in the metric registry,
so rank 1 is always the same colour whatever the metric's direction (ties share the best rank).  Cells not
measured are blank.  Named under the panels instead of drawn: families of unknown direction, and metrics
that measured a single method on every data set (a rank of one says nothing; a method measured only by
those has no row).

The figure is the paper's text width (:data:`~nnxai.report._heatmaps.PAGE_WIDTH`) and at most one page
high: two columns of panels sharing the method labels between them, the metric names once above the top
panels, and only as many panels as fit with rows :data:`MIN_ROW_PT` points apart or more (at most
:data:`MAX_PANELS`); the data sets left out, those with the fewest measured cells, are named on the figure.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.metrics.base import metrics
from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._heatmaps import (LABEL_PT, MARGIN, PAGE_HEIGHT, PAGE_WIDTH, cell_colours, colour_bar,
                                    draw_cells, text_width)
from nnxai.report._items import report_item
from nnxai.report._results import first_seen, is_attribution_row_method, method_order, parse_key, read_results
from nnxai.report.metrics_heatmap import attribution_families, panel_keys

NAME = "metrics_overview"
MODEL = "baseline"              #: the model variant every data set trains; the others are in the detail figure
MAX_PANELS = 6                  #: a handful of data sets: more would not read at a glance
PANEL_COLUMNS = 2
RANK_PT, NAME_PT, TITLE_PT = 6.0, 7.5, 7.5   #: the rank numbers, the data set names, the title (labels: LABEL_PT)
MIN_ROW_PT, MAX_ROW_PT = 6.5, 9.5            #: rows no closer than the labels' size
MAX_CELL = 0.3                  #: inches: the widest column, when there are few metrics
NAME_WIDTH, ROW_GAP, PAD = 0.2, 0.08, 0.05   #: inches: a panel's name (turned), between panel rows, beside labels
TITLE_BOX = 0.8                 #: inches at least over the labels: the title and the colour bar
NOTE_LINE, NOTE_CHARS = 0.12, 130            #: inches per note line under the panels, characters per line
TITLE = f"Attribution methods ranked per metric ({MODEL} models)"
CAPTION = ("Overview of the attribution methods (rows, registry order) on the baseline model of each data set "
           "(panels): the number in a cell is the method's rank among the methods measured by that metric "
           "(column), 1 = best, oriented by the metric's direction in the registry, so that the best method is "
           "always yellow and the worst purple; ties share the best rank. Blank: not measured. Every value of "
           "every dataset/model is in the detail figure (metrics_heatmap).")


@dataclass(frozen=True, eq=False)
class RankPanel:
    """One data set's baseline model: its methods × metric keys values and their ranks."""

    dataset: str
    values: pd.DataFrame    #: methods × metric keys, mean over seeds; NaN where not measured
    ranks: pd.DataFrame     #: same shape: 1 = best of its column; NaN where ``values`` is

    @property
    def n_measured(self) -> int:
        return int(self.values.notna().to_numpy().sum())


@dataclass(frozen=True)
class Overview:
    """The panels of the figure (all share rows and columns) and the keys left out of them."""

    panels: list[RankPanel]
    unranked: list[str]             #: headline keys of unknown direction (not in the metric registry, or None)
    alone: dict[str, list[str]]     #: headline key → the methods it measured, where never more than one


def rank_methods(values: pd.DataFrame, higher_is_better: Mapping[str, bool]) -> pd.DataFrame:
    """Rank the methods (rows) within each column of ``values``: 1 = best by the column's direction.

    Parameters
    ----------
    values : pandas.DataFrame
        Methods × metric keys, NaN where not measured.
    higher_is_better : mapping
        Metric key → its direction.

    Returns
    -------
    pandas.DataFrame
        Same shape; ranks 1..n among a column's n measured methods, ties sharing the best of their ranks
        (competition ranking); NaN where ``values`` is NaN.
    """
    ranks = {key: values[key].rank(method="min", ascending=not higher_is_better[key]) for key in values.columns}
    return pd.DataFrame(ranks, index=values.index, columns=values.columns, dtype=float)


def rank_goodness(ranks: pd.DataFrame) -> pd.DataFrame:
    """Colour position in [0, 1] of each rank: 1 for rank 1, 0 for the column's last of n; 0.5 when n = 1."""
    n = ranks.notna().sum(axis=0)
    return ((n - ranks) / (n - 1).where(n > 1)).mask(ranks.notna() & (n == 1), 0.5)


def headline_keys(rows: pd.DataFrame, registered: dict) -> list[str]:
    """One key per attribution family of ``rows``: the detail figure's first key of that family."""
    families = attribution_families(rows, registered)
    keys = (panel_keys(rows.loc[rows["family"] == family, "metric"]) for family in families)
    return [k[0] for k in keys if k]


def metrics_overview(frame: pd.DataFrame, registered: dict | None = None) -> Overview:
    """The ranks of the figure from the rows of all.csv (see the module docstring).

    Parameters
    ----------
    frame : pandas.DataFrame
        :func:`nnxai.report._results.read_results` of a run.
    registered : dict, optional
        Metric id → class, for the families and their ``higher_is_better``; default
        :func:`nnxai.metrics.base.metrics`.

    Returns
    -------
    Overview
        One panel per data set whose ``baseline`` model has a ranked value (all.csv's order), each with the
        same rows (the methods ranked on any of them, registry order) and columns (the headline keys of
        known direction that rank two methods or more on some data set).
    """
    registered = metrics() if registered is None else registered
    rows = frame[(frame["model"] == MODEL) & frame["method"].map(is_attribution_row_method)]
    keys = headline_keys(rows, registered)
    family = {k: parse_key(k).family for k in keys}
    direction = {k: registered[family[k]].higher_is_better if family[k] in registered else None for k in keys}
    means = (rows[rows["metric"].isin([k for k in keys if direction[k] is not None])]
             .groupby(["dataset", "metric", "method"], sort=False)["value"].mean().dropna())
    most = means.groupby(level=["dataset", "metric"]).size().groupby(level="metric").max()
    alone = {k: method_order(means.xs(k, level="metric").index.get_level_values("method"))
             for k in keys if most.get(k, 0) == 1}
    columns = [k for k in keys if most.get(k, 0) > 1]
    means = means[means.index.get_level_values("metric").isin(columns)]
    methods = method_order(means.index.get_level_values("method"))
    panels = []
    for dataset in first_seen(means.index.get_level_values("dataset")):
        values = means.loc[dataset].unstack("metric").reindex(index=methods, columns=columns).astype(float)
        panels.append(RankPanel(dataset, values, rank_methods(values, direction)))
    return Overview(panels, [k for k in keys if direction[k] is None], alone)


def notes(overview: Overview) -> list[str]:
    """The lines under the panels: what the overview leaves out, and why."""
    text = []
    if overview.alone:
        alone = "; ".join(f"{k} ({', '.join(m)})" for k, m in overview.alone.items())
        text.append(f"Not ranked, a single method measured: {alone}.")
    if overview.unranked:
        text.append(f"Not ranked, direction unknown: {', '.join(overview.unranked)}.")
    return [line for paragraph in text for line in textwrap.wrap(paragraph, NOTE_CHARS)]


# ----------------------------------------------------------------------------- layout and drawing
@dataclass(frozen=True, eq=False)
class Geometry:
    """Where things go, in inches: the panels shown, the label and cell sizes and the figure's height."""

    panels: list[RankPanel]
    left_out: list[str]     #: data sets not shown (no room on one page)
    label: float            #: method labels' width
    header: float           #: metric names' height (above the top panels)
    cell: float
    row: float
    height: float

    @property
    def columns(self) -> int:
        return min(len(self.panels), PANEL_COLUMNS)


def geometry(fig, overview: Overview, n_notes: int) -> Geometry:
    """Fit the overview's panels on one page (``fig`` measures the text; ``n_notes`` lines under the panels,
    and room for one more: the data sets left out)."""
    first = overview.panels[0]
    n_methods, n_keys = first.values.shape
    label = text_width(fig, first.values.index, LABEL_PT) + 2 * PAD
    header = max(text_width(fig, first.values.columns, LABEL_PT) + 0.06, TITLE_BOX)
    fixed = 2 * MARGIN + header + (n_notes + 1) * NOTE_LINE
    per_row = n_methods * MIN_ROW_PT / 72 + ROW_GAP
    fit = max(1, int((PAGE_HEIGHT - fixed + ROW_GAP) // per_row))
    shown = min(len(overview.panels), MAX_PANELS, fit * PANEL_COLUMNS)
    order = sorted(range(len(overview.panels)), key=lambda i: -overview.panels[i].n_measured)   # stable
    best = sorted(order[:shown])
    panels = [overview.panels[i] for i in best]
    rows, columns = math.ceil(len(panels) / PANEL_COLUMNS), min(len(panels), PANEL_COLUMNS)
    row = min(MAX_ROW_PT / 72, (PAGE_HEIGHT - fixed - (rows - 1) * ROW_GAP) / (rows * n_methods))
    cell = min(MAX_CELL, (PAGE_WIDTH - 2 * MARGIN - 2 * NAME_WIDTH - label) / (columns * n_keys))
    height = fixed + rows * n_methods * row + (rows - 1) * ROW_GAP
    left_out = [p.dataset for i, p in enumerate(overview.panels) if i not in best]
    return Geometry(panels, left_out, label, header, cell, row, height)


def _wrap(fig, text: str, width: float, size: float, weight: str = "normal") -> str:
    """``text`` broken between words into lines of at most ``width`` inches."""
    lines = [""]
    for word in text.split():
        joined = f"{lines[-1]} {word}".strip()
        if lines[-1] and text_width(fig, [joined], size, weight) > width:
            lines.append(word)
        else:
            lines[-1] = joined
    return "\n".join(lines)


def _draw(fig, overview: Overview, lines: list[str]) -> Geometry:
    """Draw the panels on ``fig``, resized to the height they need, and ``lines`` under them.

    Two columns: name | left grid | method labels | right grid | name, the title and the colour bar over
    the labels, the metric names over the top grids.  One column: labels | grid | name.
    """
    geo = geometry(fig, overview, len(lines))
    if geo.left_out:
        lines = [*lines, f"Not shown (no room on one page): {', '.join(geo.left_out)}; see metrics_heatmap."]
    fig.set_layout_engine("none")
    fig.set_size_inches(PAGE_WIDTH, geo.height)
    width, height = PAGE_WIDTH, geo.height
    n_methods, n_keys = geo.panels[0].values.shape
    grid_width, grid_height = n_keys * geo.cell, n_methods * geo.row
    start = (width - geo.label - geo.columns * grid_width) / 2
    labels_left = start + grid_width if geo.columns == 2 else start
    lefts = [start, labels_left + geo.label] if geo.columns == 2 else [labels_left + geo.label]
    title = _wrap(fig, TITLE, geo.label - 2 * PAD, TITLE_PT, "bold")
    fig.text((labels_left + geo.label / 2) / width, 1 - MARGIN / height, title, ha="center", va="top",
             fontsize=TITLE_PT, fontweight="bold")
    bar = min(1.0, geo.label - 0.5)                         # its end labels stay over the method labels
    colour_bar(fig, labels_left + (geo.label - bar) / 2, MARGIN + (title.count("\n") + 1) * TITLE_PT * 1.3 / 72
               + 0.08, bar, ("last", "best"), "colour: rank")
    for i, panel in enumerate(geo.panels):
        row, column = divmod(i, PANEL_COLUMNS)
        left, top = lefts[column], MARGIN + geo.header + row * (grid_height + ROW_GAP)
        ax = fig.add_axes([left / width, 1 - (top + grid_height) / height, grid_width / width, grid_height / height])
        ranks = panel.ranks.to_numpy(dtype=float)
        texts = np.where(np.isnan(ranks), "", np.nan_to_num(ranks).astype(int).astype(str))
        draw_cells(ax, cell_colours(rank_goodness(panel.ranks).to_numpy(dtype=float), [True] * n_keys), texts,
                   RANK_PT)
        ax.patch.set(edgecolor="#bbbbbb", linewidth=0.5)      # the panel's extent, where its edge cells are blank
        ax.set_xticks(np.arange(n_keys) + 0.5, panel.values.columns if row == 0 else [], rotation=90)
        ax.xaxis.tick_top()
        if column == 0:
            ax.set_yticks(np.arange(n_methods) + 0.5, panel.values.index)
            if geo.columns == 2:                              # labels centred between the two grids
                ax.yaxis.tick_right()
                ax.tick_params(axis="y", pad=geo.label * 72 / 2)
                for text in ax.get_yticklabels():
                    text.set_horizontalalignment("center")
        else:
            ax.set_yticks([])
        outside = left - NAME_WIDTH / 2 if column == 0 and geo.columns == 2 else left + grid_width + NAME_WIDTH / 2
        fig.text(outside / width, 1 - (top + grid_height / 2) / height, panel.dataset, ha="center", va="center",
                 rotation=90, fontsize=NAME_PT, fontweight="bold")
    for j, line in enumerate(lines):
        fig.text(MARGIN / width, (MARGIN + (len(lines) - 1 - j) * NOTE_LINE) / height, line, ha="left",
                 va="bottom", fontsize=LABEL_PT, style="italic", color="#555555")
    return geo


def _values_table(overview: Overview) -> pd.DataFrame:
    rows = []
    for panel in overview.panels:
        stacked = pd.DataFrame({"value": panel.values.stack(future_stack=True),
                                "rank": panel.ranks.stack(future_stack=True)}).dropna(subset=["value"])
        rows.append(stacked.rename_axis(["method", "metric"]).reset_index().assign(dataset=panel.dataset,
                                                                                  model=MODEL))
    columns = ["dataset", "model", "method", "metric", "value", "rank"]
    return pd.concat(rows)[columns] if rows else pd.DataFrame(columns=columns)


@report_item("metrics_overview", kind="figure")
def write_metrics_overview(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw the ranks of the attribution methods per metric and data set as ``metrics_overview.{pdf,png,html}``.

    One page (see the module docstring); a run without attribution metrics on a baseline model gives a
    figure that says so.
    """
    overview = metrics_overview(read_results(workdir))
    with figure_style():
        if not overview.panels:
            fig = new_figure(6, 2)
            note(fig.add_subplot(), f"no attribution metric of a {MODEL} model in data/metrics/all.csv yet")
            fig.suptitle(TITLE)
        else:
            fig = new_figure(PAGE_WIDTH, PAGE_HEIGHT)
            _draw(fig, overview, notes(overview))
        return save_figure(fig, out_dir, NAME, CAPTION, _values_table(overview))
