"""The registry holds the whole catalogue of METHODS.md with its coordinates (issue: taxonomy registry)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnxai import registry
from nnxai.methods.base import AttributionMethod
from nnxai.taxonomy import Engagement, ExplanationType, MethodSpec, Scope

METHODS_MD = Path(__file__).resolve().parents[2] / "shared" / "METHODS.md"


def catalogue_rows():
    """(id, section heading, scope cell) parsed from METHODS.md, independently of nnxai.catalogue."""
    text = METHODS_MD.read_text().split("## Evaluation")[0]
    rows = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        heading = section.splitlines()[0]
        for line in section.splitlines():
            match = re.match(r"^\| `([a-z0-9_]+)` \| (.*)\|\s*$", line)
            if match:
                rows.append((match.group(1), heading, [c.strip() for c in match.group(2).split(" | ")]))
    return rows


@pytest.mark.skipif(not METHODS_MD.exists(), reason="../shared/METHODS.md is not beside this checkout")
def test_every_catalogue_id_is_registered_with_its_coordinates():
    rows = catalogue_rows()
    assert len(rows) == 65
    types = {"rules": "rule", "hidden semantics": "hidden_semantics", "attribution": "attribution",
             "explanation by example": "example"}
    for method_id, heading, cols in rows:
        spec = registry.spec(method_id)
        active = heading.startswith("Active")
        assert spec.engagement.value == ("active" if active else "passive"), method_id
        if active:
            expected_type, scope_cell = cols[1], cols[2]
        else:
            expected_type = next(v for k, v in types.items() if heading.lower().endswith(k))
            scope_cell = cols[1]
        assert spec.explanation_type.value == expected_type, method_id
        assert [s.value for s in spec.scopes] == [s.strip().replace("-", "_") for s in scope_cell.split(",")]
        refs = [int(r) for r in re.findall(r"\[(\d+)\]", cols[0])]
        assert sorted(spec.refs + spec.refs_second) == sorted(refs) or method_id == "gradient_x_input", method_id
        assert spec.bibkey, method_id


def test_methods_json_contract():
    out = subprocess.run([sys.executable, "-m", "nnxai", "methods", "--json"], capture_output=True, text=True,
                         check=True).stdout
    records = json.loads(out)
    assert {r["id"] for r in records} >= {s.id for s in registry.specs()}
    for r in records:
        assert {"id", "name", "reference", "engagement", "explanation_type", "scopes", "implemented"} <= set(r)
        assert isinstance(r["scopes"], list) and isinstance(r["implemented"], bool)
        assert r["implemented"] == registry.is_implemented(r["id"])


def test_foundation_methods_are_implemented():
    for method_id in ("gradient", "integrated_gradients", "trepan", "network_dissection", "representer_points"):
        assert registry.is_implemented(method_id), method_id


def test_human_readable_listing_counts_implemented():
    out = subprocess.run([sys.executable, "-m", "nnxai", "methods"], capture_output=True, text=True, check=True).stdout
    assert f"{len(registry.implemented_ids())} of {len(registry.specs())} methods implemented" in out


def test_unknown_and_unimplemented_ids_give_clear_errors(unimplemented_id):
    with pytest.raises(registry.UnknownMethodError, match="unknown method id 'nope'"):
        registry.spec("nope")
    unimplemented = unimplemented_id
    with pytest.raises(registry.UnknownMethodError, match="not implemented yet"):
        registry.get(unimplemented)


@pytest.fixture
def restored_registry():
    before = set(registry.IMPLEMENTATIONS.names())
    yield
    for method_id in set(registry.IMPLEMENTATIONS.names()) - before:
        registry.unregister(method_id)


def test_register_binds_catalogue_coordinates_and_new_specs(unimplemented_id, restored_registry):
    unimplemented = unimplemented_id

    @registry.register(unimplemented)
    class Fake(AttributionMethod):
        def attribute(self, model, inputs, target, baselines=None):
            return inputs

    assert Fake.spec is registry.spec(unimplemented) and registry.is_implemented(unimplemented)

    new = MethodSpec(id="my_new_method", name="Mine", description="d", engagement=Engagement.PASSIVE,
                     explanation_type=ExplanationType.ATTRIBUTION, scopes=(Scope.LOCAL,))

    @registry.register(new)
    class Mine(AttributionMethod):
        def attribute(self, model, inputs, target, baselines=None):
            return inputs

    assert registry.get("my_new_method") is Mine
    with pytest.raises(registry.UnknownMethodError):
        registry.register("not_in_catalogue")


def test_taxonomy_orders_are_the_surveys():
    assert [t.value for t in sorted(ExplanationType, key=lambda t: t.rank)] == [
        "rule", "hidden_semantics", "attribution", "example"]
    assert [s.value for s in sorted(Scope, key=lambda s: s.rank)] == ["local", "semi_local", "global"]
    assert registry.spec("l2x").scopes == (Scope.LOCAL, Scope.SEMI_LOCAL, Scope.GLOBAL)


def test_the_registry_imports_no_heavy_library():
    """Every pipeline job is a fresh process that imports the registry: scipy.stats, scikit-learn,
    scikit-image, Captum and matplotlib cost seconds each, so method modules import them where used."""
    import subprocess
    import sys

    code = ("import sys, nnxai.registry as r; r.implemented_ids(); import nnxai.metrics; "
            "print(' '.join(m for m in ('scipy.stats', 'sklearn', 'skimage', 'captum', 'matplotlib', 'pandas') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"imported at registry load: {loaded}"
