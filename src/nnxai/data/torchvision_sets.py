"""MNIST, Fashion-MNIST and CIFAR-10 for the ``paper`` profile, read by torchvision from ``data/raw``.

Nothing is downloaded at run time (the default machines are offline and the determinism contract
wants fixed inputs). The raw files are DVC-tracked under ``<workdir>/data/raw/<name>/``; when they are
missing, :class:`MissingRawDataError` says where they were expected and how to get them.

Validation is carved, stratified, from the official training set; test comes from the official test
set. Natural split: MNIST / Fashion-MNIST 55000/5000/10000, CIFAR-10 45000/5000/10000.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nnxai.data.splits import resolve_sizes, stratified_split

#: name -> (torchvision class, official train size, official test size, files torchvision looks for)
SOURCES = {
    "mnist": ("MNIST", 60000, 10000, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "fashion_mnist": ("FashionMNIST", 60000, 10000,
                      "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "cifar10": ("CIFAR10", 50000, 10000, "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
}


class MissingRawDataError(FileNotFoundError):
    """The raw files of a torchvision data set are not under ``data/raw/<name>``."""


def raw_dir(name: str, workdir: str | Path = ".") -> Path:
    """Where the raw files of ``name`` are expected: ``<workdir>/data/raw/<name>``."""
    return Path(workdir) / "data" / "raw" / name


def expected_files(name: str, root: Path) -> list[Path]:
    """The files torchvision reads for ``name`` under ``root`` (what a DVC pull must provide)."""
    if name == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        return [root / "cifar-10-batches-py" / n for n in names]
    folder = root / SOURCES[name][0] / "raw"
    kinds = ("images-idx3", "labels-idx1")
    return [folder / f"{prefix}-{kind}-ubyte" for prefix in ("train", "t10k") for kind in kinds]


def missing_message(name: str, root: Path, missing: list[Path] | None = None) -> str:
    cls, _, _, files = SOURCES[name]
    if not root.is_dir():
        detail = f" {root} does not exist."
    else:
        detail = f" Missing: {', '.join(str(p) for p in missing)}." if missing else ""
    return (
        f"raw data for dataset {name!r} not found: expected torchvision's files under {root} "
        f"(i.e. {root}/{files}).{detail} Nothing is downloaded at run time. Get them with\n"
        f"  dvc pull data/raw/{name}          (from a configured DVC remote), or, on an online machine,\n"
        f"  python -c \"import torchvision; torchvision.datasets.{cls}('data/raw/{name}', train=True, "
        f"download=True); torchvision.datasets.{cls}('data/raw/{name}', train=False, download=True)\"\n"
        f"run in the work directory, then copy data/raw/{name} here (and `dvc add data/raw/{name}`)."
    )


def load_raw(name: str, workdir: str | Path = ".") -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Official splits as ``{"train"|"test": (x float32 (N, C, H, W) in [0, 1], y int64, class names)}``.

    Raises
    ------
    MissingRawDataError
        If torchvision does not find the files (it is never asked to download).
    """
    if name not in SOURCES:
        raise ValueError(f"unknown torchvision dataset {name!r}; choose one of {sorted(SOURCES)}")
    root = raw_dir(name, workdir)
    missing = [p for p in expected_files(name, root) if not p.is_file()]
    if missing:  # checked here, before the slow torchvision import
        raise MissingRawDataError(missing_message(name, root, missing))
    import torchvision.datasets

    cls = getattr(torchvision.datasets, SOURCES[name][0])
    out = {}
    for split in ("train", "test"):
        try:
            dataset = cls(str(root), train=split == "train", download=False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted ..."
            raise MissingRawDataError(f"torchvision could not read {root}: {err}\n"
                                      + missing_message(name, root)) from err
        data = np.asarray(dataset.data, dtype=np.uint8)
        data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)  # -> (N, C, H, W)
        x = data.astype(np.float32) / np.float32(255.0)
        out[split] = (x, np.asarray(dataset.targets, dtype=np.int64), [str(c) for c in dataset.classes])
    return out


def _natural_and_pools(name: str) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
    _, n_train, n_test, _ = SOURCES[name]
    return ({"train": n_train - 5000, "val": 5000, "test": n_test},
            {"official train": ("val", "train"), "official test": ("test",)})


def plan_sizes(name: str, sizes: Mapping[str, int | None]) -> dict[str, int]:
    """The split sizes ``build`` will draw (``None``: natural), checked against the official splits' sizes."""
    _, n_train, n_test, _ = SOURCES[name]
    natural, pools = _natural_and_pools(name)
    return resolve_sizes(name, sizes, natural, pools, {"official train": n_train, "official test": n_test})


def build(name: str, sizes: Mapping[str, int | None], seed: int, workdir: str | Path = ".",
          ) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Seeded stratified subsets: val then train from the official train set, test from official test.

    ``index`` holds row numbers in the official split each sample comes from.
    """
    resolved = plan_sizes(name, sizes)
    natural, pools = _natural_and_pools(name)
    raw = load_raw(name, workdir)
    # Size check against the files actually present (a partial copy has fewer rows).
    resolve_sizes(name, resolved, natural, pools,
                  {"official train": len(raw["train"][1]), "official test": len(raw["test"][1])})
    rng = np.random.default_rng(seed)
    (x_tr, y_tr, classes), (x_te, y_te, _) = raw["train"], raw["test"]
    (test_idx,) = stratified_split(y_te, [resolved["test"]], rng)
    val_idx, train_idx = stratified_split(y_tr, [resolved["val"], resolved["train"]], rng)
    splits = {
        "train": {"x": x_tr[train_idx], "y": y_tr[train_idx], "index": train_idx.astype(np.int64)},
        "val": {"x": x_tr[val_idx], "y": y_tr[val_idx], "index": val_idx.astype(np.int64)},
        "test": {"x": x_te[test_idx], "y": y_te[test_idx], "index": test_idx.astype(np.int64)},
    }
    return splits, {"class_names": classes, "source_detail": f"torchvision.datasets.{SOURCES[name][0]} "
                    f"from data/raw/{name} (index: row in the official train/test split)"}
