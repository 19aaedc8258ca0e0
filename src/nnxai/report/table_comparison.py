"""Table: the companion survey's feature-importance comparison, regenerated for every attribution method.

The companion survey (Zhang et al., 2019, Table 1; :mod:`nnxai.report.companion_table`) rates six
attribution methods on four properties.  This table rates every implemented attribution method of the
registry on the same four, from what the code declares and what the run measured, and prints the
survey's rating beside ours where it has a row (its rows for methods not implemented yet are kept, with
our columns empty):

- Training: the method class's ``trains`` (:class:`nnxai.methods.base.Method`);
- Efficiency: measured, the median over the run's models of the ``runtime`` metric (seconds per
  explained input) in ``data/metrics/all.csv``, one column per dataset kind (image, tabular); the survey's
  column is a qualitative Low/High;
- Locality: the survey means "locally additive"; we print the method's scope in the survey's taxonomy
  (local / semi-local / global, from the registry), which is a different property, said in the legend;
- Model-agnostic: the class's ``model_agnostic``, with the model restrictions it declares
  (``architectures``, ``activations``) when it is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nnxai import registry
from nnxai.io import atomic_write_text
from nnxai.methods.base import Method
from nnxai.report._format import RAGGED, latex_escape, md_escape, ref_labels, wide_table_head
from nnxai.report._items import report_item
from nnxai.report._results import MODEL_ROWS, dataset_kind, read_results
from nnxai.report.companion_table import CITATION, DEFINITIONS, CompanionRow, by_method
from nnxai.taxonomy import ExplanationType

NAME = "table_comparison"
METRIC = "runtime"
KIND_ORDER = ("image", "tabular")
NONE = "—"
CAPTION = ("Feature importance methods compared (the companion survey's Table 1, regenerated for every "
           "implemented attribution method): the survey's rating (2nd) beside what the code declares and "
           "the run measured (ours).")


@dataclass(frozen=True)
class ComparisonRow:
    """One method: the companion survey's row (if any) and ours (``None`` where not implemented)."""

    method_id: str
    name: str
    refs: list[str]
    survey: CompanionRow | None
    implemented: bool
    trains: bool | None
    seconds: dict[str, float]    #: dataset kind → median seconds per explained input
    scope: str
    model_agnostic: str          #: "yes", "no", "no (needs …)"; "—" when not implemented


