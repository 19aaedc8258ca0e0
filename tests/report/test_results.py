"""The results document (nnxai.report.results): sections from all.csv, values with their intervals, the
LaTeX version, and the README's section markers."""

from __future__ import annotations

import csv
import math

import pytest

from nnxai.explanations import ConceptScores
from nnxai.report import results


def write_run(workdir, rows):
    path = workdir / "data/metrics/all.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("dataset", "model", "method", "metric", "value", "seed", "ci_low", "ci_high", "n"))
        writer.writerows(rows)


@pytest.fixture
def run(tmp_path):
    write_run(tmp_path, [
        ("shapes", "baseline", "model", "accuracy", 0.996, 0, 0.99, 1.0, 500),
        ("shapes", "l1", "model", "accuracy", 0.95, 0, 0.93, 0.97, 500),
        ("shapes", "baseline", "gradient", "localisation.mass", 0.41, 0, 0.39, 0.43, 60),
        ("shapes", "baseline", "gradient", "pixel_flipping", 0.3, 0, math.nan, math.nan, 60),
        ("shapes", "baseline", "gradient", "pixel_flipping.random", 0.05, 0, 0.02, 0.08, 60),
        ("shapes", "baseline", "trepan", "fidelity", 0.9, 0, 0.85, 0.95, 500),
    ])
    folder = tmp_path / "data/explanations/shapes/baseline"
    folder.mkdir(parents=True)
    ConceptScores(concepts=["stripes"], layer="conv2", class_names=["neg", "pos"],
                  tests=[{"concept": "stripes", "class": 1, "tcav_score": 0.95, "run_scores": [0.9, 1.0],
                          "random_mean": 0.5, "p_value": 1e-6, "p_value_corrected": 1e-5, "significant": True}],
                  random_scores=[[], [0.4, 0.6]], alpha=0.05).save(folder / "tcav.json")
    return tmp_path


def test_values_carry_their_intervals_and_a_p_value_only_its_pair(run):
    parts = results.sections(run)
    assert set(parts) == {key for key, _, _ in results.SECTIONS}
    assert "| shapes | baseline | 0.996 [0.990, 1.000] | 500 |" in parts["accuracy"]
    assert "| shapes | l1 | 0.950 [0.930, 0.970] | 500 |" in parts["accuracy"]
    row = next(r for r in parts["attribution"].splitlines() if r.startswith("| gradient |"))
    assert "0.41 [0.39, 0.43]" in row and "| 0.30 |" in row          # no interval recorded: the value alone
    assert "| trepan | `fidelity` |" in parts["structured"]
    assert "| shapes | tcav | stripes | pos | 0.95 (0.07) | 0.50 (0.14) | 1e-05 | yes |" in parts["concepts"]


def test_document_sections_round_trip_and_latex(run, tmp_path):
    md, tex = results.write_results(tmp_path / "paper", workdir=run)
    text = md.read_text()
    parts = results.sections(run)
    for key, _, _ in results.SECTIONS:
        assert results.section_of(text, key) == parts[key]
    with pytest.raises(KeyError, match="no section"):
        results.section_of(text, "nonsense")
    latex = tex.read_text()
    assert r"\begin{longtable}" in latex and r"\subsection*{Test accuracy}" in latex
    assert "0.996 [0.990, 1.000]" in latex and r"\texttt{fidelity}" in latex
    assert "|" not in latex.replace(r"\textbar{}", "")                   # no stray Markdown pipes


def test_a_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the workflow first"):
        results.sections(tmp_path)


