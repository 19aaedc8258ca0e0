"""The ``prototypes_criticisms`` figure: its panels from hand-made records, and the files it writes."""

from __future__ import annotations

import numpy as np

from nnxai.explanations import Examples
from nnxai.report import FIGURES
from nnxai.report.prototypes_criticisms import NAME, example_panels, neighbour_rows

TRAIN_X = np.arange(6 * 3 * 2 * 2, dtype=np.float64).reshape(6, 3, 2, 2) / 100.0
TEST_X = TRAIN_X[::-1].copy()


def test_prototypes_and_criticisms_sorted_by_class_with_their_witness():
    record = Examples(indices=[0], targets=[1], examples=[[4]], scores=[[0.5]], extra={
        "prototypes": [4, 1, 2], "prototype_classes": [1, 0, 1], "prototype_witness": [0.01, -0.02, 0.0],
        "criticisms": [5], "criticism_classes": [0], "criticism_witness": [0.25]})
    panels = example_panels(record, TRAIN_X, ["neg", "pos"])
    assert [p["position"] for p in panels["prototypes"]] == [1, 4, 2]
    assert [p["title"] for p in panels["prototypes"]] == ["neg\nw -0.020", "pos\nw +0.010", "pos\nw +0.000"]
    assert panels["criticisms"][0]["title"] == "neg\nw +0.250"
    np.testing.assert_array_equal(panels["criticisms"][0]["image"], TRAIN_X[5])


def test_neighbour_rows_show_the_input_and_its_neighbours():
    record = Examples(indices=[2, 0], targets=[1, 0], examples=[[3, 0], [1, 2]], scores=[[0.1, 0.25], [0.3, 0.4]],
                      extra={"neighbour_labels": [[1, 0], [0, 0]]})
    rows = neighbour_rows(record, TRAIN_X, TEST_X, ["neg", "pos"], rows=1)
    assert len(rows) == 1 and rows[0]["title"] == "test 2\n→ pos"
    np.testing.assert_array_equal(rows[0]["input"], TEST_X[2])
    assert [n["title"] for n in rows[0]["neighbours"]] == ["pos\n0.10", "neg\n0.25"]


def test_a_run_without_records_still_gets_its_files(tmp_path):
    paths = FIGURES[NAME](tmp_path / "out", workdir=tmp_path)
    assert [p.name for p in paths] == [f"{NAME}.{ext}" for ext in ("pdf", "png", "html")]
    assert all(p.stat().st_size > 1_000 for p in paths)
