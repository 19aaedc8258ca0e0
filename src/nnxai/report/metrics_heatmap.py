"""Figure: every attribution metric of the run as a heatmap, methods × dataset/model.

One panel per metric family that scores attribution maps (registered metrics whose ``kinds`` include
``attribution`` and that are not ``universal``, such as ``runtime``, which has its own figure; plus
any family of ``all.csv`` that the metric registry does not know).  A panel shows the family's main id
(``pixel_flipping``); a family that writes no main id shows each of its sub-scores instead
(``localisation.mass``, ``.rank``, ``.pointing``).  Random baselines and per-step curve points
(``*.random``, ``*.k10``) are left to :mod:`nnxai.report.perturbation_curves`.

Colour is a *goodness* in [0, 1] per column (per dataset/model): min-max scaled over the methods of that
column and flipped when the metric's ``higher_is_better`` is false, so the best method of a column is
always the same colour whatever the metric's direction; a column whose methods tie is drawn at 0.5.
Families of unknown direction keep the raw order in grey.  The cells are annotated with the measured
values (mean over seeds); cells not measured are blank.  A sub-score takes its family's direction (the
registry declares one per metric), so a family whose sub-scores point different ways (an insertion area,
higher is better, beside a deletion area, lower is better) must write a main id to be drawn right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.metrics.base import metrics
from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item
from nnxai.report._results import (first_seen, format_value, is_attribution_row_method, method_order,
                                   parse_key, read_results)

NAME = "metrics_heatmap"
CMAP, CMAP_UNKNOWN = "viridis", "Greys"
PANEL_COLUMNS = 3
CAPTION = ("Attribution metrics of every method (rows, registry order) on every dataset/model (columns): "
           "the cells give the measured value (mean over seeds); the colour ranks the methods within a "
           "column, min-max scaled and oriented by the metric's direction, so that better is always "
           "yellow. Blank: not measured.")


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


def _draw_panel(ax, panel: Panel) -> None:
    """Seaborn's heatmap look, drawn directly: ``sns.heatmap`` redraws the whole figure once per panel
    to place its tick labels, which makes a many-panel figure slow."""
    import matplotlib
    import seaborn as sns
    from matplotlib.colors import Normalize
    from seaborn.utils import relative_luminance

    known = panel.higher_is_better is not None
    cmap = matplotlib.colormaps[CMAP if known else CMAP_UNKNOWN]
    norm = Normalize(0.0 if known else -0.3, 1.0)   # unknown direction: its lowest grey is not blank
    colours = np.ma.masked_invalid(panel.goodness.to_numpy(dtype=float))
    ax.pcolormesh(colours, cmap=cmap, norm=norm, edgecolors="white", linewidth=0.5)
    for (i, j), value in np.ndenumerate(panel.values.to_numpy(dtype=float)):
        if not np.isnan(value):
            dark = relative_luminance(cmap(norm(colours[i, j]))) <= 0.408   # seaborn's threshold
            ax.text(j + 0.5, i + 0.5, format_value(value), ha="center", va="center", fontsize=6,
                    color="white" if dark else "black")
    n_rows, n_cols = panel.values.shape
    ax.set(xlim=(0, n_cols), ylim=(n_rows, 0), title=panel.title)
    ax.set_xticks(np.arange(n_cols) + 0.5, panel.values.columns, rotation=90)
    ax.set_yticks(np.arange(n_rows) + 0.5, panel.values.index)
    ax.tick_params(length=0)
    ax.grid(False)
    sns.despine(ax=ax, left=True, bottom=True)


def _values_table(panels: list[Panel]) -> pd.DataFrame:
    parts = [p.values.rename_axis(index="method", columns="dataset/model").stack().rename("value")
             .reset_index().assign(metric=p.key) for p in panels]
    if not parts:
        return pd.DataFrame(columns=["metric", "method", "dataset/model", "value"])
    return pd.concat(parts)[["metric", "method", "dataset/model", "value"]]


@report_item("metrics_heatmap", kind="figure")
def write_metrics_heatmap(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw the attribution metrics of ``<workdir>/data/metrics/all.csv`` as ``metrics_heatmap.{pdf,png,html}``.

    A run without attribution metrics gives a figure that says so.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    panels = heatmap_panels(read_results(workdir))
    with figure_style():
        if not panels:
            fig = new_figure(6, 2)
            note(fig.add_subplot(), "no attribution metric in data/metrics/all.csv yet")
        else:
            n_rows, n_cells = panels[0].values.shape
            ncols = min(PANEL_COLUMNS, len(panels))
            nrows = math.ceil(len(panels) / ncols)
            fig = new_figure(ncols * (1.6 + 0.45 * n_cells), nrows * (1.6 + 0.22 * n_rows) + 0.6)
            axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
            for ax, panel in zip(axes, panels):
                _draw_panel(ax, panel)
            for ax in axes[len(panels):]:
                ax.set_axis_off()
            bar = fig.colorbar(ScalarMappable(Normalize(0, 1), CMAP), ax=list(axes), shrink=0.5, aspect=30,
                               label="rank within a column (min-max)", ticks=[0, 1])
            bar.ax.set_yticklabels(["worse", "better"])
        fig.suptitle("Attribution metrics per method and dataset/model")
        return save_figure(fig, out_dir, NAME, CAPTION, _values_table(panels))
