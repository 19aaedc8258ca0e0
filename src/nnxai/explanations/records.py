"""Explanation records: attribution maps (``.npz``), rule sets, unit concepts, examples and concept scores
(``.json``).

Each record carries a ``meta`` dict: method id, params, seconds per input, seed, dataset, model and
library versions (DESIGN.md, output contract).  Files are written atomically.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from nnxai.io import atomic_write_bytes, atomic_write_json, read_json


class Explanation:
    kind: ClassVar[str]
    suffix: ClassVar[str]
    meta: dict

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | Path) -> "Explanation":
        raise NotImplementedError


@dataclass
class AttributionMap(Explanation):
    """Per-input relevance ``attributions`` shaped like the explained inputs (survey Sec. III-C)."""

    attributions: np.ndarray
    indices: np.ndarray          # positions of the explained inputs in the test split
    targets: np.ndarray          # class explained for each input
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "attribution"
    suffix: ClassVar[str] = ".npz"

    def __post_init__(self):
        self.attributions = np.asarray(self.attributions, dtype=np.float32)
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.targets = np.asarray(self.targets, dtype=np.int64)
        if not (len(self.attributions) == len(self.indices) == len(self.targets)):
            raise ValueError(f"attributions ({len(self.attributions)}), indices ({len(self.indices)}) and "
                             f"targets ({len(self.targets)}) must have the same length")

    def save(self, path):
        buffer = io.BytesIO()
        np.savez(buffer, attributions=self.attributions, indices=self.indices, targets=self.targets,
                 meta=np.array(json.dumps(self.meta, sort_keys=True)))
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as data:
            missing = {"attributions", "indices", "targets", "meta"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks arrays {sorted(missing)}; rerun its explain stage")
            return cls(data["attributions"], data["indices"], data["targets"], json.loads(str(data["meta"])))


def _json_record(cls):
    """Give a dataclass of JSON-able fields ``save``/``load`` through a ``{"kind", ...fields}`` document."""

    def save(self, path):
        doc = {"kind": self.kind, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        return atomic_write_json(path, doc)

    @classmethod
    def load(klass, path):
        doc = read_json(path)
        if doc.get("kind") != klass.kind:
            raise ValueError(f"{path} holds a {doc.get('kind')!r} explanation, not {klass.kind!r}")
        doc.pop("kind")
        return klass(**doc)

    cls.save, cls.load = save, load
    return cls


@_json_record
@dataclass
class RuleSet(Explanation):
    """A rule set / decision list over named features (survey Sec. III-A).

    ``rules``: list of ``{"conditions": [...], "prediction": int, "support": int}``, tried in order, the
    first rule whose conditions all hold gives the prediction, else ``default``.  A condition is
    ``{"m": int, "literals": [{"feature": int, "op": "<=" | ">", "threshold": float}, ...]}``: it holds when
    at least ``m`` of its literals hold (a plain test is 1-of-1; TREPAN's M-of-N tests [89] are general m).
    ``feature_space`` says what the features are: ``"inputs"`` (tabular inputs) or ``"concepts"`` (the
    dataset's concept table).  ``tree`` optionally keeps the extracted tree (``depth``, ``n_leaves``).
    """

    rules: list
    default: int
    feature_names: list
    class_names: list
    feature_space: str
    tree: dict | None = None
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "rule"
    suffix: ClassVar[str] = ".json"

    def predict(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise ValueError(f"rule set expects (n, {len(self.feature_names)}) features, got {features.shape}")
        out = np.full(len(features), self.default, dtype=np.int64)
        undecided = np.ones(len(features), dtype=bool)
        for rule in self.rules:
            fires = undecided.copy()
            for cond in rule["conditions"]:
                fires &= condition_holds(cond, features)
            out[fires] = rule["prediction"]
            undecided &= ~fires
        return out

    def to_text(self) -> str:
        lines = []
        for rule in self.rules:
            parts = [condition_text(c, self.feature_names) for c in rule["conditions"]] or ["true"]
            lines.append(f"IF {' AND '.join(parts)} THEN {self.class_names[rule['prediction']]}")
        lines.append(f"ELSE {self.class_names[self.default]}")
        return "\n".join(lines)


def condition_holds(cond: dict, features: np.ndarray) -> np.ndarray:
    count = np.zeros(len(features), dtype=np.int64)
    for lit in cond["literals"]:
        column = features[:, lit["feature"]]
        count += (column <= lit["threshold"]) if lit["op"] == "<=" else (column > lit["threshold"])
    return count >= cond["m"]


def condition_text(cond: dict, names: list) -> str:
    lits = [f"{names[l['feature']]} {l['op']} {l['threshold']:.3g}" for l in cond["literals"]]
    if len(lits) == 1 and cond["m"] == 1:
        return lits[0]
    return f"{cond['m']}-of-{{{', '.join(lits)}}}"


@_json_record
@dataclass
class UnitConcepts(Explanation):
    """Hidden units labelled with concepts (survey Sec. III-B): ``units`` is a list of
    ``{"layer", "unit", "concept", "score", ...}`` (score: IoU for Network Dissection [21])."""

    units: list
    concepts: list
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "hidden_semantics"
    suffix: ClassVar[str] = ".json"


@_json_record
@dataclass
class Examples(Explanation):
    """Explanation by example (survey Sec. III-D): for each explained test input (``indices``), training
    examples (``examples``, train-split positions) with their ``scores``; ``extra`` holds method-specific
    arrays as lists (e.g. the representer decomposition of the logits)."""

    indices: list
    targets: list
    examples: list
    scores: list
    extra: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "example"
    suffix: ClassVar[str] = ".json"


@_json_record
@dataclass
class ConceptScores(Explanation):
    """Global concept attribution (survey Sec. III-C: TCAV [63], ACE [115]): one score per (concept, class)
    at one ``layer``, not a map per input.

    ``tests``: one entry per tested (concept, class) pair, ``{"concept": name, "class": int, "tcav_score":
    mean TCAV score over the runs, "run_scores": [one per CAV run], "random_mean": mean of the class's
    random-vs-random scores, "p_value": two-sided t-test, "p_value_corrected": Bonferroni, "significant":
    corrected p < alpha}``.  ``random_scores[k]``: the random-vs-random TCAV scores of class ``k`` (``[]``
    when no concept was tested for it).  ACE only: ``concept_classes[i]`` is the class concept ``i`` was
    discovered in, ``members[i]`` its segments ``{"image": test index, "resolution", "segment", "bbox":
    [top, left, bottom, right] (ends exclusive), "area", "runs": "start:length ..."}`` (``runs``: the
    run-length code of the segment's row-major pixel indices); both are ``[]`` for TCAV.
    """

    concepts: list
    layer: str
    class_names: list
    tests: list
    random_scores: list
    alpha: float
    concept_classes: list = field(default_factory=list)
    members: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "concept_attribution"
    suffix: ClassVar[str] = ".json"

    def __post_init__(self):
        for name in ("concept_classes", "members"):
            value = getattr(self, name)
            if value and len(value) != len(self.concepts):
                raise ValueError(f"{name} has {len(value)} entries for {len(self.concepts)} concepts")
        unknown = {t["concept"] for t in self.tests} - set(self.concepts)
        if unknown:
            raise ValueError(f"tests name concepts {sorted(unknown)} that are not in concepts")


RECORD_TYPES: dict[str, type[Explanation]] = {c.kind: c for c in (AttributionMap, RuleSet, UnitConcepts, Examples,
                                                                   ConceptScores)}


def load_explanation(path: str | Path) -> Explanation:
    """Load any explanation file, dispatching on its suffix and its ``kind``."""
    path = Path(path)
    if path.suffix == ".npz":
        return AttributionMap.load(path)
    if path.suffix == ".json":
        kind = read_json(path).get("kind")
        if kind not in RECORD_TYPES:
            raise ValueError(f"{path}: unknown explanation kind {kind!r}; known: {sorted(RECORD_TYPES)}")
        return RECORD_TYPES[kind].load(path)
    raise ValueError(f"{path}: explanation files end in .npz or .json")
