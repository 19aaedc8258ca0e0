"""Figure: how closely the shallow mimic follows its network, Ba & Caruana (2nd survey [50]), per model.

The mimic is a one-hidden-layer network trained by L2 regression on the deep network's logits
(:mod:`nnxai.methods.hidden_semantics.mimic`); the paper's claim is that it reaches the deep network's accuracy.
From ``data/metrics/all.csv`` (:func:`nnxai.metrics.rules.surrogate_fidelity`, on held-out test inputs), one
row per (data set, model) with a ``mimic`` record, with 95 % intervals:

* (a) agreement: ``fidelity`` (the fraction of inputs on which the mimic predicts the network's class) beside
  the mimic's accuracy on the labels (``fidelity.label_accuracy``) and the network's own (the model's
  ``accuracy``): a faithful mimic sits near 1, and its accuracy near the network's;
* (b) the logits: ``fidelity.logit_mse``, the mean squared difference of the mimic's logits from the network's
  (the loss it was trained on, on held-out inputs; lower is closer), on a log scale.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nnxai.paths import MODEL_ROW
from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item
from nnxai.report._results import read_results
from nnxai.report._dot_rows import ROW_INCHES, TABLE_COLUMNS, cells_of, draw_series, series_axes, \
    series_table

NAME = "mimic_fidelity"
METHOD = "mimic"
AGREEMENT = {"mimic agrees with the network": (METHOD, "fidelity"),
             "mimic accuracy": (METHOD, "fidelity.label_accuracy"),
             "network accuracy": (MODEL_ROW, "accuracy")}
LOGITS = {"logit MSE (held out)": (METHOD, "fidelity.logit_mse")}
COLOURS = {"mimic agrees with the network": "#2ca02c", "mimic accuracy": "#ff7f0e", "network accuracy": "0.25"}
CAPTION = ("The shallow mimic network [2nd: 50] against the network it mimics, on held-out test inputs (95 % "
           "intervals): (a) the fraction of inputs on which the mimic predicts the network's class, and the "
           "mimic's and the network's accuracy on the labels; (b) the mean squared difference of their logits, "
           "the mimic's training loss (log scale).")


def _draw(fig, agreement: pd.DataFrame, logits: pd.DataFrame, cells: list[tuple[str, str]]) -> None:
    ax_a, ax_b = series_axes(fig, cells, 2)
    draw_series(ax_a, agreement, cells, COLOURS, "fraction of the test inputs")
    draw_series(ax_b, logits, cells, {"logit MSE (held out)": "#9467bd"}, "mean squared logit difference",
                labels=False)
    ax_a.set_title("(a) agreement and accuracy")
    ax_b.set_title("(b) logits")
    if (logits["value"] > 0).all() and not logits.empty:
        ax_b.set_xscale("log")
    ax_a.legend(loc="lower left", bbox_to_anchor=(0.0, 1.07), ncols=3, frameon=False, borderaxespad=0)
    fig.suptitle("Mimic network [2nd: 50] against the network it mimics")


@report_item(NAME, kind="figure")
def write_mimic_fidelity(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw ``mimic_fidelity.{pdf,png,html}`` from ``<workdir>/data/metrics/all.csv``."""
    frame = read_results(workdir)
    cells = cells_of(frame, METHOD)
    agreement, logits = series_table(frame, cells, AGREEMENT), series_table(frame, cells, LOGITS)
    values = pd.concat([agreement.assign(panel="agreement"), logits.assign(panel="logits")])[TABLE_COLUMNS]
    with figure_style():
        if agreement.empty and logits.empty:
            fig = new_figure(7.0, 1.5)
            note(fig.add_subplot(), f"no {METHOD} fidelity in data/metrics/all.csv yet")
        else:
            fig = new_figure(7.0, 1.3 + ROW_INCHES * 1.3 * len(cells))
            _draw(fig, agreement, logits, cells)
        return save_figure(fig, out_dir, NAME, CAPTION, values)
