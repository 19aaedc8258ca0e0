"""Figure and table: does each hidden-semantics method name the same concept for a unit as Network Dissection?

Network Dissection [21] labels every unit of a CNN with the concept whose pixel masks its top activations
overlap most.  The other hidden-semantics methods of the survey (Sec. III-B) name concepts for units by
other means -- a probe's weights (Net2Vec [99], neuron ranking [100]), the inputs that excite a unit most
(deconvolution of the top-9 activations), a synthesised preferred input (activation maximisation [93]-[98])
-- and this compares them unit by unit, on the same units of the same model.

For every (data set, model) with a Network Dissection record and every other hidden-semantics record there
whose units carry a ``concept``:

* ``units``: the units both name a concept for; ``agreement``: the fraction of them on which the two name
  the same one, with its 95 % bootstrap interval over those units (:func:`nnxai.intervals.bootstrap_interval`);
* ``detectors`` / ``agreement_detectors``: the same on the units Network Dissection calls detectors (best
  IoU above its threshold), the only units whose dissection label means something;
* ``chance``: the agreement two independent labellings with the same label frequencies would reach,
  ``sum_c p_A(c) p_ND(c)`` over the shared units (the chance term of Cohen's kappa).

A record with several entries per unit (activation maximisation: one image per regulariser) is compared per
variant (its units' ``regulariser``), shown as ``method/variant``.  A hidden-semantics method whose record
labels no unit with a concept (the mimic network of 2nd survey [50] explains the whole network by a shallow
one) cannot be compared: :func:`not_applicable` lists it, with the reason, in the table and under the figure.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from nnxai import registry
from nnxai.explanations import load_explanation
from nnxai.intervals import bootstrap_interval
from nnxai.io import atomic_write_text
from nnxai.report._figure import NOTE_STYLE, figure_style, new_figure, note, save_figure
from nnxai.report._format import latex_escape, md_escape
from nnxai.report._items import report_item
from nnxai.report._results import first_seen, method_order
from nnxai.taxonomy import ExplanationType

NAME = "unit_agreement"          #: the figure
TABLE = "unit_agreement_summary"  #: the table
REFERENCE = "network_dissection"
SEED = 0                     #: the bootstrap's seed (the intervals are reproducible)
VARIANT_KEYS = ("regulariser", "variant")
COLUMNS = ["dataset", "model", "method", "units", "agreement", "low", "high", "detectors",
           "agreement_detectors", "low_detectors", "high_detectors", "chance"]
CAPTION = ("Do the hidden-semantics methods name the same concept for a unit as Network Dissection [21]? "
           "Fraction of the units both label on which they agree (95 % bootstrap interval over the units); "
           "bars: the baseline network, dots: the other trained variants; black tick: the agreement expected "
           "by chance from the two labellings' concept frequencies.")


def unit_labels(record) -> dict[str, dict[tuple[str, int], str]]:
    """``{variant: {(layer, unit): concept}}`` of a hidden-semantics record ("" when it has one variant);
    units without a ``concept`` are left out, and a unit named twice in one variant keeps its first name."""
    out: dict[str, dict[tuple[str, int], str]] = {}
    for unit in getattr(record, "units", None) or []:
        concept = unit.get("concept")
        if concept is None:
            continue
        variant = next((str(unit[k]) for k in VARIANT_KEYS if k in unit), "")
        out.setdefault(variant, {}).setdefault((str(unit["layer"]), int(unit["unit"])), str(concept))
    return out


def compare(labels: dict[tuple[str, int], str], reference: dict[tuple[str, int], str],
            detectors: set[tuple[str, int]]) -> dict[str, float]:
    """The agreement figures of one labelling against the reference (see the module docstring)."""
    shared = sorted(set(labels) & set(reference))
    same = np.array([labels[u] == reference[u] for u in shared], dtype=np.float64)
    on_detectors = np.array([labels[u] == reference[u] for u in shared if u in detectors], dtype=np.float64)
    row = {"units": len(shared), "detectors": int(on_detectors.size)}
    for suffix, values in (("", same), ("_detectors", on_detectors)):
        interval = bootstrap_interval(values, SEED)
        row[f"agreement{suffix}"] = float(values.mean()) if values.size else np.nan
        row[f"low{suffix}"], row[f"high{suffix}"] = interval.low, interval.high
    if shared:
        p = Counter(labels[u] for u in shared)
        q = Counter(reference[u] for u in shared)
        row["chance"] = sum(p[c] * q[c] for c in p) / len(shared) ** 2
    else:
        row["chance"] = np.nan
    return row


def _hidden_semantics_methods() -> list[tuple[str, str]]:
    """``(id, record file suffix)`` of every implemented hidden-semantics method but the reference."""
    return [(m, registry.get(m).record_type.suffix) for m in registry.implemented_ids()
            if m != REFERENCE and registry.spec(m).explanation_type is ExplanationType.HIDDEN_SEMANTICS]


def not_applicable(workdir: Path) -> dict[str, str]:
    """``{method: reason}`` of the hidden-semantics methods that ran beside Network Dissection (a record in the
    same folder) but whose records have no units to label (read from the method's record type; a record is
    loaded only for a method the registry does not know)."""
    root = Path(workdir) / "data/explanations"
    references = sorted(root.glob(f"*/*/{REFERENCE}.json"))
    out: dict[str, str] = {}
    for method, suffix in _hidden_semantics_methods():
        path = next((ref.parent / f"{method}{suffix}" for ref in references
                     if (ref.parent / f"{method}{suffix}").is_file()), None)
        if path is None:
            continue
        try:
            record_type = registry.get(method).record_type
        except KeyError:
            record_type = type(load_explanation(path))
        if "units" not in getattr(record_type, "__dataclass_fields__", {"units": None}):
            out[method] = f"it labels no units with a concept (its record is a {record_type.__name__})"
    return out


def agreement_rows(workdir: Path) -> pd.DataFrame:
    """One row per (data set, model, method[/variant]) compared with Network Dissection (COLUMNS)."""
    root = Path(workdir) / "data/explanations"
    rows = []
    for ref_path in sorted(root.glob(f"*/*/{REFERENCE}.json")):
        dataset, model = ref_path.parent.parent.name, ref_path.parent.name
        ref_record = load_explanation(ref_path)
        reference = unit_labels(ref_record).get("", {})
        detectors = {(str(u["layer"]), int(u["unit"])) for u in ref_record.units if u.get("detector")}
        for method, suffix in _hidden_semantics_methods():
            path = ref_path.parent / f"{method}{suffix}"
            if not path.is_file():
                continue
            for variant, labels in unit_labels(load_explanation(path)).items():
                name = f"{method}/{variant}" if variant else method
                rows.append({"dataset": dataset, "model": model, "method": name,
                             **compare(labels, reference, detectors)})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        return frame
    base = {m: i for i, m in enumerate(method_order(frame["method"].str.split("/").str[0]))}
    key = frame["method"].map(lambda m: (base.get(m.split("/")[0], len(base)), m))
    return frame.assign(_k=key).sort_values(["dataset", "_k", "model"], kind="stable").drop(columns="_k") \
        .reset_index(drop=True)


def _percent(value: float) -> str:
    return "—" if not np.isfinite(value) else f"{100 * value:.0f} %"


def _with_interval(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "—"
    if not (np.isfinite(low) and np.isfinite(high)):
        return _percent(value)
    return f"{_percent(value)} [{100 * low:.0f}, {100 * high:.0f}]"


def table_rows(frame: pd.DataFrame) -> list[dict[str, str]]:
    """The table: the baseline network of each data set, and the spread over its other variants."""
    out = []
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=False):
        base = group[group["model"] == "baseline"]
        others = group[group["model"] != "baseline"]["agreement"].dropna()
        row = base.iloc[0] if len(base) else group.iloc[0]
        spread = (f"{_percent(others.median())} ({_percent(others.min())}–{_percent(others.max())}, "
                  f"{len(others)} models)" if len(others) else "—")
        out.append({"Data set": dataset, "Method": method, "Model": str(row["model"]),
                    "Units": str(int(row["units"])), "Agreement": _with_interval(row["agreement"], row["low"], row["high"]),
                    "On detectors": (_with_interval(row["agreement_detectors"], row["low_detectors"],
                                                    row["high_detectors"]) + f" of {int(row['detectors'])}"),
                    "Chance": _percent(row["chance"]), "Other variants: median (range)": spread})
    return out


@report_item(TABLE, kind="table")
def write_unit_agreement_table(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Write ``unit_agreement_summary.md`` and ``.tex`` from the hidden-semantics records under ``workdir``."""
    rows = table_rows(agreement_rows(Path(workdir)))
    rows += [{"Data set": "—", "Method": method, "Model": "—", "Units": "0",
              "Agreement": f"not applicable: {reason}", "On detectors": "—", "Chance": "—",
              "Other variants: median (range)": "—"}
             for method, reason in not_applicable(Path(workdir)).items()]
    header = ["Data set", "Method", "Model", "Units", "Agreement", "On detectors", "Chance",
              "Other variants: median (range)"]
    md = [f"**Unit labels against Network Dissection.** {CAPTION}", "", "| " + " | ".join(header) + " |",
          "|" + "---|" * len(header)]
    md += ["| " + " | ".join(md_escape(r[h]) for h in header) + " |" for r in rows]
    if not rows:
        md.append("| " + " | ".join(["no hidden-semantics method ran beside Network Dissection"] + [""] * (len(header) - 1)) + " |")
    tex = [r"\begin{table*}[t]", r"\centering", r"\small", rf"\caption{{{latex_escape(CAPTION)}}}",
           rf"\label{{tab:{TABLE}}}", r"\begin{tabular}{llllllll}", r"\toprule",
           " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    tex += [" & ".join(latex_escape(r[h]) for h in header) + r" \\" for r in rows]
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / f"{TABLE}.md", "\n".join(md) + "\n"),
            atomic_write_text(out_dir / f"{TABLE}.tex", "\n".join(tex) + "\n")]


