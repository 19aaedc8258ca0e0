"""Checks of a prepared split as it is read: ``meta.json`` well formed, the npz's sha256 the one recorded
there, and the arrays what a model and a metric may rely on (finite float32 inputs of the set's input
shape, int64 labels in ``0..n_classes-1``, one label per input).

Every failure is a :class:`~nnxai.io.BadFileError` naming the file, the bad value and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnxai.io import BadFileError

#: Rows checked at a time for finiteness (bounds the temporary boolean array on paper-size sets).
_CHUNK_ROWS = 4096


def prepare_fix(name: str) -> str:
    """What to do about a bad prepared file of data set ``name``."""
    return (f"delete data/prepared/{name}/ and prepare it again: `snakemake --cores 2 --forcerun "
            f"data/prepared/{name}/meta.json` (or `nnxai prepare --dataset {name}`)")


def check_meta(meta: Any, meta_path: Path, name: str, split: str) -> dict:
    """``meta.json`` must be an object naming the set, its classes and the split's sha256."""
    fix = prepare_fix(name)
    if not isinstance(meta, dict):
        raise BadFileError(meta_path, f"expected a JSON object, found a {type(meta).__name__}", fix)
    if meta.get("name") != name:
        raise BadFileError(meta_path, f"describes data set {meta.get('name')!r}, expected {name!r}", fix)
    n_classes = meta.get("n_classes")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise BadFileError(meta_path, f"'n_classes' must be a positive integer, got {n_classes!r}", fix)
    digest = (meta.get("sha256") or {}).get(split) if isinstance(meta.get("sha256"), dict) else None
    if not isinstance(digest, str) or len(digest) != 64:
        raise BadFileError(meta_path, f"'sha256.{split}' must be the 64-digit sha256 of {split}.npz, "
                                      f"got {digest!r}", fix)
    return meta


def all_finite(array: np.ndarray) -> bool:
    """Whether every value is finite, checked in row chunks (no full-size temporary)."""
    if not np.issubdtype(array.dtype, np.floating):
        return True
    return all(np.isfinite(array[i:i + _CHUNK_ROWS]).all() for i in range(0, max(len(array), 1), _CHUNK_ROWS))


def _first_bad_row(array: np.ndarray) -> int:
    flat = array.reshape(len(array), -1)
    return int(np.flatnonzero(~np.isfinite(flat).all(axis=1))[0])


def check_arrays(data: dict[str, np.ndarray], npz_path: Path, meta: dict, name: str) -> None:
    """The arrays of one split: shapes, dtypes, finite inputs and labels in range."""
    fix = prepare_fix(name)
    x, y = data["x"], data["y"]
    if x.dtype != np.float32 or x.ndim < 2:
        raise BadFileError(npz_path, f"'x' must be float32 of shape (n, ...), got {x.dtype} {x.shape}", fix)
    shape = meta.get("input_shape")
    if isinstance(shape, list) and tuple(x.shape[1:]) != tuple(shape):
        raise BadFileError(npz_path, f"'x' has inputs of shape {tuple(x.shape[1:])}, but meta.json says "
                                     f"{tuple(shape)}", fix)
    if y.dtype != np.int64 or y.shape != (len(x),):
        raise BadFileError(npz_path, f"'y' must be int64 of shape ({len(x)},) (one label per input), got "
                                     f"{y.dtype} {y.shape}", fix)
    if not all_finite(x):
        raise BadFileError(npz_path, f"'x' holds NaN or infinite values (first at input {_first_bad_row(x)})", fix)
    n_classes = meta["n_classes"]
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if len(bad):
        raise BadFileError(npz_path, f"label {int(y[bad[0]])} at position {int(bad[0])} is out of range: "
                                     f"labels must be in 0..{n_classes - 1}", fix)
    for key in ("concepts", "masks", "index"):
        value = data.get(key)
        if value is not None and len(value) != len(x):
            raise BadFileError(npz_path, f"'{key}' has {len(value)} rows for {len(x)} inputs", fix)
    if data.get("concepts") is not None and not all_finite(data["concepts"]):
        raise BadFileError(npz_path, "'concepts' holds NaN or infinite values", fix)
