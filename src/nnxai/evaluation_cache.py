"""Incremental evaluation: a metric value is computed once per (explanation, metric, parameters, model,
data, code).

An evaluate job scores one explanation with several metrics.  Snakemake reruns the job when any of its
inputs or its settings change; inside it, each metric's values are looked up under a key that digests
everything the value depends on, and computed only when the key is new:

- the metric id, its parameters, the seed, device and threads of the job;
- the bytes of every file the metric reads: the explanation record, the checkpoint's ``.json`` record
  (which holds the ``.pt``'s sha256, checked when the model is loaded), the prepared splits' ``meta.json``
  (which holds each split's sha256, checked on load), and what the metric asks for besides
  (:meth:`nnxai.metrics.base.Metric.required_inputs`: another model's explanation, a member checkpoint);
- the source of the metric's module and the method's, and of every ``nnxai`` module they import
  (:mod:`nnxai.codedeps`), so an edited metric recomputes its values and nothing else.

So changing one method's hyperparameter recomputes that method's explanations and metric cells only;
changing one metric's parameters recomputes that metric's cells only.  Entries live under
``<workdir>/.nnxai-cache/metrics/`` (ignored by git and DVC; delete the folder to start afresh).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from nnxai import codedeps
from nnxai.io import atomic_write_json

CACHE_DIR = ".nnxai-cache/metrics"


def _file_digest(path: Path) -> str:
    """sha256 of what stands for ``path``: a checkpoint by its ``.json`` record, a prepared split by its
    ``meta.json`` (both hold the sha256 of the heavy file, which loading checks), any other file by its bytes."""
    if path.suffix == ".pt":
        path = path.with_suffix(".json")
    elif path.suffix == ".npz" and path.parent.parent.name == "prepared":
        path = path.parent / "meta.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_digest(modules: Iterable[str]) -> str:
    """sha256 over the source files of ``modules`` and what they import (paths and bytes)."""
    return _code_digest(tuple(sorted(set(modules))))


@lru_cache(maxsize=None)
def _code_digest(modules: tuple[str, ...]) -> str:
    # once per process and module set: a job scores many cells with the same metric and method code
    digest = hashlib.sha256()
    for path in codedeps.closure(modules):
        digest.update(path.relative_to(codedeps.SOURCE_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cell_key(metric_id: str, params: Mapping[str, Any], job: Mapping[str, Any], workdir: Path,
             files: Iterable[str], modules: Iterable[str]) -> str:
    """The key of one metric's values on one explanation (see the module docstring)."""
    content = {"metric": metric_id, "params": params, "job": job,
               "files": {f: _file_digest(Path(workdir) / f) for f in sorted(set(files))},
               "code": code_digest(modules)}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


class MetricCache:
    """Metric values by :func:`cell_key` under ``<workdir>/.nnxai-cache/metrics``."""

    def __init__(self, workdir: Path):
        self.root = Path(workdir) / CACHE_DIR

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> tuple[dict[str, float], dict[str, list]] | None:
        """The cached values and intervals (:func:`nnxai.intervals.to_file`), or ``None`` (absent or
        unreadable: then recomputed)."""
        try:
            entry = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict):
            return None
        values, intervals = entry.get("values"), entry.get("intervals", {})
        return (values, intervals) if isinstance(values, dict) and isinstance(intervals, dict) else None

    def put(self, key: str, metric_id: str, values: Mapping[str, float], intervals: Mapping[str, list]) -> None:
        atomic_write_json(self._path(key), {"metric": metric_id, "values": dict(values),
                                            "intervals": dict(intervals)})
