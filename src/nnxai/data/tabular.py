"""Tabular sets bundled with scikit-learn: ``iris``, ``wine``, ``breast_cancer`` (no download).

The classic decompositional rule extractors the survey reviews (KT, M-of-N, NeuroRule, RxREN, ...)
were designed for small MLPs on tables like these; their named features make extracted rules
readable. Features are standardised with the mean and standard deviation of the TRAIN split only
(stored in ``meta.json`` so rules can be mapped back to raw units); a constant training feature gets
a standard deviation of 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnxai.data.splits import natural_fractions, resolve_sizes, stratified_split

LOADERS = {"iris": "load_iris", "wine": "load_wine", "breast_cancer": "load_breast_cancer"}
NATURAL_FRACTIONS = {"val": 0.2, "test": 0.2}  # train gets the remaining 60 %
#: Rows of each bundled table (checked when it is loaded), so that sizes are checked before any job.
N_ROWS = {"iris": 150, "wine": 178, "breast_cancer": 569}


def load_raw(name: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Unstandardised ``x`` float64 (N, d), ``y`` int64, feature names, class names."""
    if name not in LOADERS:
        raise ValueError(f"unknown tabular dataset {name!r}; choose one of {sorted(LOADERS)}")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, LOADERS[name])()
    return (np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64),
            [str(f) for f in bunch.feature_names], [str(c) for c in bunch.target_names])


def standardise(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the training features (std 0 replaced by 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def plan_sizes(name: str, sizes: Mapping[str, int | None]) -> dict[str, int]:
    """The split sizes ``build`` will draw (``None``: natural 60/20/20), checked against the table's rows."""
    natural = natural_fractions(N_ROWS[name], NATURAL_FRACTIONS)
    pool = f"all {N_ROWS[name]} rows"
    return resolve_sizes(name, sizes, natural, {pool: ("test", "val", "train")}, {pool: N_ROWS[name]})


def build(name: str, sizes: Mapping[str, int | None], seed: int,
          ) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Stratified, seeded splits (natural: 60/20/20), standardised with train statistics.

    Returns
    -------
    splits : dict
        ``{split: {"x" float32 (n, d), "y" int64, "index" rows of the scikit-learn table}}``.
    meta : dict
        ``class_names``, ``feature_names``, ``standardisation`` (``mean``, ``std`` per feature).
    """
    x, y, feature_names, class_names = load_raw(name)
    if len(y) != N_ROWS[name]:
        raise ValueError(f"dataset {name!r}: scikit-learn gave {len(y)} rows, expected {N_ROWS[name]}")
    resolved = plan_sizes(name, sizes)
    rng = np.random.default_rng(seed)
    order = ("test", "val", "train")
    parts = dict(zip(order, stratified_split(y, [resolved[s] for s in order], rng)))
    mean, std = standardise(x[parts["train"]])
    splits = {s: {"x": ((x[idx] - mean) / std).astype(np.float32), "y": y[idx], "index": idx.astype(np.int64)}
              for s, idx in parts.items()}
    meta = {
        "class_names": class_names,
        "feature_names": feature_names,
        "standardisation": {"fit_on": "train", "mean": [float(v) for v in mean],
                            "std": [float(v) for v in std]},
        "source_detail": f"sklearn.datasets.{LOADERS[name]}()",
    }
    return splits, meta
