"""benchmarks/apl_sweep.py without training: its verdict on [119]'s claim (tree regularisation reaches a lower
APL than L1 and L2 at the same accuracy) on planted sweeps, and ``--from-csv`` rebuilding from a saved sweep."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"epochs": 30, "n_train": 1000, "n_test": 500, "seed": 0}


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("bench_apl_sweep", ROOT / "benchmarks" / "apl_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def point(regulariser, strength, apl, accuracy):
    return {"regulariser": regulariser, "strength": strength, "apl": apl, "val_accuracy": accuracy,
            "test_accuracy": accuracy, "train_seconds": 1.0, **SETTINGS}


def planted_sweep(tree_apl: tuple[float, float], l1_apl: float, l2_apl: float) -> list[dict]:
    """Two tree-regularised networks (at 0.95 and 0.94) and one L1, one L2 network at 0.95, plus each
    penalty's collapsed network (one class, APL 0, accuracy 0.5) that no tree-regularised one matches."""
    return [point("none", 0.0, 5.0, 0.95),
            point("tree_regularization", 1.0, tree_apl[0], 0.95), point("tree_regularization", 10.0, tree_apl[1], 0.94),
            point("l1", 1e-3, l1_apl, 0.95), point("l1", 1e-1, 0.0, 0.5),
            point("l2", 1e-3, l2_apl, 0.95), point("l2", 1e-1, 0.0, 0.5)]


@pytest.mark.parametrize("tree_apl, l1_apl, l2_apl, word", [
    ((4.0, 3.0), 5.0, 4.5, "reproduced"),            # lower than both at matched accuracy
    ((6.0, 5.5), 5.0, 4.5, "not reproduced"),        # higher than both
    ((6.0, 4.8), 5.0, 4.5, "inconclusive"),          # lower than L1's, not than L2's
])
def test_the_verdict_compares_apl_at_matched_accuracy_only(sweep, tree_apl, l1_apl, l2_apl, word):
    got, sentence = sweep.verdict(planted_sweep(tree_apl, l1_apl, l2_apl), n_test=500)
    assert got == word and f"**{word}**" in sentence
    assert "(1 unmatched)" in sentence            # the collapsed networks are counted apart, never compared


def test_no_matched_point_is_inconclusive(sweep):
    rows = [point("tree_regularization", 1.0, 1.0, 0.70), point("l1", 1e-3, 5.0, 0.95), point("l2", 1e-3, 5.0, 0.95)]
    word, sentence = sweep.verdict(rows, n_test=500)
    assert word == "inconclusive" and "at 0 of 0 matched L1 points (1 unmatched)" in sentence


def test_matching_tolerance_is_the_interval_of_a_difference_of_two_accuracies(sweep):
    """Wider on fewer test rows and near 50 %, zero for a network that is always right."""
    assert sweep.matching_tolerance(0.95, 100) > sweep.matching_tolerance(0.95, 500) > 0.0
    assert sweep.matching_tolerance(0.5, 500) > sweep.matching_tolerance(0.95, 500)
    assert sweep.matching_tolerance(1.0, 500) == 0.0


def test_from_csv_rebuilds_table_verdict_and_figure_without_training(sweep, tmp_path, monkeypatch, capsys):
    rows = planted_sweep((4.0, 3.0), 5.0, 4.5)
    saved = tmp_path / "apl_sweep.csv"
    sweep.write_csv([{**r, "epochs": 7, "n_test": 200} for r in rows], saved)
    monkeypatch.setattr(sweep, "sweep", lambda args: pytest.fail("--from-csv must not train"))
    sweep.main(["--from-csv", "--csv", str(saved), "--figure", str(tmp_path / "apl_sweep.png")])
    assert (tmp_path / "apl_sweep.png").stat().st_size > 0
    assert "**reproduced**" in capsys.readouterr().out
    loaded = sweep.read_csv(saved)
    table = sweep.readme_table(loaded, sweep.settings_of(loaded))
    assert "7 epochs" in table and "on 200 test rows" in table     # the CSV's settings, not the defaults
    assert "| tree_regularization | 10 | 3.00 | 0.940 |" in table and table.rstrip().endswith(".")


def test_a_csv_without_the_sweep_settings_is_refused(sweep, tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("regulariser,strength,apl,val_accuracy,test_accuracy,train_seconds\nnone,0,4.9,0.95,0.95,1\n")
    with pytest.raises(SystemExit, match="settings"):
        sweep.read_csv(old)
