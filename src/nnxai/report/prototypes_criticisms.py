"""Figure: explanation by example on the image baselines (survey Sec. III-D; [146], [147]).

For each image data set with a ``baseline`` network (``shapes``, ``digits``), three panels:

* MMD-critic's prototypes [147] of the train split in the network's penultimate space, sorted by class
  (the paper shows its prototypes so), each titled with its class and witness value (Eq. 3: near 0 for a
  prototype, which represents its neighbourhood);
* its criticisms, sorted and titled the same way (a large |witness|: data the prototypes represent badly;
  positive where the prototypes under-represent the data, negative where they over-represent it, which with
  few prototypes happens next to them: each carries a weight 1/m above the local mass of the data);
* nearest neighbours [146]: a few explained test inputs (titled with the network's prediction), each
  followed by its nearest training examples in the same space (titled with their label and distance).

:func:`write_prototypes_criticisms`, the report figure ``prototypes_criticisms``, reads the run's records
``data/explanations/<dataset>/baseline/{mmd_critic,nearest_neighbours}.json`` and the prepared splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item

NAME = "prototypes_criticisms"
CAPTION = ("Explanation by example on the baseline CNNs. Per data set: MMD-critic [147] prototypes (sorted by class) "
           "and criticisms of the train split in the penultimate space (title: class, witness value; "
           "criticisms have the largest |witness|), and test inputs (title: network prediction) beside their "
           "nearest training examples [146] (title: label, Euclidean distance).")
DATASETS = ("shapes", "digits")
MODEL = "baseline"
COLUMNS = 10       # images per row
NN_ROWS = 3        # test inputs shown with their neighbours
NN_SHOWN = 8       # neighbours shown per test input (the grid leaves one column between input and neighbours)


def _image(array: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] to what imshow takes: (H, W) for one channel, (H, W, 3) for three."""
    array = np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0)
    return array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))


def _name(class_names, c: int) -> str:
    return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)


def example_panels(mmd_record, train_x, class_names=None) -> dict[str, list[dict]]:
    """``{"prototypes": [...], "criticisms": [...]}``: one ``{"image", "title", "position", "class",
    "witness"}`` per selected training point, sorted by class (selection order within a class), as the
    authors' code draws them."""
    extra, out = mmd_record.extra, {}
    for kind in ("prototypes", "criticisms"):
        singular = kind[:-1]
        positions, classes = extra.get(kind, []), extra.get(f"{singular}_classes", [])
        witness = extra.get(f"{singular}_witness", [])
        order = sorted(range(len(positions)), key=lambda j: (classes[j], j))
        out[kind] = [{"image": np.asarray(train_x[positions[j]]), "position": int(positions[j]),
                      "class": int(classes[j]), "witness": float(witness[j]),
                      "title": f"{_name(class_names, classes[j])}\nw {witness[j]:+.3f}"} for j in order]
    return out


def neighbour_rows(nn_record, train_x, test_x, class_names=None, rows: int = NN_ROWS) -> list[dict]:
    """The first ``rows`` explained inputs: ``{"input": image, "title", "neighbours": [panels]}``."""
    out = []
    labels = nn_record.extra.get("neighbour_labels")
    for r in range(min(rows, len(nn_record.indices))):
        t, pred = int(nn_record.indices[r]), int(nn_record.targets[r])
        neighbours = []
        for j, (pos, score) in enumerate(zip(nn_record.examples[r][:NN_SHOWN], nn_record.scores[r][:NN_SHOWN])):
            label = _name(class_names, int(labels[r][j])) if labels is not None else "?"
            neighbours.append({"image": np.asarray(train_x[int(pos)]), "position": int(pos),
                               "title": f"{label}\n{score:.2f}"})
        out.append({"input": np.asarray(test_x[t]), "index": t,
                    "title": f"test {t}\n→ {_name(class_names, pred)}", "neighbours": neighbours})
    return out


