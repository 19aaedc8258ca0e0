"""Checks of an explanation record as it is read: its digest, and the values its type requires.

- every record: ``meta["sha256"]`` equals the digest of its payload (a flipped byte, an edit by hand);
- attribution maps: finite relevance; explained ``indices`` inside the test split, ``targets`` among the
  classes;
- examples: explained ``indices`` inside the test split, ``examples`` inside the train split, finite scores;
- rule sets: predictions among the classes, literals over existing features, a known inference;
- local rules: explained inputs in the test split, their classes, literals over existing features.

Range checks need the data set's sizes (:class:`SplitBounds`), which the pipeline passes; without them only
the checks that need no sizes run.  Every failure is a :class:`~nnxai.io.BadFileError` naming the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnxai.io import BadFileError, rerun_hint

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class SplitBounds:
    """Sizes an explanation's positions and classes must fall within."""

    n_test: int
    n_train: int
    n_classes: int


def record_fix(path: str | Path) -> str:
    """What to do about a bad explanation record: rerun its explain stage."""
    return rerun_hint(path)


def pop_digest(path: Path, meta: dict) -> str:
    """Remove and return ``meta["sha256"]``; refuse a record without a valid one."""
    stored = meta.pop("sha256", None)
    if not isinstance(stored, str) or not _HEX64.match(stored):
        raise BadFileError(path, f"its meta carries no valid 'sha256' of the record (got {stored!r}; records "
                                 "written before nnxai checked them have none)", record_fix(path))
    return stored


def check_digest(path: Path, stored: str, actual: str) -> None:
    """Refuse a record whose payload no longer has the digest it was saved with."""
    if stored != actual:
        raise BadFileError(path, f"its content has sha256 {actual[:12]}... but its meta records {stored[:12]}... "
                                 "(the file changed after it was written)", record_fix(path))


def _positions(path: Path, name: str, values: Any, size: int, where: str) -> None:
    array = np.asarray(values)
    if array.size == 0:
        return
    if not np.issubdtype(array.dtype, np.integer):
        raise BadFileError(path, f"'{name}' must hold integer positions, got dtype {array.dtype}", record_fix(path))
    bad = np.flatnonzero((array.ravel() < 0) | (array.ravel() >= size))
    if len(bad):
        raise BadFileError(path, f"'{name}' holds {int(array.ravel()[bad[0]])}, outside the {where} "
                                 f"(0..{size - 1})", record_fix(path))


def _finite(path: Path, name: str, values: Any) -> None:
    array = np.asarray(values, dtype=np.float64) if not isinstance(values, np.ndarray) else values
    if array.size and np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise BadFileError(path, f"'{name}' holds NaN or infinite values", record_fix(path))


def _rules(path: Path, record, n_classes: int | None) -> None:
    n_features, classes = len(record.feature_names), len(record.class_names)
    if n_classes is not None and classes != n_classes:
        raise BadFileError(path, f"names {classes} classes, the data set has {n_classes}", record_fix(path))
    predictions = [record.default] + [rule.get("prediction") for rule in record.rules]
    if any(isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < classes for p in predictions):
        raise BadFileError(path, f"predictions {predictions} must be class indices 0..{classes - 1}", record_fix(path))
    if record.inference is not None:
        from nnxai.explanations.records import RULE_INFERENCE

        if not isinstance(record.inference, dict) or record.inference.get("type") not in RULE_INFERENCE:
            raise BadFileError(path, f"inference {record.inference!r} names none of {RULE_INFERENCE.names()}",
                               record_fix(path))
    for rule in record.rules:
        _conditions(path, rule.get("conditions", []), n_features)


def _conditions(path: Path, conditions: list, n_features: int) -> None:
    """Every literal of ``conditions`` tests existing features (:func:`~nnxai.explanations.records.literal_holds`)."""
    def feature_ok(j) -> bool:
        return isinstance(j, int) and not isinstance(j, bool) and 0 <= j < n_features

    for cond in conditions:
        for lit in cond.get("literals", []):
            if "equal" in lit:
                columns = [j for group in lit["equal"] for j in group]
                if len(lit["equal"]) != 2 or not all(feature_ok(j) for j in columns) or lit.get("op") not in ("==", "!="):
                    raise BadFileError(path, f"an equality literal {lit!r} must compare two groups of features "
                                             f"0..{n_features - 1} with == or !=", record_fix(path))
                continue
            features = [j for j, _ in lit["weights"]] if "weights" in lit else [lit.get("feature")]
            bad = [j for j in features if not feature_ok(j)]
            if bad:
                raise BadFileError(path, f"a literal tests feature {bad[0]!r}, not one of 0..{n_features - 1}",
                                   record_fix(path))
            threshold = lit.get("threshold")
            if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
                raise BadFileError(path, f"a literal has threshold {threshold!r}, expected a finite number",
                                   record_fix(path))


def check_record(record, path: str | Path, bounds: SplitBounds | None) -> None:
    """The value checks of ``record``'s type (see the module docstring)."""
    path, kind = Path(path), record.kind
    if kind == "attribution":
        _finite(path, "attributions", record.attributions)
        if bounds is not None:
            _positions(path, "indices", record.indices, bounds.n_test, "test split")
            _positions(path, "targets", record.targets, bounds.n_classes, "classes")
    elif kind == "example":
        _finite(path, "scores", [s for row in record.scores for s in row] if record.scores else [])
        if len(record.indices) != len(record.examples):
            raise BadFileError(path, f"{len(record.indices)} explained inputs but {len(record.examples)} example "
                                     "lists", record_fix(path))
        if bounds is not None:
            _positions(path, "indices", record.indices, bounds.n_test, "test split")
            _positions(path, "targets", record.targets, bounds.n_classes, "classes")
            _positions(path, "examples", [e for row in record.examples for e in row], bounds.n_train, "train split")
    elif kind == "rule":
        _rules(path, record, None if bounds is None else bounds.n_classes)
    elif kind == "local_rule":
        for entry in record.explanations:
            _conditions(path, entry.get("conditions", []), len(record.feature_names))
        if bounds is not None:
            _positions(path, "indices", record.indices, bounds.n_test, "test split")
            _positions(path, "targets", record.targets, bounds.n_classes, "classes")
