"""Figure: every attribution metric of the run as a heatmap, methods × dataset/model (the detail figure).

One panel per metric family that scores attribution maps (registered metrics whose ``kinds`` include
``attribution`` and that are not ``universal``, such as ``runtime``, which has its own figure; plus
any family of ``all.csv`` that the metric registry does not know).  A panel shows the family's main id
(``pixel_flipping``); a family that writes no main id shows each of its sub-scores instead
(``localisation.mass``, ``.rank``, ``.pointing``).  Random baselines and per-step curve points
(``*.random``, ``*.k10``) are left to :mod:`nnxai.report.perturbation_curves`.  The one-page summary,
ranks of the methods per metric and data set, is :mod:`nnxai.report.metrics_overview`.

Colour is a *goodness* in [0, 1] per column (per dataset/model): min-max scaled over the methods of that
column and flipped when the metric's ``higher_is_better`` is false, so the best method of a column is
always the same colour whatever the metric's direction; a column whose methods tie is drawn at 0.5.
Families of unknown direction keep the raw order in grey.  The cells are annotated with the measured
values (mean over seeds); cells not measured are blank.  A sub-score takes its family's direction (the
registry declares one per metric), so a family whose sub-scores point different ways (an insertion area,
higher is better, beside a deletion area, lower is better) must write a main id to be drawn right.

Layout (:func:`detail_blocks`, :func:`nnxai.report._heatmaps.layout_pages`): every panel keeps only the
methods and the dataset/model columns it measured; the metrics measured on a single dataset/model (ROAR in
the smoke profile) are gathered in one table-like strip rather than drawn as lone cells; panels with the
same columns are stacked under one set of column labels, and the stacks set side by side, line by line,
on pages of the paper's text width and at most one page high.  The PDF has one page per page, the PNG
sets the pages side by side (never taller than one page) and the HTML shows each page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nnxai.metrics.base import metrics
from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._heatmaps import (HEAD, MARGIN, PAGE_HEIGHT, PAGE_WIDTH, Block, draw_page, layout_pages,
                                    page_head, save_pages)
from nnxai.report._items import report_item
from nnxai.report._results import first_seen, is_attribution_row_method, method_order, parse_key, read_results

NAME = "metrics_heatmap"
TITLE = "Attribution metrics per method and dataset/model"
ARROWS = {True: "↑", False: "↓", None: "(direction unknown)"}
CAPTION = ("Attribution metrics of every method (rows, registry order) on every dataset/model (columns): "
           "the cells give the measured value (mean over seeds); the colour ranks the methods within a "
           "column, min-max scaled and oriented by the metric's direction (↑ higher is better, ↓ lower), so "
           "that better is always yellow. Each panel shows only the methods and columns it measured; "
           "metrics measured on a single dataset/model share one strip. Blank: not measured.")


@dataclass(frozen=True)
class Panel:
    """One heatmap: a metric key, its direction and its methods × dataset/model values."""

    key: str
    higher_is_better: bool | None
    values: pd.DataFrame     #: methods × "dataset/model", mean over seeds; NaN where not measured
    goodness: pd.DataFrame   #: same shape, in [0, 1], 1 = best of its column; NaN where ``values`` is

    @property
    def title(self) -> str:
        arrow = {True: "higher is better", False: "lower is better", None: "direction unknown"}
        return f"{self.key} ({arrow[self.higher_is_better]})"


def goodness(values: pd.DataFrame, higher_is_better: bool | None) -> pd.DataFrame:
    """Scale each column of ``values`` to [0, 1] so that 1 is its best method.

    Parameters
    ----------
    values : pandas.DataFrame
        Methods × columns, NaN where not measured.
    higher_is_better : bool or None
        The metric's direction; ``False`` flips the scale, ``None`` keeps it (higher value → 1).

    Returns
    -------
    pandas.DataFrame
        ``(v - min) / (max - min)`` per column (``1 -`` that when lower is better); 0.5 where the
        column's measured values are all equal; NaN where ``values`` is NaN.
    """
    low, high = values.min(axis=0), values.max(axis=0)
    span = high - low
    scaled = (values - low) / span.where(span > 0)
    scaled = scaled.mask(values.notna() & scaled.isna(), 0.5)
    return 1.0 - scaled if higher_is_better is False else scaled


def attribution_families(frame: pd.DataFrame, registered: dict | None = None) -> list[str]:
    """Metric families of the heatmap, registry order first, then the unknown ones sorted."""
    registered = metrics() if registered is None else registered
    present = set(frame["family"])
    known = [m for m, cls in registered.items()
             if m in present and "attribution" in cls.kinds and not cls.universal]
    return known + sorted(present - set(registered))


def panel_keys(keys) -> list[str]:
    """The keys one family shows: its main id if measured, else its sub-scores (no baselines, no steps)."""
    parsed = {k: parse_key(k) for k in first_seen(keys)}
    main = [k for k, p in parsed.items() if not p.curve and not p.random and p.step is None]
    return main or sorted(k for k, p in parsed.items() if not p.random and p.step is None)


def heatmap_panels(frame: pd.DataFrame, registered: dict | None = None) -> list[Panel]:
    """The panels of the figure from the rows of all.csv (see the module docstring).

    Parameters
    ----------
    frame : pandas.DataFrame
        :func:`nnxai.report._results.read_results` of a run.
    registered : dict, optional
        Metric id → class, for the families and their ``higher_is_better``; default
        :func:`nnxai.metrics.base.metrics`.

    Returns
    -------
    list of Panel
        All panels share the same rows (methods with any value drawn, registry order) and columns
        (dataset/model pairs, in all.csv's order).
    """
    registered = metrics() if registered is None else registered
    rows = frame[frame["method"].map(is_attribution_row_method)]
    families = attribution_families(rows, registered)
    keys = [k for f in families for k in panel_keys(rows.loc[rows["family"] == f, "metric"])]
    rows = rows[rows["metric"].isin(keys)].assign(cell=lambda r: r["dataset"] + "/" + r["model"])
    methods, cells = method_order(rows["method"]), first_seen(rows["cell"])
    means = rows.groupby(["metric", "method", "cell"], sort=False)["value"].mean()
    panels = []
    for key in keys:
        values = (means.loc[key].unstack("cell") if key in means.index.get_level_values(0)
                  else pd.DataFrame()).reindex(index=methods, columns=cells).astype(float)
        family = parse_key(key).family
        direction = registered[family].higher_is_better if family in registered else None
        panels.append(Panel(key, direction, values, goodness(values, direction)))
    return panels


# ----------------------------------------------------------------------------- what each page shows
def detail_blocks(panels: list[Panel]) -> tuple[list[Block], list[str]]:
    """The panels as drawn: each trimmed to its measured methods and columns; single-column ones joined.

    Returns
    -------
    (list of Block, list of str)
        One block per panel with two or more measured dataset/model columns, in the panels' order, then
        one strip whose columns are the metrics measured on a single dataset/model (labelled
        ``<key> <arrow>`` over ``<dataset/model>``); and the keys of the panels with no value at all.
    """
    blocks, singles, empty = [], [], []
    for panel in panels:
        values = panel.values.dropna(how="all").dropna(axis=1, how="all")
        if values.empty:
            empty.append(panel.key)
            continue
        scores = panel.goodness.loc[values.index, values.columns]
        if values.shape[1] > 1:
            title = f"{panel.key} {ARROWS[panel.higher_is_better]}"
            blocks.append(Block(title, values, scores, (panel.higher_is_better is not None,) * values.shape[1]))
        else:
            label = f"{panel.key} {ARROWS[panel.higher_is_better]}\n{values.columns[0]}"
            singles.append((label, values.iloc[:, 0], scores.iloc[:, 0], panel.higher_is_better is not None))
    if singles:
        measured = {m for _, v, _, _ in singles for m in v.index}
        rows = [m for m in panels[0].values.index if m in measured]     # the panels' order (registry's)
        strip = {part: pd.DataFrame({label: s[i] for label, *s in singles}).reindex(rows)
                 for i, part in enumerate(("values", "goodness"))}
        blocks.append(Block("Measured on one dataset/model only", strip["values"], strip["goodness"],
                            tuple(known for *_, known in singles)))
    return blocks, empty


def _values_table(panels: list[Panel]) -> pd.DataFrame:
    parts = [p.values.rename_axis(index="method", columns="dataset/model").stack().rename("value")
             .reset_index().assign(metric=p.key) for p in panels]
    if not parts:
        return pd.DataFrame(columns=["metric", "method", "dataset/model", "value"])
    return pd.concat(parts)[["metric", "method", "dataset/model", "value"]]


@report_item("metrics_heatmap", kind="figure")
def write_metrics_heatmap(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw the attribution metrics of ``<workdir>/data/metrics/all.csv`` as ``metrics_heatmap.{pdf,png,html}``.

    One page or more (see the module docstring); a run without attribution metrics gives a figure that
    says so.
    """
    panels = heatmap_panels(read_results(workdir))
    blocks, empty = detail_blocks(panels)
    with figure_style():
        if not blocks:
            fig = new_figure(6, 2)
            note(fig.add_subplot(), "no attribution metric in data/metrics/all.csv yet")
            fig.suptitle(TITLE)
            return save_figure(fig, out_dir, NAME, CAPTION, _values_table(panels))
        pages = layout_pages(new_figure(PAGE_WIDTH, PAGE_HEIGHT), blocks)
        height = HEAD + 2 * MARGIN + max(p.y + p.height for page in pages for p in page)   # one for all pages
        figs = []
        for number, page in enumerate(pages, 1):
            fig = new_figure(PAGE_WIDTH, height)
            page_head(fig, TITLE + (f" (page {number} of {len(pages)})" if len(pages) > 1 else ""),
                      f"No value at all: {', '.join(empty)}." if empty and number == 1 else "", ("worse", "better"),
                      "colour: min-max within a column")
            draw_page(fig, page)
            figs.append(fig)
        return save_pages(figs, out_dir, NAME, CAPTION, _values_table(panels))
