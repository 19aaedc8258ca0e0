"""Figure: the learnt prototypes of the two prototype networks (survey Sec. IV-D; [76], [123]).

* the prototype autoencoder [76]: each decoded prototype ``g(p_j)`` (paper Fig. 2), titled with the class
  whose logit it supports (``argmin_k w_kj``) and its mean squared pixel error to the nearest training image;
* ProtoPNet [123]: for each prototype, the training image it was pushed onto, with the 95th-percentile
  high-activation box of the prototype on it (paper Fig. 3, "prototype" column), titled with its class.

:func:`draw_prototypes` draws one explanation record as a PNG; :func:`write_prototypes`, the report figure
``prototypes``, draws every record of a run's work directory into one figure (PDF, PNG, HTML).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item

NAME = "prototypes"
CAPTION = ("Learnt prototypes: decoded prototypes of the prototype autoencoder [76] (title: class supported, "
           "pixel MSE to the nearest training image) and, for ProtoPNet [123], the training image each prototype "
           "was pushed onto with its high-activation box (title: class).")
COLUMNS = 10   # prototypes per row of a panel


def _image(array: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] to what imshow takes: (H, W) for one channel, (H, W, 3) for three."""
    array = np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0)
    return array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))


def prototype_panels(record, train_x=None) -> list[dict]:
    """One entry per prototype: ``image`` (C, H, W), ``title`` and ``box`` (or ``None``)."""
    extra = record.extra
    if "decoded_prototypes" in extra:
        pixel = extra.get("prototype_pixel_distance") or [float("nan")] * len(extra["decoded_prototypes"])
        return [{"image": np.asarray(img), "title": f"p{j} → {cls}\nmse {err:.3f}", "box": None}
                for j, (img, cls, err) in enumerate(zip(extra["decoded_prototypes"], extra["prototype_class"], pixel))]
    if "push_index" in extra:
        if train_x is None:
            raise ValueError("drawing ProtoPNet's prototypes needs the train split's images (train_x)")
        images = np.asarray(train_x[list(extra["push_index"])])
        return [{"image": images[j], "title": f"p{j} → {cls}\ntrain #{i}", "box": box}
                for j, (i, cls, box) in enumerate(zip(extra["push_index"], extra["prototype_class"],
                                                      extra["push_box"]))]
    raise ValueError("the record holds no prototypes (decoded_prototypes or push_index in extra)")


def _draw_panel(fig, spec, panels: list[dict], title: str) -> None:
    from matplotlib.patches import Rectangle

    rows = max(1, -(-len(panels) // COLUMNS))
    grid = spec.subgridspec(rows, COLUMNS)
    for j in range(rows * COLUMNS):
        ax = fig.add_subplot(grid[j // COLUMNS, j % COLUMNS])
        ax.set_axis_off()
        if j >= len(panels):
            continue
        panel = panels[j]
        ax.imshow(_image(panel["image"]), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(panel["title"], fontsize=5)
        if panel["box"] is not None:
            top, left, bottom, right = panel["box"]
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                   edgecolor="yellow", linewidth=0.8))
    if panels:
        fig.add_subplot(spec).set_axis_off()
        fig.axes[-1].set_title(title, fontsize=8)


def draw_prototypes(record, out_path: str | Path, train_x=None, title: str | None = None) -> Path:
    """Draw one ``prototype_network`` or ``protopnet`` explanation record's prototypes as a PNG at
    ``out_path`` (``train_x``: the train split's images, needed for ProtoPNet's source patches)."""
    from nnxai.io import atomic_write_bytes
    import io

    panels = prototype_panels(record, train_x)
    rows = max(1, -(-len(panels) // COLUMNS))
    with figure_style():
        fig = new_figure(7.5, 0.3 + 0.95 * rows)
        _draw_panel(fig, fig.add_gridspec(1, 1)[0], panels, title or record.meta.get("method", ""))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=200, metadata={"Software": None})
    return atomic_write_bytes(Path(out_path), buffer.getvalue())


def prototype_records(workdir: Path) -> list[tuple[str, str, Path]]:
    """``(dataset, method, record path)`` of every prototype explanation of the run, sorted."""
    found = []
    for method in ("prototype_network", "protopnet"):
        for path in sorted(Path(workdir).glob(f"data/explanations/*/{method}/{method}.json")):
            found.append((path.parent.parent.name, method, path))
    return found


@report_item("prototypes", kind="figure")
def write_prototypes(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw every prototype record of ``<workdir>/data/explanations`` as ``prototypes.{pdf,png,html}``."""
    from nnxai.data import load_split
    from nnxai.explanations import load_explanation

    found = prototype_records(workdir)
    entries, values = [], []
    for dataset, method, path in found:
        record = load_explanation(path)
        train_x = load_split(dataset, "train", workdir).x.numpy() if method == "protopnet" else None
        panels = prototype_panels(record, train_x)
        entries.append((f"{method} on {dataset}", panels))
        values += [{"dataset": dataset, "method": method, "prototype": j, "title": p["title"].replace("\n", "; ")}
                   for j, p in enumerate(panels)]
    heights = [max(1, -(-len(p) // COLUMNS)) for _, p in entries] or [1]
    with figure_style():
        fig = new_figure(7.5, 0.5 + 1.0 * sum(heights))
        if not entries:
            note(fig.add_subplot(), "no prototype_network / protopnet explanations in data/explanations yet")
        else:
            specs = fig.add_gridspec(len(entries), 1, height_ratios=heights)
            for spec, (title, panels) in zip(specs, entries):
                _draw_panel(fig, spec, panels, title)
        return save_figure(fig, out_dir, NAME, CAPTION, pd.DataFrame(values, columns=["dataset", "method",
                                                                                       "prototype", "title"]))
