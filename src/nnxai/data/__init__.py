"""Data sets: the registry, ``prepare`` (build + write the splits) and ``load_split`` / ``load_dataset``.

:data:`DATASETS` holds one :class:`~nnxai.data.base.Dataset` per set, registered in its own module under
:mod:`nnxai.data.sets`; the entry builds the splits (:meth:`~nnxai.data.base.Dataset.build`).

``prepare(name, workdir, sizes, seed)`` writes, under ``<workdir>/data/prepared/<name>/``,

- ``train.npz``, ``val.npz``, ``test.npz`` -- ``x`` float32, ``y`` int64; real sets also ``index``
  (row in the source); ``shapes`` also ``concepts`` float32 (columns ``DATASETS["shapes"].concepts``) and
  ``masks`` (bool masks packed with ``np.packbits`` along the last axis, uint8);
- ``meta.json`` -- names, classes, features / concepts / masks / rule, sizes, seed, class counts,
  the sha256 of each npz and, for the bundled tables, the train-split standardisation (the generated
  ``causal`` table instead records its structural causal model, ``scm`` and ``label``).

Every file is written atomically and byte-reproducibly (same inputs, same bytes: the determinism
contract of DESIGN.md); ``meta.json`` is written last (an older one is removed first), so its presence
means the set is complete.  ``load_split`` checks every read: the npz's sha256 against ``meta.json``, and
its arrays (:mod:`nnxai.data.checks`); a bad file is a :class:`~nnxai.io.BadFileError` naming it.
"""

from __future__ import annotations

import copy

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnxai.data.base import DATASETS, Dataset
from nnxai.data.splits import SPLITS, check_sizes
from nnxai.data import checks
from nnxai.data.store import read_npz, sha256_file, write_npz
from nnxai.data.torchvision_sets import MissingRawDataError
from nnxai.io import BadFileError, MissingFileError, atomic_write_json, read_json
from nnxai.profiles import PROFILES

__all__ = ["DATASETS", "Dataset", "DatasetInfo", "MissingRawDataError", "PreparedSplit", "SPLITS",
           "dataset_names", "load_dataset", "load_split", "prepare", "prepared_dir"]

FORMAT_VERSION = 1


#: The former name of :class:`~nnxai.data.base.Dataset` (a toy description in tests: no ``build``).
DatasetInfo = Dataset


def dataset_names(profile: str | None = None) -> list[str]:
    """Registered names, optionally only those a profile may use."""
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    return [n for n, info in DATASETS.items() if profile is None or info.in_profile(profile)]


def _check_name(name: object) -> Dataset:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    return DATASETS[name]


def _check_split(split: object) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    return str(split)


def prepared_dir(name: str, workdir: str | Path = ".") -> Path:
    """``<workdir>/data/prepared/<name>``."""
    return Path(workdir) / "data" / "prepared" / name


