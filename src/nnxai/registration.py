"""One registration mechanism for everything the DAG enumerates.

Datasets, model variants, methods, metrics and report items are each a :class:`Registry`.  An entry
registers itself where it is defined, with a decorator (zennit's ``@register_composite``, STYLE.md)::

    DATASETS = Registry("dataset", packages=("nnxai.data.sets",))

    @DATASETS.register("shapes")
    class Shapes(Dataset): ...

The registry imports its ``packages`` (every module below them) the first time it is read, so that the
decorators have run; nothing else lists the entries.  Looking up a missing name raises
:class:`UnknownEntryError`, whose message names the kind, the bad value and what is allowed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownEntryError(KeyError):
    """A name that no entry of the registry carries."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def import_tree(package: str) -> None:
    """Import ``package`` and every module below it (so that their registrations run)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), prefix=pkg.__name__ + "."):
        importlib.import_module(info.name)


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Parameters
    ----------
    kind : str
        What an entry is ("dataset", "metric", ...), for messages.
    packages : tuple of str
        Packages whose modules define the entries; imported on first read.
    """

    def __init__(self, kind: str, packages: tuple[str, ...] = ()):
        self.kind = kind
        self.packages = tuple(packages)
        self._entries: dict[str, T] = {}
        self._loaded = not self.packages

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that does so."""

        def add(obj: T) -> T:
            known = self._entries.get(name)
            if known is not None and known is not obj and _qualname(known) != _qualname(obj):
                raise ValueError(f"{self.kind} {name!r} registered twice: {_qualname(known)} and {_qualname(obj)}")
            self._entries[name] = obj
            return obj

        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that add a toy entry take it out again)."""
        self._entries.pop(name, None)

    def load(self) -> None:
        """Import the packages that define the entries (once)."""
        if self._loaded:
            return
        self._loaded = True
        for package in self.packages:
            import_tree(package)

    def __getitem__(self, name: str) -> T:
        self.load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownEntryError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def get(self, name: str, default: T | None = None) -> T | None:
        self.load()
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def names(self) -> list[str]:
        self.load()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self.load()
        return list(self._entries.items())

    def values(self) -> list[T]:
        self.load()
        return list(self._entries.values())

    def keys(self) -> list[str]:
        return self.names()


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
