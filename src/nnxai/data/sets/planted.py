"""``planted``: tables with planted relevant features and meta-features (:mod:`nnxai.data.planted`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nnxai.data import planted
from nnxai.data.base import DATASETS, Dataset, Splits


class Planted(Dataset):
    """Generated rows whose relevant features, their importance and the features' meta-features are known
    (what DAPr [121] and dual-net [122] are scored against)."""

    #: ``(n_features, n_meta)`` meta-features describing each input feature (DAPr's prior network reads them).
    meta_features = planted.META_FEATURES
    #: True importance of each input feature (0: irrelevant).
    feature_importance = planted.IMPORTANCE

    def build(self, sizes: Mapping[str, int | None], seed: int, workdir: Path) -> tuple[Splits, dict]:
        return planted.build(sizes, seed)


PLANTED = DATASETS.register("planted", Planted(
    name="planted", kind="tabular", n_classes=2, input_shape=(planted.N_FEATURES,),
    source="generated: 4 relevant of 12 features, meta-features planted (nnxai.data.planted)"))