def test_the_seed_spread_is_set_against_the_interval_over_inputs(tmp_path):
    """Spread = largest minus smallest over the baseline and its replicas; it *moves* where it exceeds the
    half-width of the baseline's interval (0.396-0.404 on pixel flipping: spread 0.1 moves; accuracy's 0.004
    stays within 0.01)."""
    write_run(tmp_path, [
        ("shapes", "baseline", "model", "accuracy", 0.996, 0, 0.99, 1.0, 500),
        ("shapes", "baseline_seed1", "model", "accuracy", 0.992, 1, 0.98, 1.0, 500),
        ("shapes", "baseline_seed2", "model", "accuracy", 0.994, 2, 0.98, 1.0, 500),
        ("shapes", "baseline", "gradient", "pixel_flipping", 0.40, 0, 0.396, 0.404, 60),
        ("shapes", "baseline_seed1", "gradient", "pixel_flipping", 0.30, 1, 0.29, 0.31, 60),
        ("shapes", "baseline_seed2", "gradient", "pixel_flipping", 0.35, 2, 0.34, 0.36, 60),
        ("causal", "baseline", "model", "accuracy", 0.9, 0, 0.85, 0.95, 100),      # no replica: not listed
    ])
    text = results.seeds_section(results.read(tmp_path), tmp_path)
    assert "1 of 2 numbers move" in text and "other seeds (seed1, seed2)" in text
    assert "| shapes | (model) | test accuracy | 0.996 [0.990, 1.000] | 0.992 / 0.994 | 0.004 | within |" in text
    assert "| shapes | gradient | AOPC | 0.400 [0.396, 0.404] | 0.300 / 0.350 | 0.100 | *moves* |" in text
    assert "causal" not in text
    alone = {k: v for k, v in results.read(tmp_path).items() if not k[1].startswith("baseline_seed")}
    assert "No seed replica was measured" in results.seeds_section(alone, tmp_path)


# ----------------------------------------------------------------------------- rules, planted concepts, active
def lit(feature, op, threshold=0.5):
    return {"literals": [{"feature": feature, "op": op, "threshold": threshold}], "m": 1}


def write_prepared(workdir, dataset, key, array):
    """The three prepared splits of ``dataset`` holding ``array`` under ``key`` (what binary_columns reads)."""
    import numpy as np

    folder = workdir / "data/prepared" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        np.savez(folder / f"{split}.npz", **{key: np.asarray(array, dtype=np.float32)})


def save_rules(workdir, dataset, model, method, rules, default, names, classes, space="inputs"):
    from nnxai.explanations import RuleSet

    folder = workdir / "data/explanations" / dataset / model
    folder.mkdir(parents=True, exist_ok=True)
    RuleSet(rules=rules, default=default, feature_names=names, class_names=classes,
            feature_space=space).save(folder / f"{method}.json")


@pytest.fixture
def rule_run(tmp_path):
    """MONK-1/MONK-3 on one-hot inputs and shapes' concept table (binary columns and a continuous ``size``),
    with a short first-order rule set, a long decision list and the local methods' rows."""
    from nnxai.data import monks
    from nnxai.explanations import LocalRules

    write_prepared(tmp_path, "monks1", "x", monks.one_hot(monks.attribute_space()))
    write_prepared(tmp_path, "monks3", "x", monks.one_hot(monks.attribute_space()))
    write_prepared(tmp_path, "shapes", "concepts", [[1, 0, 5.5], [0, 1, 7.25]])
    names, yes_no = monks.FEATURE_NAMES, monks.CLASS_NAMES
    a1_eq_a2 = {"literals": [{"equal": [[0, 1, 2], [3, 4, 5]], "names": ["a1", "a2"], "op": "=="}], "m": 1}
    save_rules(tmp_path, "monks1", "baseline_sigmoid", "gyan",
               [{"conditions": [lit(11, ">")], "prediction": 1, "support": 3},
                {"conditions": [lit(2, "<="), lit(5, ">"), lit(11, "<=")], "prediction": 0, "support": 2},
                {"conditions": [a1_eq_a2], "prediction": 1, "support": 2}], 0, names, yes_no)
    long_list = [{"conditions": [lit(3, ">"), lit(11 + k % 4, ">")], "prediction": k % 2, "support": 1}
                 for k in range(12)]
    save_rules(tmp_path, "monks3", "baseline_sigmoid", "dectext", long_list, 0, names, yes_no)
    save_rules(tmp_path, "shapes", "baseline", "dt_extraction",
               [{"conditions": [lit(0, "<="), lit(2, ">", 6.0)], "prediction": 1, "support": 1}], 0,
               ["texture=stripes", "shape=triangle", "size"], ["negative", "positive"], space="concepts")
    folder = tmp_path / "data/explanations/monks3/baseline"
    folder.mkdir(parents=True)
    LocalRules(indices=[145], targets=[1], explanations=[{"text": "change a2 from 1 to 3: class yes -> no",
                                                          "conditions": []}],
               feature_names=names, class_names=yes_no, feature_space="inputs").save(folder / "dace.json")
    save_rules(tmp_path, "monks3", "baseline_sigmoid", "partial_substitution",
               [{"conditions": [lit(5, "<="), lit(14, "<=")], "prediction": 1, "support": 5}], 0, names, yes_no)
    write_run(tmp_path, [
        ("monks3", "baseline", "dace", "cost", 6.6, 0, 6.5, 6.7, 3),
        ("monks3", "baseline", "dace", "plausibility", 1.002, 0, 0.985, 1.022, 3),
        ("monks3", "baseline_sigmoid", "partial_substitution", "coverage", 0.917, 0, 0.891, 0.940, 432),
        ("monks3", "baseline_sigmoid", "partial_substitution", "hybrid_accuracy", 0.993, 0, 0.984, 1.0, 432),
    ])
    return tmp_path


