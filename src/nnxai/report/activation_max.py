"""Figure: activation maximisation with the survey's regularisers (Sec. III-B-1, [71], [93]-[98]).

One grid per model that ``activation_max`` explained: a row per class score and visualised channel, a
column per regulariser, each cell the synthesised input shown over the data set's input range.  A grid is
drawn as one mosaic image (one axis per model, not one per cell), so a run of ~20 models draws quickly.
:func:`mosaic` builds one grid; :func:`write_activation_max` is the report figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item

NAME = "activation_max"
METHOD = "activation_max"
CHANNELS_SHOWN = 2   #: channels drawn per layer (the lowest-numbered of those visualised); the CSV holds all
CAPTION = ("Activation maximisation: for each model (panel), the input that maximises each class score (rows "
           "'class ...') and each visualised channel (rows 'layer #unit', the most active channels on real "
           "inputs; on shapes with the concept the probes read in the robust image) under each regulariser of "
           "the survey (columns): none, Erhan et al. [93] (norm ball only); L2, Simonyan et al. [71]; blur/deblur, "
           "Wang et al. [94]; total variation, Mahendran & Vedaldi [95]; Yosinski et al. [96] (decay, blur, "
           "clipping); a generator trained here on the train split, Nguyen et al. [97]; decorrelated Fourier "
           "parameterisation with transformation robustness, Olah et al. [98].  Pixels over the data set's input "
           f"range.  At most {CHANNELS_SHOWN} channels per layer are drawn (the lowest-numbered of those visualised); "
           "the figure's values list every visualised unit.")
SHORT = {"none": "none [93]", "l2": "L2 [71]", "blur": "blur [94]", "total_variation": "TV [95]",
         "yosinski": "Yosinski [96]", "generator": "generator [97]", "robust": "robust [98]"}
GRIDS_PER_ROW = 3
GAP = 2   # px between cells


def _rgb(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """(C, H, W) over [low, high] -> (H, W, 3) in [0, 1] (one channel repeated)."""
    x = (np.asarray(image, dtype=np.float64) - low) / ((high - low) or 1.0)
    x = np.clip(x, 0.0, 1.0)
    x = np.repeat(x, 3, axis=0) if x.shape[0] == 1 else x[:3]
    return np.transpose(x, (1, 2, 0))


def _row_label(unit: dict, concept: str | None) -> str:
    if unit["layer"] == "logits":
        return f"class {unit.get('class_name', unit['unit'])}"
    return f"{unit['layer']} #{unit['unit']}" + (f"\n{concept}" if concept else "")


def drawn_rows(units: list[dict], per_layer: int = CHANNELS_SHOWN) -> list[tuple[str, int]]:
    """The ``(layer, unit)`` rows a grid draws, in the record's order: every class, and the
    ``per_layer`` lowest-numbered visualised channels of each layer."""
    rows = list(dict.fromkeys((u["layer"], int(u["unit"])) for u in units))
    kept = {}
    for layer, unit in rows:
        kept.setdefault(layer, []).append(unit)
    kept = {layer: set(sorted(found)[:per_layer]) for layer, found in kept.items()}
    return [(layer, unit) for layer, unit in rows if layer == "logits" or unit in kept[layer]]


def mosaic(record) -> tuple[np.ndarray, list[str], list[str]]:
    """The grid of one record: ``(image (rows·(H+GAP), cols·(W+GAP), 3), row labels, column labels)``, the
    rows those of :func:`drawn_rows`."""
    low, high = record.meta.get("input_range", [0.0, 1.0])
    columns = list(dict.fromkeys(u["regulariser"] for u in record.units))
    rows = {row: r for r, row in enumerate(drawn_rows(record.units))}
    h, w = record.images.shape[-2:]
    canvas = np.ones((len(rows) * (h + GAP), len(columns) * (w + GAP), 3))
    labels = {}
    for image, unit in zip(record.images, record.units):
        r = rows.get((unit["layer"], int(unit["unit"])))
        if r is None:
            continue
        c = columns.index(unit["regulariser"])
        canvas[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = _rgb(image, low, high)
        if (r not in labels) or unit["regulariser"] == "robust":
            labels[r] = _row_label(unit, unit.get("concept") if unit["regulariser"] == "robust" else None)
    return canvas, [labels[r] for r in range(len(rows))], [SHORT.get(c, c) for c in columns]


def records(workdir: Path) -> list[tuple[str, str, Path]]:
    """``(dataset, model, path)`` of every ``activation_max`` record of the run, baseline models first."""
    found = [(p.parent.parent.name, p.parent.name, p)
             for p in Path(workdir).glob(f"data/explanations/*/*/{METHOD}.npz")]
    return sorted(found, key=lambda f: (f[0], f[1] != "baseline", f[1]))


def _draw(ax, canvas, row_labels, col_labels, title, h, w):
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([(w + GAP) * c + w / 2 - 0.5 for c in range(len(col_labels))], col_labels, rotation=60,
                  fontsize=5, ha="right", rotation_mode="anchor")
    ax.set_yticks([(h + GAP) * r + h / 2 - 0.5 for r in range(len(row_labels))], row_labels, fontsize=5)
    ax.tick_params(length=0, pad=1)
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=7)


@report_item(NAME, kind="figure")
def write_activation_max(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw every ``activation_max`` record of ``<workdir>/data/explanations`` as one grid per model."""
    from nnxai.explanations import load_explanation

    grids, values = [], []
    for dataset, model, path in records(workdir):
        record = load_explanation(path)
        canvas, row_labels, col_labels = mosaic(record)
        grids.append((dataset, model, canvas, row_labels, col_labels, record.images.shape[-2:]))
        values += [{"dataset": dataset, "model": model, "layer": u["layer"], "unit": int(u["unit"]),
                    "regulariser": u["regulariser"], "activation": u.get("activation"),
                    "concept": u.get("concept", u.get("class_name", ""))} for u in record.units]
    columns = ["dataset", "model", "layer", "unit", "regulariser", "activation", "concept"]
    with figure_style():
        if not grids:
            fig = new_figure(7.5, 1.5)
            note(fig.add_subplot(), "no activation_max explanations in data/explanations yet")
            return save_figure(fig, out_dir, NAME, CAPTION, pd.DataFrame(values, columns=columns))
        lines = [grids[i:i + GRIDS_PER_ROW] for i in range(0, len(grids), GRIDS_PER_ROW)]
        heights = [0.55 + 0.24 * max(len(g[3]) for g in line) for line in lines]
        fig = new_figure(7.5, 0.3 + sum(heights))
        specs = fig.add_gridspec(len(lines), GRIDS_PER_ROW, height_ratios=heights)
        for r, line in enumerate(lines):
            for c, (dataset, model, canvas, row_labels, col_labels, (h, w)) in enumerate(line):
                _draw(fig.add_subplot(specs[r, c]), canvas, row_labels, col_labels, f"{dataset} / {model}", h, w)
        return save_figure(fig, out_dir, NAME, CAPTION, pd.DataFrame(values, columns=columns))
