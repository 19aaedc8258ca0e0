"""The method registry: the survey's catalogue, with the classes that implement its entries.

Every id of the catalogue (:mod:`nnxai.catalogue`) is listed from the start with ``implemented: false``.
A method class registers itself where it is defined::

    @register("integrated_gradients")            # a catalogue id: coordinates come from the catalogue
    class IntegratedGradients(AttributionMethod): ...

    @register(MethodSpec(id="my_method", ...))   # a new method: its coordinates on the decorator
    class MyMethod(AttributionMethod): ...

The CLI's choices, the config schema's enums, the Snakemake targets and Tables III/IV and Fig. 2 all read
this registry; nothing else lists methods.
"""

from __future__ import annotations

from typing import Any

from nnxai.catalogue import CATALOGUE
from nnxai.registration import Registry, UnknownEntryError
from nnxai.taxonomy import MethodSpec

#: Every method's taxonomy entry: the catalogue's ids first, then methods registered with a new spec.
_SPECS: dict[str, MethodSpec] = {spec.id: spec for spec in CATALOGUE}
#: The classes implementing them, registered where they are defined (every module under nnxai.methods).
#: (Active methods' own explanations are registered beside their training code, under nnxai.active.)
IMPLEMENTATIONS: Registry[type] = Registry("method", packages=("nnxai.methods", "nnxai.active"))


class UnknownMethodError(UnknownEntryError):
    """An id that is not in the catalogue, or not implemented yet."""


def register(spec_or_id: str | MethodSpec):
    """Class decorator binding an implementation to a catalogue id (or to a new :class:`MethodSpec`)."""
    if isinstance(spec_or_id, MethodSpec):
        spec = spec_or_id
        known = _SPECS.get(spec.id)
        if known is not None and known != spec:
            raise ValueError(f"method {spec.id!r} is in the catalogue already; register it by id")
    else:
        if spec_or_id not in _SPECS:
            raise UnknownMethodError(
                f"{spec_or_id!r} is not a catalogue id; pass a MethodSpec to register a new method")
        spec = _SPECS[spec_or_id]

    def decorate(cls: type) -> type:
        cls.spec = spec
        IMPLEMENTATIONS.register(spec.id, cls)
        _SPECS[spec.id] = spec
        return cls

    return decorate


def unregister(method_id: str) -> None:
    """Remove an implementation (and its spec, if it is not a catalogue entry); tests that add a toy
    method take it out again."""
    IMPLEMENTATIONS.unregister(method_id)
    if method_id not in {spec.id for spec in CATALOGUE}:
        _SPECS.pop(method_id, None)


def specs() -> list[MethodSpec]:
    """Every registered method spec, in catalogue order (new methods last)."""
    IMPLEMENTATIONS.load()
    return list(_SPECS.values())


def spec(method_id: str) -> MethodSpec:
    IMPLEMENTATIONS.load()
    try:
        return _SPECS[method_id]
    except KeyError:
        raise UnknownMethodError(
            f"unknown method id {method_id!r}; known ids: {', '.join(sorted(_SPECS))}") from None


def is_implemented(method_id: str) -> bool:
    return method_id in IMPLEMENTATIONS


def implemented_ids() -> list[str]:
    return [s.id for s in specs() if s.id in IMPLEMENTATIONS]


def get(method_id: str) -> type:
    """The class implementing ``method_id``; a clear error if the id is unknown or not implemented yet."""
    spec(method_id)
    if method_id not in IMPLEMENTATIONS:
        raise UnknownMethodError(
            f"method {method_id!r} is in the catalogue but not implemented yet; implemented: "
            f"{', '.join(implemented_ids())}")
    return IMPLEMENTATIONS[method_id]


def as_records() -> list[dict[str, Any]]:
    """The registry as plain records: the contract of ``python -m nnxai methods --json``."""
    out = []
    for s in specs():
        out.append({
            "id": s.id,
            "name": s.name,
            "description": s.description,
            "reference": s.reference,
            "refs": list(s.refs),
            "refs_second": list(s.refs_second),
            "bibkey": s.bibkey,
            "engagement": s.engagement.value,
            "explanation_type": s.explanation_type.value,
            "scopes": [sc.value for sc in s.scopes],
            "runs_on": s.runs_on,
            "judged_by": list(s.judged_by),
            "implemented": s.id in IMPLEMENTATIONS,
        })
    return out
