"""``causal``: tables drawn from a documented linear-Gaussian SCM (:mod:`nnxai.data.causal`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nnxai.data import causal
from nnxai.data.base import DATASETS, Dataset, Splits


class Causal(Dataset):
    """Generated rows whose causal graph is known (what causal Shapley values [107] need)."""

    causal_graph = causal.SCM

    def build(self, sizes: Mapping[str, int | None], seed: int, workdir: Path) -> tuple[Splits, dict]:
        return causal.build(sizes, seed)


CAUSAL = DATASETS.register("causal", Causal(
    name="causal", kind="tabular", n_classes=2, input_shape=(causal.SCM.n_features,),
    source="generated: linear-Gaussian SCM, graph documented (nnxai.data.causal)"))
