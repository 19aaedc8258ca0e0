"""A synthetic ``data/metrics/all.csv`` with planted values, for the results figures and tables."""

from __future__ import annotations

import csv
import math
from pathlib import Path

HEADER = ("dataset", "model", "method", "metric", "value", "seed")
CELLS = (("shapes", "baseline"), ("shapes", "baseline_sigmoid"), ("digits", "baseline"),
         ("iris", "baseline"), ("iris", "baseline_sigmoid"))
METHODS = ("gradient", "occlusion", "integrated_gradients", "brand_new_method")  # registry order; last unknown
ROAR_STEPS = (10, 30, 50)


def planted(method_index: int, cell_index: int) -> float:
    """A value that differs per method and per dataset/model."""
    return round(0.1 + 0.2 * method_index + 0.01 * cell_index, 6)


def runtime(method_index: int, cell_index: int) -> float:
    """Seconds per input growing geometrically over the cells, so that median and mean differ."""
    return 0.001 * (method_index + 1) * 10 ** cell_index


def rows() -> list[tuple]:
    """Every row of the synthetic all.csv (values chosen so each test can recompute its expectation)."""
    out = []
    for c, (dataset, model) in enumerate(CELLS):
        out.append((dataset, model, "model", "accuracy", 0.9, 0))
        for m, method in enumerate(METHODS):
            value = planted(m, c)
            out += [(dataset, model, method, "pixel_flipping", value, 0),
                    (dataset, model, method, "pixel_flipping.random", 0.05, 0),
                    (dataset, model, method, "completeness", value, 0),
                    (dataset, model, method, "runtime", runtime(m, c), 0),
                    (dataset, model, method, "mystery_metric", value, 0)]
            masks = dataset == "shapes"
            out += [(dataset, model, method, "localisation.mass", value if masks else math.nan, 0),
                    (dataset, model, method, "localisation.rank", value if masks else math.nan, 0)]
            for k in ROAR_STEPS:
                out += [(dataset, model, method, f"roar.k{k}", 1 - value * k / 100, 0),
                        (dataset, model, method, f"roar.random.k{k}", 1 - 0.1 * k / 100, 0)]
    out.append(("shapes", "baseline", "network_dissection", "dissection_iou", 0.2, 0))  # not attribution
    return out


def write_all_csv(workdir: Path, table: list[tuple] | None = None) -> Path:
    """Write ``table`` (default :func:`rows`) as ``<workdir>/data/metrics/all.csv``, as aggregate does."""
    path = Path(workdir) / "data/metrics/all.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows() if table is None else table)
    return path
