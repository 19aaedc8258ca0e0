"""The report: the survey's tables and figures, generated from the registry and from measurements.

One module per table or figure, each with one public ``write_<name>(out_dir) -> list[Path]`` that writes
its files atomically and returns their paths (the showyourwork habit of STYLE.md: a figure names the
script that makes it):

- :mod:`~nnxai.report.table1` — Table I, interpretable "terms" used in practice (survey content);
- :mod:`~nnxai.report.table2` — Table II, example explanations, filled with this run's real outputs;
- :mod:`~nnxai.report.table3` — Table III, the taxonomy overview, from the registry;
- :mod:`~nnxai.report.table4` — Table IV, gradient-based attribution formulas, checked numerically;
- :mod:`~nnxai.report.taxonomy3d` — Fig. 2, the 3D taxonomy (PDF, PNG and interactive HTML);
- :mod:`~nnxai.report.table_comparison` — the companion survey's feature-importance comparison
  (its Table 1, :mod:`~nnxai.report.companion_table`), regenerated for every attribution method;
- :mod:`~nnxai.report.results` — the results document ``paper/results.{md,tex}``, every number with its interval;
- :mod:`~nnxai.report.survey_papers_table` — the survey's placed papers (the data of Fig. 2), and
  :mod:`~nnxai.report.concept_tests` — the TCAV/ACE tests pair by pair;
- :mod:`~nnxai.report.metrics_overview` (one page of ranks), :mod:`~nnxai.report.metrics_heatmap`,
  :mod:`~nnxai.report.perturbation_curves`,
  :mod:`~nnxai.report.runtime`, :mod:`~nnxai.report.rule_extractors` — the results figures, drawn from
  ``data/metrics/all.csv`` (PDF, PNG and an HTML page with the values).

:data:`TABLES` and :data:`FIGURES` map each output's name to its writer, for the CLI and the workflow;
both come from :data:`~nnxai.report._items.REPORT_ITEMS`, where each writer registers itself
(``@report_item(name, kind)``).  They and the ``write_<name>`` functions are loaded on first access, so
that reading the registry's light parts (the workflow does, on every CLI call) does not import
matplotlib, plotly and captum.
"""

from __future__ import annotations

from nnxai.report._format import latex_escape
from nnxai.report._items import REPORT_ITEMS, ReportItem, items_of, report_item

__all__ = ["FIGURES", "REPORT_ITEMS", "ReportItem", "TABLES", "items_of", "latex_escape", "report_item",
           "write_metrics_heatmap", "write_perturbation_curves", "write_runtime", "write_table1", "write_table2",
           "write_table3", "write_table4", "write_table_comparison", "write_taxonomy3d"]


def __getattr__(name: str):
    """``TABLES``, ``FIGURES`` (name -> writer) and ``write_<item>``, from the registry (PEP 562)."""
    if name in ("TABLES", "FIGURES"):   # read anew each time: an item registered later is listed too
        return {item: entry.writer for item, entry in items_of(name[:-1].lower()).items()}
    if name.startswith("write_") and name[len("write_"):] in REPORT_ITEMS:
        value = REPORT_ITEMS[name[len("write_"):]].writer
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