def test_rules_read_in_attribute_form_and_whole(rule_run):
    """One-hot tests read as the attribute tests of Thrun et al.'s report (``a1=3 > 0.5`` is ``a1=3``,
    ``<= 0.5`` is ``a1≠3``); Gyan's first-order literal [86] shows, no rule is cut; a continuous column keeps
    its threshold; a long list shows its first rules whole, the count of the rest, `nnxai show` and its ELSE."""
    text = results.rules_section(results.read(rule_run), rule_run)
    gyan = next(r for r in text.splitlines() if r.startswith("| gyan |"))
    assert "`IF a5=1 THEN yes`<br>`IF a1≠3 AND a2=3 AND a5≠1 THEN no`<br>`IF a1 = a2 THEN yes`<br>`ELSE no`" in gyan
    assert "<= 0.5" not in text and "> 0.5" not in text
    dt = next(r for r in text.splitlines() if r.startswith("| dt_extraction | shapes"))
    assert "`IF texture≠stripes AND size > 6 THEN positive`" in dt
    dectext = next(r for r in text.splitlines() if r.startswith("| dectext | monks3"))
    shown = dectext.split(" | ")[2].split("<br>")
    assert len(shown) == results.RULES_SHOWN + 2 and shown[-1] == "`ELSE no`"
    assert shown[0] == "`IF a2=1 AND a5=1 THEN no`"
    assert shown[-2] == (f"… {12 - results.RULES_SHOWN} more rules: "
                         "`python -m nnxai show data/explanations/monks3/baseline_sigmoid/dectext.json`")


def test_local_rules_list_monks3_with_the_trade_off_and_plausibility(rule_run):
    text = results.rules_section(results.read(rule_run), rule_run)
    dace = next(r for r in text.splitlines() if r.startswith("| dace | monks3 / baseline |"))
    assert "change a2 from 1 to 3" in dace and "`plausibility` 1.002 [0.985, 1.022]" in dace
    partial = next(r for r in text.splitlines() if r.startswith("| partial_substitution | monks3"))
    assert "`coverage` 0.917 [0.891, 0.940]; `hybrid_accuracy` 0.993 [0.984, 1.000]" in partial
    assert "`IF a2≠3 AND a5≠4 THEN yes`" in partial


