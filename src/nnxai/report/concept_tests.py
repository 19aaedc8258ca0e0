"""Table: the concept tests of TCAV [63] and ACE [115], one row per (concept, class) pair.

TCAV asks, for a concept ``C`` and a class ``k``, whether the class's inputs move along ``C``'s concept
activation vector more often than along random directions: it trains ``n_runs`` CAVs of ``C`` against
random example sets and as many random-vs-random CAVs, and compares the two sets of TCAV scores by a
two-sided t-test, corrected (Bonferroni) for the number of pairs tested (:mod:`nnxai.ops.cav`).  A p-value
belongs to one pair: an average over pairs is not a p-value, so this table reports every pair of the
baseline networks -- its mean TCAV score with the spread over the CAV runs, the random CAVs' mean and
spread, the corrected p-value and whether it is significant -- and, for every other trained network, only
the count of significant pairs ("k of n").  Whether a significant concept is one the label depends on or a
distractor is for the reader to judge against the data set's rule (``shapes``: stripes and not a
triangle; colour, size and position are distractors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnxai.explanations import load_explanation
from nnxai.io import atomic_write_text
from nnxai.report._format import latex_escape, md_escape
from nnxai.report._items import report_item

NAME = "concept_tests"
METHODS = ("tcav", "ace")          #: the methods whose records hold concept tests (ConceptScores)
BASELINES = ("baseline",)          #: networks listed pair by pair; the others as counts
HEADER = ["Data set", "Method", "Concept", "Class", "TCAV score (sd over runs)", "Random CAVs (sd)",
          "Corrected p", "Significant"]
CAPTION = ("Concept tests of TCAV [63] and ACE [115] on the baseline networks, one row per (concept, class) "
           "pair: the mean TCAV score over the CAV runs (standard deviation over runs), the random CAVs' "
           "mean (sd), the two-sided t-test's p-value after Bonferroni correction over the pairs tested, "
           "and significance at the record's alpha.  An average of p-values is not a p-value: other networks "
           "are summarised as the number of significant pairs.")


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return "—"
    sd = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.2f} ({sd:.2f})"


def concept_records(workdir: Path):
    """``(dataset, model, method, record)`` of every concept-test record under ``workdir``, sorted."""
    root = Path(workdir) / "data/explanations"
    for method in METHODS:
        for path in sorted(root.glob(f"*/*/{method}.json")):
            yield path.parent.parent.name, path.parent.name, method, load_explanation(path)


def pair_rows(workdir: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(pairs, counts)``: one row per tested pair of the baseline networks, one per other network."""
    pairs, counts = [], []
    for dataset, model, method, record in concept_records(workdir):
        tests = list(record.tests or [])
        if model in BASELINES:
            for test in sorted(tests, key=lambda t: (t["class"], t["concept"])):
                k = int(test["class"])
                random = record.random_scores[k] if k < len(record.random_scores) else []
                pairs.append({"Data set": dataset, "Method": method, "Concept": str(test["concept"]),
                              "Class": str(record.class_names[k]),
                              "TCAV score (sd over runs)": _mean_sd(test.get("run_scores") or [test["tcav_score"]]),
                              "Random CAVs (sd)": _mean_sd(random),
                              "Corrected p": f"{float(test['p_value_corrected']):.2g}",
                              "Significant": "yes" if test["significant"] else "no"})
        else:
            significant = sum(bool(t["significant"]) for t in tests)
            counts.append({"Data set": dataset, "Method": method, "Model": model,
                           "Significant pairs": f"{significant} of {len(tests)}"})
    return pairs, counts


@report_item(NAME, kind="table")
def write_concept_tests(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Write ``concept_tests.md`` and ``.tex`` from the TCAV and ACE records under ``workdir``."""
    pairs, counts = pair_rows(Path(workdir))
    md = [f"**Concept tests.** {CAPTION}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    md += ["| " + " | ".join(md_escape(r[h]) for h in HEADER) + " |" for r in pairs]
    if not pairs:
        md.append("| " + " | ".join(["no concept test ran on a baseline network"] + [""] * (len(HEADER) - 1)) + " |")
    count_header = ["Data set", "Method", "Model", "Significant pairs"]
    if counts:
        md += ["", "Other networks:", "", "| " + " | ".join(count_header) + " |", "|" + "---|" * len(count_header)]
        md += ["| " + " | ".join(md_escape(r[h]) for h in count_header) + " |" for r in counts]
    tex = [r"\begin{table*}[t]", r"\centering", r"\small", rf"\caption{{{latex_escape(CAPTION)}}}",
           rf"\label{{tab:{NAME}}}", r"\begin{tabular}{" + "l" * len(HEADER) + "}", r"\toprule",
           " & ".join(latex_escape(h) for h in HEADER) + r" \\", r"\midrule"]
    tex += [" & ".join(latex_escape(r[h]) for h in HEADER) + r" \\" for r in pairs]
    tex += [r"\bottomrule", r"\end{tabular}"]
    if counts:
        tex += [r"\par\medskip", r"\begin{tabular}{llll}", r"\toprule",
                " & ".join(latex_escape(h) for h in count_header) + r" \\", r"\midrule"]
        tex += [" & ".join(latex_escape(r[h]) for h in count_header) + r" \\" for r in counts]
        tex += [r"\bottomrule", r"\end{tabular}"]
    tex += [r"\end{table*}"]
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / f"{NAME}.md", "\n".join(md) + "\n"),
            atomic_write_text(out_dir / f"{NAME}.tex", "\n".join(tex) + "\n")]
