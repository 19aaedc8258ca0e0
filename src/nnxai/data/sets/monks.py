"""``monks1``, ``monks2``, ``monks3``: the MONK's problems with their rules planted (:mod:`nnxai.data.monks`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nnxai.data import monks
from nnxai.data.base import DATASETS, Dataset, Splits
from nnxai.data.planted_rules import PlantedRule


@dataclass(frozen=True)
class Monks(Dataset):
    """One MONK's problem: fixed sizes (the report's), the whole 432-instance space as test split."""

    problem: int = 1
    binary_inputs = True            # one-hot attribute columns (a ClassVar of Dataset: not a field)

    @cached_property
    def planted_rule(self) -> PlantedRule:
        """The rule that labels the set, over its one-hot inputs, with the 432-instance space."""
        return monks.planted_rule(self.problem)

    def planned_sizes(self, sizes: Mapping[str, int | None]) -> dict[str, int]:
        return monks.plan_sizes(self.problem, sizes)

    def build(self, sizes: Mapping[str, int | None], seed: int, workdir: Path) -> tuple[Splits, dict]:
        return monks.build(self.problem, sizes, seed)


for _k in (1, 2, 3):
    DATASETS.register(f"monks{_k}", Monks(
        name=f"monks{_k}", kind="tabular", n_classes=2, input_shape=(len(monks.FEATURE_NAMES),), problem=_k,
        source=f"generated: MONK-{_k} of Thrun et al. 1991 ({monks.RULE_TEXTS[_k]}), one-hot (nnxai.data.monks)"))