def test_hidden_semantics_set_against_the_planted_concepts(tmp_path):
    """Activation maximisation per regulariser, Net2Vec concept by concept [99] (from its record, gain =
    multi - single filter) and the mimic's accuracy on the true labels, intervals kept."""
    from nnxai.explanations import UnitConcepts

    write_run(tmp_path, [
        ("shapes", "baseline", "activation_max", "activation_reached.concept_auc", 0.66, 0, 0.60, 0.72, 21),
        ("shapes", "baseline", "activation_max", "activation_reached.concept_auc.blur", 0.76, 0, 0.69, 0.82, 3),
        ("shapes", "baseline", "activation_max", "activation_reached.concept_match", 0.52, 0, 0.33, 0.76, 21),
        ("shapes", "baseline", "activation_max", "class_confidence.rule", 0.86, 0, 0.64, 1.0, 14),
        ("shapes", "baseline", "activation_max", "class_confidence.rule.blur", 1.0, 0, 1.0, 1.0, 2),
        ("shapes", "baseline", "net2vec", "concept_seg_iou", 0.46, 0, 0.32, 0.64, 9),
        ("shapes", "baseline", "mimic", "fidelity.label_accuracy", 0.795, 0, 0.771, 0.819, 1000),
    ])
    folder = tmp_path / "data/explanations/shapes/baseline"
    folder.mkdir(parents=True)
    UnitConcepts(units=[], concepts=["texture=stripes"],
                 meta={"headline_layer": "conv3",
                       "scores": {"conv3": {"texture=stripes": {"seg_iou": 0.7, "single_iou": 0.1}}}}
                 ).save(folder / "net2vec.json")
    text = results.hidden_examples_section(results.read(tmp_path), tmp_path)
    assert "| all | 0.660 [0.600, 0.720] | 0.520 [0.330, 0.760] | 0.860 [0.640, 1.000] |" in text
    assert "| blur | 0.760 [0.690, 0.820] |  | 1.000 [1.000, 1.000] |" in text
    assert "| mean over concepts | 0.460 [0.320, 0.640] |" in text
    assert "| texture=stripes | 0.700 | 0.100 | 0.600 |" in text
    assert "| mimic | `fidelity.label_accuracy` |" in text and "0.795 [0.771, 0.819] | 1000 |" in text


def test_an_empty_own_explanation_says_why_and_a_constructed_zero_says_so(tmp_path):
    """digits has no concept masks, so the interpretable CNN's metrics [70] cannot run: the cell says so;
    ProtoPNet's closeness is 0 after the push [123] Sec. 2.2: shown with that reason and the distance the
    push moved the prototypes (its training record)."""
    import json

    write_run(tmp_path, [
        ("digits", "baseline", "model", "accuracy", 0.88, 0, 0.85, 0.91, 500),
        ("digits", "interpretable_cnn", "model", "accuracy", 0.88, 0, 0.85, 0.90, 500),
        ("digits", "interpretable_cnn", "interpretable_cnn", "runtime", 0.001, 0, math.nan, math.nan, ""),
        ("digits", "l1", "model", "accuracy", 0.87, 0, 0.84, 0.90, 500),
        ("shapes", "baseline", "model", "accuracy", 0.99, 0, 0.98, 1.0, 1000),
        ("shapes", "protopnet", "model", "accuracy", 0.85, 0, 0.82, 0.87, 1000),
        ("shapes", "protopnet", "protopnet", "prototype_closeness", 6e-15, 0, 4e-15, 8e-15, 20),
    ])
    folder = tmp_path / "data/checkpoints/shapes"
    folder.mkdir(parents=True)
    (folder / "protopnet.json").write_text(json.dumps(
        {"history": [{"epoch": 1}, {"epoch": 2, "active": {"mean_distance_moved": 5.09}}]}))
    rows = results.active_section(results.read(tmp_path), tmp_path).splitlines()
    cnn = next(r for r in rows if r.startswith("| digits | interpretable_cnn |"))
    assert "n.a.: digits has no ground-truth masks (`dissection_iou`, `part_consistency`)" in cnn
    assert "n.a.: a weight penalty" in next(r for r in rows if r.startswith("| digits | l1 |"))
    proto = next(r for r in rows if r.startswith("| shapes | protopnet |"))
    assert "`prototype_closeness` 0.000 [0.000, 0.000] (0 by construction" in proto
    assert "before the push the prototypes lay 5.090" in proto
