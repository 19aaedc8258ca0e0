"""The comparison of unit concept labels with Network Dissection (nnxai.report.unit_agreement)."""

import numpy as np
import pytest

from nnxai.explanations import UnitConcepts, UnitImages
from nnxai.report import unit_agreement


def _dissection(units):
    return UnitConcepts(units=[{"layer": "conv1", "unit": k, "concept": c, "iou": 0.1, "detector": d}
                               for k, (c, d) in enumerate(units)], concepts=["a", "b"])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    folder = tmp_path / "data/explanations/shapes/baseline"
    folder.mkdir(parents=True)
    _dissection([("a", True), ("a", True), ("b", False), ("b", True)]).save(folder / "network_dissection.json")
    UnitConcepts(units=[{"layer": "conv1", "unit": k, "concept": c} for k, c in enumerate("abaa")]
                 + [{"layer": "conv9", "unit": 0, "concept": "a"}, {"layer": "conv1", "unit": 9}],
                 concepts=["a", "b"]).save(folder / "probe.json")
    UnitImages(units=[{"layer": "conv1", "unit": k, "regulariser": r, "concept": c}
                      for r, cs in (("none", "aaaa"), ("tv", "abbb")) for k, c in enumerate(cs)],
               concepts=["a", "b"], images=np.zeros((8, 1, 2, 2))).save(folder / "images.npz")
    monkeypatch.setattr(unit_agreement, "_hidden_semantics_methods", lambda: [("probe", ".json"), ("images", ".npz")])
    return tmp_path


def test_agreement_chance_and_detectors_on_known_labels(workdir):
    rows = unit_agreement.agreement_rows(workdir).set_index("method")
    probe = rows.loc["probe"]
    # shared units: conv1 0-3 (conv9:0 is not dissected, conv1:9 names no concept); labels a b a a vs a a b b
    assert probe["units"] == 4 and probe["agreement"] == pytest.approx(1 / 4)
    # detectors 0, 1, 3: a/a agree, b/a and a/b do not
    assert probe["detectors"] == 3 and probe["agreement_detectors"] == pytest.approx(1 / 3)
    # chance: p = (a 3/4, b 1/4), q = (a 1/2, b 1/2) -> 3/8 + 1/8
    assert probe["chance"] == pytest.approx(0.5)
    assert probe["low"] <= probe["agreement"] <= probe["high"]
    # one row per regulariser of a record with several images per unit
    assert rows.loc["images/none", "agreement"] == pytest.approx(0.5)
    assert rows.loc["images/tv", "agreement"] == pytest.approx(0.75)


def test_figure_and_table_are_written(workdir, tmp_path):
    tables = unit_agreement.write_unit_agreement_table(tmp_path / "t", workdir=workdir)
    text = tables[0].read_text()
    assert "| shapes | probe | baseline | 4 | 25 % [" in text and "of 3" in text
    figures = unit_agreement.write_unit_agreement_figure(tmp_path / "f", workdir=workdir)
    assert {p.suffix for p in figures} == {".pdf", ".png", ".html"}


def test_no_records_still_gives_a_table_that_says_so(tmp_path):
    text = unit_agreement.write_unit_agreement_table(tmp_path / "t", workdir=tmp_path)[0].read_text()
    assert "no hidden-semantics method ran beside Network Dissection" in text
