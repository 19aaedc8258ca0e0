"""``iris``, ``wine``, ``breast_cancer``: the tables bundled in scikit-learn (:mod:`nnxai.data.tabular`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nnxai.data import tabular
from nnxai.data.base import DATASETS, Dataset, Splits


class SklearnTable(Dataset):
    """Stratified 60/20/20 splits, standardised with the train statistics."""

    packages = ("scikit-learn",)

    def planned_sizes(self, sizes: Mapping[str, int | None]) -> dict[str, int]:
        return tabular.plan_sizes(self.name, sizes)

    def build(self, sizes: Mapping[str, int | None], seed: int, workdir: Path) -> tuple[Splits, dict]:
        return tabular.build(self.name, sizes, seed)


IRIS = DATASETS.register("iris", SklearnTable(
    name="iris", kind="tabular", n_classes=3, input_shape=(4,), source="sklearn.datasets.load_iris (bundled)"))
WINE = DATASETS.register("wine", SklearnTable(
    name="wine", kind="tabular", n_classes=3, input_shape=(13,), source="sklearn.datasets.load_wine (bundled)"))
BREAST_CANCER = DATASETS.register("breast_cancer", SklearnTable(
    name="breast_cancer", kind="tabular", n_classes=2, input_shape=(30,),
    source="sklearn.datasets.load_breast_cancer (bundled)"))
