"""Planted rules: the rule that labels a data set, where the generator knows it, so that an extracted rule
set can be checked against it (``rule_recovery``; survey Sec. III-A).

A :class:`PlantedRule` names the feature space the rule reads (a data set's ``"inputs"`` or its concept
table, ``"concepts"``: :attr:`nnxai.explanations.RuleSet.feature_space`), and the instance space on which
equivalence is decided: the whole finite space where there is one (MONK's 432 robots: ``exhaustive``), or
a grid that covers every combination of the categorical factors (``shapes``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlantedRule:
    """The labelling rule of a data set.

    Parameters
    ----------
    feature_space : {"inputs", "concepts"}
        What the rule reads (a RuleSet over the same space can be compared with it).
    text : str
        The rule, readable.
    space : ndarray (n, d)
        The instances on which equivalence is decided.
    labels : ndarray (n,)
        The rule's class of each instance of ``space``.
    exhaustive : bool
        ``space`` is the whole instance space (then agreement on it *is* logical equivalence).
    classify : callable
        The rule on any ``(m, d)`` features of its space.
    """

    feature_space: str
    text: str
    space: np.ndarray
    labels: np.ndarray
    exhaustive: bool
    classify: Callable[[np.ndarray], np.ndarray]

    def __post_init__(self):
        if len(self.space) != len(self.labels):
            raise ValueError(f"planted rule: {len(self.space)} instances but {len(self.labels)} labels")
