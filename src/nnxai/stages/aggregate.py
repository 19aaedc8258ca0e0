"""Stage ``aggregate``: collect the per-explanation metric files into ``all.csv`` and ``summary.json``.

``all.csv`` is tidy: ``dataset, model, method, metric, value, seed``, then ``ci_low, ci_high, n`` — the 95%
bootstrap interval over the explained inputs and their number for a value that is a mean over inputs
(:mod:`nnxai.intervals`), empty for any other value.  ``summary.json`` holds the values only."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from nnxai.intervals import FILE_KEY, from_file
from nnxai.io import BadFileError, atomic_write_json, atomic_write_text, read_json_object
from nnxai.paths import checkpoint_path
from nnxai.stages._common import sweep

COLUMNS = ("dataset", "model", "method", "metric", "value", "seed", "ci_low", "ci_high", "n")


def _checkpoint_seed(sidecar: Path) -> int:
    """The seed recorded in a checkpoint's ``.json`` record."""
    seed = read_json_object(sidecar, "checkpoint record").get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadFileError(sidecar, f"'seed' must be an integer, got {seed!r}")
    return seed


def _metric_values(path: Path) -> tuple[dict, dict]:
    """A metric file: ``{metric_id: number or null}`` and its intervals (:data:`nnxai.intervals.FILE_KEY`)."""
    values = read_json_object(path, "metric file")
    entries = values.pop(FILE_KEY, {})
    for metric_id, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadFileError(path, f"metric {metric_id!r} has value {value!r}, expected a number or null")
    try:
        if not isinstance(entries, dict) or set(entries) - set(values):
            raise TypeError
        intervals = from_file(entries)
    except (TypeError, ValueError, IndexError, KeyError):
        raise BadFileError(path, f"{FILE_KEY!r} must map metrics of the file to [low, high, n], "
                                 f"got {entries!r}") from None
    return values, intervals


def aggregate(workdir: Path, metric_files: list[str]) -> list[Path]:
    """Collect per-explanation metric files into the tidy ``all.csv`` and a nested ``summary.json``."""
    rows, summary = [], {}
    sweep(workdir, ["data/metrics/all.csv", "data/metrics/summary.json"])
    for rel in sorted(metric_files):
        path = Path(workdir) / rel
        dataset, model_id, method = path.parts[-3], path.parts[-2], path.stem
        values, intervals = _metric_values(path)
        seed = _checkpoint_seed(Path(workdir) / (checkpoint_path(dataset, model_id)[:-3] + ".json"))
        for metric_id, value in sorted(values.items()):
            ci = intervals.get(metric_id)
            spread = ("", "", "") if ci is None else (ci.low, ci.high, ci.n)
            rows.append((dataset, model_id, method, metric_id, value, seed, *spread))
            summary.setdefault(dataset, {}).setdefault(model_id, {}).setdefault(method, {})[metric_id] = (
                None if value is None or (isinstance(value, float) and math.isnan(value)) else value)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    out_csv = atomic_write_text(Path(workdir) / "data/metrics/all.csv", buffer.getvalue())
    out_json = atomic_write_json(Path(workdir) / "data/metrics/summary.json", summary)
    return [out_csv, out_json]
