"""``mnist``, ``fashion_mnist``, ``cifar10`` for the ``paper`` profile (:mod:`nnxai.data.torchvision_sets`).

Their raw files are DVC-tracked under ``data/raw/<name>``; nothing is downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nnxai.data import torchvision_sets
from nnxai.data.base import DATASETS, Dataset, Splits


class TorchvisionImages(Dataset):
    """Seeded stratified subsets of the official splits, read by torchvision from ``data/raw/<name>``."""

    packages = ("torchvision",)

    def planned_sizes(self, sizes: Mapping[str, int | None]) -> dict[str, int]:
        return torchvision_sets.plan_sizes(self.name, sizes)

    def build(self, sizes: Mapping[str, int | None], seed: int, workdir: Path) -> tuple[Splits, dict]:
        return torchvision_sets.build(self.name, sizes, seed, workdir)


MNIST = DATASETS.register("mnist", TorchvisionImages(
    name="mnist", kind="image", n_classes=10, input_shape=(1, 28, 28),
    source="torchvision.datasets.MNIST from data/raw/mnist (DVC)", profiles=("paper",)))
FASHION_MNIST = DATASETS.register("fashion_mnist", TorchvisionImages(
    name="fashion_mnist", kind="image", n_classes=10, input_shape=(1, 28, 28),
    source="torchvision.datasets.FashionMNIST from data/raw/fashion_mnist (DVC)", profiles=("paper",)))
CIFAR10 = DATASETS.register("cifar10", TorchvisionImages(
    name="cifar10", kind="image", n_classes=10, input_shape=(3, 32, 32),
    source="torchvision.datasets.CIFAR10 from data/raw/cifar10 (DVC)", profiles=("paper",)))
