"""Figure: the top-9 activations of filters of each conv layer and their deconvnet projections, after Zeiler &
Fergus's Fig. 2 (2nd survey [14]; method ``deconv_receptive_field``), on the ``shapes`` baseline CNN.

One block per layer ((a), (b), ... from shallow to deep), titled with the layer and its receptive field; in it
``FILTERS_SHOWN`` filters of the record (its seeded random subset, in order), two per row.  Per filter, side
by side: the receptive-field crops of its 9 top activating test images (a 3x3 mosaic, strongest top left) and
the deconvnet projections of those 9 activations (each crop scaled to its own largest absolute value, grey =
0, as the paper shows them).  A panel's title names the filter, its largest activation and, where the record
names one, the concept (largest share of the projections' energy).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item

NAME = "deconv_top9"
METHOD = "deconv_receptive_field"
DATASET, MODEL = "shapes", "baseline"
FILTERS_SHOWN = 4    # per layer
PER_ROW = 2          # filters per row of a layer's block
CAPTION = ("Deconvnet projections of the top-9 activations [14] on the shapes baseline CNN, one block per conv "
           "layer: for each filter, the receptive-field crops of its 9 most activating test images (left, "
           "strongest top left) and the projection of each of those activations to pixel space (right; each "
           "crop scaled to its largest |value|, grey = 0).  Title: filter, largest activation and the concept "
           "holding the largest share of the projections' energy.")


def record_path(workdir: Path) -> Path:
    return Path(workdir) / "data" / "explanations" / DATASET / MODEL / f"{METHOD}.npz"


def _to_rgb(crop: np.ndarray) -> np.ndarray:
    """(C, h, w) to (h, w, 3)."""
    return np.repeat(crop, 3, axis=0).transpose(1, 2, 0) if crop.shape[0] == 1 else crop.transpose(1, 2, 0)


def mosaic(crops: np.ndarray, signed: bool, columns: int = 3) -> np.ndarray:
    """``crops`` (n, C, h, w) tiled ``columns`` wide with 1-pixel white gaps, as an (H, W, 3) image in [0, 1];
    ``signed`` crops are each scaled to ``0.5 + 0.5 * v / max|v|``."""
    n, _, h, w = crops.shape
    rows = math.ceil(n / columns)
    out = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1, 3))
    for i, crop in enumerate(crops):
        if signed:
            peak = float(np.abs(crop).max())
            crop = 0.5 + 0.5 * crop / peak if peak > 0 else np.full_like(crop, 0.5)
        r, c = divmod(i, columns)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = np.clip(_to_rgb(crop), 0.0, 1.0)
    return out


def layer_panels(record) -> dict[str, list[dict]]:
    """Per layer (record order): the first ``FILTERS_SHOWN`` units with their two mosaics and a title."""
    out: dict[str, list[dict]] = {}
    for unit, images in zip(record.units, record.images):
        shown = out.setdefault(unit["layer"], [])
        if len(shown) >= FILTERS_SHOWN:
            continue
        h, w = unit["crop_size"]
        crops = images[:, :, :, :h, :w]
        peak = max(unit["activations"])
        title = f"filter {unit['unit']}: max {peak:.2g}" + ("" if peak > 0 else " (dead: projects nothing)")
        if unit.get("concept"):
            title += f"\n{unit['concept']} ({unit['concept_share']:.0%})"
        shown.append({"unit": unit, "inputs": mosaic(crops[0], False), "projections": mosaic(crops[1], True),
                      "title": title})
    return out


def _draw_layer(subfig, letter: str, layer: str, size, panels: list[dict]) -> None:
    rows = max(1, math.ceil(len(panels) / PER_ROW))
    axes = subfig.subplots(rows, 2 * PER_ROW, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for j, panel in enumerate(panels):
        r, c = divmod(j, PER_ROW)
        left, right = axes[r, 2 * c], axes[r, 2 * c + 1]
        left.imshow(panel["inputs"], interpolation="nearest")
        right.imshow(panel["projections"], interpolation="nearest")
        left.set_title(panel["title"], fontsize=6.5, loc="left")
        right.set_title("projections", fontsize=6.5, color="#555555")
    subfig.suptitle(f"({letter}) {layer}: receptive field {size[0]}x{size[1]} px", fontsize=9, x=0.01,
                    ha="left")


@report_item(NAME, kind="figure")
def write_deconv_top9(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw the ``deconv_receptive_field`` record of the shapes baseline as ``deconv_top9.{pdf,png,html}``."""
    from nnxai.explanations import load_explanation

    path = record_path(workdir)
    values = []
    with figure_style():
        if not path.is_file():
            fig = new_figure(7.5, 1.5)
            note(fig.add_subplot(), f"no {METHOD} explanation of {DATASET}/{MODEL} in data/explanations yet")
        else:
            record = load_explanation(path)
            blocks = layer_panels(record)
            heights = [max(1, math.ceil(len(p) / PER_ROW)) for p in blocks.values()]
            fig = new_figure(7.5, 0.6 + 1.9 * sum(heights))
            subfigs = fig.subfigures(len(blocks), 1, height_ratios=heights, squeeze=False)[:, 0]
            for i, (subfig, (layer, panels)) in enumerate(zip(subfigs, blocks.items())):
                _draw_layer(subfig, "abcdefghij"[i % 10], layer, record.meta["receptive_fields"][layer], panels)
                for panel in panels:
                    unit = panel["unit"]
                    for rank, (t, a) in enumerate(zip(unit["test_indices"], unit["activations"]), start=1):
                        values.append({"layer": layer, "filter": unit["unit"], "rank": rank, "test_index": t,
                                       "activation": a, "concept": unit.get("concept", "")})
        frame = pd.DataFrame(values, columns=["layer", "filter", "rank", "test_index", "activation", "concept"])
        return save_figure(fig, out_dir, NAME, CAPTION, frame)
