"""Figure: seconds per explained input of every method, per dataset (log scale).

From the ``runtime`` metric of ``all.csv`` (:class:`nnxai.metrics.runtime.Runtime`: wall-clock seconds
of the explain stage divided by the number of inputs explained, so set-up work such as training an
explainer is spread over the inputs).  One row per method (registry order), one dot per model, coloured by
dataset; the x axis is logarithmic, as the methods span orders of magnitude.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item
from nnxai.report._results import MODEL_ROWS, first_seen, method_order, read_results

NAME = "runtime"
METRIC = "runtime"
CAPTION = ("Measured seconds per explained input of each method (log scale): one dot per model, "
           "coloured by dataset.")


def runtime_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``runtime`` rows of all.csv with a positive value, in registry order of the methods.

    Returns columns ``method, dataset, model, seconds`` (mean over seeds); a NaN or non-positive time
    cannot sit on a log axis and is left out.
    """
    rows = frame[(frame["metric"] == METRIC) & (frame["method"] != MODEL_ROWS) & (frame["value"] > 0)]
    values = (rows.groupby(["method", "dataset", "model"], sort=False)["value"].mean()
              .rename("seconds").reset_index())
    order = {m: i for i, m in enumerate(method_order(values["method"]))}
    return values.sort_values("method", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


@report_item("runtime", kind="figure")
def write_runtime(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw the ``runtime`` metric of ``<workdir>/data/metrics/all.csv`` as ``runtime.{pdf,png,html}``."""
    import seaborn as sns

    values = runtime_values(read_results(workdir))
    methods, datasets = first_seen(values["method"]), first_seen(values["dataset"])
    with figure_style():
        fig = new_figure(7.5, 1.4 + 0.24 * max(len(methods), 3))
        ax = fig.add_subplot()
        if values.empty:
            note(ax, "no runtime in data/metrics/all.csv yet")
        else:
            sns.stripplot(values, x="seconds", y="method", order=methods, hue="dataset", hue_order=datasets,
                          palette=sns.color_palette("colorblind", len(datasets)), jitter=False, dodge=True,
                          size=4, ax=ax)
            ax.set_xscale("log")
            ax.set_xlabel("seconds per explained input (log scale)")
            ax.set_ylabel("")
            sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="dataset")
        fig.suptitle("Runtime per method")
        return save_figure(fig, out_dir, NAME, CAPTION, values)
