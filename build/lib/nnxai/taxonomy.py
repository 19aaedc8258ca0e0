"""The survey's three-dimensional taxonomy (Zhang, Tino, Leonardis & Tang, 2021, Section II, Fig. 1).

Dimension 1, *engagement*: passive (post hoc) or active (intervention at training time).
Dimension 2, *explanation type*, ordinal by explanatory power: rule > hidden semantics > attribution > example.
Dimension 3, *scope*, ordinal over the input space: local < semi-local < global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Engagement(str, Enum):
    PASSIVE = "passive"
    ACTIVE = "active"


class ExplanationType(str, Enum):
    """Ordered most explicit first, as in the survey's Fig. 1 and Table III."""

    RULE = "rule"
    HIDDEN_SEMANTICS = "hidden_semantics"
    ATTRIBUTION = "attribution"
    EXAMPLE = "example"

    @property
    def rank(self) -> int:
        """0 for the most explicit type (rule), 3 for the least (example)."""
        return list(ExplanationType).index(self)

    @property
    def label(self) -> str:
        return {"rule": "Rule", "hidden_semantics": "Hidden semantics",
                "attribution": "Attribution", "example": "By example"}[self.value]


class Scope(str, Enum):
    """Ordered from local to global."""

    LOCAL = "local"
    SEMI_LOCAL = "semi_local"
    GLOBAL = "global"

    @property
    def rank(self) -> int:
        return list(Scope).index(self)

    @property
    def label(self) -> str:
        return {"local": "Local", "semi_local": "Semi-local", "global": "Global"}[self.value]


@dataclass(frozen=True)
class MethodSpec:
    """One entry of the catalogue: a method's identity and its taxonomy coordinates.

    ``refs`` are reference numbers of the survey; ``refs_second`` those of the companion survey
    (Zhang et al., 2019).  ``judged_by`` names the evaluation metrics (METHODS.md) that score it.
    """

    id: str
    name: str
    description: str
    engagement: Engagement
    explanation_type: ExplanationType
    scopes: tuple[Scope, ...]
    refs: tuple[int, ...] = ()
    refs_second: tuple[int, ...] = ()
    bibkey: str = ""
    runs_on: str = ""
    judged_by: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if not self.id.isidentifier() or self.id != self.id.lower():
            raise ValueError(f"method id {self.id!r} must be a lower-case Python identifier")
        if not self.scopes:
            raise ValueError(f"method {self.id!r} needs at least one scope")

    @property
    def reference(self) -> str:
        """Human-readable citation, e.g. ``[71], [137]`` or ``2nd survey [39]``."""
        parts = [f"[{r}]" for r in self.refs]
        if self.refs_second:
            parts.append("2nd survey " + ", ".join(f"[{r}]" for r in self.refs_second))
        return ", ".join(parts)
