"""Explanation records: attribution maps, unit images and surrogate models (``.npz``); rule sets, local rules,
unit concepts, examples and concept scores (``.json``).

Each record carries a ``meta`` dict: method id, params, seconds per input, seed, dataset, model and
library versions (DESIGN.md, output contract).  Files are written atomically.

Integrity: the saved ``meta`` also holds ``sha256``, the digest of the record's payload (an attribution
map's arrays; a JSON record's document without that key), checked on load and removed from the loaded
``meta``.  Loading names the file when it is missing, truncated, of the wrong kind, changed since it was
written, or holds values its type forbids (:mod:`nnxai.explanations.checks`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from nnxai.data.store import read_npz, write_npz
from nnxai.explanations.checks import SplitBounds, check_digest, check_record, pop_digest, record_fix
from nnxai.io import BadFileError, atomic_write_json, canonical_json, read_json_object, sha256_bytes
from nnxai.registration import Registry


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

    def payload_digest(self) -> str:
        """sha256 of the three arrays (name, dtype, shape, bytes): what ``meta["sha256"]`` records."""
        parts = []
        for name in ("attributions", "indices", "targets"):
            value = np.ascontiguousarray(getattr(self, name))
            parts += [name.encode(), value.dtype.str.encode(), str(value.shape).encode(), value.tobytes()]
        return sha256_bytes(b"\0".join(parts))

    def save(self, path):
        """Write a byte-reproducible npz (fixed member dates) with the digest in its ``meta``."""
        meta = {**self.meta, "sha256": self.payload_digest()}
        write_npz(path, {"attributions": self.attributions, "indices": self.indices, "targets": self.targets,
                         "meta": np.array(json.dumps(meta, sort_keys=True))})
        return Path(path)

    @classmethod
    def load(cls, path, bounds: SplitBounds | None = None):
        path = Path(path)
        data = read_npz(path, "attribution record", record_fix(path),
                        required=("attributions", "indices", "targets", "meta"))
        meta = _meta_of(path, data["meta"])
        stored = pop_digest(path, meta)
        try:
            record = cls(data["attributions"], data["indices"], data["targets"], meta)
        except (ValueError, TypeError) as err:
            raise BadFileError(path, f"not a valid attribution record ({err})", record_fix(path)) from err
        check_digest(path, stored, record.payload_digest())
        check_record(record, path, bounds)
        return record


def _meta_of(path: Path, raw: np.ndarray) -> dict:
    """The ``meta`` record stored as a JSON string array in an npz."""
    try:
        meta = json.loads(str(raw.reshape(-1)[0]) if raw.size == 1 and raw.dtype.kind == "U" else "")
    except (json.JSONDecodeError, ValueError) as err:
        raise BadFileError(path, "its 'meta' array is not a JSON object", record_fix(path)) from err
    if not isinstance(meta, dict):
        raise BadFileError(path, f"its 'meta' is a JSON {type(meta).__name__}, expected an object", record_fix(path))
    return meta


def _json_digest(doc: dict) -> str:
    """sha256 of a JSON record's canonical text (its ``meta`` without ``sha256``)."""
    return sha256_bytes(canonical_json(doc))


