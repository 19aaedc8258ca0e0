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


# ------------------------------------------------------------------ the active networks' own claims
def cell(dataset, model, method, metric, numbers):
    return {(dataset, model, method, metric): row(*numbers)}


def verdicts_of(key, rows):
    """``[(cell, measured, verdict)]`` of the registered finding ``key`` on ``rows``."""
    return [(c, m, v) for f, c, m, v in pub.evaluate(rows) if f.key == key]


@pytest.mark.parametrize("dapr, baseline, verdict", [
    ((0.8, 0.75, 0.85), (0.6, 0.55, 0.65), pub.REPRODUCED),
    ((0.2, 0.1, 0.3), (0.7, 0.68, 0.72), pub.NOT_REPRODUCED),
    ((0.7, 0.6, 0.8), (0.7, 0.68, 0.72), pub.INCONCLUSIVE),
])
def test_dapr_attributions_are_compared_with_the_same_explainer_on_the_plain_baseline(dapr, baseline, verdict):
    """[121]: the prior biases the network's attributions towards the (planted) truth."""
    rows = {**cell("planted", "dapr", "integrated_gradients", "prior_agreement", dapr),
            **cell("planted", "baseline", "integrated_gradients", "prior_agreement", baseline),
            # a sigmoid baseline is built otherwise: never the reference, however it scores
            **cell("planted", "baseline_sigmoid", "integrated_gradients", "prior_agreement", (0.0, 0.0, 0.0))}
    [(where, measured, got)] = verdicts_of("dapr-attribution-prior", rows)
    assert where == "planted/dapr" and got == verdict
    assert "dapr/integrated_gradients" in measured and "baseline/integrated_gradients" in measured


@pytest.mark.parametrize("expo, baseline, verdict", [
    ((0.01, 0.005, 0.02), (0.05, 0.04, 0.06), pub.REPRODUCED),       # lower error: better fidelity
    ((0.08, 0.07, 0.09), (0.05, 0.04, 0.06), pub.NOT_REPRODUCED),
    ((0.05, 0.03, 0.07), (0.05, 0.04, 0.06), pub.INCONCLUSIVE),
])
def test_expo_fidelity_is_a_lower_neighbourhood_error_than_the_baselines(expo, baseline, verdict):
    for explainer in ("lime", "maple"):
        rows = {**cell("planted", "expo", explainer, "local_fidelity", expo),
                **cell("planted", "baseline", explainer, "local_fidelity", baseline)}
        [(where, _, got)] = verdicts_of(f"expo-fidelity-{explainer}", rows)
        assert where == "planted/expo" and got == verdict


def test_expo_is_stated_of_tables_only():
    rows = {**cell("shapes", "expo", "lime", "local_fidelity", (0.01, 0.005, 0.02)),
            **cell("shapes", "baseline", "lime", "local_fidelity", (0.05, 0.04, 0.06))}
    assert verdicts_of("expo-fidelity-lime", rows) == [("—", "not measured in this run", pub.NOT_APPLICABLE)]


def test_a_claim_of_no_accuracy_loss_fails_only_when_the_network_is_shown_worse():
    baseline = cell("planted", "baseline", "model", "accuracy", (0.96, 0.94, 0.98))
    on_par = {**baseline, **cell("planted", "expo", "model", "accuracy", (0.945, 0.92, 0.96))}
    worse = {**baseline, **cell("planted", "expo", "model", "accuracy", (0.85, 0.82, 0.88))}
    assert verdicts_of("expo-accuracy", on_par)[0][2] == pub.REPRODUCED
    assert verdicts_of("expo-accuracy", worse)[0][2] == pub.NOT_REPRODUCED


@pytest.mark.parametrize("quality, verdict", [((1.0,), pub.REPRODUCED), ((0.75,), pub.NOT_REPRODUCED)])
def test_dualnet_ranking_is_read_once_on_its_own_network(quality, verdict):
    """[122]: the planted relevant features ranked first; one row per data set, however many baselines."""
    rows = {**cell("planted", "dualnet", "dualnet", "ranking_quality", quality),
            **cell("planted", "baseline", "gradient", "ranking_quality", (1.0,)),
            **cell("planted", "baseline_sigmoid", "gradient", "ranking_quality", (1.0,))}
    [(where, measured, got)] = verdicts_of("dualnet-relevant-first", rows)
    assert where == "planted/dualnet" and got == verdict and "other training seed" not in measured


@pytest.mark.parametrize("l2x, verdict", [((0.5,), pub.REPRODUCED), ((1.0,), pub.INCONCLUSIVE)])
def test_dualnet_against_l2x_is_a_strict_comparison_of_one_number_each(l2x, verdict):
    rows = {**cell("planted", "dualnet", "dualnet", "ranking_quality", (1.0,)),
            **cell("planted", "baseline", "l2x", "ranking_quality", l2x)}
    assert verdicts_of("dualnet-vs-l2x", rows)[0][2] == verdict


@pytest.mark.parametrize("objects, verdict", [((0.9, 0.85, 0.95), pub.REPRODUCED),
                                              ((0.1, 0.05, 0.15), pub.NOT_REPRODUCED),
                                              ((0.2, 0.1, 0.3), pub.INCONCLUSIVE)])
def test_interpretable_cnn_filters_beat_random_peaks(objects, verdict):
    """[70]: each filter fires on its part; the reference is a peak placed at random (the chance row)."""
    rows = {**cell("shapes", "interpretable_cnn", "interpretable_cnn", "part_consistency.objects", objects),
            **cell("shapes", "interpretable_cnn", "interpretable_cnn", "part_consistency.chance", (0.2,)),
            **cell("shapes", "baseline", "gradient", "pixel_flipping", (0.1, 0.0, 0.2))}
    [(where, _, got)] = verdicts_of("interpretable-cnn-parts", rows)
    assert where == "shapes/interpretable_cnn" and got == verdict


def test_an_active_comparison_must_survive_the_baselines_seed_replicas():
    rows = {**cell("planted", "dapr", "integrated_gradients", "prior_agreement", (0.8, 0.75, 0.85)),
            **cell("planted", "baseline", "integrated_gradients", "prior_agreement", (0.6, 0.55, 0.65)),
            **cell("planted", "baseline_seed1", "integrated_gradients", "prior_agreement", (0.8, 0.7, 0.9))}
    [(_, measured, got)] = verdicts_of("dapr-attribution-prior", rows)
    assert got == pub.INCONCLUSIVE and "seed1: inconclusive" in measured
