"""Figure: Net2Vec's headline, Fong & Vedaldi [99] (CVPR 2018): a concept is coded by several filters.

Net2Vec learns, per concept, a linear combination of a layer's filters whose thresholded response segments
the concept, and compares it with the best single filter; its abstract: "in most cases, multiple filters are
required to code for a concept".  Both IoUs are measured on held-out test images
(:mod:`nnxai.methods.hidden_semantics.net2vec`, :mod:`nnxai.metrics.net2vec`):

* (a) per concept, from the ``baseline`` network's record (``meta["scores"]`` at its ``headline_layer``, the
  deepest conv layer, the paper's conv5): the set IoU of the multi-filter segmentation (``seg_iou``) beside
  that of the best single filter (``single_iou``);
* (b) per model, from ``data/metrics/all.csv``: their means over the concepts, ``concept_seg_iou`` and
  ``concept_seg_iou.single``, with 95 % bootstrap intervals over the concepts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item
from nnxai.report._results import read_results
from nnxai.report._dot_rows import ROW_INCHES, TABLE_COLUMNS, cells_of, draw_series, series_table

NAME = "net2vec_iou"
METHOD = "net2vec"
BASELINE = "baseline"
MULTI, SINGLE = "multi-filter", "best single filter"
COLOURS = {MULTI: "#1f77b4", SINGLE: "#ff7f0e"}
MEANS = {MULTI: (METHOD, "concept_seg_iou"), SINGLE: (METHOD, "concept_seg_iou.single")}
CONCEPT_COLUMNS = ["dataset", "layer", "concept", "multi_filter_iou", "single_filter_iou", "single_filter"]
CAPTION = ("Net2Vec [99]: held-out segmentation IoU of each concept's multi-filter embedding against the best "
           "single filter, (a) per concept on the baseline network at its deepest conv layer (the paper's "
           "conv5), (b) the mean over the concepts per model (95 % bootstrap interval over the concepts).")


def concept_ious(workdir: Path) -> pd.DataFrame:
    """One row per (data set, concept) of the baseline networks' records at their headline layer
    (``CONCEPT_COLUMNS``); concepts with no segmentation score are left out."""
    from nnxai.explanations import load_explanation

    rows = []
    for path in sorted(Path(workdir).glob(f"data/explanations/*/{BASELINE}/{METHOD}.json")):
        meta = load_explanation(path).meta
        layer = meta.get("headline_layer")
        for concept, score in (meta.get("scores") or {}).get(layer, {}).items():
            if score.get("seg_iou") is None or score.get("single_iou") is None:
                continue
            rows.append({"dataset": path.parent.parent.name, "layer": layer, "concept": concept,
                         "multi_filter_iou": float(score["seg_iou"]), "single_filter_iou": float(score["single_iou"]),
                         "single_filter": score.get("single_filter")})
    return pd.DataFrame(rows, columns=CONCEPT_COLUMNS)


def draw_concepts(ax, concepts: pd.DataFrame) -> None:
    """Two horizontal bars per concept (multi-filter above, best single filter below), top to bottom."""
    y = np.arange(len(concepts))
    ax.barh(y - 0.2, concepts["multi_filter_iou"], height=0.38, color=COLOURS[MULTI], label=MULTI)
    ax.barh(y + 0.2, concepts["single_filter_iou"], height=0.38, color=COLOURS[SINGLE], label=SINGLE)
    labels = [f"{d} / {c}" for d, c in zip(concepts["dataset"], concepts["concept"])]
    ax.set_yticks(y, labels)
    ax.tick_params(axis="y", length=0)
    ax.grid(False, axis="y")
    ax.set_ylim(len(concepts) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("held-out set IoU with the concept masks")


def _draw(fig, concepts: pd.DataFrame, means: pd.DataFrame, cells: list[tuple[str, str]]) -> None:
    from nnxai.report._heatmaps import text_width

    width, height = fig.get_size_inches()
    labels = [f"{d} / {c}" for d, c in zip(concepts["dataset"], concepts["concept"])] + [f"{d} / {m}" for d, m in cells]
    left, top, gap, bottom = text_width(fig, labels, 7) + 0.15, 0.85, 0.75, 0.45   # inches
    spec = fig.add_gridspec(2, 1, left=left / width, right=1 - 0.12 / width, top=1 - top / height,
                            bottom=bottom / height, hspace=gap / ((height - top - bottom - gap) / 2),
                            height_ratios=[max(len(concepts), 1), max(len(cells), 1)])
    ax_a, ax_b = fig.add_subplot(spec[0]), fig.add_subplot(spec[1])
    if concepts.empty:
        note(ax_a, f"no {METHOD} record of a {BASELINE} network")
    else:
        draw_concepts(ax_a, concepts)
        ax_a.set_title(f"(a) per concept, {BASELINE} network, layer {', '.join(concepts['layer'].unique())}",
                       loc="left")
    if cells:
        draw_series(ax_b, means, cells, COLOURS, "mean IoU over the concepts")
        ax_b.set_xlim(0, 1)
        ax_b.set_title("(b) per model", loc="left")
    else:
        note(ax_b, f"no {METHOD} concept_seg_iou in data/metrics/all.csv")
    handles = [ax.get_legend_handles_labels() for ax in (ax_a, ax_b)]
    source = next((h for h in handles if h[0]), None)
    if source:
        ax_a.legend(*source, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncols=2, frameon=False, borderaxespad=0)
    fig.suptitle("Net2Vec [99]: multi-filter embeddings against the best single filter")


@report_item(NAME, kind="figure")
def write_net2vec_iou(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw ``net2vec_iou.{pdf,png,html}`` from the baseline records and ``<workdir>/data/metrics/all.csv``."""
    frame = read_results(workdir)
    concepts, cells = concept_ious(Path(workdir)), cells_of(frame, METHOD)
    means = series_table(frame, cells, MEANS)
    values = pd.concat([concepts.melt(id_vars=["dataset", "layer", "concept"],
                                      value_vars=["multi_filter_iou", "single_filter_iou"], var_name="series")
                        .assign(panel="per concept", model=BASELINE),
                        means.assign(panel="per model")])
    values = values.reindex(columns=["panel", "dataset", "model", "layer", "concept", *TABLE_COLUMNS[3:]])
    with figure_style():
        if concepts.empty and means.empty:
            fig = new_figure(7.0, 1.5)
            note(fig.add_subplot(), f"no {METHOD} record or concept_seg_iou in this run yet")
        else:
            fig = new_figure(6.0, 2.05 + ROW_INCHES * 1.3 * (max(len(concepts), 1) + max(len(cells), 1)))
            fig.set_layout_engine("none")
            _draw(fig, concepts, means, cells)
        return save_figure(fig, out_dir, NAME, CAPTION, values)
