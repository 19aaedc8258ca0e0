"""Figure: the perturbation metrics of Section V as curves (or scores) per method, against random.

The survey's perturbation tests remove the features an explanation ranks first and watch the model:
pixel flipping / AOPC (Samek et al. [149]), insertion and deletion curves, and ROAR (remove and
retrain, Hooker et al. [150]).  For each of these families (:data:`CURVE_FAMILIES`, and any other family
of ``all.csv`` that writes per-step points) the figure has one row of panels, one panel per dataset:

- where ``all.csv`` holds per-step points (``roar.k10`` … ``roar.k90``, ``roar.random.k10`` …; one row
  per curve name, e.g. ``insertion_deletion.insertion.k10``), one line per method over the steps and
  the random baseline dashed;
- where it holds only a score per method (``pixel_flipping`` writes the AOPC and
  ``pixel_flipping.random``, no steps), one bar per method and the random score as a dashed line;
- where it holds nothing yet, a note says so.

Values are means over the models and seeds of a dataset (the random baseline also over methods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item
from nnxai.report._results import (first_seen, is_attribution_row_method, method_order, parse_key,
                                   read_results)

if TYPE_CHECKING:
    from matplotlib.lines import Line2D

NAME = "perturbation_curves"
#: The perturbation metrics of METHODS.md (Evaluation): always drawn, with a note while not measured.
CURVE_FAMILIES = ("pixel_flipping", "insertion_deletion", "roar")
RANDOM_STYLE = {"color": "black", "ls": "--", "lw": 1.2}
CAPTION = ("Perturbation metrics per dataset: where per-step values were measured, one curve per method "
           "over the perturbation steps k; otherwise the method's score as a bar; the random baseline "
           "dashed. Means over the dataset's models and seeds.")


@dataclass(frozen=True)
class CurveRow:
    """One row of panels: a family (and curve name), how it is drawn and the values, per dataset."""

    family: str
    curve: str
    style: str                #: "curve", "bars" or "empty"
    values: pd.DataFrame      #: columns dataset, method, step (NaN for bars), value
    random: pd.DataFrame      #: columns dataset, step, value: the random baseline

    @property
    def title(self) -> str:
        return ".".join(p for p in (self.family, self.curve) if p)


def _frame(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return rows.groupby(by, sort=False, dropna=False)["value"].mean().reset_index()


def _family_rows(family: str, rows: pd.DataFrame) -> list[CurveRow]:
    parsed = [parse_key(k) for k in rows["metric"]]
    keys = rows.assign(curve=[p.curve for p in parsed], random=[p.random for p in parsed],
                       step=[math.nan if p.step is None else p.step for p in parsed])
    stepped = keys[keys["step"].notna()]
    out = []
    if len(stepped):
        for curve in first_seen(stepped["curve"]):
            part = stepped[stepped["curve"] == curve]
            out.append(CurveRow(family, curve, "curve",
                                _frame(part[~part["random"]], ["dataset", "method", "step"]),
                                _frame(part[part["random"]], ["dataset", "step"])))
        return out
    scores = keys[~keys["random"]]
    main = scores[scores["curve"] == ""]
    curves = [""] if len(main) else sorted(set(scores["curve"]))
    for curve in curves:
        own, random = scores[scores["curve"] == curve], keys[keys["random"] & (keys["curve"] == curve)]
        out.append(CurveRow(family, curve, "bars", _frame(own, ["dataset", "method"]).assign(step=float("nan")),
                            _frame(random, ["dataset"]).assign(step=float("nan"))))
    return out


def curve_rows(frame: pd.DataFrame) -> list[CurveRow]:
    """The rows of the figure from the rows of all.csv, :data:`CURVE_FAMILIES` first.

    Parameters
    ----------
    frame : pandas.DataFrame
        :func:`nnxai.report._results.read_results` of a run.

    Returns
    -------
    list of CurveRow
        One per curve name of a family with per-step points, one per score of a family without, and
        one ``"empty"`` row for a family of :data:`CURVE_FAMILIES` that ``all.csv`` lacks.
    """
    rows = frame[frame["method"].map(is_attribution_row_method)]
    stepped = {parse_key(k).family for k in set(rows["metric"]) if parse_key(k).step is not None}
    families = list(CURVE_FAMILIES) + sorted(stepped - set(CURVE_FAMILIES))
    out = []
    for family in families:
        own = rows[rows["family"] == family]
        found = _family_rows(family, own) if len(own) else []
        empty = pd.DataFrame(columns=["dataset", "method", "step", "value"])
        out += found or [CurveRow(family, "", "empty", empty, empty.drop(columns="method"))]
    return out


def _draw_curves(ax, row: CurveRow, dataset: str, palette: dict) -> None:
    import seaborn as sns

    values = row.values[row.values["dataset"] == dataset]
    sns.lineplot(values, x="step", y="value", hue="method", hue_order=[m for m in palette if m in
                 set(values["method"])], palette=palette, errorbar=None, marker="o", markersize=3,
                 linewidth=1, ax=ax, legend=False)
    random = row.random[row.random["dataset"] == dataset].sort_values("step")
    ax.plot(random["step"], random["value"], **RANDOM_STYLE)
    ax.set_xlabel("k (perturbation step)")


def _draw_bars(ax, row: CurveRow, dataset: str, palette: dict) -> None:
    import seaborn as sns

    values = row.values[row.values["dataset"] == dataset]
    order = [m for m in palette if m in set(values["method"])]
    sns.barplot(values, x="value", y="method", order=order, hue="method", hue_order=order,
                palette=palette, errorbar=None, ax=ax, legend=False)
    for value in row.random.loc[row.random["dataset"] == dataset, "value"].dropna():
        ax.axvline(value, **RANDOM_STYLE)
    ax.set_xlabel(f"{row.title} score")


def _values_table(rows: list[CurveRow]) -> pd.DataFrame:
    parts = [r.values.assign(metric=r.title) for r in rows if len(r.values)]
    parts += [r.random.assign(metric=r.title, method="random") for r in rows if len(r.random)]
    columns = ["metric", "dataset", "method", "step", "value"]
    return pd.concat(parts)[columns] if parts else pd.DataFrame(columns=columns)


@report_item("perturbation_curves", kind="figure")
def write_perturbation_curves(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw the perturbation metrics of ``<workdir>/data/metrics/all.csv`` as ``perturbation_curves.*``."""
    import seaborn as sns

    rows = curve_rows(read_results(workdir))
    drawn = [r for r in rows if r.style != "empty"]
    datasets = first_seen(d for r in drawn for d in r.values["dataset"])
    methods = method_order({m for r in drawn for m in r.values["method"]})
    palette = dict(zip(methods, sns.color_palette("tab20" if len(methods) <= 20 else "husl", len(methods))))
    n_methods = max(len(methods), 1)
    ncols = max(len(datasets), 1)
    heights = [0.9 if r.style == "empty" else max(2.2, 0.17 * n_methods + 0.8) for r in rows]
    with figure_style():
        fig = new_figure(2.4 + 2.8 * ncols, sum(heights) + 0.8)
        grid = fig.add_gridspec(len(rows), ncols, height_ratios=heights)
        for i, row in enumerate(rows):
            if row.style == "empty":
                note(fig.add_subplot(grid[i, :]), f"{row.title}: no values in data/metrics/all.csv yet")
                continue
            for j, dataset in enumerate(datasets):
                ax = fig.add_subplot(grid[i, j])
                if not (row.values["dataset"] == dataset).any():
                    note(ax, f"{row.title}: not measured on {dataset}")
                    continue
                (_draw_curves if row.style == "curve" else _draw_bars)(ax, row, dataset, palette)
                ax.set_title(f"{row.title} — {dataset}")
                ax.set_ylabel("" if row.style == "bars" else row.title)
        in_curves = {m for r in drawn if r.style == "curve" for m in r.values["method"]}
        handles = [_line(colour, m) for m, colour in palette.items() if m in in_curves]
        fig.legend(handles=handles + [_line("black", "random order", "--")], loc="outside right upper",
                   frameon=False)
        fig.suptitle("Perturbation metrics: explanation-ordered vs random perturbation (dashed)")
        return save_figure(fig, out_dir, NAME, CAPTION, _values_table(rows))


def _line(colour, label: str, ls: str = "-") -> Line2D:
    from matplotlib.lines import Line2D

    return Line2D([], [], color=colour, ls=ls, marker="o" if ls == "-" else None, markersize=3, label=label)