def prepare(name: str, workdir: str | Path, sizes: dict[str, int | None] | None, seed: int) -> Path:
    """Build data set ``name`` and write its splits and ``meta.json``; return the directory.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    workdir : str or Path
        Work directory; files go to ``data/prepared/<name>/`` under it (torchvision sets are read from
        ``data/raw/<name>/`` under it).
    sizes : dict
        ``{"train": n, "val": n, "test": n}``; ``None`` for a value (or for the whole dict) means the
        natural split (tables: stratified 60/20/20, digits 4000/500/500; not allowed for ``shapes``).
        Real sets are subsampled, stratified; asking for more than exists is a ``ValueError``.
    seed : int
        Non-negative; the only source of randomness (``np.random.default_rng``).

    Raises
    ------
    ValueError
        Unknown name, malformed sizes or seed, or more samples requested than available.
    MissingRawDataError
        A torchvision set whose raw files are not under ``data/raw/<name>``.
    """
    info = _check_name(name)
    checked = check_sizes(sizes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed, workdir = int(seed), Path(workdir)
    splits, extra = info.build(checked, seed, workdir)

    out_dir = prepared_dir(name, workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # meta.json is written last and means "complete": an earlier one goes first, so an interrupted
    # rewrite never leaves new splits beside an old description.
    (out_dir / "meta.json").unlink(missing_ok=True)
    digests, arrays, counts = {}, {}, {}
    for split in SPLITS:
        data = {key: splits[split][key] for key in ("x", "y", "concepts", "masks", "index")
                if key in splits[split]}
        digests[split] = write_npz(out_dir / f"{split}.npz", data)
        arrays[split] = {key: {"shape": list(v.shape), "dtype": str(v.dtype)} for key, v in data.items()}
        counts[split] = np.bincount(data["y"], minlength=info.n_classes).tolist()
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "name": name, "kind": info.kind, "n_classes": info.n_classes,
        "input_shape": list(info.input_shape), "source": info.source, "seed": seed,
        "sizes": checked, "split_sizes": {s: len(splits[s]["y"]) for s in SPLITS},
        "class_counts": counts, "arrays": arrays, "sha256": digests,
        "files": {s: f"{s}.npz" for s in SPLITS}, "versions": info.versions(), **extra,
    }
    atomic_write_json(out_dir / "meta.json", meta)
    return out_dir


@dataclass
class PreparedSplit:
    """One prepared split: tensors for the model, numpy ground truth for the metrics."""

    x: Any  # torch.Tensor float32
    y: Any  # torch.Tensor int64
    concepts: np.ndarray | None = None
    masks: np.ndarray | None = None
    index: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


class LazySplit:
    """A prepared split read (and checked) on first use: a job that never touches it, e.g. the train split of
    a gradient method's explain or evaluate job, does not pay for reading it.  Attributes are those of the
    :class:`PreparedSplit` it loads; ``size`` comes from ``meta.json`` without reading the arrays."""

    def __init__(self, name: str, split: str, workdir: str | Path = "."):
        self._args = (name, split, workdir)
        self._split: PreparedSplit | None = None

    def load(self) -> PreparedSplit:
        if self._split is None:
            self._split = load_split(*self._args)
        return self._split

    @property
    def size(self) -> int:
        """Inputs in the split, as ``meta.json`` records them (the arrays are checked against it when read)."""
        name, split, workdir = self._args
        meta = read_json(prepared_dir(name, workdir) / "meta.json", "prepared data description")
        return int(meta["split_sizes"][split])

    def __getattr__(self, attr: str):
        if attr.startswith("__") or attr in ("_args", "_split"):
            raise AttributeError(attr)
        return getattr(self.load(), attr)

    def __deepcopy__(self, memo):
        return copy.deepcopy(self.load(), memo)


def loaded(split: "PreparedSplit | LazySplit") -> PreparedSplit:
    """The :class:`PreparedSplit` itself (read now if ``split`` is a :class:`LazySplit`)."""
    return split.load() if isinstance(split, LazySplit) else split


def _missing(path: Path, name: str, workdir: str | Path) -> MissingFileError:
    return MissingFileError(
        path, "prepared data file does not exist",
        f"create it with `snakemake --cores 2 data/prepared/{name}/test.npz` or `nnxai prepare --dataset {name}` "
        f"(run in the work directory {workdir})")


def load_split(name: str, split: str, workdir: str | Path = ".", verify: bool = True) -> PreparedSplit:
    """Load a prepared split; masks come back unpacked as bool ``(N, len(mask_names), H, W)``.

    Every read is checked (:mod:`nnxai.data.checks`): ``meta.json`` well formed, the arrays finite
    inputs of the set's shape with labels in ``0..n_classes-1``.

    Parameters
    ----------
    verify : bool
        Check the npz against the sha256 recorded in ``meta.json`` (default; ``False`` skips only this).

    Raises
    ------
    MissingFileError
        The split or ``meta.json`` does not exist (a ``FileNotFoundError``).
    BadFileError
        A file is damaged, changed since it was written, or holds bad values; the message names it.
    """
    _check_name(name)
    _check_split(split)
    directory = prepared_dir(name, workdir)
    meta_path, npz_path = directory / "meta.json", directory / f"{split}.npz"
    for path in (npz_path, meta_path):
        if not path.is_file():
            raise _missing(path, name, workdir)
    fix = checks.prepare_fix(name)
    meta = checks.check_meta(read_json(meta_path, "prepared data description", fix), meta_path, name, split)
    if verify and sha256_file(npz_path) != meta["sha256"][split]:
        read_npz(npz_path, "prepared split", fix)   # a damaged file says how: truncated, not an npz, ...
        raise BadFileError(npz_path, f"does not match the sha256 recorded in {meta_path} (the file changed "
                                     "after `nnxai prepare` wrote it)", fix)
    import torch

    data = read_npz(npz_path, "prepared split", fix, required=("x", "y"))
    checks.check_arrays(data, npz_path, meta, name)
    masks = data.get("masks")
    if masks is not None and "masks_packed" in meta:
        masks = np.unpackbits(masks, axis=-1, count=meta["masks_packed"]["width"]).view(bool)
    return PreparedSplit(x=torch.from_numpy(data["x"]), y=torch.from_numpy(data["y"]),
                         concepts=data.get("concepts"), masks=masks, index=data.get("index"), meta=meta)


def load_dataset(name: str, split: str, workdir: str | Path = ".") -> tuple[Any, Any]:
    """``(inputs float32, labels int64)`` tensors of a prepared split (the public contract)."""
    part = load_split(name, split, workdir)
    return part.x, part.y
