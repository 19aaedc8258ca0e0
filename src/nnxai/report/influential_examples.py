"""Figure: influential training images of a few test images (influence functions [73]; paper Fig. 4).

For each image data set of the run (shapes, digits), the baseline network's ``influence_functions`` record: one
row per test image (its first ``N_TEST`` explained inputs), the test image, then its ``TOP`` most helpful
training images (most negative ``I_up,loss``: upweighting them lowers the test loss) and its ``TOP`` most
harmful ones (largest ``I_up,loss``), each titled with its train-split position, label and influence score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item

NAME = "influential_examples"
METHOD = "influence_functions"
N_TEST = 3     # test images per data set
TOP = 3        # helpful and harmful training images per test image
CAPTION = (f"Influence functions [73] on the baseline CNNs: each row is a test image (label y, prediction ŷ), "
           f"its {TOP} most helpful training images (green, most negative I_up,loss: upweighting them lowers the "
           f"test loss) and its {TOP} most harmful ones (red, largest I_up,loss); titles give the train-split "
           "index, the label and I_up,loss.")
COLUMNS = 1 + 2 * TOP


def _image(array: np.ndarray) -> np.ndarray:
    """(C, H, W) to what imshow takes, stretched to [0, 1] (digits are grey levels, shapes RGB)."""
    array = np.asarray(array, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))


def influence_records(workdir: Path) -> list[tuple[str, str, Path]]:
    """``(dataset, model, record path)`` of the image data sets' influence records: the baseline model's, or
    the first model in name order where the run has no baseline record."""
    from nnxai.data import DATASETS

    found = []
    for folder in sorted(Path(workdir).glob("data/explanations/*")):
        info = DATASETS.get(folder.name)
        if info is None or info.kind != "image":
            continue
        paths = sorted(folder.glob(f"*/{METHOD}.json"))
        if not paths:
            continue
        baseline = [p for p in paths if p.parent.name == "baseline"]
        path = (baseline or paths)[0]
        found.append((folder.name, path.parent.name, path))
    return found


def rows_of(record, train_y: np.ndarray, class_names: list | None = None) -> list[dict]:
    """One entry per drawn test image: ``test`` (index, label, prediction) and ``helpful``/``harmful`` lists of
    ``(train index, label, score)``."""
    def name(c: int) -> str:
        text = str(class_names[c]) if class_names and 0 <= c < len(class_names) else str(c)
        return text if len(text) <= 5 else text[:3] + "."     # "positive" -> "pos.": titles stay one line

    predictions = record.extra.get("predictions") or [None] * len(record.indices)
    out = []
    for row in range(min(N_TEST, len(record.indices))):
        helpful = list(zip(record.examples[row], record.scores[row]))[:TOP]
        harmful = list(zip(record.extra["harmful_examples"][row], record.extra["harmful_scores"][row]))[:TOP]
        pred = predictions[row]
        out.append({
            "test": (int(record.indices[row]), name(int(record.targets[row])), None if pred is None else name(int(pred))),
            "helpful": [(int(j), name(int(train_y[j])), float(s)) for j, s in helpful],
            "harmful": [(int(j), name(int(train_y[j])), float(s)) for j, s in harmful],
        })
    return out


def _draw(fig, spec, title: str, rows: list[dict], test_x: np.ndarray, train_x: np.ndarray) -> None:
    grid = spec.subgridspec(1 + len(rows), COLUMNS, height_ratios=[0.18] + [1.0] * len(rows))
    head = fig.add_subplot(grid[0, :])
    head.set_axis_off()
    head.text(0.5, 0.5, title, transform=head.transAxes, ha="center", va="center", fontsize=8, fontweight="bold")
    for r, entry in enumerate(rows, start=1):
        index, label, pred = entry["test"]
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(_image(test_x[index]), cmap="gray", interpolation="nearest")
        ax.set_title(f"test #{index}\ny={label}" + ("" if pred is None else f", ŷ={pred}"), fontsize=6,
                     fontweight="bold")
        ax.set_xticks([])
        ax.set_yticks([])
        for side, offset, colour in (("helpful", 1, "#1b7837"), ("harmful", 1 + TOP, "#b2182b")):
            for c in range(TOP):
                ax = fig.add_subplot(grid[r, offset + c])
                ax.set_xticks([])
                ax.set_yticks([])
                if c >= len(entry[side]):
                    ax.set_axis_off()
                    continue
                j, lab, score = entry[side][c]
                ax.imshow(_image(train_x[j]), cmap="gray", interpolation="nearest")
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(1.5)
                ax.set_title(f"{side} {c + 1}\n#{j} y={lab}\nI={score:.2g}", fontsize=5, color=colour)


@report_item(NAME, kind="figure")
def write_influential_examples(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw the influence records of the run's image data sets as ``influential_examples.{pdf,png,html}``."""
    from nnxai.data import DATASETS, load_split
    from nnxai.explanations import load_explanation

    entries, values = [], []
    for dataset, model, path in influence_records(Path(workdir)):
        record = load_explanation(path)
        train, test = load_split(dataset, "train", workdir), load_split(dataset, "test", workdir)
        class_names = (train.meta or {}).get("class_names") or getattr(DATASETS[dataset], "class_names", None)
        rows = rows_of(record, train.y.numpy(), class_names)
        entries.append((f"{dataset} / {model} ({record.meta.get('params', {}).get('solver', '?')} solver)", rows,
                        test.x.numpy(), train.x.numpy()))
        for entry in rows:
            index, label, pred = entry["test"]
            for side in ("helpful", "harmful"):
                for rank, (j, lab, score) in enumerate(entry[side], start=1):
                    values.append({"dataset": dataset, "model": model, "test_index": index, "test_label": label,
                                   "prediction": pred, "side": side, "rank": rank, "train_index": j,
                                   "train_label": lab, "influence": score})
    heights = [max(1, len(rows)) for _, rows, _, _ in entries] or [1]
    columns = ["dataset", "model", "test_index", "test_label", "prediction", "side", "rank", "train_index",
               "train_label", "influence"]
    with figure_style():
        fig = new_figure(7.5, 0.4 + 1.3 * sum(heights))
        if not entries:
            note(fig.add_subplot(), "no influence_functions explanations of image data in data/explanations yet")
        else:
            specs = fig.add_gridspec(len(entries), 1, height_ratios=heights)
            for spec, (title, rows, test_x, train_x) in zip(specs, entries):
                _draw(fig, spec, title, rows, test_x, train_x)
        return save_figure(fig, out_dir, NAME, CAPTION, pd.DataFrame(values, columns=columns))
