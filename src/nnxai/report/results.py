"""The results document: every table and number the README and the paper report, from one run.

``nnxai report results --out paper`` writes ``paper/results.md`` and ``paper/results.tex`` from this run's
``data/metrics/all.csv`` and its explanation records, nothing typed by hand.  Every value that is a mean
over inputs (or units) carries its 95 % bootstrap interval over them (the ``ci_low``/``ci_high`` columns of
``all.csv``, :mod:`nnxai.intervals`); a value that is not a mean (a rule count, a p-value) is shown without
one, and a p-value only for its own (concept, class) pair.  The document opens with what produced it: the
code version and the configuration digest recorded in the baseline checkpoints (``nnxai show`` prints a
record's settings).

The README's results blocks are these sections, copied by ``benchmarks/findings.py`` from the default
run, which also keeps that run's document as ``paper/results-default.md``; ``tests/test_readme_results.py``
fails if a README block differs from it.

Sections (:data:`SECTIONS`): test accuracy of every trained model; the attribution metrics on
``shapes``/``baseline``; per-input scores of the other explanation types; the actively regularised networks
against the baseline (an own explanation without a score says why); the rule extractors on the planted
rules, whole and in attribute form (``a1≠3``); hidden semantics and explanation by example, with the scores
against shapes' planted concepts; the concept tests pair by pair.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from nnxai import registry
from nnxai.intervals import LEVEL
from nnxai.io import atomic_write_text
from nnxai.report._format import latex_escape, readable_rules
from nnxai.report._items import report_item
from nnxai.report._results import binary_columns

NAME = "results"
Results = dict[tuple[str, str, str, str], dict]

#: The attribution table: (metric key, column title, the random-order key shown in the last row or None).
ATTRIBUTION_COLUMNS = (
    ("localisation.mass", "mass in evidence ↑", None),
    ("localisation.pointing", "pointing game ↑", None),
    ("pixel_flipping", "AOPC ↑", "pixel_flipping.random"),
    ("insertion_deletion", "insertion − deletion ↑", "insertion_deletion.random"),
    ("continuity", "continuity ↓", None),
    ("sanity_model_randomisation", "model-randomisation ρ ↓", None),
    ("sanity_data_randomisation", "data-randomisation ρ ↓", None),
    ("roar", "ROAR accuracy ↓", "roar.random"),
)
#: Per-input scores of the other explanation types: (method, metric key, what it measures).
STRUCTURED_ROWS = (
    ("trepan", "fidelity", "agreement of the extracted tree with the network on the test split"),
    ("trepan", "fidelity.label_accuracy", "accuracy of the tree on the true labels"),
    ("representer_points", "representer_fidelity.prediction_agreement",
     "the representer decomposition predicts the network's class"),
    ("deepconsensus", "consensus_agreement.prediction", "enough ensemble members agree on the prediction"),
)
OWN_EXCLUDED = ("runtime",)
#: Where the rule section reads each method's rules: the sets whose labelling rule is planted.
RULE_DATASETS = ("monks1", "monks3", "shapes")
#: The scores of the local rule table: the partial substitute's coverage beside the hybrid's accuracy shows
#: its trade-off [80]; DACE's plausibility (its LOF term [79]) beside its cost.
LOCAL_RULE_METRICS = ("precision", "coverage", "hybrid_accuracy", "validity", "pp_pn_validity", "flip_rate",
                      "edits_to_flip", "gate_sparsity", "path_fidelity", "cost", "plausibility", "rule_size")
#: Rules of a long rule set shown whole in a table cell (our choice, to keep a row on a page); the rest are
#: counted and ``python -m nnxai show`` prints the record whole.
RULES_SHOWN = 6
#: The plain networks whose hidden-semantics and example scores are shown (the variants: all.csv).
HIDDEN_EXAMPLE_CELLS = (("shapes", "baseline"), ("digits", "baseline"), ("causal", "baseline"))
#: The network whose hidden semantics are set against the data generator's planted concepts (shapes' masks,
#: concept table and labelling rule).
PLANTED_CONCEPT_CELL = ("shapes", "baseline")
#: Activation maximisation against the planted concepts, per regulariser (nnxai.metrics.activation_max):
#: (metric key, column title).
ACTIVATION_CONCEPT_COLUMNS = (
    ("activation_reached.concept_auc", "AUC of the unit's concept on real images ↑"),
    ("activation_reached.concept_match", "units whose concept is their best ↑"),
    ("class_confidence.rule", "class images the planted rule gives their class ↑"),
)
#: Other scores against the planted truth: (method, metric key, what it measures).
PLANTED_TRUTH_ROWS = (
    ("mimic", "fidelity.label_accuracy", "accuracy of the mimic model on the true (planted-rule) labels"),
)
#: Own-explanation scores that a method fixes by its construction, and why (shown with the value, never hidden).
BY_CONSTRUCTION = {
    ("protopnet", "prototype_closeness"): "0 by construction: the push projects every prototype onto a latent "
                                          "patch of a training image ([123] Sec. 2.2)",
}


def read(workdir: Path) -> Results:
    """The rows of ``data/metrics/all.csv`` by (dataset, model, method, metric)."""
    path = Path(workdir) / "data" / "metrics" / "all.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run the workflow first (snakemake --cores 2)")
    with path.open() as fh:
        return {(r["dataset"], r["model"], r["method"], r["metric"]): r for r in csv.DictReader(fh)}


def number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def cell(row: dict | None, digits: int = 2) -> str:
    """``value [low, high]``; empty when the run did not compute it, ``n/a`` when undefined."""
    if row is None:
        return ""
    value, low, high = number(row["value"]), number(row.get("ci_low")), number(row.get("ci_high"))
    if math.isnan(value):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def sizes(rows: list[dict | None]) -> str:
    found = sorted({int(r["n"]) for r in rows if r is not None and r.get("n") and int(r["n"]) > 0})
    return "–".join(str(n) for n in (found[:1] + found[-1:] if len(found) > 1 else found)) or "?"


def accuracy_section(results: Results, workdir: Path) -> str:
    models: dict[str, list[str]] = {}
    for dataset, model, method, metric in results:
        if method == "model" and metric == "accuracy":
            models.setdefault(dataset, []).append(model)
    lines = [f"Test accuracy of every trained model, {LEVEL:.0%} bootstrap interval over the test split "
             "(`data/metrics/{dataset}/{model}/model.json`):", "",
             "| dataset | model | test accuracy | n |", "|---|---|---|---|"]
    for dataset in sorted(models):
        for model in sorted(models[dataset], key=lambda m: (m != "baseline", m)):
            row = results[dataset, model, "model", "accuracy"]
            lines.append(f"| {dataset} | {model} | {cell(row, 3)} | {row.get('n', '')} |")
    return "\n".join(lines)


def attribution_section(results: Results, workdir: Path, dataset: str = "shapes", model: str = "baseline") -> str:
    methods = [s.id for s in registry.specs() if any(k[:3] == (dataset, model, s.id) for k in results)]
    methods = [m for m in methods if (dataset, model, m, "localisation.mass") in results]
    titles = [title for _, title, _ in ATTRIBUTION_COLUMNS]
    lines = ["| method | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    for method in methods:
        cells = [cell(results.get((dataset, model, method, key))) for key, _, _ in ATTRIBUTION_COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    randoms = []
    for key, _, random_key in ATTRIBUTION_COLUMNS:
        found = next((results[dataset, model, m, random_key] for m in methods
                      if random_key and (dataset, model, m, random_key) in results), None)
        randoms.append(cell(found))
    lines.append("| *random order* | " + " | ".join(randoms) + " |")
    counts = ", ".join(f"{title.rstrip(' ↑↓')} n = {sizes([results.get((dataset, model, m, key)) for m in methods])}"
                       for key, title, _ in ATTRIBUTION_COLUMNS)
    head = (f"Attribution metrics on `{dataset}`/`{model}` (predicted class; {LEVEL:.0%} bootstrap interval over "
            f"the explained test inputs in brackets; ↑/↓ = higher/lower is better; empty: the metric does not "
            f"judge the method, or the run restricts it, e.g. ROAR to `metric_params.roar.methods`; n/a: "
            f"undefined, e.g. a rank correlation with constant maps).  Inputs per column: {counts}.")
    return head + "\n\n" + "\n".join(lines)


def structured_section(results: Results, workdir: Path, dataset: str = "shapes", model: str = "baseline") -> str:
    lines = [f"Per-input scores of the other explanation types on `{dataset}`/`{model}` ({LEVEL:.0%} bootstrap "
             "interval):", "", "| method | metric | what it measures | value | n |", "|---|---|---|---|---|"]
    for method, key, what in STRUCTURED_ROWS:
        row = results.get((dataset, model, method, key))
        if row is not None:
            lines.append(f"| {method} | `{key}` | {what} | {cell(row, 3)} | {row.get('n', '')} |")
    return "\n".join(lines)


def active_section(results: Results, workdir: Path) -> str:
    """Per active variant and data set: accuracy beside the baseline's, its own explanation's scores, and the
    passive cells better / worse / indistinguishable than on the baseline (non-overlapping intervals)."""
    from nnxai.active.base import ACTIVE
    from nnxai.report._results import read_results
    from nnxai.report.active_vs_baseline import summary

    compared = {(r.dataset, r.variant): r for r in summary(read_results(workdir)).itertuples()}
    lines = [f"Each actively regularised network (survey Sec. IV) and the sparsity baselines: test accuracy "
             f"beside the baseline's ({LEVEL:.0%} interval over the test split), the scores of the network's own "
             "explanation (its catalogue metrics, interval over what they average), and the passive methods' "
             "scores on it against the same methods on the baseline (`paper/tables/active_summary.md`, "
             "`paper/figures/active_vs_baseline.png`): cells better / worse where the two intervals do not overlap, "
             "the rest indistinguishable.", "",
             "| data set | variant | accuracy (baseline) | its own explanation | passive cells better / worse / "
             "indistinguishable |", "|---|---|---|---|---|"]
    datasets = sorted({k[0] for k in results})
    for variant in ["l1", "l2", *ACTIVE]:
        for dataset in datasets:
            row = results.get((dataset, variant, "model", "accuracy"))
            if row is None:
                continue
            base = results.get((dataset, "baseline", "model", "accuracy"))
            own_text = _own_explanation(results, workdir, dataset, variant)
            c = compared.get((dataset, variant))
            passive = f"{c.better} / {c.worse} / {c.same}" if c is not None else "—"
            lines.append(f"| {dataset} | {variant} | {cell(row, 3)} ({cell(base, 3)}) | {own_text} | {passive} |")
    return "\n".join(lines)


def _own_explanation(results: Results, workdir: Path, dataset: str, variant: str) -> str:
    """The scores of a variant's own explanation, each with what its construction fixes
    (:data:`BY_CONSTRUCTION`); where it has none, why not (:func:`_why_no_own`)."""
    own = [(k[3], r) for k, r in sorted(results.items())
           if k[:3] == (dataset, variant, variant) and k[3] not in OWN_EXCLUDED]
    if not own:
        return f"n.a.: {_why_no_own(dataset, variant)}"
    return "; ".join(f"`{metric}` {cell(r, 3)}{_construction_note(workdir, dataset, variant, metric)}"
                     for metric, r in own)


def _why_no_own(dataset: str, variant: str) -> str:
    """Why a variant's own explanation has no score here: no explanation of its own (a sparsity penalty), or
    the reasons its catalogue metrics give (:meth:`nnxai.metrics.base.Metric.why_not`), e.g. no concept masks."""
    from nnxai.data import DATASETS
    from nnxai.metrics.base import metrics

    if not registry.is_implemented(variant):
        return "a weight penalty, no explanation of its own"
    method_cls, info, known = registry.get(variant), DATASETS.get(dataset), metrics()
    reasons: dict[str, list[str]] = {}
    for metric in method_cls.spec.judged_by:
        metric_cls = known.get(metric)
        if metric_cls is None or info is None or method_cls.record_type.kind not in metric_cls.kinds:
            continue
        why = metric_cls.why_not(method_cls, info)
        if why:
            reasons.setdefault(why, []).append(f"`{metric}`")
    if not reasons:
        return "this run computed none of its metrics"
    return "; ".join(f"{why} ({', '.join(names)})" for why, names in reasons.items())


def _construction_note(workdir: Path, dataset: str, variant: str, metric: str) -> str:
    """`` (why the value is what it is)`` for a score :data:`BY_CONSTRUCTION` fixes, with the value the
    training record holds from before the construction (ProtoPNet: how far the push moved the prototypes)."""
    why = BY_CONSTRUCTION.get((variant, metric))
    if why is None:
        return ""
    moved = _push_distance(workdir, dataset, variant)
    before = "" if moved is None else (
        f"; before the push the prototypes lay {moved:.3f} (mean squared latent distance) from their nearest "
        f"training patch of their class, `mean_distance_moved` in `data/checkpoints/{dataset}/{variant}.json`")
    return f" ({why}{before})"


def _push_distance(workdir: Path, dataset: str, variant: str) -> float | None:
    """``mean_distance_moved`` of the push in the training record's last epoch (None where absent)."""
    try:
        record = json.loads((Path(workdir) / "data" / "checkpoints" / dataset / f"{variant}.json").read_text())
        history = record["history"]
        return float(history[-1]["active"]["mean_distance_moved"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _rule_model(workdir: Path, dataset: str, method: str, suffix: str = ".json") -> str | None:
    for model in ("baseline_sigmoid", "baseline"):
        if (workdir / "data" / "explanations" / dataset / model / f"{method}{suffix}").is_file():
            return model
    return None


def _record_path(dataset: str, model: str, method: str) -> str:
    return f"data/explanations/{dataset}/{model}/{method}.json"


def _rules_cell(record, workdir: Path, dataset: str, model: str, method: str) -> str:
    """A rule set as a table cell, one code span per rule, every rule whole and in attribute form
    (:func:`nnxai.report._format.readable_rules`); beyond :data:`RULES_SHOWN` rules the first ones, a count of
    the rest with the ``nnxai show`` command that prints them, and the decision list's ``ELSE``."""
    binary = binary_columns(workdir, dataset, record.feature_space, len(record.feature_names))
    lines = readable_rules(record, binary)
    tail = lines[-1:] if record.inference is None else []       # a decision list's default closes it
    body = lines[:len(lines) - len(tail)]
    if len(body) > RULES_SHOWN + 1:
        more = f"… {len(body) - RULES_SHOWN} more {'rules' if tail else 'lines'}: " \
               f"`python -m nnxai show {_record_path(dataset, model, method)}`"
        return "<br>".join([_code(line) for line in body[:RULES_SHOWN]] + [more] + [_code(line) for line in tail])
    return "<br>".join(_code(line) for line in lines)


def _code(text: str) -> str:
    """A code span of a table cell: rules hold ``*`` and ``|`` that Markdown would read as emphasis and columns."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def rules_section(results: Results, workdir: Path) -> str:
    """What every rule method extracted on the sets with a planted rule (MONK-1, MONK-3, shapes' concepts):
    the rules whole, in attribute form where exact (:func:`_rules_cell`), whether they are the planted rule, their fidelity
    (interval over the test split: MONK's whole 432-robot space) and their size; then one explained input of
    each local rule method with its scores."""
    from nnxai.explanations import load_explanation
    from nnxai.taxonomy import ExplanationType, Scope

    specs = [s for s in registry.specs() if s.explanation_type is ExplanationType.RULE
             and s.engagement.value == "passive" and registry.is_implemented(s.id)]
    lines = [f"Global rule extractors on the data sets whose labelling rule is planted (sigmoid MLP where the "
             f"method ran on it, else the ReLU one; shapes: the CNN over its concept table), {LEVEL:.0%} interval "
             "over the test split (MONK: all 432 robots); `paper/figures/rule_extractors.png` draws them:", "",
             "| method | data set / model | extracted rules | planted rule recovered | fidelity | rules |",
             "|---|---|---|---|---|---|"]
    for spec in (s for s in specs if Scope.GLOBAL in s.scopes):
        for dataset in RULE_DATASETS:
            model = _rule_model(workdir, dataset, spec.id)
            if model is None:
                continue
            record = load_explanation(workdir / _record_path(dataset, model, spec.id))
            get = lambda metric: results.get((dataset, model, spec.id, metric))
            recovered = get("rule_recovery")
            rec = ("yes" if number(recovered["value"]) == 1 else "no") if recovered else ""
            rules = _rules_cell(record, workdir, dataset, model, spec.id)
            lines.append(f"| {spec.id} | {dataset} / {model} | {rules} | {rec} | "
                         f"{cell(get('fidelity'), 3)} | {cell(get('rule_size') or get('n_leaves'), 0)} |")
    local = [s for s in specs if Scope.GLOBAL not in s.scopes
             and any(k[2] == s.id and k[0] in RULE_DATASETS for k in results)]
    if local:
        lines += ["", "Local and semi-local rule methods: the first explained input of each (a semi-local rule set: "
                  f"its rules), and the scores over all explained inputs ({LEVEL:.0%} interval):", "",
                  "| method | data set / model | first explained input | scores |", "|---|---|---|---|"]
        for spec in local:
            for dataset in RULE_DATASETS:
                lines += _local_rule_rows(results, workdir, spec.id, dataset)
    return "\n".join(lines)


def _local_rule_rows(results: Results, workdir: Path, method: str, dataset: str) -> list[str]:
    """The local table's row of ``method`` on ``dataset`` (none where it did not run there)."""
    from nnxai.explanations import LocalRules, load_explanation

    model = _rule_model(workdir, dataset, method) if dataset != "shapes" else (
        "baseline" if (workdir / _record_path("shapes", "baseline", method)).is_file() else None)
    if model is None:
        return []
    record = load_explanation(workdir / _record_path(dataset, model, method))
    if isinstance(record, LocalRules):
        first = record.to_text().splitlines()[0].replace("|", "/")
    else:
        first = _rules_cell(record, workdir, dataset, model, method)
    scores = "; ".join(f"`{m}` {cell(results[(dataset, model, method, m)], 3)}"
                       for m in LOCAL_RULE_METRICS if (dataset, model, method, m) in results)
    return [f"| {method} | {dataset} / {model} | {first} | {scores or '—'} |"]


def hidden_examples_section(results: Results, workdir: Path) -> str:
    """Every score of every hidden-semantics and example method on the plain networks (with its interval
    where it is a mean over inputs or units), the scores against the planted concepts
    (:func:`planted_concepts_lines`), and the unit-by-unit agreement with Network Dissection."""
    from nnxai.report.unit_agreement import agreement_rows, table_rows
    from nnxai.taxonomy import ExplanationType

    types = (ExplanationType.HIDDEN_SEMANTICS, ExplanationType.EXAMPLE)
    methods = [m for m in registry.implemented_ids() if registry.spec(m).explanation_type in types
               and registry.spec(m).engagement.value == "passive"]
    lines = [f"Hidden semantics and explanation by example on the plain networks ({LEVEL:.0%} bootstrap interval "
             "where a value is a mean over inputs or units; the per-regulariser, per-layer and per-concept values "
             "and every variant are in `all.csv`):", "",
             "| dataset | method | metric | value | n |", "|---|---|---|---|---|"]
    for dataset, model in HIDDEN_EXAMPLE_CELLS:
        for method in methods:
            keys = sorted(k[3] for k in results                 # headline values; sub-keys: all.csv
                          if k[:3] == (dataset, model, method) and k[3] != "runtime" and "." not in k[3])
            for key in keys:
                row = results[dataset, model, method, key]
                lines.append(f"| {dataset} | {method} | `{key}` | {cell(row, 3)} | {row.get('n', '')} |")
    planted = planted_concepts_lines(results, workdir, *PLANTED_CONCEPT_CELL)
    lines += ["", *planted] if planted else []
    agreement = table_rows(agreement_rows(workdir))
    if agreement:
        lines += ["", "Unit concept labels against Network Dissection (`paper/tables/unit_agreement_summary.md`):", "",
                  "| dataset | method | units | agreement | on detectors | chance |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['Data set']} | {r['Method']} | {r['Units']} | {r['Agreement']} | {r['On detectors']} | "
                  f"{r['Chance']} |" for r in agreement if r["Model"] == "baseline"]
    return "\n".join(lines)


def planted_concepts_lines(results: Results, workdir: Path, dataset: str, model: str) -> list[str]:
    """The hidden-semantics scores against the data generator's planted concepts: activation maximisation per
    regulariser, Net2Vec [99] concept by concept, and :data:`PLANTED_TRUTH_ROWS`; values with their interval
    where they are means."""
    head = [f"Against the planted concepts (`{dataset}`/`{model}`: the generator's concept masks, concept table "
            f"and labelling rule; {LEVEL:.0%} interval where a value is a mean over units, images or inputs; empty: "
            "not measured per regulariser):"]
    parts = [_activation_concept_table(results, dataset, model),
             _net2vec_concept_table(results, workdir, dataset, model), _planted_truth_table(results, dataset, model)]
    parts = [p for p in parts if p]
    if not parts:
        return []
    return head + [line for part in parts for line in ["", *part]]


def _activation_concept_table(results: Results, dataset: str, model: str) -> list[str]:
    """Activation maximisation's concept scores, all images and per regulariser (``<key>.<regulariser>``)."""
    found = {key for (d, m, x, key) in results if (d, m, x) == (dataset, model, "activation_max")}
    regularisers = sorted({key[len(base) + 1:] for base, _ in ACTIVATION_CONCEPT_COLUMNS for key in found
                           if key.startswith(base + ".") and "." not in key[len(base) + 1:]})
    if not any(base in found for base, _ in ACTIVATION_CONCEPT_COLUMNS):
        return []
    lines = ["| activation_max regulariser | " + " | ".join(t for _, t in ACTIVATION_CONCEPT_COLUMNS) + " |",
             "|---|" + "---|" * len(ACTIVATION_CONCEPT_COLUMNS)]
    for name, suffix in [("all", ""), *((r, "." + r) for r in regularisers)]:
        cells = [cell(results.get((dataset, model, "activation_max", base + suffix)), 3)
                 for base, _ in ACTIVATION_CONCEPT_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _net2vec_concept_table(results: Results, workdir: Path, dataset: str, model: str) -> list[str]:
    """Net2Vec's held-out IoU per concept at its headline layer, multi-filter vs best single filter (the
    record's ``meta["scores"]``; one value per concept), under the means over concepts of all.csv."""
    from nnxai.explanations import load_explanation

    path = workdir / _record_path(dataset, model, "net2vec")
    if not path.is_file():
        return []
    meta = load_explanation(path).meta
    headline = meta.get("headline_layer")
    per_concept = (meta.get("scores") or {}).get(headline) or {}
    get = lambda key: results.get((dataset, model, "net2vec", key))
    lines = [f"| net2vec concept (`{headline}`) | multi-filter IoU ↑ | best single filter IoU | gain ↑ |",
             "|---|---|---|---|",
             f"| mean over concepts | {cell(get('concept_seg_iou'), 3)} | {cell(get('concept_seg_iou.single'), 3)} | "
             f"{cell(get('single_vs_multi_filter_gain'), 3)} |"]
    for concept, entry in per_concept.items():
        multi, single = _float_or_none(entry.get("seg_iou")), _float_or_none(entry.get("single_iou"))
        gain = None if multi is None or single is None else multi - single
        lines.append(f"| {concept} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in (multi, single, gain))
                     + " |")
    return lines


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def _planted_truth_table(results: Results, dataset: str, model: str) -> list[str]:
    rows = [(method, key, what, results[dataset, model, method, key]) for method, key, what in PLANTED_TRUTH_ROWS
            if (dataset, model, method, key) in results]
    if not rows:
        return []
    return ["| method | metric | what it measures | value | n |", "|---|---|---|---|---|",
            *(f"| {method} | `{key}` | {what} | {cell(row, 3)} | {row.get('n', '')} |"
              for method, key, what, row in rows)]


def concepts_section(results: Results, workdir: Path) -> str:
    """The concept tests of the baseline networks, pair by pair, and the other networks as counts."""
    from nnxai.report.concept_tests import HEADER, pair_rows

    pairs, counts = pair_rows(workdir)
    named = [r for r in pairs if r["Method"] == "tcav"]
    discovered: dict[tuple[str, str], list[bool]] = {}    # ACE's concepts are clusters it found, not names
    for r in pairs:
        if r["Method"] != "tcav":
            discovered.setdefault((r["Data set"], r["Method"]), []).append(r["Significant"] == "yes")
    lines = ["Concept tests of TCAV [63] on the baseline networks, one row per (named concept, class) pair "
             "(`paper/tables/concept_tests.md` also lists ACE's [115] discovered concepts pair by pair): a p-value "
             "belongs to its pair, so pairs are aggregated only as counts of significant ones.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r[h] for h in HEADER) + " |" for r in named]
    summary = [f"{d}/baseline {m} {sum(v)} of {len(v)}" for (d, m), v in discovered.items()]
    summary += [f"{r['Data set']}/{r['Model']} {r['Method']} {r['Significant pairs']}" for r in counts]
    if summary:
        lines += ["", "Significant pairs elsewhere: " + "; ".join(summary) + "."]
    return "\n".join(lines)


Section = Callable[[Results, Path], str]
#: The document's sections, in order: (key, title, builder).  The README's block ``<profile>-<key>`` is the
#: section ``key`` of that profile's run.
def seeds_section(results: Results, workdir: Path) -> str:
    """How far each number moves when the baseline is retrained with another seed (``seed_replicas``),
    beside its interval over the inputs: the test accuracies, and the attribution metrics the replicas ran."""
    from nnxai.report.findings import seed_replicas as _replicas

    lines = [f"The baseline retrained with other training seeds (`baseline_seed<k>`, `seed_replicas` in the "
             f"config): each value of the baseline with its {LEVEL:.0%} interval over the inputs, the replicas' "
             "values on the same inputs, and the spread (largest minus smallest over all seeds).  *moves*: the "
             "spread exceeds the half-width of the baseline's interval, so that number would change beyond its "
             "stated interval under a rerun with another seed.", ""]
    rows, moved, total = [], 0, 0
    datasets = sorted(d for d in {d for d, m, _, _ in results if m == "baseline"} if _replicas(results, d))
    for dataset in datasets:
        replicas = _replicas(results, dataset)
        keys = [("model", "accuracy", "test accuracy")]
        methods = sorted({x for d, m, x, _ in results if d == dataset and m in replicas and x != "model"})
        keys += [(x, key, title.rstrip(" ↑↓")) for x in methods for key, title, _ in ATTRIBUTION_COLUMNS]
        for method, metric, title in keys:
            base = results.get((dataset, "baseline", method, metric))
            seeds = [results.get((dataset, r, method, metric)) for r in replicas]
            values = [number(x["value"]) for x in [base, *seeds] if x is not None]
            if base is None or len(values) < 2 or any(math.isnan(v) for v in values):
                continue
            spread = max(values) - min(values)
            low, high = number(base.get("ci_low")), number(base.get("ci_high"))
            half = (high - low) / 2 if not (math.isnan(low) or math.isnan(high)) else math.nan
            moves = not math.isnan(half) and spread > half
            total += 1
            moved += moves
            shown = " / ".join(f"{number(x['value']):.3f}" if x is not None else "–" for x in seeds)
            rows.append(f"| {dataset} | {method if method != 'model' else '(model)'} | {title} | {cell(base, 3)} | "
                        f"{shown} | {spread:.3f} | {'*moves*' if moves else 'within'} |")
    if not rows:
        return "\n".join(lines[:1] + ["", "No seed replica was measured in this run."])
    lines += [f"{moved} of {total} numbers move across training seeds by more than their interval's half-width.", "",
              "| dataset | method | metric | baseline [95% interval] | other seeds (" +
              ", ".join(r[len('baseline_'):] for r in _replicas(results, datasets[0])) + ") | spread | seed spread |",
              "|---|---|---|---|---|---|---|", *rows]
    return "\n".join(lines)


def findings_section(results: Results, workdir: Path) -> str:
    """The published findings of :mod:`nnxai.report.findings`, each with its rule, measurement and verdict."""
    from nnxai.report import findings as pub

    rows = pub.evaluate(results)
    tally = pub.counts(rows)
    lines = [f"Each published statement is checked by the rule beside it, fixed in `nnxai/report/findings.py` "
             f"before the numbers were read; values are means with their {LEVEL:.0%} interval over the explained "
             "inputs (units, pairs) in brackets.  *inconclusive*: the intervals overlap, or a seed replica of the "
             "baseline that measured it gives another verdict; *not applicable*: this run did not measure it.  "
             "Verdicts over all rows: " + ", ".join(f"{n} {v}" for v, n in tally.items()) + ".",
             "", "| published finding | rule | network | measured | verdict |", "|---|---|---|---|---|"]
    for finding, cell, measured, verdict in rows:
        shown = f"*{verdict}*" if verdict == pub.NOT_REPRODUCED else verdict
        lines.append(f"| {finding.statement} ({finding.source}) | {finding.rule} | {cell} | {measured} | {shown} |")
    return "\n".join(lines)


SECTIONS: tuple[tuple[str, str, Section], ...] = (
    ("accuracy", "Test accuracy", accuracy_section),
    ("attribution", "Attribution metrics on shapes", attribution_section),
    ("structured", "Other explanation types on shapes", structured_section),
    ("active", "Actively regularised networks", active_section),
    ("rules", "Rule extraction against planted rules", rules_section),
    ("hidden-examples", "Hidden semantics and explanation by example", hidden_examples_section),
    ("concepts", "Concept tests", concepts_section),
    ("seeds", "Spread over training seeds", seeds_section),
    ("findings", "Published findings re-checked", findings_section),
)


def sections(workdir: Path) -> dict[str, str]:
    """``{key: markdown}`` of every section of :data:`SECTIONS` for the run in ``workdir``."""
    workdir = Path(workdir)
    results = read(workdir)
    return {key: build(results, workdir) for key, _, build in SECTIONS}


def provenance(workdir: Path) -> str:
    """What produced the run: the code version and configuration digest of each baseline checkpoint."""
    found = []
    for path in sorted((Path(workdir) / "data" / "checkpoints").glob("*/baseline*.json")):
        if path.stem not in ("baseline", "baseline_sigmoid"):
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found.append(f"{path.parent.name}/{path.stem}: code {record.get('code_version', '?')}, "
                     f"config {record.get('config_hash', '?')}")
    return "; ".join(found) or "no checkpoint records found"


def markdown(workdir: Path, parts: dict[str, str] | None = None) -> str:
    parts = sections(workdir) if parts is None else parts
    lines = ["<!-- generated by `nnxai report results` from data/metrics/all.csv and the records; do not edit -->",
             "", "# Results", "", f"Produced by: {provenance(workdir)}.  Each value's settings: "
             "`nnxai show data/explanations/<dataset>/<model>/<method>.*` (its record) and the config profile.", ""]
    for key, title, _ in SECTIONS:
        lines += [f"## {title}", "", f"<!-- section:{key} -->", parts[key], f"<!-- /section:{key} -->", ""]
    return "\n".join(lines)


def section_of(document: str, key: str) -> str:
    """The text of section ``key`` in a rendered document (what :func:`markdown` put between its markers)."""
    match = re.search(rf"<!-- section:{re.escape(key)} -->\n(.*?)\n<!-- /section:{re.escape(key)} -->", document, re.S)
    if match is None:
        raise KeyError(f"the document has no section {key!r}")
    return match.group(1)


# ----------------------------------------------------------------------------- LaTeX
_CODE = re.compile(r"`([^`]*)`")
_EMPH = re.compile(r"(?<![\\*])\*([^*]+)\*")


def _inline_tex(text: str) -> str:
    """LaTeX of one line of this module's Markdown: code spans, emphasis, escaped pipes, ``<br>``."""
    text = text.replace("\\|", "|").replace("<br>", " / ")
    out, last = [], 0
    for match in _CODE.finditer(text):
        out.append(_emph_tex(text[last:match.start()]))
        out.append(r"\texttt{" + latex_escape(match.group(1)) + "}")
        last = match.end()
    out.append(_emph_tex(text[last:]))
    return "".join(out)


def _emph_tex(text: str) -> str:
    parts = _EMPH.split(text)
    return "".join(r"\emph{" + latex_escape(p) + "}" if i % 2 else latex_escape(p) for i, p in enumerate(parts))


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def markdown_to_tex(text: str) -> str:
    """LaTeX of this module's Markdown: paragraphs, ``##`` headings and pipe tables (as ``longtable``)."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("<!--") or not line.strip():
            i += 1
            continue
        if line.startswith("# "):
            out.append(r"\section*{" + latex_escape(line[2:]) + "}")
        elif line.startswith("## "):
            out.append(r"\subsection*{" + latex_escape(line[3:]) + "}")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not re.fullmatch(r"\|(\s*-+\s*\|)+", lines[i].strip()):
                    rows.append(_cells(lines[i]))
                i += 1
            width = max(len(r) for r in rows)
            column = rf">{{\raggedright\arraybackslash}}p{{{0.96 / width:.3f}\linewidth}}"
            out += [r"{\scriptsize", r"\begin{longtable}{" + column * width + "}", r"\toprule",
                    " & ".join(_inline_tex(c) for c in rows[0]) + r" \\", r"\midrule", r"\endhead"]
            out += [" & ".join(_inline_tex(c) for c in r + [""] * (width - len(r))) + r" \\" for r in rows[1:]]
            out += [r"\bottomrule", r"\end{longtable}}"]
            continue
        else:
            out.append(_inline_tex(line))
        out.append("")
        i += 1
    return "\n".join(out) + "\n"


@report_item(NAME, kind="document")
def write_results(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Write ``results.md`` and ``results.tex`` (the results document) from the run in ``workdir``."""
    text = markdown(Path(workdir))
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / f"{NAME}.md", text + "\n" if not text.endswith("\n") else text),
            atomic_write_text(out_dir / f"{NAME}.tex", markdown_to_tex(text))]
