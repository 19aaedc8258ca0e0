"""Fitted states shared on disk by the jobs of one run: what a method learns once per model and train split.

A method that learns before it explains (MAPLE's random forest, say) is fitted by its explain job and again
by the evaluate job of the same cell (the metrics re-run it, or score it on fresh neighbourhoods).  The fit
depends only on the model's weights, the train inputs, the method's parameters, its seed and its code, so
the first job to fit it keeps the result under ``<workdir>/.nnxai-cache/fits/<sha256>.pkl`` and the others
read it back: the same object, whichever job built it.

The cache is on only where a stage turned it on (:func:`use`, called by
:func:`nnxai.stages.context.load_context` for the job's work directory); a method fitted elsewhere (a test,
a notebook) builds its state as before.  Entries are Python pickles written by this project's own jobs into
the run's folder (ignored by git and DVC): delete the folder to start afresh.  An entry that cannot be read
is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nnxai.io import atomic_write_bytes

FOLDER = "fits"
_ROOT: Path | None = None


def use(cache_root: Path | None) -> None:
    """Keep fitted states under ``cache_root / fits`` from now on (``None``: no disk cache)."""
    global _ROOT
    _ROOT = None if cache_root is None else Path(cache_root) / FOLDER


def digest(*parts: Any) -> str:
    """sha256 over tensors and arrays (shape, dtype and bytes), modules (their state dicts) and JSON values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.nn.Module):
            part = [part.state_dict()[k] for k in sorted(part.state_dict())]
        items = part if isinstance(part, (list, tuple)) else [part]
        for item in items:
            if isinstance(item, torch.Tensor):
                item = item.detach().cpu().contiguous().numpy()
            if isinstance(item, np.ndarray):
                h.update(str((item.shape, item.dtype.str)).encode())
                h.update(np.ascontiguousarray(item).tobytes())
            else:
                h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cached(key: str, build: Callable[[], Any]) -> Any:
    """``build()``, kept on disk under ``key`` when the cache is on (:func:`use`) and read back after."""
    path = None if _ROOT is None else _ROOT / f"{key}.pkl"
    if path is not None and path.is_file():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:         # unreadable or from another library version: rebuilt below
            pass
    value = build()
    if path is not None:
        atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return value
