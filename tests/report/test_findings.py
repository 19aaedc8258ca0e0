"""The published-findings section: each rule gives the verdict its words state, on planted rows."""

from __future__ import annotations

import math

import pytest

from nnxai.report import findings as pub
from nnxai.report import results


def row(value, low=math.nan, high=math.nan, n=10):
    return {"value": str(value), "ci_low": "" if math.isnan(low) else str(low),
            "ci_high": "" if math.isnan(high) else str(high), "n": str(n)}


def rows_of(**cells):
    """``{(dataset, model, method, metric): row}`` from ``method__metric=(value, low, high)`` on shapes/baseline."""
    out = {}
    for key, numbers in cells.items():
        method, metric = key.split("__")
        out["shapes", "baseline", method, metric.replace("_DOT_", ".")] = row(*numbers)
    return out


@pytest.mark.parametrize("gbp, gradient, verdict", [
    ((0.8, 0.7, 0.9), (0.2, 0.1, 0.3), pub.REPRODUCED),
    ((0.2, 0.1, 0.3), (0.8, 0.7, 0.9), pub.NOT_REPRODUCED),
    ((0.5, 0.3, 0.7), (0.4, 0.2, 0.6), pub.INCONCLUSIVE),
])
def test_an_ordering_is_decided_by_disjoint_intervals_only(gbp, gradient, verdict):
    check = pub.higher("sanity_model_randomisation", "guided_backprop", "gradient")
    measured, got = check(rows_of(guided_backprop__sanity_model_randomisation=gbp,
                                  gradient__sanity_model_randomisation=gradient), "shapes", "baseline")
    assert got == verdict and "guided_backprop" in measured and "gradient" in measured


@pytest.mark.parametrize("numbers, verdict", [((0.01, 0.005, 0.02), pub.REPRODUCED),
                                              ((0.04, 0.02, 0.08), pub.INCONCLUSIVE),
                                              ((0.3, 0.2, 0.4), pub.NOT_REPRODUCED)])
def test_a_bound_is_met_by_the_whole_interval(numbers, verdict):
    check = pub.below("completeness", "integrated_gradients", 0.05)
    assert check(rows_of(integrated_gradients__completeness=numbers), "shapes", "baseline")[1] == verdict


def test_roar_negative_result_fails_only_when_the_method_is_shown_better_than_random():
    check = pub.not_better_than_random("roar", "gradient", "roar.random")
    on_par = rows_of(gradient__roar=(0.7, 0.6, 0.8), gradient__roar_DOT_random=(0.72, 0.65, 0.8))
    better = rows_of(gradient__roar=(0.5, 0.45, 0.55), gradient__roar_DOT_random=(0.72, 0.65, 0.8))
    assert check(on_par, "shapes", "baseline")[1] == pub.REPRODUCED
    assert check(better, "shapes", "baseline")[1] == pub.NOT_REPRODUCED


def test_a_self_bootstrapped_metric_reads_its_interval_rows():
    rows = rows_of(influence_functions__loo_correlation=(0.9,), influence_functions__loo_correlation_DOT_ci_low=(0.6,),
                   influence_functions__loo_correlation_DOT_ci_high=(0.95,))
    x = pub.interval(rows, "shapes", "baseline", "influence_functions", "loo_correlation")
    assert (x.value, x.low, x.high) == (0.9, 0.6, 0.95)
    rows["shapes", "baseline", "influence_functions", "loo_correlation.ci_low"] = row(0.4)
    assert pub.above("loo_correlation", "influence_functions", 0.5)(rows, "shapes", "baseline")[1] == pub.INCONCLUSIVE


def test_concept_verdicts_read_each_pair_never_a_mean():
    rows = rows_of(tcav__p_value=(0.5,))
    rows["shapes", "baseline", "tcav", "p_value.texture=stripes.positive"] = row(1e-5)
    rows["shapes", "baseline", "tcav", "p_value.colour=blue.positive"] = row(0.003)
    rows["shapes", "baseline", "tcav", "p_value.colour=red.positive"] = row(0.9)
    planted = pub.concept_significant("tcav", "texture=stripes.positive")(rows, "shapes", "baseline")
    distractor = pub.concepts_not_significant("tcav", "colour=")(rows, "shapes", "baseline")
    assert planted[1] == pub.REPRODUCED
    assert distractor[1] == pub.NOT_REPRODUCED and "1 of 2 pairs" in distractor[0] and "colour=blue" in distractor[0]


def test_unmeasured_findings_are_not_applicable_and_image_findings_skip_tables():
    rows = {("planted", "baseline", "gradient", "fragility"): row(0.0, 0.0, 0.0)}
    verdicts = {f.key: (cell, v) for f, cell, _, v in pub.evaluate(rows)}
    assert verdicts["fragility-gradient"] == ("—", pub.NOT_APPLICABLE)     # stated of image networks
    assert all(v == pub.NOT_APPLICABLE for _, v in verdicts.values())


def test_every_finding_names_its_source_and_rule_and_keys_are_unique():
    assert len({f.key for f in pub.FINDINGS}) == len(pub.FINDINGS)
    for finding in pub.FINDINGS:
        assert finding.source.startswith("[") and finding.rule and finding.statement


def test_the_section_tallies_its_rows(tmp_path):
    rows = rows_of(integrated_gradients__completeness=(0.01, 0.005, 0.02))
    text = results.findings_section(rows, tmp_path)
    tally = pub.counts(pub.evaluate(rows))
    assert f"{tally[pub.REPRODUCED]} reproduced" in text and tally[pub.REPRODUCED] == 1
    assert "| shapes/baseline | integrated_gradients 0.01 [0.005, 0.02] | reproduced |" in text


def test_a_conclusion_must_survive_the_seed_replicas():
    """The baseline's verdict stands only where every retrained seed that measured it agrees."""
    rows = rows_of(integrated_gradients__completeness=(0.01, 0.005, 0.02))
    rows["shapes", "baseline_seed1", "integrated_gradients", "completeness"] = row(0.01, 0.004, 0.03)
    [(_, _, measured, verdict)] = [r for r in pub.evaluate(rows) if r[0].key == "completeness-ig"]
    assert verdict == pub.REPRODUCED and "the same on 1 other training seed" in measured
    rows["shapes", "baseline_seed2", "integrated_gradients", "completeness"] = row(0.06, 0.03, 0.09)
    [(_, cell, measured, verdict)] = [r for r in pub.evaluate(rows) if r[0].key == "completeness-ig"]
    assert cell == "shapes/baseline" and verdict == pub.INCONCLUSIVE and "seed2: inconclusive" in measured
