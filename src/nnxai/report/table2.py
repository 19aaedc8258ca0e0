"""Table II of the survey, filled with real explanations: one excerpt of each output this run produced.

The survey's Table II (Section II) illustrates each cell of explanation type × scope with a typical
explanation.  Here every cell instead shows what the implemented methods of that cell actually produced
on the first dataset/model of the run that they were applied to (``shapes``/``baseline`` by default; an
active method's own explanation on ``shapes`` and its own network, e.g. the survey's exemplars [70], [76]):
the extracted rules, the units labelled with concepts, the attribution maps' measured scores, the concepts
with the largest significant TCAV scores and the selected training examples.  Cells whose methods are not implemented yet say so, naming them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnxai import registry
from nnxai.explanations import SurrogateModel, UnitImages, load_explanation
from nnxai.io import atomic_write_text
from nnxai.report._format import latex_escape, md_escape
from nnxai.report._items import report_item
from nnxai.report.table3 import cells
from nnxai.taxonomy import Engagement, ExplanationType, Scope

COLUMNS = {"Local and semi-local": (Scope.LOCAL, Scope.SEMI_LOCAL), "Global": (Scope.GLOBAL,)}
PREFERRED = ("shapes", "baseline")
#: Where a method that does not run on shapes/baseline is shown: the planted rules of the MONK's problems.
RULE_SETS = ("monks1", "monks3")
#: Scores printed beside a local rule's excerpt, where its metrics computed them.
LOCAL_RULE_SCORES = ("precision", "coverage", "validity", "pp_pn_validity", "flip_rate", "path_fidelity")
CAPTION = ("Example explanations produced by this run (the survey's Table II, with real outputs): "
           "for each explanation type and scope, an excerpt of every implemented passive method's output "
           "and of each actively trained network's explanation of itself (e.g. the interpretable CNN's "
           "filters [70] and the prototype network's prototypes [76]).")


def _find(workdir: Path, method_id: str) -> Path | None:
    """The method's explanation for shapes/baseline if it exists (for an active method: shapes and its own
    network), else for MONK-1 or MONK-3 (sigmoid, then ReLU MLP), else its first one in the work dir."""
    cls = registry.get(method_id)
    suffix = cls.record_type.suffix
    cells = ([(PREFERRED[0], m) for m in sorted(cls.only_models)] if cls.only_models
             else [PREFERRED] + [(d, m) for d in RULE_SETS for m in ("baseline_sigmoid", "baseline")])
    for dataset, model in cells:
        preferred = workdir / "data/explanations" / dataset / model / f"{method_id}{suffix}"
        if preferred.is_file():
            return preferred
    found = sorted((workdir / "data/explanations").glob(f"*/*/{method_id}{suffix}"))
    return found[0] if found else None


def _metrics(workdir: Path, path: Path) -> dict:
    rel = path.relative_to(workdir / "data/explanations")
    metric_file = workdir / "data/metrics" / rel.parent / f"{path.stem}.json"
    return json.loads(metric_file.read_text()) if metric_file.is_file() else {}


def _excerpt(record, metrics: dict) -> str:
    """A few lines of the explanation itself, plus the metric that scores it."""
    if record.kind == "rule":
        lines = record.to_text().splitlines()
        text = "; ".join(lines[:3]) + (f"; … ({len(lines) - 1} rules)" if len(lines) > 3 else "")
        return text + (f" — fidelity {metrics['fidelity']:.2f}" if "fidelity" in metrics else "")
    if record.kind == "local_rule":
        first = record.explanations[0]["text"] if record.explanations else "no input explained"
        scores = ", ".join(f"{key} {metrics[key]:.2f}" for key in sorted(metrics)
                           if key in LOCAL_RULE_SCORES and isinstance(metrics[key], (int, float)))
        return f"test #{record.indices[0] if record.indices else '-'}: {first}" + (f" — {scores}" if scores else "")
    if isinstance(record, SurrogateModel):
        size = sum(int(np.asarray(v).size) for v in record.parameters.values())
        text = f"a {record.architecture.get('type', 'surrogate')} of {size} parameters trained to mimic the network"
        return text + (f" — fidelity {metrics['fidelity']:.2f}" if "fidelity" in metrics else "")
    if isinstance(record, UnitImages):
        shown = ", ".join(dict.fromkeys(f"{u['layer']}:{u['unit']}" for u in record.units))
        return f"{len(record.units)} images of {shown[:120]}" + ("…" if len(shown) > 120 else "")
    if record.kind == "hidden_semantics":
        named = [u for u in record.units if u.get("concept") is not None]
        if not named:
            return f"{len(record.units)} units scored"
        is_iou = all("iou" in u for u in named)
        score = (lambda u: float(u["iou"])) if is_iou else (lambda u: float(u.get("score", 0.0)))
        best = sorted(named, key=lambda u: -score(u))[:3]
        label = "IoU" if is_iou else "score"
        text = "; ".join(f"{u['layer']}:{u['unit']} → {u['concept']} ({label} {score(u):.2f})" for u in best)
        if any("detector" in u for u in record.units):
            detectors = sum(bool(u.get("detector")) for u in record.units)
            return f"{text}; {detectors} of {len(record.units)} units are detectors"
        return f"{text}; {len(named)} of {len(record.units)} units named"
    if record.kind == "attribution":
        parts = [f"{len(record.indices)} maps"]
        for key, label in (("localisation.mass", "relevance mass in the evidence mask"),
                           ("pixel_flipping", "AOPC"), ("completeness", "completeness error")):
            if key in metrics:
                parts.append(f"{label} {metrics[key]:.3f}")
        return ", ".join(parts)
    if record.kind == "example":
        first = record.indices[0]
        picks = ", ".join(f"#{i} ({s:+.2f})" for i, s in zip(record.examples[0][:3], record.scores[0][:3]))
        return f"test #{first} is explained by training examples {picks}"
    if record.kind == "concept_attribution":
        ranked = sorted(record.tests, key=lambda t: (not t["significant"], -abs(t["tcav_score"] - t["random_mean"])))
        text = "; ".join(f"{t['concept']} → {record.class_names[t['class']]}: TCAV {t['tcav_score']:.2f} "
                         f"(p {t['p_value_corrected']:.2g})" for t in ranked[:3])
        n_significant = sum(t["significant"] for t in record.tests)
        return f"{text}; {n_significant} of {len(record.tests)} concept/class pairs significant at {record.layer}"
    raise ValueError(f"unknown explanation kind {record.kind!r}")


def rows(workdir: Path) -> list[tuple[str, dict[str, list[tuple[str, str]]]]]:
    """For each explanation type: {column: [(method name, excerpt), ...]} from the files of ``workdir``."""
    grid = cells()
    out = []
    for etype in ExplanationType:
        row: dict[str, list[tuple[str, str]]] = {}
        for column, scopes in COLUMNS.items():
            entries, seen = [], set()
            for engagement in Engagement:
                for scope in scopes:
                    for spec in grid[(engagement, etype, scope)]:
                        if spec.id in seen:
                            continue
                        seen.add(spec.id)
                        path = _find(workdir, spec.id) if registry.is_implemented(spec.id) else None
                        if path is not None:
                            where = "/".join(path.relative_to(workdir / "data/explanations").parts[:2])
                            tag = ", the network's own explanation" if engagement is Engagement.ACTIVE else ""
                            entries.append((f"{spec.name} ({where}{tag})",
                                            _excerpt(load_explanation(path), _metrics(workdir, path))))
            missing = [s.name for e in Engagement for sc in scopes for s in grid[(e, etype, sc)]
                       if not registry.is_implemented(s.id)]
            if missing:
                entries.append(("not yet run", ", ".join(dict.fromkeys(missing))))
            row[column] = entries
        out.append((etype.label, row))
    return out


@report_item("table2", kind="table")
def write_table2(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Write ``table2.md`` and ``table2.tex`` from the explanations under ``workdir``."""
    table = rows(Path(workdir))
    md = [f"**Table II.** {CAPTION}", "", "| Type | " + " | ".join(COLUMNS) + " |",
          "|---|" + "---|" * len(COLUMNS)]
    for label, row in table:
        cells_md = ["<br>".join(f"**{md_escape(n)}**: {md_escape(t)}" for n, t in row[c]) or "—" for c in COLUMNS]
        md.append(f"| {label} | " + " | ".join(cells_md) + " |")
    tex = [r"\begin{table*}[t]", r"\centering", r"\small", rf"\caption{{{latex_escape(CAPTION)}}}",
           r"\label{tab:table2}", r"\begin{tabular}{p{0.12\linewidth}p{0.42\linewidth}p{0.42\linewidth}}",
           r"\toprule", "Type & " + " & ".join(COLUMNS) + r" \\", r"\midrule"]
    for label, row in table:
        cells_tex = [r" \newline ".join(rf"\textbf{{{latex_escape(n)}}}: {latex_escape(t)}" for n, t in row[c])
                     or "---" for c in COLUMNS]
        tex.append(f"{latex_escape(label)} & " + " & ".join(cells_tex) + r" \\")
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / "table2.md", "\n".join(md) + "\n"),
            atomic_write_text(out_dir / "table2.tex", "\n".join(tex) + "\n")]