def _json_record(cls):
    """Give a dataclass of JSON-able fields ``save``/``load`` through a ``{"kind", ...fields}`` document."""

    def save(self, path):
        doc = {"kind": self.kind, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        doc = json.loads(canonical_json(doc))          # what a reader will see (tuples as lists, ...)
        doc["meta"] = {**doc["meta"], "sha256": _json_digest(doc)}
        return atomic_write_json(path, doc)

    @classmethod
    def load(klass, path, bounds: SplitBounds | None = None):
        path = Path(path)
        doc = read_json_object(path, "explanation record", record_fix(path))
        if doc.get("kind") != klass.kind:
            raise BadFileError(path, f"holds a {doc.get('kind')!r} explanation, not {klass.kind!r}", record_fix(path))
        if not isinstance(doc.get("meta"), dict):
            raise BadFileError(path, f"its 'meta' must be a JSON object, got {doc.get('meta')!r}", record_fix(path))
        stored = pop_digest(path, doc["meta"])
        check_digest(path, stored, _json_digest(doc))
        doc.pop("kind")
        try:
            record = klass(**doc)
        except (TypeError, ValueError) as err:
            raise BadFileError(path, f"not a valid {klass.kind} record ({err})", record_fix(path)) from err
        check_record(record, path, bounds)
        return record

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
    Literals are axis-parallel tests, oblique tests or first-order equalities (:func:`literal_holds`).
    ``feature_space`` says what the features are: ``"inputs"`` (tabular inputs) or ``"concepts"`` (the
    dataset's concept table).  ``tree`` optionally keeps the extracted tree (``depth``, ``n_leaves``).
    ``inference``: ``None`` for a decision list as above, else ``{"type": name, ...}`` naming how the rules
    combine (a function of :data:`RULE_INFERENCE`; e.g. the fuzzy rules of [87] under the i-or operator).
    ``text``: the rules as a person reads them (filled from the structure when not given).
    """

    rules: list
    default: int
    feature_names: list
    class_names: list
    feature_space: str
    tree: dict | None = None
    inference: dict | None = None
    text: str = ""
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "rule"
    suffix: ClassVar[str] = ".json"

    def __post_init__(self):
        if not self.text:       # the file holds the rules as a person reads them, beside their structure
            self.text = self.to_text()

    def predict(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise ValueError(f"rule set expects (n, {len(self.feature_names)}) features, got {features.shape}")
        if self.inference is not None:
            return RULE_INFERENCE[self.inference["type"]](self, features)
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
            lines.append(f"IF {' AND '.join(parts)} THEN {self.class_name(rule['prediction'])}")
        lines.append(f"ELSE {self.class_name(self.default)}")
        return "\n".join(lines)

    def class_name(self, k) -> str:
        """The name of class ``k`` (its number where it names no class: the file checks refuse that)."""
        return self.class_names[k] if isinstance(k, int) and 0 <= k < len(self.class_names) else str(k)


#: How a rule set that is not a decision list decides (``RuleSet.inference["type"]``): a function
#: ``(rule_set, features) -> classes``, registered by the method that extracts such rules.
RULE_INFERENCE: Registry = Registry("rule inference", packages=("nnxai.methods.rule",))


def literal_holds(lit: dict, features: np.ndarray) -> np.ndarray:
    """Bool per row of ``features`` (n, d): whether the literal holds.  Three forms (:class:`RuleSet`):

    * ``{"feature": j, "op": "<=" | ">", "threshold": t}``: an axis-parallel test ``x_j op t``;
    * ``{"weights": [[j, w_j], ...], "op": "<=" | ">", "threshold": t}``: an oblique test ``sum_j w_j x_j op t``
      (NeuroLinear [84]);
    * ``{"equal": [[columns of A], [columns of B]], "op": "==" | "!=", "names": [A, B]}``: two one-hot groups
      of the same size have (or have not) their largest entry at the same position, i.e. ``A = B`` for two
      categorical attributes: a first-order literal (Gyan's generalisation [86], MONK-1's ``a1 = a2``).
    """
    if "equal" in lit:
        a, b = (np.argmax(features[:, list(cols)], axis=1) for cols in lit["equal"])
        return (a == b) if lit["op"] == "==" else (a != b)
    if "weights" in lit:
        column = sum(float(w) * features[:, int(j)] for j, w in lit["weights"])
    else:
        column = features[:, lit["feature"]]
    return (column <= lit["threshold"]) if lit["op"] == "<=" else (column > lit["threshold"])


def condition_holds(cond: dict, features: np.ndarray) -> np.ndarray:
    """Bool per row: at least ``cond["m"]`` of the condition's literals hold."""
    count = np.zeros(len(features), dtype=np.int64)
    for lit in cond["literals"]:
        count += literal_holds(lit, features)
    return count >= cond["m"]


def literal_text(lit: dict, names: list) -> str:
    """A literal as a person reads it: ``a5=1 > 0.5``, ``0.8*x1 - 1.2*x3 <= 0.4``, ``a1 = a2``."""
    if "equal" in lit:
        left, right = lit.get("names") or [f"group{k}" for k in range(2)]
        return f"{left} {'=' if lit['op'] == '==' else '!='} {right}"
    if "weights" in lit:
        terms = " ".join(f"{'-' if w < 0 else '+'} {abs(float(w)):.3g}*{names[int(j)]}" for j, w in lit["weights"])
        return f"{terms.lstrip('+ ')} {lit['op']} {lit['threshold']:.3g}"
    return f"{names[lit['feature']]} {lit['op']} {lit['threshold']:.3g}"


def condition_text(cond: dict, names: list) -> str:
    lits = [literal_text(lit, names) for lit in cond["literals"]]
    if len(lits) == 1 and cond["m"] == 1:
        return lits[0]
    return f"{cond['m']}-of-{{{', '.join(lits)}}}"


@_json_record
@dataclass
class LocalRules(Explanation):
    """Rules and counterfactuals for single inputs (survey Sec. III-A, local and semi-local scope: CEM [69],
    CDRP [77], CVE [78], DACE [79], Anchors [65], the partial substitute [80]).

    For each explained test input (``indices``; ``targets``: the class explained, the network's prediction)
    one entry of ``explanations``, a dict with at least ``"text"`` (the explanation as a person reads it) and
    ``"conditions"`` (a :class:`RuleSet` condition list over ``feature_space``, ``[]`` where the explanation
    is not a rule); methods add their own fields (Anchors: ``precision``, ``coverage``; CEM:
    ``pertinent_positive``, ``pertinent_negative``; DACE, CVE: ``counterfactual``, ``changes``,
    ``prediction``; CDRP: ``gates``).  ``feature_space`` says what the conditions read: ``"inputs"``,
    ``"concepts"`` or a method's own units (``"superpixels"``, ``"cells"``, ``"channels"``).  ``extra`` holds
    method-wide values (lists).
    """

    indices: list
    targets: list
    explanations: list
    feature_names: list
    class_names: list
    feature_space: str
    extra: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "local_rule"
    suffix: ClassVar[str] = ".json"

    def __post_init__(self):
        if not (len(self.indices) == len(self.targets) == len(self.explanations)):
            raise ValueError(f"indices ({len(self.indices)}), targets ({len(self.targets)}) and explanations "
                             f"({len(self.explanations)}) must have the same length")
        for k, entry in enumerate(self.explanations):
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise ValueError(f"explanation {k} must be a dict with a 'text' string, got {entry!r:.80}")

    def to_text(self) -> str:
        """One block per explained input: its test position, class and the explanation's text."""
        return "\n".join(f"test input {i} (class {self.class_names[t]}): {e['text']}"
                         for i, t, e in zip(self.indices, self.targets, self.explanations))


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


def _array_members(name: str, value) -> dict[str, np.ndarray]:
    """The npz members of one array field: ``name``, or ``name/key`` for each entry of a dict of arrays."""
    if isinstance(value, dict):
        return {f"{name}/{key}": np.asarray(value[key]) for key in sorted(value)}
    return {name: np.asarray(value)}


def _arrays_digest(arrays: dict[str, np.ndarray], doc_text: str) -> str:
    parts = []
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        parts += [name.encode(), value.dtype.str.encode(), str(value.shape).encode(), value.tobytes()]
    return sha256_bytes(b"\0".join(parts + [doc_text.encode()]))


def _npz_record(cls):
    """Give a dataclass ``save``/``load`` as one npz: every field named in ``cls.array_fields`` (an array, or a
    dict of arrays stored as ``field/key`` members) is an npz member, the other fields are one JSON document
    (member ``doc``, which names the record type), and ``meta`` is stored as for attribution maps, its
    ``sha256`` covering the arrays and the document."""
    array_fields = tuple(cls.array_fields)

    def _parts(self):
        arrays: dict[str, np.ndarray] = {}
        for name in array_fields:
            arrays.update(_array_members(name, getattr(self, name)))
        doc = {"record": cls.__name__, "kind": cls.kind,
               **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in array_fields and f.name != "meta"}}
        return arrays, canonical_json(json.loads(canonical_json(doc))).decode()   # as a reader will see it

    def payload_digest(self) -> str:
        return _arrays_digest(*_parts(self))

    def save(self, path):
        arrays, doc_text = _parts(self)
        meta = {**self.meta, "sha256": _arrays_digest(arrays, doc_text)}
        write_npz(path, {**arrays, "doc": np.array(doc_text), "meta": np.array(json.dumps(meta, sort_keys=True))})
        return Path(path)

    @classmethod
    def load(klass, path, bounds: SplitBounds | None = None):
        path = Path(path)
        data = read_npz(path, f"{klass.kind} record", record_fix(path), required=("doc", "meta"))
        meta = _meta_of(path, data.pop("meta"))
        stored = pop_digest(path, meta)
        try:
            doc = json.loads(str(data.pop("doc").reshape(-1)[0]))
        except (json.JSONDecodeError, ValueError) as err:
            raise BadFileError(path, "its 'doc' array is not a JSON object", record_fix(path)) from err
        if not isinstance(doc, dict) or doc.get("record") != klass.__name__:
            found = doc.get("record") if isinstance(doc, dict) else doc
            raise BadFileError(path, f"holds a {found!r} record, not {klass.__name__!r}", record_fix(path))
        fields = {k: v for k, v in doc.items() if k not in ("record", "kind")}
        for name in array_fields:
            prefix = f"{name}/"
            nested = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
            fields[name] = nested if nested or name not in data else data[name]
        try:
            record = klass(**fields, meta=meta)
        except (TypeError, ValueError) as err:
            raise BadFileError(path, f"not a valid {klass.__name__} record ({err})", record_fix(path)) from err
        check_digest(path, stored, record.payload_digest())
        check_record(record, path, bounds)
        return record

    cls.payload_digest, cls.save, cls.load = payload_digest, save, load
    return cls


def _finite_array(name: str, value) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds non-finite values")
    return array


@_npz_record
@dataclass
class UnitImages(Explanation):
    """Images of what hidden units (or classes) respond to (survey Sec. III-B, visualisation): ``images[i]``
    belongs to ``units[i]``, a dict ``{"layer", "unit", ...}`` (``"concept"`` where the method names one);
    activation maximisation [71], [93]-[98] stores one synthesised input per (unit, regulariser), the
    deconvolution of top activations (2nd survey [14]) each unit's top inputs with their projections."""

    units: list
    concepts: list
    images: np.ndarray
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "hidden_semantics"
    suffix: ClassVar[str] = ".npz"
    array_fields: ClassVar[tuple[str, ...]] = ("images",)

    def __post_init__(self):
        self.images = _finite_array("images", self.images)
        if len(self.images) != len(self.units):
            raise ValueError(f"{len(self.images)} images for {len(self.units)} units")
        for k, unit in enumerate(self.units):
            if not isinstance(unit, dict) or "layer" not in unit or "unit" not in unit:
                raise ValueError(f"unit {k} must be a dict with 'layer' and 'unit', got {unit!r:.80}")


@_npz_record
@dataclass
class SurrogateModel(Explanation):
    """A smaller model trained to reproduce the network (2nd survey [50], model compression): what it is
    (``architecture``, a JSON dict), its ``logits`` on the test inputs at ``indices``, and its trained
    ``parameters`` (name -> array), so that it can be rebuilt and read."""

    architecture: dict
    indices: np.ndarray
    logits: np.ndarray
    parameters: dict
    meta: dict = field(default_factory=dict)
    kind: ClassVar[str] = "hidden_semantics"
    suffix: ClassVar[str] = ".npz"
    array_fields: ClassVar[tuple[str, ...]] = ("indices", "logits", "parameters")

    def __post_init__(self):
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.logits = _finite_array("logits", self.logits)
        self.parameters = {str(k): np.asarray(v, dtype=np.float32) for k, v in self.parameters.items()}
        if self.logits.ndim != 2 or len(self.logits) != len(self.indices):
            raise ValueError(f"logits {self.logits.shape} must be (len(indices) = {len(self.indices)}, classes)")


RECORD_TYPES: dict[str, type[Explanation]] = {c.kind: c for c in (AttributionMap, RuleSet, LocalRules, UnitConcepts,
                                                                   Examples, ConceptScores)}
#: records stored as npz with a ``doc`` member, by the name that member holds (:func:`_npz_record`)
NPZ_RECORD_TYPES: dict[str, type[Explanation]] = {c.__name__: c for c in (UnitImages, SurrogateModel)}


def _npz_record_name(path: Path) -> str | None:
    """The record type a ``doc`` member names, or None (an attribution map, or not a readable zip)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            if "doc.npy" not in archive.namelist():
                return None
            with archive.open("doc.npy") as member:
                doc = json.loads(str(np.lib.format.read_array(member, allow_pickle=False).reshape(-1)[0]))
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return doc.get("record") if isinstance(doc, dict) else None


def load_explanation(path: str | Path, bounds: SplitBounds | None = None) -> Explanation:
    """Load any explanation file, dispatching on its suffix and its ``kind``.

    ``bounds`` (the explained data set's test/train sizes and classes) adds the range checks of
    :func:`nnxai.explanations.checks.check_record`; the pipeline always passes them.
    """
    path = Path(path)
    if path.suffix == ".npz":
        name = _npz_record_name(path) if path.is_file() else None
        if name is not None and name not in NPZ_RECORD_TYPES:
            raise BadFileError(path, f"unknown explanation record {name!r}; an .npz record holds an attribution "
                                     f"map or one of {sorted(NPZ_RECORD_TYPES)}", record_fix(path))
        return NPZ_RECORD_TYPES[name].load(path, bounds) if name else AttributionMap.load(path, bounds)
    if path.suffix == ".json":
        kind = read_json_object(path, "explanation record", record_fix(path)).get("kind")
        if kind not in RECORD_TYPES or RECORD_TYPES[kind] is AttributionMap:
            raise BadFileError(path, f"unknown explanation kind {kind!r}; a .json record holds one of "
                                     f"{sorted(k for k, c in RECORD_TYPES.items() if c.suffix == '.json')}",
                               record_fix(path))
        return RECORD_TYPES[kind].load(path, bounds)
    raise ValueError(f"{path}: explanation files end in .npz or .json")
