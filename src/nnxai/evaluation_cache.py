"""Incremental evaluation: a metric value is computed once per (explanation, metric, parameters, model,
data, code).

An evaluate job scores one explanation with several metrics.  Snakemake reruns the job when any of its
inputs or its settings change; inside it, each metric's values are looked up under a key that digests
everything the value depends on, and computed only when the key is new:

- the metric id, its parameters, the seed, device and threads of the job;
- the content of every file the metric reads: the explanation record (without its wall-clock time, so a
  rerun that gives the same explanation hits the cache), the checkpoint's ``.json`` record
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

import numpy as np

from nnxai import codedeps
from nnxai.io import atomic_write_json
from nnxai.paths import CACHE_ROOT

CACHE_DIR = f"{CACHE_ROOT}/metrics"


#: What an explanation record's ``meta`` says of the run that made it rather than of the explanation: the
#: wall-clock time.  A rerun with the same content differs only there, so the cache key leaves it out (the
#: ``runtime`` metric, which reports it, declares ``reads_timing`` and keys on the whole file).
TIMING_KEYS = ("seconds", "seconds_per_input")


def _file_digest(path: Path, timing: bool = True) -> str:
    """sha256 of what stands for ``path``: a checkpoint by its ``.json`` record, a prepared split by its
    ``meta.json`` (both hold the sha256 of the heavy file, which loading checks), an explanation record
    without its :data:`TIMING_KEYS` unless ``timing``, any other file by its bytes."""
    if path.suffix == ".pt":
        path = path.with_suffix(".json")
    elif path.suffix == ".npz" and path.parent.parent.name == "prepared":
        path = path.parent / "meta.json"
    elif not timing and "explanations" in path.parts:
        return _content_digest(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _content_digest(path: Path) -> str:
    """sha256 of an explanation record's content: an ``.npz``'s meta (which holds the sha256 of its
    arrays), a ``.json`` record's document, each without the timing and the digest that covers it."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            doc = {"meta": json.loads(str(data["meta"].reshape(-1)[0]))}
        keep_digest = True                      # the arrays' sha256, independent of the meta
    else:
        doc = json.loads(path.read_text())
        keep_digest = False                     # a JSON record's sha256 covers its meta, timing included
    meta = doc.get("meta") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    doc["meta"] = {k: v for k, v in meta.items() if k not in TIMING_KEYS and (keep_digest or k != "sha256")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def code_digest(modules: Iterable[str]) -> str:
    """sha256 over the source files of ``modules`` and what they import (paths and bytes)."""
    return _code_digest(tuple(sorted(set(modules))))


@lru_cache(maxsize=None)
def _code_digest(modules: tuple[str, ...]) -> str:
    # once per process and module set: a job scores many cells with the same metric and method code
    listing = "".join(f"{sha}  {path}\n" for path, sha in codedeps.file_digests(modules))
    return hashlib.sha256(listing.encode()).hexdigest()


def cell_key(metric_id: str, params: Mapping[str, Any], job: Mapping[str, Any], workdir: Path,
             files: Iterable[str], modules: Iterable[str], timing: bool = False) -> str:
    """The key of one metric's values on one explanation (see the module docstring); ``timing``: the metric
    reads the records' wall-clock times, so they are part of the key."""
    content = {"metric": metric_id, "params": params, "job": job,
               "files": {f: _file_digest(Path(workdir) / f, timing) for f in sorted(set(files))},
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