def _show(ax, image: np.ndarray, title: str, frame: str | None = None) -> None:
    ax.imshow(_image(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=5.5, pad=2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(1.2)


def _band(fig, spec, panels: list[dict], heading: str) -> None:
    """A heading over rows of ``COLUMNS`` images."""
    rows = max(1, -(-len(panels) // COLUMNS))
    grid = spec.subgridspec(rows + 1, COLUMNS, height_ratios=[0.18] + [1.0] * rows)
    head = fig.add_subplot(grid[0, :])
    head.set_axis_off()
    head.text(0.0, 0.0, heading, fontsize=7.5, fontweight="bold", transform=head.transAxes)
    for j in range(rows * COLUMNS):
        ax = fig.add_subplot(grid[1 + j // COLUMNS, j % COLUMNS])
        if j < len(panels):
            _show(ax, panels[j]["image"], panels[j]["title"])
        else:
            ax.set_axis_off()


def _neighbour_band(fig, spec, rows: list[dict], heading: str) -> None:
    grid = spec.subgridspec(len(rows) + 1, COLUMNS, height_ratios=[0.18] + [1.0] * len(rows))
    head = fig.add_subplot(grid[0, :])
    head.set_axis_off()
    head.text(0.0, 0.0, heading, fontsize=7.5, fontweight="bold", transform=head.transAxes)
    for r, row in enumerate(rows):
        _show(fig.add_subplot(grid[1 + r, 0]), row["input"], row["title"], frame="#d62728")
        fig.add_subplot(grid[1 + r, 1]).set_axis_off()
        for j in range(COLUMNS - 2):
            ax = fig.add_subplot(grid[1 + r, 2 + j])
            if j < len(row["neighbours"]):
                _show(ax, row["neighbours"][j]["image"], row["neighbours"][j]["title"])
            else:
                ax.set_axis_off()


def _sections(workdir: Path) -> list[tuple[str, str, list, float]]:
    """``(dataset, kind, content, height)`` of every band to draw, in order."""
    from nnxai.data import load_split
    from nnxai.explanations import load_explanation

    sections = []
    for dataset in DATASETS:
        root = Path(workdir) / "data" / "explanations" / dataset / MODEL
        mmd_path, nn_path = root / "mmd_critic.json", root / "nearest_neighbours.json"
        if not (mmd_path.exists() or nn_path.exists()):
            continue
        train = load_split(dataset, "train", workdir)
        train_x, class_names = train.x.numpy(), train.meta.get("class_names")
        if mmd_path.exists():
            panels = example_panels(load_explanation(mmd_path), train_x, class_names)
            for kind in ("prototypes", "criticisms"):
                if panels[kind]:
                    sections.append((dataset, kind, panels[kind], 0.18 + max(1, -(-len(panels[kind]) // COLUMNS))))
        if nn_path.exists():
            test_x = load_split(dataset, "test", workdir).x.numpy()
            rows = neighbour_rows(load_explanation(nn_path), train_x, test_x, class_names)
            if rows:
                sections.append((dataset, "neighbours", rows, 0.18 + len(rows)))
    return sections


HEADINGS = {"prototypes": "{dataset}: MMD-critic prototypes (class, witness)",
            "criticisms": "{dataset}: MMD-critic criticisms (class, witness)",
            "neighbours": "{dataset}: test inputs (red, → prediction) and their nearest training examples "
                          "(label, distance)"}


def _values(sections) -> pd.DataFrame:
    rows = []
    for dataset, kind, content, _ in sections:
        if kind == "neighbours":
            for row in content:
                rows += [{"dataset": dataset, "panel": kind, "test_index": row["index"],
                          "train_position": n["position"], "title": n["title"].replace("\n", "; ")}
                         for n in row["neighbours"]]
        else:
            rows += [{"dataset": dataset, "panel": kind, "test_index": None, "train_position": p["position"],
                      "title": p["title"].replace("\n", "; ")} for p in content]
    return pd.DataFrame(rows, columns=["dataset", "panel", "test_index", "train_position", "title"])


@report_item(NAME, kind="figure")
def write_prototypes_criticisms(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw the MMD-critic and nearest-neighbour records of the image baselines as
    ``prototypes_criticisms.{pdf,png,html}``."""
    sections = _sections(Path(workdir))
    heights = [h for *_, h in sections] or [1.0]
    with figure_style():
        fig = new_figure(7.5, 0.3 + 0.78 * sum(heights))
        if not sections:
            note(fig.add_subplot(), "no mmd_critic / nearest_neighbours explanations of the shapes or digits "
                                    "baselines in data/explanations yet")
        else:
            specs = fig.add_gridspec(len(sections), 1, height_ratios=heights)
            for spec, (dataset, kind, content, _) in zip(specs, sections):
                heading = HEADINGS[kind].format(dataset=dataset)
                if kind == "neighbours":
                    _neighbour_band(fig, spec, content, heading)
                else:
                    _band(fig, spec, content, heading)
        return save_figure(fig, out_dir, NAME, CAPTION, _values(sections))
