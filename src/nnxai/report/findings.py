"""Published findings re-checked: the evaluation results of the works the survey's Section V cites (and of
the methods' own papers) that this project's metrics can test, each with the run's measurement and a verdict.

Each :class:`Finding` holds the published statement, where it is published, what it is measured with here,
and its **rule**: a function of the run's ``data/metrics/all.csv`` written before any result was read, shown
beside the verdict.  The rules only compare 95 % bootstrap intervals over the explained inputs (or units,
pairs) with each other or with a bound the cited paper gives, so a verdict is one of

* ``reproduced`` — the intervals show what the paper states;
* ``not reproduced`` — the intervals show the opposite (or the bound is missed by the whole interval);
* ``inconclusive`` — the intervals overlap (or straddle the bound), or a seed replica of the baseline
  (``baseline_seed<k>``, ``seed_replicas`` of the config) that measured it gives another verdict: the run
  cannot tell;
* ``not applicable`` — the run did not measure it (a profile without that method, data set or metric).

A finding is checked on every baseline network of the run that has its numbers (``baseline`` on the image
sets, ``baseline``/``baseline_sigmoid`` on the tables), one row each; one its paper states of image networks
(:attr:`Finding.images_only`) on the image sets only.  A finding that does not reproduce is
a result: the table says so, nothing is tuned until it does.

The active methods' own claims (survey Sec. IV; :attr:`Finding.network`) are checked on the network trained
with the method: against the plain ``baseline`` it is built like (and its seed replicas, where they measured
it) when the paper claims an improvement over an unregularised network (:func:`network_higher`,
:func:`network_lower`, :func:`network_not_lower`), or alone, once per data set, when it claims a property of
the network (:func:`on_network`).  Where the paper states its claim of tables (ExpO [120]: its Alg. 1 is
not applied to images) it is checked on the tables only (:attr:`Finding.tables_only`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

Results = dict[tuple[str, str, str, str], dict]

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_APPLICABLE = ("reproduced", "not reproduced", "inconclusive",
                                                            "not applicable")
BASELINES = ("baseline", "baseline_sigmoid")
ALPHA = 0.05   #: significance level of the concept tests, as TCAV [63] (its p-values are Bonferroni-corrected)


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def text(self, digits: int = 3) -> str:
        if not self.has_interval:
            return f"{self.value:.{digits}g}"
        return f"{self.value:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def interval(results: Results, dataset: str, model: str, method: str, metric: str) -> Interval | None:
    """The value of one row with its interval (its ``ci_low``/``ci_high`` columns, or the ``<metric>.ci_low``
    and ``.ci_high`` rows of a metric that bootstraps itself); None when the run has no such row."""
    row = results.get((dataset, model, method, metric))
    if row is None or math.isnan(_number(row["value"])):
        return None
    low, high = _number(row.get("ci_low")), _number(row.get("ci_high"))
    if math.isnan(low) or math.isnan(high):
        lo_row = results.get((dataset, model, method, f"{metric}.ci_low"))
        hi_row = results.get((dataset, model, method, f"{metric}.ci_high"))
        if lo_row is not None and hi_row is not None:
            low, high = _number(lo_row["value"]), _number(hi_row["value"])
    return Interval(_number(row["value"]), low, high)


def bounds(x: Interval) -> tuple[float, float]:
    """The interval, or the value itself where the run reports none (a statistic that is not a mean)."""
    return (x.low, x.high) if x.has_interval else (x.value, x.value)


# ----------------------------------------------------------------------------- the rules
Verdict = tuple[str, str]          # (measured, verdict)
Check = Callable[[Results, str, str], Verdict | None]


def _order(x: Interval, y: Interval, x_above: bool) -> str:
    """Reproduced when x's interval lies wholly on the stated side of y's, not reproduced when wholly on the
    other, inconclusive when they overlap."""
    (xl, xh), (yl, yh) = bounds(x), bounds(y)
    if not x_above:                           # x below y: mirror both intervals
        (xl, xh), (yl, yh) = (-xh, -xl), (-yh, -yl)
    return REPRODUCED if xl > yh else NOT_REPRODUCED if xh < yl else INCONCLUSIVE


def _ordered(metric: str, a: str, b: str, b_metric: str | None, a_above: bool) -> Check:
    def check(results, dataset, model):
        x = interval(results, dataset, model, a, metric)
        y = interval(results, dataset, model, b if b_metric is None else a, b_metric or metric)
        if x is None or y is None:
            return None
        other = b if b_metric is None else b_metric.rsplit(".", 1)[-1]
        return f"{a} {x.text()} vs {other} {y.text()}", _order(x, y, a_above)
    return check


def higher(metric: str, a: str, b: str, b_metric: str | None = None) -> Check:
    """``a`` scores higher than ``b`` on ``metric`` (or than ``a``'s own ``b_metric``): reproduced when a's
    interval lies wholly above b's, not reproduced when wholly below, inconclusive when they overlap."""
    return _ordered(metric, a, b, b_metric, a_above=True)


def lower(metric: str, a: str, b: str, b_metric: str | None = None) -> Check:
    """``a`` scores lower than ``b`` on ``metric`` (the mirror of :func:`higher`)."""
    return _ordered(metric, a, b, b_metric, a_above=False)


def not_better_than_random(metric: str, method: str, random_metric: str) -> Check:
    """ROAR's negative result: the method's retrained accuracy is not below the random ranking's.  Not
    reproduced only when its interval lies wholly below random's (the method is then shown better)."""
    def check(results, dataset, model):
        x = interval(results, dataset, model, method, metric)
        y = interval(results, dataset, model, method, random_metric)
        if x is None or y is None:
            return None
        (_, xh), (yl, _) = bounds(x), bounds(y)
        return f"{method} {x.text()} vs random {y.text()}", NOT_REPRODUCED if xh < yl else REPRODUCED
    return check


def _bounded(metric: str, method: str, bound: float, above_it: bool) -> Check:
    def check(results, dataset, model):
        x = interval(results, dataset, model, method, metric)
        if x is None:
            return None
        low, high = bounds(x)
        if not above_it:                      # below the bound: mirror
            low, high, limit = -high, -low, -bound
        else:
            limit = bound
        return f"{method} {x.text()}", REPRODUCED if low > limit else NOT_REPRODUCED if high <= limit else INCONCLUSIVE
    return check


def below(metric: str, method: str, bound: float) -> Check:
    """The value is below ``bound``: reproduced when the whole interval is, not reproduced when none of it is."""
    return _bounded(metric, method, bound, above_it=False)


def above(metric: str, method: str, bound: float) -> Check:
    """The value is above ``bound`` (the mirror of :func:`below`)."""
    return _bounded(metric, method, bound, above_it=True)


def concept_significant(method: str, pair: str) -> Check:
    """The (concept, class) ``pair``'s corrected p-value is below :data:`ALPHA`."""
    def check(results, dataset, model):
        x = interval(results, dataset, model, method, f"p_value.{pair}")
        if x is None:
            return None
        return f"{pair}: corrected p = {x.value:.2g}", REPRODUCED if x.value < ALPHA else NOT_REPRODUCED
    return check


def concepts_not_significant(method: str, prefix: str) -> Check:
    """No (concept, class) pair whose concept starts with ``prefix`` is significant at :data:`ALPHA`."""
    def check(results, dataset, model):
        pairs = {k[3][len("p_value."):]: _number(r["value"]) for k, r in results.items()
                 if k[:3] == (dataset, model, method) and k[3].startswith(f"p_value.{prefix}")}
        if not pairs:
            return None
        hits = sorted(p for p, v in pairs.items() if v < ALPHA)
        measured = (f"{len(hits)} of {len(pairs)} pairs significant"
                    + (f" ({', '.join(f'{p}: p = {pairs[p]:.2g}' for p in hits)})" if hits else ""))
        return measured, NOT_REPRODUCED if hits else REPRODUCED
    return check


# --------------------------------------------------------------- the active networks' own claims (Sec. IV)
def plain_baseline(model: str) -> bool:
    """The baseline an active network is compared with: ``baseline`` (or a seed replica of it), which shares
    the active networks' architecture and ReLU; ``baseline_sigmoid`` does not, so it is not compared."""
    return model == "baseline" or re.fullmatch(r"baseline_seed\d+", model) is not None


def on_network(check: Check, network: str) -> Check:
    """``check`` read on the active ``network``'s rows, once per data set (on the row of its ``baseline``):
    a claim about the network alone, which no baseline seed replica can change."""
    return lambda results, dataset, model: check(results, dataset, network) if model == "baseline" else None


def _across(metric: str, network: str, method: str, baseline_method: str | None, network_above: bool) -> Check:
    def check(results, dataset, model):
        if not plain_baseline(model):
            return None
        other = baseline_method or method
        x = interval(results, dataset, network, method, metric)
        y = interval(results, dataset, model, other, metric)
        if x is None or y is None:
            return None
        return f"{network}/{method} {x.text()} vs {model}/{other} {y.text()}", _order(x, y, network_above)
    return check


def network_higher(metric: str, network: str, method: str, baseline_method: str | None = None) -> Check:
    """The active ``network`` scores higher on ``metric`` of ``method`` than the plain baseline does (of
    ``baseline_method``, by default the same method): the intervals decide as in :func:`higher`."""
    return _across(metric, network, method, baseline_method, network_above=True)


def network_lower(metric: str, network: str, method: str, baseline_method: str | None = None) -> Check:
    """The mirror of :func:`network_higher`."""
    return _across(metric, network, method, baseline_method, network_above=False)


def network_not_lower(metric: str, network: str, method: str) -> Check:
    """A claim of no loss (e.g. of accuracy): not reproduced only when the active network's interval lies
    wholly below the plain baseline's, reproduced otherwise (the form of :func:`not_better_than_random`)."""
    def check(results, dataset, model):
        if not plain_baseline(model):
            return None
        x, y = interval(results, dataset, network, method, metric), interval(results, dataset, model, method, metric)
        if x is None or y is None:
            return None
        return (f"{network} {x.text()} vs {model} {y.text()}",
                NOT_REPRODUCED if bounds(x)[1] < bounds(y)[0] else REPRODUCED)
    return check


@dataclass(frozen=True)
class Finding:
    """One published statement, where it is published, and the rule that checks it on a run."""

    key: str
    source: str          #: the survey's reference label and the paper's first author
    statement: str       #: what the paper states (paraphrased closely)
    rule: str            #: the rule, in words (the :attr:`check` function, exactly)
    check: Check
    images_only: bool = False   #: the paper states it of image networks: checked on the image sets only
    tables_only: bool = False   #: the paper states it of tabular data: checked on the tables only
    network: str | None = None  #: the active network (survey Sec. IV) it is stated of; None: the baselines


FINDINGS: tuple[Finding, ...] = (
    Finding("sanity-model-gbp", "[75] Adebayo et al.",
            "Guided backprop's maps barely change when the weights are randomised; the gradient's do",
            "model-randomisation ρ of guided_backprop above gradient's (intervals disjoint)",
            higher("sanity_model_randomisation", "guided_backprop", "gradient"), images_only=True),
    Finding("sanity-model-ggc", "[75] Adebayo et al.",
            "Guided Grad-CAM fails the model-randomisation test that Grad-CAM passes",
            "model-randomisation ρ of guided_grad_cam above grad_cam's (intervals disjoint)",
            higher("sanity_model_randomisation", "guided_grad_cam", "grad_cam"), images_only=True),
    Finding("sanity-data-gbp", "[75] Adebayo et al.",
            "On a network trained on shuffled labels, guided backprop's maps stay like the true model's; the "
            "gradient's do not",
            "data-randomisation ρ of guided_backprop above gradient's (intervals disjoint)",
            higher("sanity_data_randomisation", "guided_backprop", "gradient"), images_only=True),
    Finding("input-invariance-gxi", "[143] Kindermans et al.",
            "The gradient is input invariant under a mean shift absorbed by the first bias; Gradient ⊙ Input "
            "is not",
            "input_invariance (difference of the maps) of gradient below gradient_x_input's (intervals disjoint)",
            lower("input_invariance", "gradient", "gradient_x_input")),
    Finding("input-invariance-ig", "[143] Kindermans et al.",
            "Integrated gradients with a zero reference is not input invariant (the gradient is)",
            "input_invariance of gradient below integrated_gradients' (zero baseline; intervals disjoint)",
            lower("input_invariance", "gradient", "integrated_gradients")),
    Finding("input-invariance-deeplift", "[143] Kindermans et al.",
            "DeepLIFT with a zero reference is not input invariant (the gradient is)",
            "input_invariance of gradient below deeplift's (zero reference; intervals disjoint)",
            lower("input_invariance", "gradient", "deeplift")),
    Finding("implementation-invariance-deeplift", "[114] Sundararajan et al.",
            "DeepLIFT breaks implementation invariance: functionally equal networks can get different maps",
            "implementation_invariance.agreement (share of inputs whose maps agree on every rebuilt equivalent "
            "network within the metric's tolerance) of deeplift below 1 (whole interval)",
            below("implementation_invariance.agreement", "deeplift", 1.0)),
    Finding("implementation-invariance-lrp", "[114] Sundararajan et al.",
            "LRP breaks implementation invariance",
            "implementation_invariance.agreement of lrp below 1 (whole interval)",
            below("implementation_invariance.agreement", "lrp", 1.0)),
    Finding("implementation-invariance-ig", "[114] Sundararajan et al.",
            "Integrated gradients satisfies implementation invariance",
            "implementation_invariance.agreement of integrated_gradients above 0.99 (whole interval)",
            above("implementation_invariance.agreement", "integrated_gradients", 0.99)),
    Finding("completeness-ig", "[114] Sundararajan et al.",
            "Integrated gradients' attributions add up to f(x) − f(x′) (completeness); the paper checks it to within 5 %",
            "completeness (relative error) of integrated_gradients below 0.05 (whole interval)",
            below("completeness", "integrated_gradients", 0.05)),
    Finding("completeness-deeplift", "[112] Shrikumar et al.",
            "DeepLIFT's contributions sum to the difference from the reference (summation-to-delta)",
            "completeness of deeplift below 0.05 (whole interval)",
            below("completeness", "deeplift", 0.05)),
    Finding("conservation-lrp", "[113] Bach et al.",
            "LRP conserves relevance: the input relevances sum to the explained output",
            "conservation (relative gap) of lrp below 0.05 (whole interval)",
            below("conservation", "lrp", 0.05)),
    Finding("pixel-flipping-lrp-gradient", "[149] Samek et al.",
            "LRP's heatmaps identify relevant regions better than sensitivity analysis (the gradient): higher AOPC",
            "pixel_flipping AOPC of lrp above gradient's (intervals disjoint)",
            higher("pixel_flipping", "lrp", "gradient"), images_only=True),
    Finding("pixel-flipping-lrp-deconvnet", "[149] Samek et al.",
            "LRP's AOPC is higher than the deconvolution method's",
            "pixel_flipping AOPC of lrp above deconvnet's (intervals disjoint)",
            higher("pixel_flipping", "lrp", "deconvnet"), images_only=True),
    Finding("roar-gradient", "[150] Hooker et al.",
            "After retraining without the top-ranked features, the gradient is no better than a random ranking",
            "not reproduced only if roar accuracy of gradient lies wholly below roar.random's",
            not_better_than_random("roar", "gradient", "roar.random"), images_only=True),
    Finding("roar-ig", "[150] Hooker et al.",
            "Integrated gradients is no better than a random ranking under ROAR",
            "not reproduced only if roar accuracy of integrated_gradients lies wholly below roar.random's",
            not_better_than_random("roar", "integrated_gradients", "roar.random"), images_only=True),
    Finding("roar-gbp", "[150] Hooker et al.",
            "Guided backprop is no better than a random ranking under ROAR",
            "not reproduced only if roar accuracy of guided_backprop lies wholly below roar.random's",
            not_better_than_random("roar", "guided_backprop", "roar.random"), images_only=True),
    Finding("fragility-gradient", "[140] Ghorbani et al.",
            "A label-preserving perturbation changes the gradient map's top features substantially",
            "fragility (1 − top-k intersection) of gradient above 0.5: more than half the top features change (bound chosen here)",
            above("fragility", "gradient", 0.5), images_only=True),
    Finding("fragility-ig", "[140] Ghorbani et al.",
            "Integrated gradients' maps are fragile too",
            "fragility of integrated_gradients above 0.5",
            above("fragility", "integrated_gradients", 0.5), images_only=True),
    Finding("localisation-cam", "[138] Zhou et al.",
            "CAM localises the object better than backpropagation saliency (the gradient)",
            "pointing game of cam above gradient's (intervals disjoint)",
            higher("localisation.pointing", "cam", "gradient"), images_only=True),
    Finding("tcav-planted", "[63] Kim et al.",
            "TCAV finds a concept the label truly depends on significant for its class (`shapes`: stripes)",
            f"corrected p-value of (texture=stripes, positive) below α = {ALPHA}",
            concept_significant("tcav", "texture=stripes.positive"), images_only=True),
    Finding("tcav-distractor", "[63] Kim et al.",
            "The statistical test against random CAVs rejects concepts unrelated to the label (`shapes`: colour)",
            f"no (colour, class) pair with corrected p-value below α = {ALPHA}",
            concepts_not_significant("tcav", "colour="), images_only=True),
    Finding("representer-decomposition", "[117] Yeh et al.",
            "The representer decomposition reproduces the network's predictions",
            "correlation of the decomposed and the network's class probabilities above 0.9 (bound chosen here)",
            above("representer_fidelity.probability_correlation", "representer_points", 0.9)),
    Finding("influence-loo", "[73] Koh & Liang",
            "Influence functions predict the change of the test loss that leave-one-out retraining gives",
            "Pearson's r of loo_correlation above 0.5, whole interval (a strong positive correlation; bound chosen here)",
            above("loo_correlation", "influence_functions", 0.5)),
    Finding("net2vec-multi-filter", "[99] Fong & Vedaldi",
            "Concept embeddings over several filters segment concepts better than the best single filter",
            "single_vs_multi_filter_gain above 0 (whole interval)",
            above("single_vs_multi_filter_gain", "net2vec", 0.0), images_only=True),
    Finding("filter-car", "[2nd: 51] Abbasi-Asl & Yu",
            "Pruning the filters of least CAR costs less accuracy than pruning random filters",
            "accuracy_drop of the least-CAR filters below accuracy_drop.random's (intervals disjoint)",
            lower("accuracy_drop", "filter_car", "filter_car", b_metric="accuracy_drop.random"), images_only=True),
    Finding("neuron-ranking-ablation", "[100] Dalvi et al.",
            "Ablating the top-ranked neurons hurts the probe more than ablating random ones",
            "ablation_drop (top minus random) above 0 (whole interval)",
            above("ablation_drop", "neuron_ranking", 0.0)),
    # the active networks' own claims: the network against the plain baseline, or alone (Finding.network)
    Finding("dapr-attribution-prior", "[121] Weinberger et al.",
            "The jointly trained attribution prior biases the network to have attributions like the prior: where "
            "the prior knowledge is right, the network's attributions agree with the true importance better "
            "than an unregularised network's",
            "prior_agreement (per-input Spearman ρ of |map| with the planted importance) of integrated_gradients "
            "on the dapr network above the same on the baseline (intervals disjoint; one explainer on both "
            "networks: DAPr's own expected gradients run on the dapr network only, integrated gradients is "
            "their single-reference form)",
            network_higher("prior_agreement", "dapr", "integrated_gradients"), network="dapr"),
    Finding("expo-fidelity-lime", "[120] Plumb et al.",
            "Regularising for neighbourhood fidelity (ExpO-Fidelity) makes LIME's local linear explanations "
            "fit the network better near each input than on the unregularised network",
            "local_fidelity (the neighbourhood MSE) of lime on the expo network below the same on the "
            "baseline (intervals disjoint)",
            network_lower("local_fidelity", "expo", "lime"), tables_only=True, network="expo"),
    Finding("expo-fidelity-maple", "[120] Plumb et al.",
            "ExpO-Fidelity makes MAPLE's local explanations fit the network better near each input too",
            "local_fidelity of maple on the expo network below the same on the baseline (intervals disjoint)",
            network_lower("local_fidelity", "expo", "maple"), tables_only=True, network="expo"),
    Finding("expo-accuracy", "[120] Plumb et al.",
            "ExpO improves the explanations at little or no cost in accuracy",
            "not reproduced only if the expo network's test-accuracy interval lies wholly below the baseline's",
            network_not_lower("accuracy", "expo", "model"), tables_only=True, network="expo"),
    Finding("dualnet-relevant-first", "[122] Wojtas & Chen",
            "On synthetic data with a planted relevant subset, the selector's population-wise ranking puts "
            "the relevant features first",
            "ranking_quality (share of the k planted features among the k top-ranked) of dualnet's own "
            "ranking above 0.99, i.e. all k (one ranking: no interval)",
            on_network(above("ranking_quality", "dualnet", 0.99), "dualnet"), network="dualnet"),
    Finding("dualnet-vs-l2x", "[122] Wojtas & Chen",
            "Dual-net's population-wise ranking finds the relevant features better than L2X's instance-wise "
            "selection",
            "ranking_quality of dualnet's ranking above l2x's on the baseline (one number each: a tie is "
            "inconclusive)",
            network_higher("ranking_quality", "dualnet", "dualnet", baseline_method="l2x"), network="dualnet"),
    Finding("interpretable-cnn-parts", "[70] Zhang et al.",
            "Each filter of the interpretable conv-layer represents one object part: it fires on that part "
            "across images",
            "part_consistency.objects (share of an object filter's top images whose peak lies in its part) "
            "above part_consistency.chance (peaks placed at random; intervals disjoint).  The paper's "
            "comparison with an ordinary CNN's filters is not measured: the metric runs on this network only",
            on_network(higher("part_consistency.objects", "interpretable_cnn", "interpretable_cnn",
                              b_metric="part_consistency.chance"), "interpretable_cnn"),
            images_only=True, network="interpretable_cnn"),
)


def _cells(results: Results, finding: Finding) -> list[tuple[str, str]]:
    from nnxai.data import DATASETS

    def kind_fits(dataset):
        kind = DATASETS[dataset].kind if dataset in DATASETS else None
        return not (finding.images_only and kind != "image" or finding.tables_only and kind == "image")

    return sorted({(d, m) for d, m, _, _ in results if m in BASELINES and kind_fits(d)})


def seed_replicas(results: Results, dataset: str) -> list[str]:
    """The seed replicas of the baseline on ``dataset`` that the run measured (``baseline_seed<k>``), by k."""
    found = {m for d, m, _, _ in results if d == dataset and re.fullmatch(r"baseline_seed\d+", m)}
    return sorted(found, key=lambda m: int(m[len("baseline_seed"):]))


def _with_seeds(finding: Finding, results: Results, dataset: str, model: str) -> Verdict | None:
    """The verdict on the baseline, kept only where every seed replica that measured it gives the same one
    (a conclusion must survive retraining with another seed); otherwise inconclusive."""
    out = finding.check(results, dataset, model)
    if out is None:
        return None
    measured, verdict = out
    seeds = [(m, v[1]) for m in (seed_replicas(results, dataset) if model == "baseline" else [])
             if (v := finding.check(results, dataset, m)) is not None]
    if not seeds:
        return measured, verdict
    if all(v == verdict for _, v in seeds):
        return f"{measured}; the same on {len(seeds)} other training seed(s)", verdict
    others = ", ".join(f"{m[len('baseline_'):]}: {v}" for m, v in seeds)
    return f"{measured}; other training seeds: {others}", INCONCLUSIVE


def evaluate(results: Results) -> list[tuple[Finding, str, str, str]]:
    """``(finding, cell, measured, verdict)`` for every finding on every baseline cell that has its
    numbers (checked again on the cell's seed replicas, :func:`_with_seeds`); one ``not applicable`` row
    for a finding no cell has.  A finding stated of an active network is shown as that network's cell (its
    measurement names the baseline it was compared with)."""
    rows = []
    for finding in FINDINGS:
        found = [(f"{d}/{finding.network or m}", *out) for d, m in _cells(results, finding)
                 if (out := _with_seeds(finding, results, d, m)) is not None]
        rows += [(finding, cell, measured, verdict) for cell, measured, verdict in found] or \
            [(finding, "—", "not measured in this run", NOT_APPLICABLE)]
    return rows


def counts(rows) -> dict[str, int]:
    out = {v: 0 for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_APPLICABLE)}
    for *_, verdict in rows:
        out[verdict] += 1
    return out
