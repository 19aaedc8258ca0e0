"""What a data set is: :class:`Dataset`, and :data:`DATASETS`, the registry of every set the DAG prepares.

Each set registers itself where it is defined, in its own module under :mod:`nnxai.data.sets`::

    SHAPES = DATASETS.register("shapes", Shapes(name="shapes", kind="image", n_classes=2, ...))

An entry is a frozen description (modality, classes, input shape, where the data come from, the
profiles that may use it, its concept features and mask channels) with the data-specific interface the
pipeline and the methods need: :meth:`Dataset.build` makes the splits, :meth:`Dataset.versions` names
the libraries that made them; a set with a concept renderer (``shapes``) adds ``render``.
``ExplainContext.info`` is the entry of the explained set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from nnxai.registration import Registry

#: Splits of one prepared set: ``{split: {"x", "y", and optionally "concepts", "masks", "index"}}``.
Splits = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Dataset:
    """A data set of the DAG: what it is, and how its splits are built.

    Parameters
    ----------
    name : str
        The registry key (and folder under ``data/prepared``).
    kind : {"image", "tabular"}
        Modality: decides the architecture (CNN or MLP) and which methods apply.
    n_classes : int
    input_shape : tuple of int
        One input, without the batch axis.
    has_masks, has_concepts : bool
        Pixel-level concept masks / a concept table come with the splits (true whenever
        ``mask_names`` / ``concepts`` are given).
    source : str
        Where the data come from (recorded in ``meta.json``).
    profiles : tuple of str or None
        The config profiles that may use the set; ``None``: every profile (:data:`nnxai.profiles.PROFILES`).
    concepts : tuple of str
        Columns of a split's concept table (``split.concepts``).
    mask_names : tuple of str
        Channels of a split's masks (``split.masks``).
    """

    name: str
    kind: Literal["image", "tabular"]
    n_classes: int
    input_shape: tuple[int, ...]
    has_masks: bool = False
    has_concepts: bool = False
    source: str = ""
    profiles: tuple[str, ...] | None = None
    concepts: tuple[str, ...] = ()
    mask_names: tuple[str, ...] = ()

    #: Libraries besides nnxai and numpy whose versions ``meta.json`` records (those that made the data).
    packages: ClassVar[tuple[str, ...]] = ()
    #: The structural causal model the data were drawn from, where one is known (causal Shapley [107]).
    causal_graph: ClassVar[Any] = None
    #: ``(n_features, n_meta)`` meta-features describing each input feature, where known (DAPr [121]).
    meta_features: ClassVar[Any] = None
    #: True importance of each input feature (0: irrelevant), where it is planted (DAPr, dual-net [122]).
    feature_importance: ClassVar[Any] = None
    #: The rule that labels the set, where it is planted (:class:`nnxai.data.planted_rules.PlantedRule`):
    #: what ``rule_recovery`` checks an extracted rule set against (MONK's problems, ``shapes``).
    planted_rule: ClassVar[Any] = None
    #: Every input is a 0/1 column (MONK's one-hot robots): what the decompositional rule extractors of
    #: binary inputs (NeuroRule [83]) require.
    binary_inputs: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "has_masks", bool(self.has_masks or self.mask_names))
        object.__setattr__(self, "has_concepts", bool(self.has_concepts or self.concepts))

    def in_profile(self, profile: str) -> bool:
        """Whether a config of ``profile`` may use the set."""
        return self.profiles is None or profile in self.profiles

    def build(self, sizes: Mapping[str, int | None], seed: int, workdir: Path) -> tuple[Splits, dict]:
        """The splits and the set-specific part of ``meta.json``.

        Parameters
        ----------
        sizes : mapping
            Checked split sizes (``None``: the natural size).
        seed : int
            The only source of randomness.
        workdir : Path
            Work directory (raw files are read from ``data/raw/<name>`` under it).
        """
        raise NotImplementedError(f"dataset {self.name!r} ({type(self).__name__}) cannot build its splits")

    def planned_sizes(self, sizes: Mapping[str, int | None]) -> dict[str, int]:
        """The split sizes :meth:`build` will make from the config's ``sizes`` (``None``: natural), checked
        without reading any data, so that the config check refuses what ``build`` would (``ValueError``).
        A generated set (the default) has no natural size: every size must be given."""
        from nnxai.data.splits import generated_sizes

        return generated_sizes(self.name, sizes)

    def versions(self) -> dict[str, str]:
        """Versions of what made the files (no timings: ``meta.json`` must be byte-reproducible)."""
        from nnxai.versions import package_versions

        return package_versions(["nnxai", "numpy", *self.packages])


#: Every data set, by name; the modules of :mod:`nnxai.data.sets` register them when it is first read.
DATASETS: Registry[Dataset] = Registry("dataset", packages=("nnxai.data.sets",))
