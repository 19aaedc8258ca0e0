"""Fixtures of the report tests: marking catalogue entries implemented."""

from __future__ import annotations

import pytest

from nnxai import registry


class _FakeImplementation:
    """Stands in for a method class, to mark a catalogue entry implemented."""


@pytest.fixture
def implemented(monkeypatch):
    """Replace the registry's implementations by fakes for the given ids; returns the setter."""
    registry.specs()  # import the real implementations first, so that they cannot register later

    def mark(*ids: str) -> set[str]:
        monkeypatch.setattr(registry.IMPLEMENTATIONS, "_entries", {i: _FakeImplementation for i in ids})
        return set(ids)

    return mark
