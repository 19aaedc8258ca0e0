"""The per-pair concept test table (nnxai.report.concept_tests): every pair of a baseline, counts elsewhere."""

from nnxai.explanations import ConceptScores
from nnxai.report import concept_tests


def _test(concept, k, runs, p, significant):
    return {"concept": concept, "class": k, "tcav_score": sum(runs) / len(runs), "run_scores": runs,
            "random_mean": 0.5, "p_value": p / 2, "p_value_corrected": p, "significant": significant}


def _record(tests):
    return ConceptScores(concepts=sorted({t["concept"] for t in tests}), layer="conv2", class_names=["neg", "pos"],
                         tests=tests, random_scores=[[0.4, 0.6], [0.5, 0.5]], alpha=0.05)


def test_pairs_of_the_baseline_and_counts_of_the_other_networks(tmp_path):
    tests = [_test("stripes", 1, [0.9, 1.0], 1e-5, True), _test("colour=blue", 1, [0.6, 0.7], 0.02, True),
             _test("stripes", 0, [0.1, 0.3], 0.4, False)]
    for model in ("baseline", "l1"):
        folder = tmp_path / "data/explanations/shapes" / model
        folder.mkdir(parents=True)
        _record(tests).save(folder / "tcav.json")
    pairs, counts = concept_tests.pair_rows(tmp_path)
    assert [(r["Concept"], r["Class"], r["Significant"]) for r in pairs] == [
        ("stripes", "neg", "no"), ("colour=blue", "pos", "yes"), ("stripes", "pos", "yes")]
    stripes = pairs[2]
    assert stripes["TCAV score (sd over runs)"] == "0.95 (0.07)" and stripes["Random CAVs (sd)"] == "0.50 (0.00)"
    assert stripes["Corrected p"] == "1e-05"
    assert counts == [{"Data set": "shapes", "Method": "tcav", "Model": "l1", "Significant pairs": "2 of 3"}]
    md, tex = concept_tests.write_concept_tests(tmp_path / "t", workdir=tmp_path)
    text = md.read_text()
    assert "| shapes | tcav | stripes | pos | 0.95 (0.07) | 0.50 (0.00) | 1e-05 | yes |" in text
    assert "2 of 3" in text and "average of p-values is not a p-value" in text
    assert r"\begin{table*}" in tex.read_text()


def test_no_records_gives_a_table_that_says_so(tmp_path):
    md, _ = concept_tests.write_concept_tests(tmp_path / "t", workdir=tmp_path)
    assert "no concept test ran on a baseline network" in md.read_text()
