"""Dot rows with intervals: the layout of the all.csv figures of the hidden-semantics checks.

One row per (data set, model), one dot per series with its 95 % interval as a horizontal bar
(:func:`draw_series`), from the rows :func:`series_table` picks out of ``data/metrics/all.csv``.  Used by
:mod:`~nnxai.report.neuron_ranking_ablation`, :mod:`~nnxai.report.filter_car_pruning`,
:mod:`~nnxai.report.mimic_fidelity` and :mod:`~nnxai.report.net2vec_iou`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nnxai.report._results import first_seen

TABLE_COLUMNS = ["panel", "dataset", "model", "series", "method", "metric", "value", "low", "high"]
ROW_INCHES = 0.15   #: height of one (data set, model) row


def _numeric(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows.columns:
        return pd.Series(np.nan, index=rows.index)
    return pd.to_numeric(rows[column].replace({"": "nan", "None": "nan"}), errors="coerce")


def cells_of(frame: pd.DataFrame, method: str) -> list[tuple[str, str]]:
    """The (data set, model) pairs ``method`` has rows for: data sets in all.csv order, ``baseline`` first."""
    rows = frame[frame["method"] == method]
    cells = first_seen(zip(rows["dataset"], rows["model"]))
    datasets = first_seen(d for d, _ in cells)
    return sorted(cells, key=lambda c: (datasets.index(c[0]), c[1] != "baseline", cells.index(c)))


def series_table(frame: pd.DataFrame, cells: list[tuple[str, str]], series: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """One row per cell and series measured there: ``dataset, model, series, method, metric, value, low,
    high`` (the interval NaN where all.csv has none), in the order of ``cells`` then ``series``."""
    methods, keys = {m for m, _ in series.values()}, {k for _, k in series.values()}
    wanted = frame[frame["method"].isin(methods) & frame["metric"].isin(keys)]
    wanted = wanted.assign(low=_numeric(wanted, "ci_low"), high=_numeric(wanted, "ci_high"))
    first = wanted.drop_duplicates(["dataset", "model", "method", "metric"]).set_index(
        ["dataset", "model", "method", "metric"])
    rows = []
    for dataset, model in cells:
        for label, (method, key) in series.items():
            if (dataset, model, method, key) in first.index:
                hit = first.loc[(dataset, model, method, key)]
                rows.append({"dataset": dataset, "model": model, "series": label, "method": method, "metric": key,
                             "value": float(hit["value"]), "low": float(hit["low"]), "high": float(hit["high"])})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS[1:])


def draw_series(ax, table: pd.DataFrame, cells: list[tuple[str, str]], colours: dict[str, str],
                xlabel: str, labels: bool = True) -> None:
    """One row per cell (top to bottom), one dot per series with its interval as a horizontal bar, the series
    dodged a little apart; a thin line between data sets.  Each series is one line artist labelled with it."""
    offsets = np.linspace(-0.22, 0.22, len(colours)) if len(colours) > 1 else np.zeros(1)
    position = {cell: i for i, cell in enumerate(cells)}
    for offset, (label, colour) in zip(offsets, colours.items()):
        part = table[table["series"] == label]
        if part.empty:
            continue
        y = np.array([position[(d, m)] for d, m in zip(part["dataset"], part["model"])]) + offset
        values = part["value"].to_numpy(dtype=float)
        low = np.nan_to_num(values - part["low"].to_numpy(dtype=float), nan=0.0).clip(min=0)
        high = np.nan_to_num(part["high"].to_numpy(dtype=float) - values, nan=0.0).clip(min=0)
        ax.errorbar(values, y, xerr=[low, high], fmt="o", ms=3.2, color=colour, ecolor=colour, elinewidth=0.8,
                    capsize=0, label=label)
    ax.axvline(0.0, color="0.3", lw=0.6, zorder=0)
    for i in range(1, len(cells)):
        if cells[i][0] != cells[i - 1][0]:
            ax.axhline(i - 0.5, color="0.6", lw=0.6)
    ax.set_yticks(range(len(cells)), [f"{d} / {m}" for d, m in cells] if labels else [])
    ax.tick_params(axis="y", length=0)
    ax.grid(False, axis="y")
    ax.set_ylim(len(cells) - 0.5, -0.5)
    ax.set_xlabel(xlabel)


def series_axes(fig, cells: list[tuple[str, str]], panels: int, top: float = 0.85, bottom: float = 0.45) -> list:
    """``panels`` axes side by side under ``top`` inches (titles, legend) and over ``bottom`` inches (x labels),
    their left edge just right of the widest row label.  Laid out by hand: the constrained layout keeps as
    much room left of every panel as left of the first, which the row labels need only there."""
    from nnxai.report._heatmaps import text_width

    fig.set_layout_engine("none")
    width, height = fig.get_size_inches()
    left = text_width(fig, [f"{d} / {m}" for d, m in cells], 7) + 0.15
    margins = {"left": left / width, "right": 1 - 0.12 / width, "top": 1 - top / height,
               "bottom": bottom / height, "wspace": 0.08}
    return list(fig.subplots(1, panels, squeeze=False, gridspec_kw=margins)[0])
