"""Seeded, stratified train/val/test splits and the checking of requested split sizes.

Real data sets (bundled MNIST digits, scikit-learn tables, torchvision sets) are split here the same
way: every split keeps the class proportions of the pool (to within one sample per class), the test
split is drawn first and then validation, so a larger or smaller training set never changes which
samples are held out. The split is a pure function of the labels and the seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SPLITS = ("train", "val", "test")


def check_sizes(sizes: object) -> dict[str, int | None]:
    """Validate a ``{"train": n, "val": n, "test": n}`` mapping (``None`` = the natural split size).

    Raises
    ------
    ValueError
        Naming the bad key or value and what is allowed.
    """
    if sizes is None:
        return dict.fromkeys(SPLITS)
    if not isinstance(sizes, Mapping):
        raise ValueError(f"sizes must be a mapping with keys {list(SPLITS)}, got {sizes!r}")
    unknown = sorted(set(sizes) - set(SPLITS), key=str)
    missing = [s for s in SPLITS if s not in sizes]
    if unknown or missing:
        raise ValueError(f"sizes must have exactly the keys {list(SPLITS)}; "
                         f"unknown: {unknown}, missing: {missing} (got {dict(sizes)!r})")
    out: dict[str, int | None] = {}
    for split in SPLITS:
        value = sizes[split]
        if value is None:
            out[split] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"sizes[{split!r}] must be a positive integer or None (the natural split "
                             f"size), got {value!r}")
        out[split] = int(value)
    return out


def generated_sizes(name: str, sizes: Mapping[str, int | None]) -> dict[str, int]:
    """The sizes of a generated set, which has no natural split: every size must be given."""
    if any(sizes[s] is None for s in SPLITS):
        raise ValueError(f"dataset {name!r} is generated and has no natural split size: give integer sizes "
                         f"for {list(SPLITS)}, got {dict(sizes)}")
    return {s: int(sizes[s]) for s in SPLITS}


def resolve_sizes(name: str, sizes: Mapping[str, int | None], natural: Mapping[str, int],
                  pools: Mapping[str, Sequence[str]], available: Mapping[str, int]) -> dict[str, int]:
    """Replace ``None`` by the natural size and check that the pools hold enough samples.

    Parameters
    ----------
    name : str
        Data set name, for error messages.
    sizes : mapping
        Output of :func:`check_sizes`.
    natural : mapping
        Natural size of each split.
    pools : mapping
        Pool name -> the splits drawn from it (e.g. ``{"all": ("test", "val", "train")}`` or
        ``{"official train": ("val", "train"), "official test": ("test",)}``).
    available : mapping
        Pool name -> number of samples in it.
    """
    resolved = {s: natural[s] if sizes[s] is None else int(sizes[s]) for s in SPLITS}
    for pool, members in pools.items():
        requested = sum(resolved[s] for s in members)
        if requested > available[pool]:
            detail = " + ".join(f"{s}={resolved[s]}" for s in members)
            raise ValueError(f"dataset {name!r}: requested {detail} = {requested} samples from the "
                             f"{pool} pool, but only {available[pool]} are available; ask for fewer "
                             f"(or None for the natural split {dict(natural)})")
    return resolved


def stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(y))`` whose every prefix is stratified by ``y``.

    Each sample gets the key ``(rank within its class + 0.5) / class count`` (ranks in a random order);
    sorting by the key (ties broken at random) interleaves the classes in proportion.
    """
    y = np.asarray(y)
    n = len(y)
    key = np.empty(n, dtype=np.float64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        members = members[rng.permutation(len(members))]
        key[members] = (np.arange(len(members)) + 0.5) / len(members)
    tiebreak = rng.random(n)
    return np.lexsort((tiebreak, key))


def stratified_split(y: np.ndarray, counts: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint, stratified index sets of the given sizes (consecutive blocks of a stratified order).

    Each returned index array is shuffled, so that its class order carries no pattern.
    """
    if sum(counts) > len(y):
        raise ValueError(f"cannot draw {sum(counts)} samples from {len(y)}")
    order = stratified_order(y, rng)
    out, start = [], 0
    for count in counts:
        block = order[start:start + count]
        out.append(block[rng.permutation(len(block))])
        start += count
    return out


def natural_fractions(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` into the given val/test fractions; train takes the rest (e.g. 60/20/20)."""
    out = {s: int(round(n * fractions[s])) for s in ("val", "test")}
    out["train"] = n - out["val"] - out["test"]
    return out