@report_item(NAME, kind="figure")
def write_unit_agreement_figure(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw ``unit_agreement.{pdf,png,html}`` from the hidden-semantics records under ``workdir``."""
    frame = agreement_rows(Path(workdir))
    datasets = first_seen(frame["dataset"]) or ["shapes"]
    with figure_style():
        methods_per = max((frame[frame["dataset"] == d]["method"].nunique() for d in datasets), default=1)
        fig = new_figure(max(4.0, 0.55 * methods_per + 1.5) * len(datasets), 3.6)
        axes = fig.subplots(1, len(datasets), squeeze=False)[0]
        for ax, dataset in zip(axes, datasets):
            panel = frame[frame["dataset"] == dataset]
            if panel.empty:
                note(ax, "no hidden-semantics method ran beside Network Dissection")
                continue
            methods = first_seen(panel["method"])
            for x, method in enumerate(methods):
                rows = panel[panel["method"] == method]
                base = rows[rows["model"] == "baseline"]
                if len(base):
                    row = base.iloc[0]
                    ax.bar(x, row["agreement"], width=0.6, color="C0", alpha=0.8)
                    if np.isfinite(row["low"]) and np.isfinite(row["high"]):
                        ax.errorbar(x, row["agreement"], yerr=[[row["agreement"] - row["low"]],
                                                               [row["high"] - row["agreement"]]],
                                    color="0.2", lw=0.9, capsize=3)
                    ax.plot([x - 0.3, x + 0.3], [row["chance"]] * 2, color="black", lw=1.6)
                others = rows[rows["model"] != "baseline"]
                jitter = np.linspace(-0.2, 0.2, len(others)) if len(others) > 1 else np.zeros(len(others))
                ax.scatter(x + jitter, others["agreement"], s=10, color="0.45", zorder=3)
            ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right")
            ax.set_ylim(0, 1.02)
            ax.set_title(dataset)
        axes[0].set_ylabel("agreement with Network Dissection")
        skipped = not_applicable(Path(workdir))
        if skipped:
            fig.supxlabel("Not applicable: " + "; ".join(f"{m}, {r}" for m, r in skipped.items()), wrap=True,
                          fontsize=NOTE_STYLE["fontsize"] - 1, color=NOTE_STYLE["color"], style=NOTE_STYLE["style"])
        shown = pd.concat([frame, pd.DataFrame({"method": list(skipped), "note": list(skipped.values())})],
                          ignore_index=True) if skipped else frame
        fig.suptitle("Unit concept labels against Network Dissection")
        return save_figure(fig, out_dir, NAME, CAPTION, shown)
