"""The README's results, from a finished run's ``data/metrics/all.csv``: every number with its 95% bootstrap
interval over the explained inputs (the ``ci_low``/``ci_high`` columns, :mod:`nnxai.intervals`).

Writes six README blocks (``<profile>-accuracy``, ``<profile>-attribution``, ``<profile>-structured``,
``<profile>-active``, ``<profile>-rules``, ``<profile>-hidden-examples``): the test accuracy of every trained
model, the attribution metrics of every method on ``shapes``/``baseline`` (where the ground truth is known),
the per-input scores of the other explanation types, and for each actively regularised network (survey
Sec. IV) its accuracy beside the baseline's, the scores of its own explanation, and how the passive methods'
scores on it compare with the baseline's; what every rule method extracted on the sets whose rule is
planted (MONK's problems, shapes); and every hidden-semantics and example score on the plain networks, with
the unit-by-unit agreement of the hidden-semantics methods with Network Dissection.  Values
that are not means over inputs (a TCAV p-value, a rule count) have no such interval and are left to the
tables and ``all.csv``.

    .venv/bin/python benchmarks/budget.py                          # a default run (keeps its folder), then
    .venv/bin/python benchmarks/findings.py --root RUN             # its results into the README
    .venv/bin/python benchmarks/findings.py --root RUN --print     # print only
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _readme import write_block  # noqa: E402

from nnxai import registry  # noqa: E402
from nnxai.intervals import LEVEL  # noqa: E402

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


def read(root: Path) -> dict[tuple[str, str, str, str], dict]:
    path = root / "data" / "metrics" / "all.csv"
    if not path.is_file():
        raise SystemExit(f"no {path}: run the workflow first (benchmarks/budget.py keeps its run folder)")
    with path.open() as fh:
        return {(r["dataset"], r["model"], r["method"], r["metric"]): r for r in csv.DictReader(fh)}


def number(text: str) -> float:
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


def accuracy_block(results: dict) -> str:
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


def attribution_block(results: dict, dataset: str = "shapes", model: str = "baseline") -> str:
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


def structured_block(results: dict, dataset: str = "shapes", model: str = "baseline") -> str:
    lines = [f"Per-input scores of the other explanation types on `{dataset}`/`{model}` ({LEVEL:.0%} bootstrap "
             "interval):", "", "| method | metric | what it measures | value | n |", "|---|---|---|---|---|"]
    for method, key, what in STRUCTURED_ROWS:
        row = results.get((dataset, model, method, key))
        if row is not None:
            lines.append(f"| {method} | `{key}` | {what} | {cell(row, 3)} | {row.get('n', '')} |")
    return "\n".join(lines)


OWN_EXCLUDED = ("runtime",)


def active_block(results: dict, root: Path) -> str:
    """Per active variant and data set: accuracy beside the baseline's, its own explanation's scores, and the
    passive cells better / worse / indistinguishable than on the baseline (non-overlapping intervals)."""
    from nnxai.active.base import ACTIVE
    from nnxai.report._results import read_results
    from nnxai.report.active_vs_baseline import summary

    compared = {(r.dataset, r.variant): r for r in summary(read_results(root)).itertuples()}
    lines = [f"Each actively regularised network (survey Sec. IV) and the sparsity baselines: test accuracy "
             f"beside the baseline's ({LEVEL:.0%} interval over the test split), the scores of the network's own "
             "explanation (its catalogue metrics, interval over what they average), and the passive methods' "
             "scores on it against the same methods on the baseline (`paper/tables/active_summary.md`, "
             "`paper/figures/active_vs_baseline.png`): cells better / worse where the two intervals do not overlap, "
             "the rest indistinguishable.", "",
             "| data set | variant | accuracy (baseline) | its own explanation | passive cells better / worse / "
             "indistinguishable |", "|---|---|---|---|---|"]
    variants = ["l1", "l2", *ACTIVE]
    datasets = sorted({k[0] for k in results})
    for variant in variants:
        for dataset in datasets:
            row = results.get((dataset, variant, "model", "accuracy"))
            if row is None:
                continue
            base = results.get((dataset, "baseline", "model", "accuracy"))
            own = [(k[3], r) for k, r in sorted(results.items())
                   if k[:3] == (dataset, variant, variant) and k[3] not in OWN_EXCLUDED]
            own_text = "; ".join(f"`{metric}` {cell(r, 3)}" for metric, r in own) or "—"
            c = compared.get((dataset, variant))
            passive = f"{c.better} / {c.worse} / {c.same}" if c is not None else "—"
            lines.append(f"| {dataset} | {variant} | {cell(row, 3)} ({cell(base, 3)}) | {own_text} | {passive} |")
    return "\n".join(lines)


#: Where the rule block reads each method's rules: the sets whose labelling rule is planted.
RULE_DATASETS = ("monks1", "monks3", "shapes")
RULE_METRICS = (("rule_recovery", "planted rule recovered"), ("fidelity", "fidelity"), ("rule_size", "rules"))
LOCAL_RULE_METRICS = ("precision", "coverage", "validity", "pp_pn_validity", "flip_rate", "edits_to_flip",
                      "gate_sparsity", "path_fidelity", "cost", "rule_size")


def _rule_model(root: Path, dataset: str, method: str, suffix: str = ".json") -> str | None:
    for model in ("baseline_sigmoid", "baseline"):
        if (root / "data" / "explanations" / dataset / model / f"{method}{suffix}").is_file():
            return model
    return None


LINE = 160   #: characters of one rule shown in the README table (the file holds it whole)


def _short(text: str, lines: int = 4) -> str:
    rows = text.splitlines()
    cut = lambda r: r if len(r) <= LINE else r[:LINE - 1] + "…"      # an M-of-N chain can run for a page
    shown = "<br>".join(cut(r).replace("|", "\\|") for r in rows[:lines])
    return shown + (f"<br>… ({len(rows)} lines)" if len(rows) > lines else "")


def rules_block(results: dict, root: Path) -> str:
    """What every rule method extracted on the sets with a planted rule (MONK-1, MONK-3, shapes' concepts):
    the rules as text (from the run's explanation files), whether they are the planted rule, their fidelity
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
            model = _rule_model(root, dataset, spec.id)
            if model is None:
                continue
            record = load_explanation(root / "data" / "explanations" / dataset / model / f"{spec.id}.json")
            get = lambda metric: results.get((dataset, model, spec.id, metric))
            recovered = get("rule_recovery")
            rec = ("yes" if number(recovered["value"]) == 1 else "no") if recovered else ""
            lines.append(f"| {spec.id} | {dataset} / {model} | {_short(record.text)} | {rec} | "
                         f"{cell(get('fidelity'), 3)} | {cell(get('rule_size') or get('n_leaves'), 0)} |")
    local = [s for s in specs if Scope.GLOBAL not in s.scopes
             and any(k[2] == s.id and k[0] in ("monks1", "shapes") for k in results)]
    if local:
        lines += ["", "Local and semi-local rule methods: the first explained input of each, and the scores over "
                  f"all explained inputs ({LEVEL:.0%} interval):", "",
                  "| method | data set / model | first explained input | scores |", "|---|---|---|---|"]
        for spec in local:
            for dataset in ("monks1", "shapes"):
                model = _rule_model(root, dataset, spec.id) if dataset != "shapes" else (
                    "baseline" if (root / "data/explanations/shapes/baseline" / f"{spec.id}.json").is_file() else None)
                if model is None:
                    continue
                record = load_explanation(root / "data" / "explanations" / dataset / model / f"{spec.id}.json")
                first = record.to_text().splitlines()[0] if hasattr(record, "explanations") else _short(record.text, 2)
                scores = "; ".join(f"`{m}` {cell(results[(dataset, model, spec.id, m)], 3)}"
                                   for m in LOCAL_RULE_METRICS if (dataset, model, spec.id, m) in results)
                lines.append(f"| {spec.id} | {dataset} / {model} | {first.replace('|', '/')} | {scores or '—'} |")
    return "\n".join(lines)


#: The plain networks whose hidden-semantics and example scores the README shows (the variants: all.csv).
HIDDEN_EXAMPLE_CELLS = (("shapes", "baseline"), ("digits", "baseline"), ("causal", "baseline"))


def hidden_example_block(results: dict, root: Path) -> str:
    """Every score of every hidden-semantics and example method on the plain networks (with its interval
    where it is a mean over inputs or units), and the unit-by-unit agreement with Network Dissection."""
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
    agreement = table_rows(agreement_rows(root))
    if agreement:
        lines += ["", "Unit concept labels against Network Dissection (`paper/tables/unit_agreement_summary.md`):", "",
                  "| dataset | method | units | agreement | on detectors | chance |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['Data set']} | {r['Method']} | {r['Units']} | {r['Agreement']} | {r['On detectors']} | "
                  f"{r['Chance']} |" for r in agreement if r["Model"] == "baseline"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="a finished run's folder")
    parser.add_argument("--profile", default="default", help="the run's profile: names the README blocks")
    parser.add_argument("--print", action="store_true", help="print only, leave the README alone")
    args = parser.parse_args(argv)
    results = read(args.root)
    blocks = {f"{args.profile}-accuracy": accuracy_block(results),
              f"{args.profile}-attribution": attribution_block(results),
              f"{args.profile}-structured": structured_block(results),
              f"{args.profile}-active": active_block(results, args.root),
              f"{args.profile}-rules": rules_block(results, args.root),
              f"{args.profile}-hidden-examples": hidden_example_block(results, args.root)}
    for name, text in blocks.items():
        print(f"--- {name}\n{text}\n")
        if not args.print:
            write_block(name, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