def median_runtimes(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Method → dataset kind → median of the ``runtime`` values (over models and seeds) of that kind."""
    rows = frame[(frame["metric"] == METRIC) & (frame["method"] != MODEL_ROWS)].dropna(subset=["value"])
    rows = rows.assign(kind=rows["dataset"].map(dataset_kind))
    medians = rows.groupby(["method", "kind"])["value"].median()
    out: dict[str, dict[str, float]] = {}
    for (method, kind), value in medians.items():
        out.setdefault(method, {})[kind] = float(value)
    return out


def _restrictions(cls: type[Method]) -> list[str]:
    defaults = Method.architectures, Method.activations
    return [f"{'/'.join(sorted(declared))} only" for declared, default in zip(
        (cls.architectures, cls.activations), defaults) if declared != default]


def _agnostic(cls: type[Method]) -> str:
    restricted = _restrictions(cls)
    if cls.model_agnostic:
        return f"inconsistent: declared agnostic but {', '.join(restricted)}" if restricted else "yes"
    return f"no ({', '.join(restricted)})" if restricted else "no"


def comparison_rows(frame: pd.DataFrame) -> list[ComparisonRow]:
    """The rows of the table, in registry order: implemented attribution methods and the survey's rows."""
    companion, runtimes = by_method(), median_runtimes(frame)
    out = []
    for spec in registry.specs():
        done = registry.is_implemented(spec.id)
        if spec.explanation_type != ExplanationType.ATTRIBUTION or not (done or spec.id in companion):
            continue
        survey = companion.get(spec.id)
        refs = ref_labels(spec) + ([f"[2nd: {survey.ref}]"] if survey else [])
        cls = registry.get(spec.id) if done else None
        out.append(ComparisonRow(
            spec.id, spec.name, refs, survey, done, cls.trains if cls else None,
            runtimes.get(spec.id, {}) if done else {}, ", ".join(s.label for s in spec.scopes),
            _agnostic(cls) if cls else NONE))
    return out


def kinds_measured(rows: list[ComparisonRow]) -> list[str]:
    """Dataset kinds with a runtime, image and tabular first; at least one column."""
    found = {k for r in rows for k in r.seconds}
    return [k for k in KIND_ORDER if k in found] + sorted(found - set(KIND_ORDER)) or list(KIND_ORDER)


def format_seconds(value: float | None) -> str:
    """Seconds per input in the unit that puts it in [1, 1000) (s above that), never in exponent notation:
    ``12 µs``, ``5.7 ms``, ``120 ms``, ``1.23 s``, ``1234 s``."""
    if value is None:
        return NONE
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale or unit == "µs":
            x = value / scale
            return f"{x:.0f} {unit}" if x >= 10 else f"{x:.2g} {unit}" if unit != "s" else f"{x:.3g} {unit}"
    raise AssertionError("unreachable")


def _yes_no(value: bool | None) -> str:
    return NONE if value is None else ("yes" if value else "no")


def _cells(row: ComparisonRow, kinds: list[str]) -> list[str]:
    s = row.survey
    return [_yes_no(s.training if s else None), _yes_no(row.trains),
            s.efficiency if s else NONE, *(format_seconds(row.seconds.get(k)) for k in kinds),
            _yes_no(s.locality if s else None), row.scope,
            _yes_no(s.model_agnostic if s else None), row.model_agnostic]


def _legend(kinds: list[str]) -> list[str]:
    return [
        f"2nd: {CITATION}. Its definitions: Training, {DEFINITIONS['training']}; Efficiency, "
        f"{DEFINITIONS['efficiency']}; Locality, {DEFINITIONS['locality']}; Model-agnostic, "
        f"{DEFINITIONS['model_agnostic']}.",
        "Ours: Training and Model-agnostic as the method's class declares them (trains, model_agnostic; "
        "with the architectures/activations it is restricted to); Efficiency measured, the median over "
        f"the run's models of seconds per explained input, per kind of data set ({', '.join(kinds)}); "
        "Locality: the method's scope in the survey's taxonomy (registry), not additivity. —: no rating, "
        "not implemented or not run.",
    ]


def _header(kinds: list[str]) -> list[str]:
    return ["Training (2nd)", "Training (ours)", "Efficiency (2nd)",
            *(f"s/input, {k} (ours)" for k in kinds), "Locally additive (2nd)", "Scope (ours)",
            "Model-agnostic (2nd)", "Model-agnostic (ours)"]


def _markdown(rows: list[ComparisonRow], kinds: list[str]) -> str:
    header = ["Method", "Ref.", *_header(kinds)]
    lines = [f"<!-- generated by nnxai.report.{NAME} from the registry and data/metrics/all.csv; "
             "do not edit -->", "", f"**Comparison table.** {md_escape(CAPTION)}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = md_escape(row.name) + ("" if row.implemented else " (not implemented)")
        lines.append("| " + " | ".join([name, ", ".join(row.refs), *map(md_escape, _cells(row, kinds))]) + " |")
    for text in _legend(kinds):
        lines += ["", md_escape(text)]
    return "\n".join(lines) + "\n"


def _latex(rows: list[ComparisonRow], kinds: list[str]) -> str:
    n_eff = 1 + len(kinds)
    wrap = RAGGED
    columns = f"@{{}}{wrap}X{wrap}p{{1.6cm}}lll{'l' * len(kinds)}l{wrap}p{{1.5cm}}l{wrap}p{{2.0cm}}@{{}}"
    groups = ["", "", "\\multicolumn{2}{c}{Training}", f"\\multicolumn{{{n_eff}}}{{c}}{{Efficiency}}",
              "\\multicolumn{2}{c}{Locality}", "\\multicolumn{2}{c}{Model-agnostic}"]
    rules = (f"\\cmidrule(lr){{3-4}}\\cmidrule(lr){{5-{4 + n_eff}}}\\cmidrule(lr){{{5 + n_eff}-{6 + n_eff}}}"
             f"\\cmidrule(lr){{{7 + n_eff}-{8 + n_eff}}}")
    lines = wide_table_head(f"nnxai.report.{NAME} from the registry and data/metrics/all.csv",
                            "booktabs,tabularx,array", latex_escape(CAPTION), "tab:comparison", columns,
                            setup=("\\setlength{\\tabcolsep}{4pt}",))
    lines += [" & ".join(groups) + " \\\\", rules,
             " & ".join(["Method", "Ref.", "2nd", "ours", "2nd", *map(latex_escape, kinds), "2nd", "ours (scope)",
                         "2nd", "ours"]) + " \\\\", "\\midrule"]
    for row in rows:
        name = latex_escape(row.name) + ("" if row.implemented else " (not impl.)")
        cells = [name, latex_escape(", ".join(row.refs)), *map(latex_escape, _cells(row, kinds))]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabularx}", "", "\\smallskip",
              "{\\footnotesize " + " ".join(latex_escape(t) for t in _legend(kinds)) + "}", "\\end{table*}"]
    return "\n".join(lines) + "\n"


@report_item("table_comparison", kind="table")
def write_table_comparison(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Write ``table_comparison.md`` and ``.tex`` from the registry and ``<workdir>/data/metrics/all.csv``."""
    rows = comparison_rows(read_results(workdir))
    kinds = kinds_measured(rows)
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / f"{NAME}.md", _markdown(rows, kinds)),
            atomic_write_text(out_dir / f"{NAME}.tex", _latex(rows, kinds))]
