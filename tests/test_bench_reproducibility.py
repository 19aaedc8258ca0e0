"""benchmarks/reproducibility.py on two hand-made runs: which values leave the reference's intervals."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = ("dataset", "model", "method", "metric", "value", "seed", "ci_low", "ci_high", "n")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_reproducibility", ROOT / "benchmarks" / "reproducibility.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(folder: Path, rows) -> Path:
    path = folder / "data/metrics/all.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return folder


def test_statuses_counts_and_report(bench, tmp_path, capsys):
    cell = ("shapes", "baseline", "gradient")
    reference = write_run(tmp_path / "a", [
        (*cell, "localisation.mass", 0.40, 0, 0.35, 0.45, 60),     # rerun inside
        (*cell, "pixel_flipping", 0.30, 0, 0.25, 0.35, 60),        # rerun outside, intervals overlap
        (*cell, "continuity", 0.50, 0, 0.45, 0.55, 10),            # rerun's interval disjoint
        (*cell, "rule_size", 3.0, 0, "", "", ""),                  # no interval, unchanged
        (*cell, "p_value.a.pos", 0.01, 0, "", "", ""),             # no interval, changed
        (*cell, "entropy", "nan", 0, "", "", ""),                  # undefined
        (*cell, "only_in_a", 1.0, 0, "", "", ""),
    ])
    rerun = write_run(tmp_path / "b", [
        (*cell, "localisation.mass", 0.44, 0, 0.39, 0.49, 60),
        (*cell, "pixel_flipping", 0.37, 0, 0.31, 0.43, 60),
        (*cell, "continuity", 0.70, 0, 0.60, 0.80, 10),
        (*cell, "rule_size", 3.0, 0, "", "", ""),
        (*cell, "p_value.a.pos", 0.02, 0, "", "", ""),
        (*cell, "entropy", 1.0, 0, "", "", ""),
    ])
    rows = bench.compare(bench.read(reference), bench.read(rerun))
    status = {r["metric"]: r["status"] for r in rows}
    assert status == {"localisation.mass": "inside", "pixel_flipping": "outside", "continuity": "disjoint",
                      "rule_size": "same", "p_value.a.pos": "changed", "entropy": "undefined"}
    assert bench.summary(rows)["p_value"] == {"changed": 1}
    out_csv = tmp_path / "out.csv"
    assert bench.main(["--reference", str(reference), "--rerun", str(rerun), "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "6 values in both runs; 3 with a 95% interval in the reference, 2 of them outside it" in text
    assert text.index("continuity") < text.index("pixel_flipping", text.index("Furthest"))   # 2.0 widths first
    assert len(out_csv.read_text().splitlines()) == 7


def test_a_folder_without_results_is_a_clear_error(bench, tmp_path):
    with pytest.raises(SystemExit, match="no .*all.csv"):
        bench.read(tmp_path)
