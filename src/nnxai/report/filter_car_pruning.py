"""Figure: the pruning check of filter CAR, Abbasi-Asl & Yu (2017; 2nd survey [51]), on every model it ran on.

The paper ranks a CNN's filters by their classification accuracy reduction (CAR) and claims that pruning the
filters of least CAR costs less accuracy than pruning as many at random, and pruning those of most CAR the
most.  From ``data/metrics/all.csv`` (:mod:`nnxai.metrics.filter_car`: each conv layer's ``k`` filters pruned at
once, on held-out test inputs):

* (a) one row per (data set, model): the accuracy drop of the least-CAR filters (``accuracy_drop``), of random
  ones (``.random``) and of the most-CAR ones (``.most``), mean over the layers, with 95 % intervals;
* (b) the same per conv layer (``accuracy_drop[.random|.most].<layer>``) of the ``baseline`` networks,
  which shows the layer where a one-shot ranking fails (see :mod:`nnxai.metrics.filter_car`).

A ranking that holds puts the least-CAR dot left of the random one, and the random one left of the most-CAR
one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item
from nnxai.report._results import first_seen, read_results
from nnxai.report._dot_rows import ROW_INCHES, TABLE_COLUMNS, cells_of, draw_series, series_table

NAME = "filter_car_pruning"
METHOD = "filter_car"
KEY = "accuracy_drop"
KINDS = {"least CAR": "", "random": ".random", "most CAR": ".most"}   #: series label -> key suffix
COLOURS = {"least CAR": "#1f77b4", "random": "0.45", "most CAR": "#d62728"}
BASELINE = "baseline"
CAPTION = ("Filter CAR pruning [2nd: 51]: accuracy lost when each conv layer's k filters of least classification "
           "accuracy reduction (CAR) are pruned at once, against k random filters and the k of most CAR, on "
           "held-out test inputs; (a) mean over the layers per model (95 % intervals), (b) per layer of the "
           "baseline networks.  A ranking that holds puts blue left of grey left of red.")


def overall(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Panel (a): the rows of :func:`~nnxai.report._dot_rows.series_table` and its cells."""
    cells = cells_of(frame, METHOD)
    return series_table(frame, cells, {label: (METHOD, KEY + s) for label, s in KINDS.items()}), cells


def per_layer(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Panel (b): the per-layer drops of the baseline networks, a cell ``(dataset, layer)`` each (the table's
    ``model`` column holds the layer)."""
    rows = frame[(frame["method"] == METHOD) & (frame["model"] == BASELINE)]
    layer_keys = rows[rows["metric"].str.fullmatch(rf"{KEY}\.(?!random$|most$)[^.]+")]
    cells = first_seen(zip(layer_keys["dataset"], layer_keys["metric"].str.split(".").str[-1]))
    tables = [series_table(rows, [(dataset, BASELINE)], {label: (METHOD, f"{KEY}{s}.{layer}")
                                                         for label, s in KINDS.items()}).assign(model=layer)
              for dataset, layer in cells]
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=TABLE_COLUMNS[1:])), cells


def _draw(fig, panel_a, cells_a, panel_b, cells_b) -> None:
    from nnxai.report._heatmaps import text_width

    width, height = fig.get_size_inches()
    label = text_width(fig, [f"{d} / {m}" for d, m in cells_a + cells_b], 7) + 0.15
    top, gap, bottom = 0.85, 0.75, 0.45   # inches: titles and legend, between the panels, x label
    spec = fig.add_gridspec(2, 1, left=label / width, right=1 - 0.12 / width, top=1 - top / height,
                            bottom=bottom / height, hspace=gap / ((height - top - bottom - gap) / 2),
                            height_ratios=[max(len(cells_a), 1), max(len(cells_b), 1)])
    ax_a, ax_b = fig.add_subplot(spec[0]), fig.add_subplot(spec[1])
    draw_series(ax_a, panel_a, cells_a, COLOURS, "accuracy drop (mean over the conv layers)")
    ax_a.set_title("(a) per model", loc="left")
    if cells_b:
        draw_series(ax_b, panel_b, cells_b, COLOURS, "accuracy drop of the layer")
        ax_b.set_title("(b) per layer, baseline networks", loc="left")
    else:
        note(ax_b, "no per-layer accuracy_drop of a baseline network")
    ax_a.legend(loc="lower left", bbox_to_anchor=(0.0, 1.12), ncols=3, frameon=False, borderaxespad=0)
    fig.suptitle("Filter CAR pruning [2nd: 51]: least-CAR, random and most-CAR filters")


@report_item(NAME, kind="figure")
def write_filter_car_pruning(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw ``filter_car_pruning.{pdf,png,html}`` from ``<workdir>/data/metrics/all.csv``."""
    frame = read_results(workdir)
    (panel_a, cells_a), (panel_b, cells_b) = overall(frame), per_layer(frame)
    values = pd.concat([panel_a.assign(panel="per model"),
                        panel_b.rename(columns={"model": "layer"}).assign(model=BASELINE, panel="per layer")])
    values = values.reindex(columns=["panel", "dataset", "model", "layer", *TABLE_COLUMNS[3:]])
    with figure_style():
        if panel_a.empty:
            fig = new_figure(7.0, 1.5)
            note(fig.add_subplot(), f"no {METHOD} {KEY} in data/metrics/all.csv yet")
        else:
            fig = new_figure(6.0, 2.05 + ROW_INCHES * (len(cells_a) + max(len(cells_b), 1)) * 1.15)
            fig.set_layout_engine("none")
            _draw(fig, panel_a, cells_a, panel_b, cells_b)
        return save_figure(fig, out_dir, NAME, CAPTION, values)
