"""``shapes``: generated images whose label follows a known rule over concepts (:mod:`nnxai.data.shapes`).

Besides its splits, the entry renders concept vectors to images (what TREPAN's queries [89] and the
rule metrics show the network) and knows which vectors describe a drawable object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from nnxai.data import shapes
from nnxai.data.base import DATASETS, Dataset, Splits
from nnxai.data.planted_rules import PlantedRule
from nnxai.data.splits import SPLITS, generated_sizes


class Shapes(Dataset):
    """The ``shapes`` generator as a data set; concept tables have the columns ``concepts``."""

    @cached_property
    def planted_rule(self) -> PlantedRule:
        """The label rule over the concept table, checked on every categorical combination
        (:func:`nnxai.data.shapes.rule_space`)."""
        space = shapes.rule_space()
        return PlantedRule(feature_space="concepts", text=shapes.RULE_TEXT, space=space,
                           labels=shapes.label_of_table(space), exhaustive=False, classify=shapes.label_of_table)

    def build(self, sizes: Mapping[str, int | None], seed: int, workdir: Path) -> tuple[Splits, dict]:
        """Each split from its own stream ``[seed, split number]``; masks packed along the last axis."""
        sizes = generated_sizes("shapes", sizes)
        splits = {}
        for k, split in enumerate(SPLITS):  # independent streams: resizing one split leaves the others
            data = shapes.generate(sizes[split], [seed, k])
            data["masks"] = np.packbits(data["masks"], axis=-1)
            splits[split] = data
        meta = {"class_names": list(shapes.CLASS_NAMES), "concept_features": shapes.CONCEPT_FEATURES,
                "mask_names": shapes.MASK_NAMES, "rule": shapes.RULE_TEXT,
                "masks_packed": {"axis": -1, "bitorder": "big", "width": shapes.SIZE_PX},
                "split_seeds": {s: [seed, k] for k, s in enumerate(SPLITS)},
                "source_detail": "nnxai.data.shapes.generate(n, [seed, split number])"}
        return splits, meta

    def render(self, table: np.ndarray, rng: np.random.Generator | int | Sequence[int] | None,
               ) -> tuple[np.ndarray, np.ndarray]:
        """Images float32 ``(N, 3, 32, 32)`` and masks bool ``(N, len(mask_names), 32, 32)`` of a concept table.

        ``table`` rows have the columns :attr:`concepts` (real or synthetic: decoded by
        :func:`nnxai.data.shapes.concepts_from_table`); nuisance factors are drawn from ``rng``
        (:func:`nnxai.data.shapes.render`).
        """
        return shapes.render(shapes.concepts_from_table(table), rng)

    def renderable(self, table: np.ndarray) -> np.ndarray:
        """Bool per row of a concept table: its size is a radius the generator draws and the object fits."""
        table = np.asarray(table)
        col = self.concepts.index
        size = table[:, col("size")]
        lo, hi = shapes.centre_range(size)
        ok = (size >= shapes.RADIUS_RANGE[0]) & (size <= shapes.RADIUS_RANGE[1])
        for c in (col("x"), col("y")):
            ok &= (table[:, c] >= lo) & (table[:, c] <= hi)
        return ok


SHAPES = DATASETS.register("shapes", Shapes(
    name="shapes", kind="image", n_classes=2, input_shape=(3, shapes.SIZE_PX, shapes.SIZE_PX),
    source="generated (nnxai.data.shapes), seeded, with concept masks; rule: " + shapes.RULE_TEXT,
    concepts=tuple(shapes.CONCEPT_FEATURES), mask_names=tuple(shapes.MASK_NAMES)))
