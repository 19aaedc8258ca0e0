"""Stage ``aggregate``: collect the per-explanation metric files into ``all.csv`` and ``summary.json``."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from nnxai.io import BadFileError, atomic_write_json, atomic_write_text, read_json_object
from nnxai.paths import checkpoint_path
from nnxai.stages._common import sweep

COLUMNS = ("dataset", "model", "method", "metric", "value", "seed")


def _checkpoint_seed(sidecar: Path) -> int:
    """The seed recorded in a checkpoint's ``.json`` record."""
    seed = read_json_object(sidecar, "checkpoint record").get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadFileError(sidecar, f"'seed' must be an integer, got {seed!r}")
    return seed


def _metric_values(path: Path) -> dict:
    """A metric file: ``{metric_id: number or null}``."""
    values = read_json_object(path, "metric file")
    for metric_id, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadFileError(path, f"metric {metric_id!r} has value {value!r}, expected a number or null")
    return values


def aggregate(workdir: Path, metric_files: list[str]) -> list[Path]:
    """Collect per-explanation metric files into the tidy ``all.csv`` and a nested ``summary.json``."""
    rows, summary = [], {}
    sweep(workdir, ["data/metrics/all.csv", "data/metrics/summary.json"])
    for rel in sorted(metric_files):
        path = Path(workdir) / rel
        dataset, model_id, method = path.parts[-3], path.parts[-2], path.stem
        values = _metric_values(path)
        seed = _checkpoint_seed(Path(workdir) / (checkpoint_path(dataset, model_id)[:-3] + ".json"))
        for metric_id, value in sorted(values.items()):
            rows.append((dataset, model_id, method, metric_id, value, seed))
            summary.setdefault(dataset, {}).setdefault(model_id, {}).setdefault(method, {})[metric_id] = (
                None if value is None or (isinstance(value, float) and math.isnan(value)) else value)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    out_csv = atomic_write_text(Path(workdir) / "data/metrics/all.csv", buffer.getvalue())
    out_json = atomic_write_json(Path(workdir) / "data/metrics/summary.json", summary)
    return [out_csv, out_json]
