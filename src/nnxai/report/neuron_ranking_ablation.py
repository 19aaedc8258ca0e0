"""Figure: the ablation check of neuron ranking, Dalvi et al. [100] (AAAI 2019), on every model it ran on.

The paper ranks a network's neurons by the weights of elastic-net concept probes and checks the ranking by
ablation: zeroing the top-ranked neurons must cost more accuracy than zeroing as many random neurons, and
those more than the bottom-ranked ones.  One row per (data set, model) with a ``neuron_ranking`` record, the
drops of :mod:`nnxai.metrics.neuron_ranking` from ``data/metrics/all.csv`` with their 95 % intervals:

* (a) the probes' accuracy drop (``ablation_drop.top`` / ``.random`` / ``.bottom``: the zeroed neurons'
  terms leave the probes, the paper's measure);
* (b) the network's own accuracy drop with the same neurons zeroed inside it (``ablation_drop.network_top``
  / ``.network_random`` / ``.network_bottom``).

A ranking that holds puts the top dot right of the random one, and the random one right of the bottom one.
The rows are drawn by :mod:`nnxai.report._dot_rows`, shared with the other all.csv figures of
hidden-semantics checks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nnxai.report._dot_rows import ROW_INCHES, TABLE_COLUMNS, cells_of, draw_series, series_axes, series_table
from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item
from nnxai.report._results import read_results

NAME = "neuron_ranking_ablation"
METHOD = "neuron_ranking"
#: series label -> (method, all.csv key), per panel
PROBE = {"top-ranked": (METHOD, "ablation_drop.top"), "random": (METHOD, "ablation_drop.random"),
         "bottom-ranked": (METHOD, "ablation_drop.bottom")}
NETWORK = {"top-ranked": (METHOD, "ablation_drop.network_top"), "random": (METHOD, "ablation_drop.network_random"),
           "bottom-ranked": (METHOD, "ablation_drop.network_bottom")}
COLOURS = {"top-ranked": "#d62728", "random": "0.45", "bottom-ranked": "#1f77b4"}
CAPTION = ("Neuron ranking [100]: accuracy lost when the top-ranked neurons are zeroed, against as many random "
           "neurons and the bottom-ranked ones (95 % intervals over the held-out inputs); (a) the concept probes' "
           "accuracy, (b) the network's.  A ranking that holds puts red right of grey right of blue.")
def _draw(fig, probe: pd.DataFrame, network: pd.DataFrame, cells: list[tuple[str, str]]) -> None:
    axes = series_axes(fig, cells, 2)
    for ax, table, title in ((axes[0], probe, "(a) concept probes"), (axes[1], network, "(b) the network")):
        draw_series(ax, table, cells, COLOURS, "accuracy drop", labels=ax is axes[0])
        ax.set_title(title)
    axes[0].legend(loc="lower left", bbox_to_anchor=(0.0, 1.07), ncols=3, frameon=False, borderaxespad=0)
    fig.suptitle("Neuron ranking [100]: ablating top-ranked, random and bottom-ranked neurons")


@report_item(NAME, kind="figure")
def write_neuron_ranking_ablation(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw ``neuron_ranking_ablation.{pdf,png,html}`` from ``<workdir>/data/metrics/all.csv``."""
    frame = read_results(workdir)
    cells = cells_of(frame, METHOD)
    probe, network = series_table(frame, cells, PROBE), series_table(frame, cells, NETWORK)
    values = pd.concat([probe.assign(panel="probes"), network.assign(panel="network")])[TABLE_COLUMNS]
    with figure_style():
        if values.empty:
            fig = new_figure(7.0, 1.5)
            note(fig.add_subplot(), f"no {METHOD} ablation_drop in data/metrics/all.csv yet")
        else:
            fig = new_figure(7.0, 1.2 + ROW_INCHES * len(cells))
            _draw(fig, probe, network, cells)
        return save_figure(fig, out_dir, NAME, CAPTION, values)
